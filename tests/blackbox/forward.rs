//! The forwarder between two real OTLP peers: the OpenTelemetry Python SDK sending in,
//! faultline in the middle, a test OTLP receiver (tonic or axum, `downstream.rs`) counting
//! out. Every span must arrive exactly once with what the sender sent, in both modes,
//! whatever the downstream does (down, throttling, refusing), and the sender is pushed
//! back when the queue is full.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tonic_types::StatusExt;

use crate::downstream::{Behaviour, Downstream};
use crate::support::{free_port, python_send, python_send_failing, Faultline};

const WAIT: Duration = Duration::from_secs(30);

fn str_value(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn assert_exactly_once(d: &Downstream, expected: usize) {
    let got = d.wait_spans(expected, WAIT);
    assert_eq!(got, expected, "spans delivered");
    // Nothing more trickles in.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.span_count(), expected, "no span delivered twice");
    assert!(
        d.duplicates().is_empty(),
        "duplicates: {:?}",
        d.duplicates()
    );
}

#[test]
fn passthrough_forwards_every_span_at_once_with_its_resource_scope_and_attributes() {
    let d = Downstream::grpc();
    // An hour of idle time: passthrough must not wait for the analysis.
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-header",
        "authorization=Bearer s3cret",
        "--forward-compression",
        "gzip",
        "--trace-idle",
        "1h",
        "--trace-max-age",
        "2h",
    ]);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 20, 5, false);
    assert_eq!(sent, 100);
    assert_exactly_once(&d, 100);
    assert_eq!(
        d.last_request_headers(),
        (Some("Bearer s3cret".to_string()), true),
        "headers and gzip"
    );
    for s in d.spans() {
        assert_eq!(
            str_value(s.resource_attr("service.name")),
            Some("py-sender")
        );
        assert_eq!(str_value(s.resource_attr("service.version")), Some("1.0"));
        assert_eq!(s.scope_name, "faultline.blackbox");
        if s.name.starts_with("child-") {
            assert_eq!(str_value(s.attr("db.system")), Some("postgresql"));
        } else {
            assert_eq!(str_value(s.attr("http.route")), Some("/orders/{id}"));
        }
        assert!(s
            .attributes
            .iter()
            .all(|kv| !kv.key.starts_with("faultline.")));
    }
    assert_eq!(f.metric("faultline_forward_sent_spans_total"), 100.0);
    assert_eq!(f.metric("faultline_forward_queue_spans"), 0.0);
    assert_eq!(
        f.metric("faultline_traces_analyzed_total"),
        0.0,
        "still buffered"
    );
}

#[test]
fn annotate_marks_entry_and_blame_spans_with_the_verdict_and_leaves_healthy_traces_alone() {
    let d = Downstream::http();
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-protocol",
        "http",
        "--forward-mode",
        "annotate",
        "--forward-header",
        "authorization=Bearer s3cret",
        "--forward-compression",
        "gzip",
        "--trace-idle",
        "300ms",
    ]);
    let sent = python_send_failing("grpc", &f.grpc_endpoint(), 5, 3);
    let total = sent["spans"].as_u64().unwrap() as usize;
    assert_eq!(total, 16);
    assert_exactly_once(&d, total);
    assert_eq!(
        d.last_request_headers(),
        (Some("Bearer s3cret".to_string()), true),
        "headers and gzip over HTTP"
    );
    let spans = d.spans();
    let by_id: HashMap<&str, _> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for failing in sent["failing"].as_array().unwrap() {
        let trace_id = failing["trace_id"].as_str().unwrap();
        let verdict: serde_json::Value = f
            .get(&format!("/api/v1/verdicts/{trace_id}"))
            .json()
            .expect("a verdict");
        let entry = by_id[failing["entry"].as_str().unwrap()];
        assert_eq!(
            str_value(entry.attr("faultline.classification")),
            verdict["classification"].as_str()
        );
        assert_eq!(
            str_value(entry.attr("faultline.classification")),
            Some("late_dependency_failure")
        );
        assert_eq!(
            str_value(entry.attr("faultline.fingerprint")),
            verdict["fingerprint_id"].as_str()
        );
        let blame = verdict["blame"]["span_id"].as_str().unwrap();
        assert_eq!(blame, failing["client"].as_str().unwrap());
        assert_eq!(
            str_value(entry.attr("faultline.blame.span_id")),
            Some(blame)
        );
        match entry.attr("faultline.budget_share") {
            Some(Value::DoubleValue(share)) => {
                assert!((share - verdict["blame"]["share"].as_f64().unwrap()).abs() < 1e-9)
            }
            other => panic!("budget_share: {other:?}"),
        }
        assert_eq!(
            by_id[blame].attr("faultline.blame"),
            Some(&Value::BoolValue(true))
        );
        // The sender's own attributes come first and are intact.
        assert_eq!(entry.attributes[0].key, "http.request.method");
        assert_eq!(str_value(entry.attr("http.route")), Some("/checkout"));
        assert_eq!(
            str_value(entry.resource_attr("service.version")),
            Some("2.4.1")
        );
    }
    let healthy: Vec<&str> = sent["healthy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for s in spans
        .iter()
        .filter(|s| healthy.contains(&s.trace_id.as_str()))
    {
        assert!(
            s.attributes
                .iter()
                .all(|kv| !kv.key.starts_with("faultline.")),
            "healthy span annotated: {s:?}"
        );
    }
}

