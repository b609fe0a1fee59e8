"""TLS and bearer-token clients for tests/blackbox/security.rs.

usage:
  secure_client.py export grpc|http URL [--ca F] [--token T] [--cert F --key F] [--spans N]
  secure_client.py get URL [--ca F] [--token T]

`export` sends one batch of N spans twice: through the stock OpenTelemetry SDK exporter
(OTLPSpanExporter, gRPC or HTTP/protobuf, with its own TLS options: `credentials=` built by
grpc.ssl_channel_credentials, or `certificate_file=`/`client_*_file=`), whose verdict is
`sdk`; then as a raw request through the same library the exporter uses (grpc, requests),
which gives the exact answer as `status` (a gRPC status name, an HTTP status number, or
`connection_error`). So a run sends 2*N spans. URL is http://HOST:PORT (plain text) or
https://HOST:PORT (TLS, trusting --ca). `get` does an HTTPS GET and prints its status.
Prints one JSON line.
"""
import argparse
import json
import logging
import sys
from urllib.parse import urlparse

import requests

logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

p = argparse.ArgumentParser()
p.add_argument("command", choices=["export", "get"])
p.add_argument("rest", nargs="+")
p.add_argument("--ca")
p.add_argument("--token")
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--spans", type=int, default=3)
args = p.parse_args()


def read(path):
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def http_get(url):
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        r = requests.get(url, headers=headers, verify=args.ca or True, timeout=10)
    except requests.exceptions.RequestException as e:
        return {"status": "connection_error", "error": str(e)}
    return {"status": r.status_code, "www_authenticate": r.headers.get("WWW-Authenticate"),
            "body": r.text}


if args.command == "get":
    print(json.dumps(http_get(args.rest[0])))
    sys.exit(0)

protocol, url = args.rest
tls = urlparse(url).scheme == "https"

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

memory = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "secure-sender"}))
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("faultline.blackbox.security")
with tracer.start_as_current_span("GET /secure", kind=trace.SpanKind.SERVER):
    for i in range(args.spans - 1):
        with tracer.start_as_current_span(f"child-{i}", kind=trace.SpanKind.CLIENT):
            pass
spans = memory.get_finished_spans()
assert len(spans) == args.spans

out = {}
if protocol == "grpc":
    import grpc
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    creds = None
    if tls:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca), private_key=read(args.key),
            certificate_chain=read(args.cert))
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    exporter = OTLPSpanExporter(endpoint=url, insecure=not tls, credentials=creds,
                                headers=headers, timeout=3)
    out["sdk"] = exporter.export(spans).name
    exporter.shutdown()
    target = urlparse(url).netloc
    channel = grpc.secure_channel(target, creds) if tls else grpc.insecure_channel(target)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    try:
        TraceServiceStub(channel).Export(encode_spans(spans), metadata=metadata, timeout=5)
        out["status"] = "OK"
    except grpc.RpcError as e:
        out["status"] = e.code().name
        out["details"] = e.details()
    channel.close()
else:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    exporter = OTLPSpanExporter(endpoint=url + "/v1/traces", certificate_file=args.ca,
                                client_key_file=args.key, client_certificate_file=args.cert,
                                headers=headers, timeout=3)
    out["sdk"] = exporter.export(spans).name
    exporter.shutdown()
    raw_headers = {"Content-Type": "application/x-protobuf"}
    if args.token:
        raw_headers["Authorization"] = f"Bearer {args.token}"
    cert = (args.cert, args.key) if args.cert else None
    try:
        r = requests.post(url + "/v1/traces", data=encode_spans(spans).SerializeToString(),
                          headers=raw_headers, verify=args.ca or True, cert=cert, timeout=5)
        out["status"] = r.status_code
        out["www_authenticate"] = r.headers.get("WWW-Authenticate")
    except requests.exceptions.RequestException as e:
        out["status"] = "connection_error"
        out["error"] = str(e)
print(json.dumps(out))
