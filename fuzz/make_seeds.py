#!/usr/bin/env python3
"""Builds the seed corpora in fuzz/seeds/ from the test fixtures, so fuzzing starts from
real OTLP requests and real stack traces instead of from nothing.

- otlp_json, otlp_protobuf: every trace of tests/fixtures/traces/ cut into small Export
  requests (the failing entry plus a few more spans each, stack traces shortened, at most
  16 KiB), as OTLP/JSON and as the protobuf encoding of the same request.
- stack_fingerprint: every stack of tests/fixtures/stacks/, alone and followed by
  NUL-separated exception type, message and span name (the target's input layout).
- analysis_core takes `arbitrary` bytes, which have no fixture form: it starts empty.

Needs the `opentelemetry-proto` package (in the black-box test venv):
    PYTHONDONTWRITEBYTECODE=1 target/blackbox-venv/bin/python fuzz/make_seeds.py
"""

import base64
import copy
import hashlib
import json
import pathlib

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
SPANS_PER_SEED = 6
MAX_STACK = 2048
MAX_SEED = 16 * 1024


def any_value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": key_values(v)}}
    if v is None:
        return {}
    return {"stringValue": str(v)[:MAX_STACK]}


def key_values(d):
    return [{"key": k, "value": any_value(v)} for k, v in (d or {}).items()]


def otlp_span(s):
    status = s.get("status") or {}
    out = {
        "traceId": s["trace_id"],
        "spanId": s["span_id"],
        "name": s.get("name", ""),
        "kind": int(s.get("kind") or 0),
        "startTimeUnixNano": str(s["start_unix_nano"]),
        "endTimeUnixNano": str(s["end_unix_nano"]),
        "attributes": key_values(s.get("attributes")),
        "events": [
            {
                "name": e.get("name", ""),
                "timeUnixNano": str(e.get("time_unix_nano", 0)),
                "attributes": key_values(e.get("attributes")),
            }
            for e in s.get("events") or []
        ],
        "status": {"code": int(status.get("code") or 0), "message": status.get("message", "")},
    }
    if s.get("parent_span_id"):
        out["parentSpanId"] = s["parent_span_id"]
    return out


def request(spans):
    groups = {}
    for s in spans:
        key = (json.dumps(s.get("resource"), sort_keys=True), s.get("scope", ""))
        groups.setdefault(key, []).append(s)
    by_resource = {}
    for (resource, scope), group in groups.items():
        by_resource.setdefault(resource, []).append(
            {"scope": {"name": scope}, "spans": [otlp_span(s) for s in group]}
        )
    return {
        "resourceSpans": [
            {"resource": {"attributes": key_values(json.loads(r))}, "scopeSpans": scopes}
            for r, scopes in by_resource.items()
        ]
    }


def base64_ids(req):
    """OTLP/JSON spells ids in hex; protobuf's own JSON mapping, used to encode, in base64."""
    req = copy.deepcopy(req)
    for rs in req["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return req


def write(target, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def is_entry(s):
    status = (s.get("attributes") or {}).get("http.response.status_code") or (
        s.get("attributes") or {}
    ).get("http.status_code")
    return s.get("kind") in (2, "SPAN_KIND_SERVER") and str(status) == "500"


def main():
    for path in sorted((ROOT / "tests/fixtures/traces").glob("*.json")):
        spans = json.loads(path.read_text())["spans"]
        entries = [s for s in spans if is_entry(s)]
        rest = [s for s in spans if not is_entry(s)]
        for i in range(0, max(len(rest), 1), SPANS_PER_SEED):
            chunk = entries[:1] + rest[i : i + SPANS_PER_SEED]
            req = request(chunk)
            as_json = json.dumps(req, separators=(",", ":")).encode()
            msg = json_format.Parse(
                json.dumps(base64_ids(req)), trace_service_pb2.ExportTraceServiceRequest()
            )
            as_proto = msg.SerializeToString()
            if len(as_json) <= MAX_SEED:
                write("otlp_json", as_json)
            if len(as_proto) <= MAX_SEED:
                write("otlp_protobuf", as_proto)
    for path in sorted((ROOT / "tests/fixtures/stacks").glob("*.txt")):
        # Fixtures open with `# source: …` provenance lines, which are not trace.
        lines = path.read_bytes().splitlines(keepends=True)
        while lines and lines[0].startswith(b"#"):
            lines.pop(0)
        stack = b"".join(lines)
        write("stack_fingerprint", stack)
        kind = path.stem.split("-")[0]
        write("stack_fingerprint", stack + b"\0" + kind.encode() + b"Error\0boom at 42\0GET /x")


if __name__ == "__main__":
    main()