#[test]
fn a_second_faultline_in_the_pipeline_replaces_the_first_ones_annotations() {
    // Python SDK → faultline A (annotate) → faultline B (annotate) → receiver. B receives
    // spans already carrying A's `faultline.*` attributes; attribute keys are unique
    // within a span, so B's verdict must replace A's, not be appended beside it.
    let d = Downstream::grpc();
    let b = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-mode",
        "annotate",
        "--trace-idle",
        "300ms",
    ]);
    let a = Faultline::start(&[
        "--forward-endpoint",
        &b.grpc_endpoint(),
        "--forward-mode",
        "annotate",
        "--trace-idle",
        "300ms",
    ]);
    let sent = python_send_failing("http", &a.http_endpoint(), 3, 2);
    let total = sent["spans"].as_u64().unwrap() as usize;
    assert_exactly_once(&d, total);
    let spans = d.spans();
    for s in &spans {
        let mut keys: Vec<&str> = s
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .filter(|k| k.starts_with("faultline."))
            .collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "a faultline key repeated on {s:?}");
    }
    let by_id: HashMap<&str, _> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for failing in sent["failing"].as_array().unwrap() {
        let trace_id = failing["trace_id"].as_str().unwrap();
        let verdict: serde_json::Value = b
            .get(&format!("/api/v1/verdicts/{trace_id}"))
            .json()
            .expect("B's verdict");
        let entry = by_id[failing["entry"].as_str().unwrap()];
        assert_eq!(
            str_value(entry.attr("faultline.classification")),
            verdict["classification"].as_str()
        );
        let blame = verdict["blame"]["span_id"].as_str().unwrap();
        assert_eq!(
            str_value(entry.attr("faultline.blame.span_id")),
            Some(blame)
        );
        assert_eq!(
            by_id[blame].attr("faultline.blame"),
            Some(&Value::BoolValue(true))
        );
        // The sender's own attributes are still first and intact.
        assert_eq!(entry.attributes[0].key, "http.request.method");
    }
}

fn one_span_request(trace: u8, span: u8, parent: Option<u8>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![span; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    name: format!("op-{span}"),
                    kind: 2,
                    start_time_unix_nano: 1_000_000,
                    end_time_unix_nano: 2_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn annotate_forwards_late_spans_as_they_come() {
    let d = Downstream::grpc();
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-mode",
        "annotate",
        "--trace-idle",
        "200ms",
    ]);
    f.export_grpc(vec![one_span_request(7, 1, None)]);
    assert_eq!(
        d.wait_spans(1, WAIT),
        1,
        "the trace is forwarded after analysis"
    );
    f.export_grpc(vec![one_span_request(7, 2, Some(1))]);
    assert_eq!(d.wait_spans(2, WAIT), 2, "the late span is forwarded too");
    assert_eq!(f.metric("faultline_late_spans_total"), 1.0);
    assert_exactly_once(&d, 2);
}

