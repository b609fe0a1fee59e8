#!/usr/bin/env bash
# Compiles src/ (TypeScript) into dist/ (committed JavaScript), with the pinned
# typescript and type packages of package-lock.json as installed by
# `tests/zoo/zoo.py setup nestjs` (node_modules under the zoo env dir, not here).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
env_dir="${FAULTLINE_ZOO_ENV:-$here/../../../../target/zoo-env}"
modules="$(cd "$env_dir/nestjs/node/node_modules" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/src" "$here/tsconfig.json" "$tmp/"
ln -s "$modules" "$tmp/node_modules"
(cd "$tmp" && node node_modules/typescript/bin/tsc -p .)
rm -rf "$here/dist"
cp -r "$tmp/dist" "$here/dist"
echo "compiled $(find "$here/dist" -name '*.js' | wc -l) files into $here/dist"
