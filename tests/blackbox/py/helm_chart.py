"""Drives Helm's own engine (helm-python-sdk, Helm v4's Go SDK) and kubernetes-validate over
the faultline chart for tests/blackbox/helm.rs, in one process so the suite stays fast.

Usage: helm_chart.py REQUEST.json  — prints one JSON object:
  lint:    {case: helm lint --strict report}
  renders: {case: {"documents": [...], "validation": [...], "notes": str, "templates": {path: kind}}}
  refuse:  {case: {"stage": "schema"|"template"|"accepted", "error": str}}
  package: {"members": {path: {"regular": bool, "sha256": str}}}
  hashes:  {path: sha256 of each of hash_files}

REQUEST: {"chart": dir, "kube_version": "v1.33.0", "package_dir": dir,
          "lint": {case: spec}, "renders": {case: spec}, "refuse": {case: spec}}
with spec = {"values_file": optional path, "values": optional dict (merged over the file)}.
"""

import hashlib
import json
import sys
import tarfile

import helm_python
import kubernetes_validate
import yaml

# Custom resources have no bundled schema; everything else must validate.
CRD_KINDS = {"ServiceMonitor"}


def merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def values_of(spec):
    values = {}
    if spec.get("values_file"):
        with open(spec["values_file"]) as f:
            values = helm_python.values_from_yaml(f.read())
    return merge(values, spec.get("values") or {})


def render(chart, spec, kube_version):
    manifests = chart.render(values_of(spec), name="faultline", namespace="observability")
    documents, validation, templates, notes = [], [], {}, ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            documents.append(doc)
            templates.setdefault(path, []).append(doc["kind"])
            entry = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
            if doc["kind"] in CRD_KINDS:
                entry["result"] = "skipped"
            else:
                try:
                    kubernetes_validate.validate(doc, kube_version, strict=True)
                    entry["result"] = "ok"
                except kubernetes_validate.ValidationError as e:
                    path_in = ".".join(str(p) for p in e.path)
                    entry["result"] = f"invalid at {path_in}: {e.message}"
                except kubernetes_validate.SchemaNotFoundError as e:
                    entry["result"] = f"no schema: {e}"
            validation.append(entry)
    return {"documents": documents, "validation": validation, "notes": notes, "templates": templates}


def refuse(chart, spec):
    values = values_of(spec)
    try:
        chart.validate_schema(values)
    except helm_python.HelmError as e:
        return {"stage": "schema", "error": str(e)}
    try:
        chart.render(values, name="faultline", namespace="observability")
    except helm_python.HelmError as e:
        return {"stage": "template", "error": str(e)}
    return {"stage": "accepted", "error": ""}


def package(chart_dir, destination):
    archive = helm_python.package(chart_dir, destination=destination)
    members = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            entry = {"regular": member.isfile(), "sha256": ""}
            if member.isfile():
                entry["sha256"] = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
            members[member.name] = entry
    return {"archive": archive, "members": members}


def main():
    with open(sys.argv[1]) as f:
        request = json.load(f)
    chart_dir, kube_version = request["chart"], request["kube_version"]
    chart = helm_python.Chart.load(chart_dir)
    out = {
        "lint": {
            case: helm_python.lint(chart_dir, values_of(spec), strict=True, kube_version=kube_version)
            for case, spec in request.get("lint", {}).items()
        },
        "renders": {case: render(chart, spec, kube_version) for case, spec in request.get("renders", {}).items()},
        "refuse": {case: refuse(chart, spec) for case, spec in request.get("refuse", {}).items()},
    }
    out["hashes"] = {}
    for path in request.get("hash_files", []):
        with open(path, "rb") as f:
            out["hashes"][path] = hashlib.sha256(f.read()).hexdigest()
    if request.get("package_dir"):
        out["package"] = package(chart_dir, request["package_dir"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