#[test]
fn a_downstream_down_at_start_gets_everything_once_it_is_up() {
    let mut d = Downstream::new(free_port(), false);
    let f = Faultline::start(&["--forward-endpoint", &d.endpoint()]);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 10, 5, false);
    assert!(
        f.wait_metric(
            "faultline_forward_retried_spans_total{reason=\"unreachable\"}",
            1.0,
            WAIT
        ) >= 1.0
    );
    d.up();
    assert_exactly_once(&d, sent as usize);
    assert_eq!(f.metric("faultline_forward_sent_spans_total"), sent as f64);
    assert!(!f
        .metrics()
        .contains("faultline_forward_failed_spans_total{"));
}

#[test]
fn a_downstream_that_goes_down_mid_stream_loses_nothing() {
    let mut d = Downstream::grpc();
    let f = Faultline::start(&["--forward-endpoint", &d.endpoint()]);
    let (_, first) = python_send("grpc", &f.grpc_endpoint(), 5, 5, false);
    assert_eq!(d.wait_spans(first as usize, WAIT), first as usize);
    d.down();
    let (_, second) = python_send("http", &f.http_endpoint(), 5, 5, false);
    assert!(
        f.wait_metric(
            "faultline_forward_retried_spans_total{reason=\"unreachable\"}",
            1.0,
            WAIT
        ) >= 1.0
    );
    assert_eq!(f.metric("faultline_forward_queue_spans"), second as f64);
    d.up();
    assert_exactly_once(&d, (first + second) as usize);
}

#[test]
fn a_throttling_downstream_is_retried_after_its_retry_after() {
    let d = Downstream::http();
    d.set(Behaviour::Throttle(1));
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-protocol",
        "http",
    ]);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 4, 5, false);
    assert!(
        f.wait_metric(
            "faultline_forward_retried_spans_total{reason=\"throttled\"}",
            sent as f64,
            WAIT
        ) >= sent as f64
    );
    let refused = d.refused_requests();
    assert!(refused >= 1);
    d.set(Behaviour::Accept);
    assert_exactly_once(&d, sent as usize);
    assert!(!f
        .metrics()
        .contains("faultline_forward_failed_spans_total{"));
}

#[test]
fn a_refused_batch_is_counted_and_never_retried() {
    let d = Downstream::grpc();
    d.set(Behaviour::Refuse);
    let f = Faultline::start(&["--forward-endpoint", &d.endpoint()]);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 2, 5, false);
    assert_eq!(
        f.wait_metric(
            "faultline_forward_failed_spans_total{reason=\"rejected\"}",
            sent as f64,
            WAIT
        ),
        sent as f64
    );
    let refused = d.refused_requests();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.refused_requests(), refused, "not retried");
    assert!(!f
        .metrics()
        .contains("faultline_forward_retried_spans_total{"));
    assert_eq!(f.metric("faultline_forward_queue_spans"), 0.0);
    assert!(f.log().contains("dropped, not retried"));
}

#[test]
fn a_full_forward_queue_pushes_back_on_the_sender_until_the_downstream_recovers() {
    let mut d = Downstream::new(free_port(), false);
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-queue-size",
        "2",
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = TraceServiceClient::connect(f.grpc_endpoint())
            .await
            .unwrap();
        c.export(one_span_request(1, 1, None)).await.unwrap();
        c.export(one_span_request(2, 1, None)).await.unwrap();
        let refused = c.export(one_span_request(3, 1, None)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.get_details_retry_info().is_some(), "RetryInfo");
        assert!(refused.message().contains("forward queue full"));
    });
    assert_eq!(
        f.metric(
            "faultline_receiver_refused_spans_total{transport=\"grpc\",reason=\"forward_queue_full\"}"
        ),
        1.0
    );
    assert_eq!(f.get("/readyz").status(), 503, "not ready while refusing");
    d.up();
    assert_eq!(d.wait_spans(2, WAIT), 2);
    assert_eq!(f.get("/readyz").status(), 200, "ready again once delivered");
    // The sender's retry is now accepted.
    f.export_grpc(vec![one_span_request(3, 1, None)]);
    assert_exactly_once(&d, 3);
}

