//! The forwarder's pure encoding (src/forward/encode.rs): what re-encoding a request costs
//! on the passthrough path, and what annotate mode's removal of upstream `faultline.*`
//! attributes costs per span of a failing trace (a scan when there are none, the common
//! case; a copy when an upstream faultline annotated the span).
//!
//! `cargo bench --bench forward_encode`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::assembly::SpanOrigin;
use faultline::forward::encode::{encode_request, strip_attributes, OutgoingSpan};
use faultline::synth::kv;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// An HTTP server span as the Python SDK's Flask instrumentation sends it, optionally
/// carrying an upstream faultline's annotation.
fn server_span(n: u8, annotated: bool) -> Vec<u8> {
    let s = |v: &str| Value::StringValue(v.into());
    let mut attributes = vec![
        kv("http.request.method", s("POST")),
        kv("url.scheme", s("http")),
        kv("server.address", s("orders.internal")),
        kv("server.port", Value::IntValue(8080)),
        kv("http.route", s("/orders/<int:order_id>/reserve")),
        kv("url.path", s("/orders/42/reserve")),
        kv("user_agent.original", s("python-requests/2.32.3")),
        kv("network.protocol.version", s("1.1")),
        kv("client.address", s("10.0.3.17")),
        kv("http.response.status_code", Value::IntValue(500)),
    ];
    if annotated {
        attributes.extend([
            kv("faultline.classification", s("late_dependency_failure")),
            kv("faultline.fingerprint", s("49c396520fab0d68")),
            kv("faultline.blame.span_id", s("b7e26e10079a60a9")),
            kv("faultline.budget_share", Value::DoubleValue(0.76)),
        ]);
    }
    Span {
        trace_id: vec![7; 16],
        span_id: vec![n; 8],
        name: "POST /orders/<int:order_id>/reserve".into(),
        kind: 2,
        start_time_unix_nano: 1_764_000_000_000_000_000,
        end_time_unix_nano: 1_764_000_000_355_000_000,
        attributes,
        ..Default::default()
    }
    .encode_to_vec()
}

fn encode(c: &mut Criterion) {
    let origin = Arc::new(SpanOrigin::default());
    let spans: Vec<Vec<u8>> = (0..100).map(|n| server_span(n, false)).collect();
    let mut group = c.benchmark_group("forward_encode");
    group.throughput(Throughput::Elements(spans.len() as u64));
    group.bench_function("request_of_100_spans", |b| {
        let mut buf = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            buf.clear();
            encode_request(
                spans.iter().map(|s| OutgoingSpan {
                    origin: &origin,
                    encoded: s,
                    extra: &[],
                }),
                &mut buf,
            );
            buf.len()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("strip_faultline_attributes");
    group.throughput(Throughput::Elements(1));
    let plain = server_span(1, false);
    let annotated = server_span(1, true);
    group.bench_function("span_without", |b| {
        b.iter(|| strip_attributes(&plain, "faultline."))
    });
    group.bench_function("span_with_four", |b| {
        b.iter(|| strip_attributes(&annotated, "faultline."))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
