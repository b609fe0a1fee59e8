//! When the analysis stage is blocked and the span budget is full, the receivers push
//! back retryably (gRPC UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After) instead of
//! dropping, and recover once analysis moves again. Drives the library's real service
//! (`app::start`) with an analysis stage the test can hold.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use faultline::assembly::CompletedTrace;
use faultline::config::{resolve, ServeArgs};
use faultline::pipeline::TraceSink;
use faultline::telemetry::metrics::Metrics;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic_types::StatusExt;

/// An analysis stage that says when it has taken a trace, then waits for the test's
/// permission before finishing it.
struct HeldStage {
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
    entered: mpsc::Sender<()>,
}

impl TraceSink for HeldStage {
    fn handle(&mut self, _trace: CompletedTrace) {
        let _ = self.entered.send(());
        let _ = self.gate.lock().unwrap().recv();
    }
}

fn trace(t: u8, n: u8) -> ExportTraceServiceRequest {
    let spans = (1..=n)
        .map(|i| Span {
            trace_id: vec![t; 16],
            span_id: vec![i; 8],
            name: "op".into(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_analysis_stage_makes_both_receivers_push_back_retryably() {
    let config = resolve(ServeArgs {
        otlp_grpc_listen: Some("127.0.0.1:0".into()),
        otlp_http_listen: Some("127.0.0.1:0".into()),
        http_listen: Some("127.0.0.1:0".into()),
        max_buffered_spans: Some("20".into()),
        analysis_queue_size: Some("1".into()),
        trace_idle: Some("1h".into()),
        trace_max_age: Some("2h".into()),
        shutdown_timeout: Some("5s".into()),
        ..Default::default()
    })
    .unwrap();
    let (release, gate) = mpsc::channel();
    let metrics = Metrics::default();
    let store = Arc::new(faultline::store::VerdictStore::new(10));
    let (entered_tx, entered) = mpsc::channel();
    let held = Box::new(HeldStage {
        gate: Arc::new(Mutex::new(gate)),
        entered: entered_tx,
    });
    let listeners = faultline::app::Listeners::bind(&config).await.unwrap();
    let service =
        faultline::app::start_with_stage(&config, metrics.clone(), listeners, store, held)
            .await
            .unwrap();
    let mut grpc = TraceServiceClient::connect(format!("http://{}", service.otlp_grpc_addr))
        .await
        .unwrap();

    // Fill the budget until the receiver refuses. The first refusal can come while the
    // stage thread has not yet taken the first trace off the hand-off; once it has (and is
    // held), one more slot frees, so fill again: only then is the refusal stable.
    let mut next = 1u8;
    let mut refusals = 0u64;
    let mut fill = async |grpc: &mut TraceServiceClient<_>| loop {
        let t = next;
        next += 1;
        assert!(next < 100, "the full buffer must push back");
        if let Err(status) = grpc.export(trace(t, 10)).await {
            refusals += 1;
            break status;
        }
    };
    fill(&mut grpc).await;
    entered
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the stage takes the first evicted trace");
    let status = fill(&mut grpc).await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some(),
        "RetryInfo tells the sender when to retry"
    );

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{}/v1/traces", service.otlp_http_addr))
        .header("content-type", "application/x-protobuf")
        .body(trace(200, 10).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let ready = http
        .get(format!("http://{}/readyz", service.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while refusing data");
    let page = http
        .get(format!("http://{}/metrics", service.http_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let grpc_refused = format!(
        "faultline_receiver_refused_spans_total{{transport=\"grpc\",reason=\"overloaded\"}} {}",
        refusals * 10
    );
    assert!(page.contains(&grpc_refused), "{grpc_refused} in {page}");
    assert!(
        page.contains(
            "faultline_receiver_refused_spans_total{transport=\"http\",reason=\"overloaded\"} 10"
        ),
        "{page}"
    );

    // Let analysis move: the retried request is taken, and readiness returns.
    for _ in 0..100 {
        let _ = release.send(());
    }
    // As an exporter honouring RetryInfo would: retry until the analysis stage has drained
    // enough of the hand-off for eviction to make room again.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let retried = loop {
        let r = grpc.export(trace(201, 10)).await;
        if r.is_ok() || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(retried.is_ok(), "{retried:?}");
    let ready = http
        .get(format!("http://{}/readyz", service.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(release);
    let summary = service.stop().await.unwrap();
    assert_eq!(summary.spans_left, 0);
}
