"""Sends spans to an OTLP endpoint with the stock OpenTelemetry Python SDK exporter.

usage: send_spans.py grpc|http ENDPOINT TRACES SPANS_PER_TRACE [gzip]
Prints one JSON line: {"trace_ids": [...], "spans": N}.
"""
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

protocol, endpoint, traces, per_trace = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gzip = len(sys.argv) > 5 and sys.argv[5] == "gzip"
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True,
                                compression=Compression.Gzip if gzip else Compression.NoCompression)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces",
                                compression=Compression.Gzip if gzip else Compression.NoCompression)

provider = TracerProvider(resource=Resource.create({"service.name": "py-sender", "service.version": "1.0"}))
processor = BatchSpanProcessor(exporter, max_export_batch_size=64)
provider.add_span_processor(processor)
tracer = provider.get_tracer("faultline.blackbox")
trace_ids = []
for _ in range(traces):
    with tracer.start_as_current_span("GET /orders/{id}", kind=trace.SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/orders/{id}")
        root.set_attribute("http.response.status_code", 200)
        trace_ids.append(format(root.get_span_context().trace_id, "032x"))
        for i in range(per_trace - 1):
            with tracer.start_as_current_span(f"child-{i}", kind=trace.SpanKind.CLIENT) as c:
                c.set_attribute("db.system", "postgresql")
ok = provider.force_flush(30_000)
provider.shutdown()
if not ok:
    sys.exit("force_flush timed out")
print(json.dumps({"trace_ids": trace_ids, "spans": traces * per_trace}))
