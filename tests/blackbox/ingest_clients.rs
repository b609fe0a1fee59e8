//! Real OTLP clients deliver spans and faultline counts them span for span: the Rust
//! `opentelemetry-otlp` exporter (gRPC and HTTP/protobuf), the Python SDK's exporters
//! (gRPC and HTTP, plain and gzip), and rotel-agent as a collector upstream.

use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::support::{free_port, python_send, rotel_agent, Faultline, Guard};

const WAIT: Duration = Duration::from_secs(20);

/// Emits `traces` traces of `per_trace` spans through `provider` and flushes.
fn emit(provider: &SdkTracerProvider, traces: usize, per_trace: usize) {
    let tracer = provider.tracer("faultline-blackbox");
    for t in 0..traces {
        let mut root = tracer
            .span_builder(format!("GET /items/{t}"))
            .with_kind(SpanKind::Server)
            .start(&tracer);
        root.set_attribute(KeyValue::new("http.response.status_code", 200));
        let cx = opentelemetry::Context::current_with_span(root);
        for c in 0..per_trace - 1 {
            let mut child = tracer
                .span_builder(format!("SELECT {c}"))
                .with_kind(SpanKind::Client)
                .start_with_context(&tracer, &cx);
            child.set_attribute(KeyValue::new("db.system.name", "postgresql"));
            child.end();
        }
        drop(cx);
    }
    provider.force_flush().expect("flush");
}

fn provider(exporter: opentelemetry_otlp::SpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("rust-sender").build())
        .build()
}

#[test]
fn rust_otlp_grpc_exporter_spans_are_all_counted() {
    let f = Faultline::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(f.grpc_endpoint())
        .build()
        .unwrap();
    let p = provider(exporter);
    emit(&p, 30, 4);
    p.shutdown().unwrap();
    assert_eq!(
        f.wait_metric(
            "faultline_receiver_accepted_spans_total{transport=\"grpc\"}",
            120.0,
            WAIT
        ),
        120.0
    );
}

#[test]
fn rust_otlp_http_protobuf_exporter_spans_are_all_counted() {
    let f = Faultline::start(&[]);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", f.http_endpoint()))
        .build()
        .unwrap();
    let p = provider(exporter);
    emit(&p, 25, 3);
    p.shutdown().unwrap();
    assert_eq!(
        f.wait_metric(
            "faultline_receiver_accepted_spans_total{transport=\"http\"}",
            75.0,
            WAIT
        ),
        75.0
    );
}

#[test]
fn python_sdk_exporters_over_grpc_and_http_plain_and_gzip_are_all_counted() {
    // Idle well beyond the senders' batching gaps, so no trace is ever split on a loaded
    // machine and counted twice.
    let f = Faultline::start(&["--trace-idle", "1s"]);
    let (_, a) = python_send("grpc", &f.grpc_endpoint(), 20, 5, false);
    let (_, b) = python_send("grpc", &f.grpc_endpoint(), 10, 3, true);
    let (_, c) = python_send("http", &f.http_endpoint(), 15, 4, false);
    let (_, d) = python_send("http", &f.http_endpoint(), 5, 7, true);
    assert_eq!(
        f.wait_metric(
            "faultline_receiver_accepted_spans_total{transport=\"grpc\"}",
            (a + b) as f64,
            WAIT
        ),
        (a + b) as f64
    );
    assert_eq!(
        f.wait_metric(
            "faultline_receiver_accepted_spans_total{transport=\"http\"}",
            (c + d) as f64,
            WAIT
        ),
        (c + d) as f64
    );
    // Every trace is assembled and analysed whole: 50 traces, all spans.
    assert_eq!(
        f.wait_metric("faultline_traces_analyzed_total", 50.0, WAIT),
        50.0
    );
    assert_eq!(
        f.metric("faultline_spans_analyzed_total"),
        (a + b + c + d) as f64
    );
    assert_eq!(
        f.metric(
            "faultline_receiver_refused_spans_total{transport=\"grpc\",reason=\"invalid_id\"}"
        ),
        0.0
    );
}

#[test]
fn spans_sent_through_rotel_agent_arrive() {
    // Idle well beyond the senders' batching gaps, so no trace is ever split on a loaded
    // machine and counted twice.
    let f = Faultline::start(&["--trace-idle", "1s"]);
    let grpc_port = free_port();
    let http_port = free_port();
    let agent = Command::new(rotel_agent())
        .args([
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc_port}"),
        ])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
        .args([
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &f.grpc_endpoint(),
        ])
        .args(["--batch-timeout", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rotel-agent");
    let _agent = Guard(agent);
    // Wait for rotel's receiver.
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rotel-agent did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, grpc_spans) = python_send(
        "grpc",
        &format!("http://127.0.0.1:{grpc_port}"),
        12,
        5,
        false,
    );
    let (_, http_spans) = python_send(
        "http",
        &format!("http://127.0.0.1:{http_port}"),
        8,
        5,
        false,
    );
    let total = (grpc_spans + http_spans) as f64;
    assert_eq!(
        f.wait_metric(
            "faultline_receiver_accepted_spans_total{transport=\"grpc\"}",
            total,
            WAIT
        ),
        total
    );
    assert_eq!(
        f.wait_metric("faultline_traces_analyzed_total", 20.0, WAIT),
        20.0
    );
}
