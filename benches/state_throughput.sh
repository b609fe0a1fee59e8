#!/usr/bin/env bash
# Ingest + analysis throughput with the state database on and off, side by side in one
# run: faultline pinned to one core, the load generator to the other, alternating
# `--state memory` and `--state <sqlite file>` ROUNDS times so that drift on a shared
# machine hits both alike. Prints one line per run and the ratio of the medians.
#
#   benches/state_throughput.sh [ROUNDS] [DURATION] [EXTRA STATE SPEC]
#   benches/state_throughput.sh 3 10s postgres://postgres@127.0.0.1:5432/bench
#
# Needs `cargo build --release --bin faultline --bin faultline-loadgen` first.
set -euo pipefail
rounds=${1:-3}
duration=${2:-10s}
extra=${3:-}
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # state-spec label
  local spec=$1 label=$2 port=$((20000 + RANDOM % 20000))
  taskset -c 0 "$bin/faultline" --state "$spec" --otlp-grpc-listen 127.0.0.1:$port \
    --otlp-http-listen 127.0.0.1:0 --http-listen 127.0.0.1:$((port + 1)) \
    --trace-idle 1s --log-level warn &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((port + 1))/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local out
  out=$(taskset -c 1 "$bin/faultline-loadgen" --endpoint "http://127.0.0.1:$port" \
    --duration "$duration" --error-ratio 0.1 2>&1 | tr '\n' ' ')
  sleep 2 # the idle traces of the last second complete and are analysed
  local written
  written=$(curl -sf "http://127.0.0.1:$((port + 1))/metrics" |
    awk '/^faultline_state_verdicts_written_total/ {print $2}')
  local verdicts
  verdicts=$(curl -sf "http://127.0.0.1:$((port + 1))/metrics" |
    awk '/^faultline_verdicts_total/ {print $2}')
  kill -TERM $pid
  wait $pid || true
  local rate
  rate=$(grep -oE 'accepted_spans_per_sec=[0-9]+' <<<"$out" | head -1 | cut -d= -f2)
  echo "$label spans/s=$rate verdicts=${verdicts:-0} written=${written:-0} :: $out"
  echo "$label $rate" >>"$work/rates"
}

for i in $(seq "$rounds"); do
  run memory memory
  run "$work/state-$i.db" sqlite
  if [ -n "$extra" ]; then run "$extra" extra; fi
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mem=$(awk '$1=="memory" {print $2}' "$work/rates" | median)
sql=$(awk '$1=="sqlite" {print $2}' "$work/rates" | median)
echo "median spans/s: memory=$mem sqlite=$sql ratio=$(awk -v a="$sql" -v b="$mem" 'BEGIN {printf "%.3f", a/b}')"
if [ -n "$extra" ]; then
  ext=$(awk '$1=="extra" {print $2}' "$work/rates" | median)
  echo "median spans/s: extra=$ext ratio=$(awk -v a="$ext" -v b="$mem" 'BEGIN {printf "%.3f", a/b}')"
fi
