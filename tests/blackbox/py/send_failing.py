"""Sends healthy and failing requests' spans with the stock OpenTelemetry Python SDK.

usage: send_failing.py grpc|http ENDPOINT HEALTHY FAILING
A failing request is a SERVER span answering 500 whose CLIENT call to a payments
service timed out (the exception recorded on both, as requests + Flask would).
Prints one JSON line: {"healthy": [trace ids], "failing": [{"trace_id", "entry",
"client"}], "spans": N}.
"""
import json
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

protocol, endpoint, healthy, failing = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")

provider = TracerProvider(resource=Resource.create(
    {"service.name": "checkout", "service.version": "2.4.1", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=64))
tracer = provider.get_tracer("faultline.blackbox", "1.0")
out = {"healthy": [], "failing": [], "spans": 0}

for _ in range(healthy):
    with tracer.start_as_current_span("GET /cart", kind=trace.SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "GET")
        root.set_attribute("http.route", "/cart")
        root.set_attribute("http.response.status_code", 200)
        out["healthy"].append(format(root.get_span_context().trace_id, "032x"))
        with tracer.start_as_current_span("SELECT cart", kind=trace.SpanKind.CLIENT) as db:
            db.set_attribute("db.system", "postgresql")
            db.set_attribute("db.query.text", "SELECT * FROM cart WHERE id = $1")
    out["spans"] += 2

def charge():
    raise TimeoutError("HTTPConnectionPool(host='payments', port=8080): Read timed out. (read timeout=0.05)")

for _ in range(failing):
    with tracer.start_as_current_span("POST /checkout", kind=trace.SpanKind.SERVER,
                                      record_exception=False, set_status_on_exception=False) as root:
        root.set_attribute("http.request.method", "POST")
        root.set_attribute("http.route", "/checkout")
        entry = format(root.get_span_context().span_id, "016x")
        try:
            with tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT,
                                              record_exception=False, set_status_on_exception=False) as call:
                client = format(call.get_span_context().span_id, "016x")
                call.set_attribute("http.request.method", "POST")
                call.set_attribute("server.address", "payments")
                call.set_attribute("server.port", 8080)
                call.set_attribute("url.full", "http://payments:8080/charge")
                time.sleep(0.05)
                try:
                    charge()
                except TimeoutError as e:
                    call.record_exception(e)
                    call.set_attribute("error.type", "TimeoutError")
                    call.set_status(Status(StatusCode.ERROR, str(e)))
                    raise
        except TimeoutError as e:
            root.record_exception(e)
            root.set_attribute("http.response.status_code", 500)
            root.set_attribute("error.type", "500")
            root.set_status(Status(StatusCode.ERROR))
        out["failing"].append({"trace_id": format(root.get_span_context().trace_id, "032x"),
                               "entry": entry, "client": client})
    out["spans"] += 2

ok = provider.force_flush(30_000)
provider.shutdown()
if not ok:
    sys.exit("force_flush timed out")
print(json.dumps(out))
