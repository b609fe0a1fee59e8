"""Tiny OTLP/HTTP trace receiver that captures spans into a JSON fixture.

Runs inside the scenario venv (needs the `opentelemetry-proto` package):

    python capture_otlp.py --port 4318 --out trace.json [--port-file F] [--grpc-port P]

Accepts `POST /v1/traces` with `application/x-protobuf` (gzip or identity,
Content-Length or chunked) and, with --grpc-port, OTLP/gRPC `Export` too
(grpcio, installed with the gRPC exporter); decodes `ExportTraceServiceRequest`
and after every request rewrites
--out (atomically) with all spans received so far, in arrival order:

    {"spans": [{"trace_id": hex32, "span_id": hex16, "parent_span_id": hex16|null,
                "name": str, "kind": int, "start_unix_nano": int, "end_unix_nano": int,
                "status": {"code": int, "message": str},
                "attributes": {k: v}, "events": [{"name", "time_unix_nano", "attributes"}],
                "resource": {k: v}, "scope": str}]}

Attribute values become plain JSON: strings, bools, ints, doubles, arrays of
those, kvlists as objects, bytes as lowercase hex. Stops on SIGTERM/SIGINT.
"""

import argparse
import gzip
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return None


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def convert(req):
    out = []
    for rs in req.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex() if s.parent_span_id else None,
                    "name": s.name,
                    "kind": int(s.kind),
                    "start_unix_nano": int(s.start_time_unix_nano),
                    "end_unix_nano": int(s.end_time_unix_nano),
                    "status": {"code": int(s.status.code), "message": s.status.message},
                    "attributes": attrs(s.attributes),
                    "events": [{"name": e.name, "time_unix_nano": int(e.time_unix_nano),
                                "attributes": attrs(e.attributes)} for e in s.events],
                    "resource": resource,
                    "scope": ss.scope.name,
                })
    return out


class Store:
    def __init__(self, path):
        self.path = path
        self.spans = []
        self.lock = threading.Lock()
        self.write()

    def add(self, spans):
        with self.lock:
            self.spans.extend(spans)
            self.write()

    def write(self):
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"spans": self.spans}, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)


def make_handler(store):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep the driver's output clean
            pass

        def _answer(self, code, body=b"", ctype="application/x-protobuf"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self):
            # The Node exporter sends its body with Transfer-Encoding: chunked.
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self):
            body = self._read_body()
            if self.path.split("?")[0] != "/v1/traces":
                return self._answer(404, b"not found", "text/plain")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/x-protobuf":
                return self._answer(415, b"only application/x-protobuf", "text/plain")
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
            req = ExportTraceServiceRequest()
            try:
                req.ParseFromString(body)
            except Exception as e:  # noqa: BLE001
                return self._answer(400, str(e).encode(), "text/plain")
            store.add(convert(req))
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

    return Handler


def start_grpc(store, host, port):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 (gRPC method name)
            store.add(convert(request))
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--grpc-port", type=int, default=None, help="also serve OTLP/gRPC here (0: any free port)")
    ap.add_argument("--grpc-port-file", help="write the bound gRPC port here once listening")
    args = ap.parse_args()

    store = Store(args.out)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(store))
    server.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    grpc_server = None
    if args.grpc_port is not None:
        grpc_server, grpc_port = start_grpc(store, args.host, args.grpc_port)
        if args.grpc_port_file:
            with open(args.grpc_port_file + ".tmp", "w") as f:
                f.write(str(grpc_port))
            os.replace(args.grpc_port_file + ".tmp", args.grpc_port_file)
        print(f"capture_otlp gRPC on {args.host}:{grpc_port}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"capture_otlp listening on {args.host}:{port}, writing {args.out}", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()
    if grpc_server is not None:
        grpc_server.stop(grace=1).wait()
    print(f"capture_otlp: {len(store.spans)} spans in {args.out}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
