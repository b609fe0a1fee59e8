"""Records a few requests with the stock OpenTelemetry Python SDK, sending every span to a
running faultline over OTLP/HTTP and, at the same time, capturing the very same export
requests to files the way the Collector's `file` exporter writes them.

usage: capture_spans.py OTLP_HTTP_ENDPOINT OUT_DIR PAUSE_SECONDS

Writes, in OUT_DIR:
  capture.jsonl   one OTLP/JSON ExportTraceServiceRequest a line (`format: json`)
  capture.pb      each request preceded by its length, 4 bytes big-endian (`format: proto`)
  capture.raw.pb  every span in one raw ExportTraceServiceRequest
Prints one JSON line: {"failing": [trace ids], "healthy": [trace ids]}.

The requests are made PAUSE_SECONDS apart, so that the service (with a shorter
--trace-idle) analyses them in the order they started, as `faultline analyze` does.
"""
import base64
import json
import os
import sys
import time

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint, out_dir, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])


def hex_ids(node):
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids in hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids(item)
    return node


class FileCapture(SpanExporter):
    """Encodes each export with the SDK's own OTLP encoder and appends it to the files."""

    def __init__(self, directory):
        self.jsonl = open(os.path.join(directory, "capture.jsonl"), "w")
        self.framed = open(os.path.join(directory, "capture.pb"), "wb")
        self.raw_path = os.path.join(directory, "capture.raw.pb")
        self.spans = []

    def export(self, spans):
        request = encode_spans(spans)
        body = request.SerializeToString()
        self.framed.write(len(body).to_bytes(4, "big") + body)
        as_json = json_format.MessageToDict(request, use_integers_for_enums=True)
        self.jsonl.write(json.dumps(hex_ids(as_json), separators=(",", ":")) + "\n")
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.jsonl.close()
        self.framed.close()
        with open(self.raw_path, "wb") as f:
            f.write(encode_spans(self.spans).SerializeToString())


provider = TracerProvider(
    resource=Resource.create(
        {
            "service.name": "checkout",
            "service.version": "3.1.0",
            "deployment.environment.name": "staging",
        }
    )
)
capture = FileCapture(out_dir)
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
provider.add_span_processor(SimpleSpanProcessor(capture))
tracer = provider.get_tracer("faultline.blackbox.capture")


def price_of(cart):
    return cart["sku"] * 2  # KeyError: the handler's own defect


def request(route, payments_status, cart, tenant):
    """One request: a SERVER span over a CLIENT call to payments and a price lookup."""
    with tracer.start_as_current_span(
        f"POST {route}", kind=SpanKind.SERVER, record_exception=False, set_status_on_exception=False
    ) as server:
        server.set_attribute("http.request.method", "POST")
        server.set_attribute("http.route", route)
        server.set_attribute("app.tenant", tenant)
        status = 200
        try:
            with tracer.start_as_current_span(
                "POST", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
            ) as call:
                call.set_attribute("http.request.method", "POST")
                call.set_attribute("server.address", "payments")
                call.set_attribute("url.full", "http://payments/charge")
                call.set_attribute("http.response.status_code", payments_status)
                time.sleep(0.03)  # the call takes most of the request's time
                if payments_status >= 500:
                    call.set_status(Status(StatusCode.ERROR))
                    raise ConnectionError(f"payments answered {payments_status}")
            price_of(cart)
        except Exception as e:  # the framework turns every exception into a 500
            server.record_exception(e)
            server.set_status(Status(StatusCode.ERROR, str(e)))
            status = 500
        server.set_attribute("http.response.status_code", status)
        return format(server.get_span_context().trace_id, "032x"), status


failing, healthy = [], []
plan = [
    ("/checkout", 503, {"sku": 1}, "acme"),  # a dependency failure behind a generic 500
    ("/checkout", 200, {"sku": 1}, "acme"),  # healthy
    ("/cart", 200, {}, "legacy"),  # the handler's KeyError
    ("/cart", 200, {}, "legacy"),  # the same bug again: recurrence
]
for i, (route, payments, cart, tenant) in enumerate(plan):
    if i:
        time.sleep(pause)
    trace_id, status = request(route, payments, cart, tenant)
    (failing if status == 500 else healthy).append(trace_id)
provider.shutdown()
print(json.dumps({"failing": failing, "healthy": healthy}))
