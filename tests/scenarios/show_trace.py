#!/usr/bin/env python3
"""Print the traces of a captured fixture as trees (stdlib only).

    python3 tests/scenarios/show_trace.py tests/fixtures/traces/two_down.json [--attrs] [--stacks]

Times are milliseconds from the first span of each trace; `st=` is the status
code (0 unset, 1 ok, 2 error); `k=` the span kind (1 internal, 2 server,
3 client, 4 producer, 5 consumer).
"""

import argparse
import json
from collections import defaultdict


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fixture")
    ap.add_argument("--attrs", action="store_true", help="print span attributes")
    ap.add_argument("--stacks", action="store_true", help="print exception stack traces")
    args = ap.parse_args()
    spans = json.load(open(args.fixture))["spans"]
    traces = defaultdict(list)
    for s in spans:
        traces[s["trace_id"]].append(s)
    for tid, ts in traces.items():
        ids = {s["span_id"] for s in ts}
        kids = defaultdict(list)
        for s in ts:
            kids[s["parent_span_id"] if s["parent_span_id"] in ids else None].append(s)
        t0 = min(s["start_unix_nano"] for s in ts)
        print(f"trace {tid} ({len(ts)} spans)")

        def show(s, depth):
            pad = "  " * (depth + 1)
            a = s["attributes"]
            code = a.get("http.response.status_code", a.get("http.status_code", ""))
            msg = s["status"]["message"]
            print(f"{pad}[{s['resource'].get('service.name')}] {s['name']!r} k={s['kind']} "
                  f"{(s['start_unix_nano'] - t0) / 1e6:.3f}..{(s['end_unix_nano'] - t0) / 1e6:.3f}ms "
                  f"st={s['status']['code']} {code}" + (f" {msg[:90]!r}" if msg else ""))
            if args.attrs:
                print(f"{pad}    attributes: {json.dumps(a)}")
            for e in s["events"]:
                ea = dict(e["attributes"])
                stack = ea.pop("exception.stacktrace", None)
                print(f"{pad}    event {e['name']}: {json.dumps(ea)}")
                if stack and args.stacks:
                    print("\n".join(f"{pad}      | {line}" for line in stack.splitlines()))
            for k in sorted(kids[s["span_id"]], key=lambda x: x["start_unix_nano"]):
                show(k, depth + 1)

        for r in sorted(kids[None], key=lambda x: x["start_unix_nano"]):
            show(r, 0)


if __name__ == "__main__":
    main()
