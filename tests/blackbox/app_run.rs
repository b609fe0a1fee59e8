//! `app::run` as a library: the test binds `127.0.0.1:0` itself, hands the listeners and a
//! shutdown future to `run`, talks to the addresses it bound (no log lines read), and
//! drives the ordered shutdown, which analyses what is still buffered.

use faultline::app::{self, Listeners};
use faultline::config::{resolve, ServeArgs};
use faultline::telemetry::metrics::Metrics;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use tokio::net::TcpListener;

use crate::support::int_kv;

/// One SERVER span answering 500: a failing request, so its trace is analysed.
fn failing_request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![1; 8],
                    name: "GET /orders".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: 1_000_000_000,
                    end_time_unix_nano: 1_200_000_000,
                    attributes: vec![int_kv("http.response.status_code", 500)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_listeners_it_is_given_and_flushes_the_buffer_on_shutdown() {
    let any = "127.0.0.1:0";
    let listeners = Listeners {
        otlp_grpc: TcpListener::bind(any).await.unwrap(),
        otlp_http: TcpListener::bind(any).await.unwrap(),
        http: TcpListener::bind(any).await.unwrap(),
    };
    let grpc_addr = listeners.otlp_grpc.local_addr().unwrap();
    let api_addr = listeners.http.local_addr().unwrap();
    // The configured addresses are not bound: `run` serves the listeners it is given.
    let config = resolve(ServeArgs {
        trace_idle: Some("1h".into()),
        trace_max_age: Some("2h".into()),
        shutdown_timeout: Some("10s".into()),
        state: Some("memory".into()),
        ..Default::default()
    })
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app::run(config, Metrics::default(), listeners, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let ready = loop {
        match http.get(format!("http://{api_addr}/readyz")).send().await {
            Ok(r) if r.status().is_success() => break r,
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    assert_eq!(ready.status(), 200);
    let mut grpc = TraceServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    grpc.export(failing_request()).await.unwrap();

    stop.send(()).unwrap();
    let summary = service.await.unwrap().unwrap();
    assert_eq!(summary.traces_flushed, 1, "{summary:?}");
    assert_eq!(summary.traces_analyzed, 1, "{summary:?}");
    assert_eq!(summary.spans_left, 0, "{summary:?}");
}