#[test]
fn sigterm_flushes_the_forward_queue_before_exit() {
    let mut d = Downstream::new(free_port(), false);
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--trace-idle",
        "1h",
        "--trace-max-age",
        "2h",
    ]);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 6, 5, false);
    f.wait_metric(
        "faultline_forward_retried_spans_total{reason=\"unreachable\"}",
        1.0,
        WAIT,
    );
    d.up();
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(d.span_count(), sent as usize, "flushed before exit: {log}");
    assert!(log.contains("forward_spans_left=0"), "{log}");
}

#[test]
fn without_a_disk_queue_spans_left_at_the_deadline_are_counted_as_lost() {
    let d = Downstream::new(free_port(), false);
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--shutdown-timeout",
        "1s",
    ]);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 2, 5, false);
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("forward_spans_left={sent}")), "{log}");
    assert!(log.contains("those spans are lost"), "{log}");
    drop(d);
}

#[test]
fn the_disk_queue_delivers_after_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let queue_dir = dir.path().join("queue");
    let mut d = Downstream::new(free_port(), false);
    let args = [
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-queue-dir",
        queue_dir.to_str().unwrap(),
    ];
    let f = Faultline::start(&args);
    let (_, sent) = python_send("grpc", &f.grpc_endpoint(), 8, 5, false);
    assert_eq!(f.metric("faultline_forward_queue_spans"), sent as f64);
    assert!(f.wait_metric("faultline_forward_queue_disk_bytes", 1.0, WAIT) > 0.0);
    f.kill_9();
    d.up();
    let f = Faultline::start(&args);
    assert_exactly_once(&d, sent as usize);
    assert_eq!(
        f.metric("faultline_forward_recovered_spans_total"),
        sent as f64
    );
    // Delivered spans are not delivered again after another restart.
    let (status, _) = f.terminate();
    assert!(status.success());
    let f = Faultline::start(&args);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.metric("faultline_forward_recovered_spans_total"), 0.0);
    assert_eq!(d.span_count(), sent as usize);
}

#[test]
fn forward_options_are_validated_at_start() {
    for (args, option) in [
        (
            vec!["--forward-endpoint", "tempo:4317"],
            "--forward-endpoint",
        ),
        (
            vec![
                "--forward-endpoint",
                "http://tempo:4317",
                "--forward-mode",
                "tee",
            ],
            "--forward-mode",
        ),
        (
            vec![
                "--forward-endpoint",
                "http://t:1",
                "--forward-protocol",
                "udp",
            ],
            "--forward-protocol",
        ),
        (
            vec![
                "--forward-endpoint",
                "http://t:1",
                "--forward-header",
                "nokey",
            ],
            "--forward-header",
        ),
        (
            vec![
                "--forward-endpoint",
                "http://t:1",
                "--forward-queue-size",
                "0",
            ],
            "--forward-queue-size",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(option), "{args:?}: {err}");
    }
}

#[test]
fn sigterm_in_annotate_mode_analyses_forwards_and_annotates_every_held_trace() {
    let d = Downstream::grpc();
    let f = Faultline::start(&[
        "--forward-endpoint",
        &d.endpoint(),
        "--forward-mode",
        "annotate",
        "--trace-idle",
        "1h",
        "--trace-max-age",
        "2h",
    ]);
    let sent = python_send_failing("http", &f.http_endpoint(), 3, 2);
    let total = sent["spans"].as_u64().unwrap() as usize;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.span_count(), 0, "held until analysed");
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(d.span_count(), total, "{log}");
    assert!(d.duplicates().is_empty());
    let spans = d.spans();
    for failing in sent["failing"].as_array().unwrap() {
        let entry = spans
            .iter()
            .find(|s| s.span_id == failing["entry"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            str_value(entry.attr("faultline.classification")),
            Some("late_dependency_failure")
        );
    }
}
