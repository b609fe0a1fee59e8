//! The OTLP metrics push (docs/contract.md §5, `--otlp-metrics-endpoint`): an OTLP receiver in the
//! test (a tonic `MetricsService` server, and an axum `POST /v1/metrics` handler for
//! OTLP/HTTP) captures what faultline pushes after failing traces: the verdict counter
//! with its attributes, cumulative monotonic sum and trace exemplar, the receiver's
//! span count, and the final push on SIGTERM.

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use prost::Message;
use tonic::codec::CompressionEncoding;

use crate::metrics_export::failing_trace;
use crate::support::Faultline;

const WAIT: Duration = Duration::from_secs(20);

type Captured = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

/// An OTLP metrics receiver on 127.0.0.1:0 keeping every request it gets.
struct Receiver {
    addr: SocketAddr,
    requests: Captured,
    /// What the HTTP receiver saw: (path, content-type, content-encoding) per request.
    http_headers: Arc<Mutex<Vec<(String, String, String)>>>,
    _runtime: tokio::runtime::Runtime,
}

struct Capture(Captured);

#[tonic::async_trait]
impl MetricsService for Capture {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// OTLP/gRPC, gzip accepted.
    fn grpc() -> Receiver {
        let runtime = Self::runtime();
        let requests = Captured::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let service = MetricsServiceServer::new(Capture(Arc::clone(&requests)))
            .accept_compressed(CompressionEncoding::Gzip);
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Receiver {
            addr,
            requests,
            http_headers: Arc::default(),
            _runtime: runtime,
        }
    }

    /// OTLP/HTTP `POST /v1/metrics`, protobuf, gzip accepted.
    fn http() -> Receiver {
        let runtime = Self::runtime();
        let requests = Captured::default();
        let http_headers: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (reqs, heads) = (Arc::clone(&requests), Arc::clone(&http_headers));
        let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let encoding = header("content-encoding");
            heads.lock().unwrap().push((
                uri.path().to_string(),
                header("content-type"),
                encoding.clone(),
            ));
            let mut raw = Vec::new();
            if encoding == "gzip" {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut raw)
                    .unwrap();
            } else {
                raw = body.to_vec();
            }
            match ExportMetricsServiceRequest::decode(&raw[..]) {
                Ok(req) => {
                    reqs.lock().unwrap().push(req);
                    (
                        StatusCode::OK,
                        [("content-type", "application/x-protobuf")],
                        ExportMetricsServiceResponse::default().encode_to_vec(),
                    )
                }
                Err(_) => (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "text/plain")],
                    b"bad protobuf".to_vec(),
                ),
            }
        };
        let router = axum::Router::new().route("/v1/metrics", axum::routing::post(handler));
        runtime.spawn(async move { axum::serve(listener, router).await });
        Receiver {
            addr,
            requests,
            http_headers,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until some request satisfies `ok`; returns it.
    fn wait_for(
        &self,
        what: &str,
        ok: impl Fn(&ExportMetricsServiceRequest) -> bool,
    ) -> ExportMetricsServiceRequest {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.requests().into_iter().rev().find(|r| ok(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no push with {what} within {WAIT:?}; got {} pushes",
                self.requests().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kvs
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

/// The points of a cumulative monotonic sum (asserted so).
fn sum_points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a [NumberDataPoint] {
    match metric(req, name).and_then(|m| m.data.as_ref()) {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic, "{name} is monotonic");
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32,
                "{name} is cumulative"
            );
            &s.data_points
        }
        other => panic!("{name} is not a sum: {other:?}"),
    }
}

fn errors_value(req: &ExportMetricsServiceRequest) -> f64 {
    metric(req, "faultline.errors")
        .map(|_| sum_points(req, "faultline.errors").iter().map(value).sum())
        .unwrap_or(0.0)
}

/// Sends failing traces (2 spans each) on `/checkout` over OTLP/gRPC; returns their trace
/// ids (binary) and entry span ids.
fn send_failing(f: &Faultline, n: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    let requests: Vec<_> = (1..=n)
        .map(|seq| failing_trace(seq, "/checkout").0)
        .collect();
    let ids = requests
        .iter()
        .map(|r| {
            let entry = &r.resource_spans[0].scope_spans[0].spans[0];
            (entry.trace_id.clone(), entry.span_id.clone())
        })
        .collect();
    f.export_grpc(requests);
    ids
}

fn start(receiver: &Receiver, protocol: &str, interval: &str) -> Faultline {
    Faultline::start(&[
        "--trace-idle",
        "200ms",
        "--otlp-metrics-endpoint",
        &receiver.endpoint(),
        "--otlp-metrics-protocol",
        protocol,
        "--otlp-metrics-interval",
        interval,
    ])
}

/// The push over `protocol` carries the verdict counter, its exemplar and the receiver
/// counts, the way /metrics has them.
fn pushes_the_verdict_metrics(receiver: &Receiver, protocol: &str) {
    let f = start(receiver, protocol, "200ms");
    let sent = send_failing(&f, 2);
    let req = receiver.wait_for("faultline.errors = 2", |r| errors_value(r) == 2.0);

    let points = sum_points(&req, "faultline.errors");
    assert_eq!(points.len(), 1, "{points:?}");
    let p = &points[0];
    assert_eq!(
        attributes(&p.attributes),
        vec![
            ("blame_service".to_string(), "checkout".to_string()),
            ("blame_span".into(), "SELECT orders".into()),
            (
                "classification".into(),
                "deterministic_handler_defect".into()
            ),
            ("http_route".into(), "/checkout".into()),
            ("service_name".into(), "checkout".into()),
        ]
    );
    assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano < p.time_unix_nano);
    assert_eq!(p.exemplars.len(), 1, "{:?}", p.exemplars);
    let e = &p.exemplars[0];
    assert!(
        sent.contains(&(e.trace_id.clone(), e.span_id.clone())),
        "exemplar {:02x?}/{:02x?} is one of the traces sent",
        e.trace_id,
        e.span_id
    );
    assert_eq!(e.trace_id.len(), 16);

    let accepted = sum_points(&req, "faultline.receiver.accepted_spans");
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        attributes(&accepted[0].attributes),
        vec![("transport".to_string(), "grpc".to_string())]
    );
    assert_eq!(value(&accepted[0]), 4.0, "two traces of two spans");

    let share = metric(&req, "faultline.error_budget_share").expect("the share histogram");
    let Some(metric::Data::Histogram(h)) = &share.data else {
        panic!("not a histogram: {share:?}")
    };
    assert_eq!(h.data_points[0].count, 2);
    assert_eq!(h.data_points[0].explicit_bounds.len(), 10, "0.1 … 1.0");
    assert_eq!(
        h.data_points[0].bucket_counts.iter().sum::<u64>(),
        2,
        "per-bucket counts add up to the count"
    );

    let resource = attributes(
        &req.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes,
    );
    assert!(resource.contains(&("service.name".into(), "faultline".into())));
    assert!(resource.iter().any(|(k, _)| k == "service.instance.id"));

    // Cumulative: every push starts at the same time and no value ever goes down.
    let all = receiver.requests();
    let starts: Vec<u64> = all
        .iter()
        .filter(|r| metric(r, "faultline.errors").is_some())
        .map(|r| sum_points(r, "faultline.errors")[0].start_time_unix_nano)
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{starts:?}");
    let values: Vec<f64> = all.iter().map(errors_value).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");

    let (status, log) = f.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        log.contains("final OTLP metrics push"),
        "final push logged:\n{log}"
    );
}

#[test]
fn grpc_push_carries_the_verdict_counter_with_its_trace_exemplar() {
    let receiver = Receiver::grpc();
    pushes_the_verdict_metrics(&receiver, "grpc");
}

#[test]
fn http_push_posts_gzipped_protobuf_to_v1_metrics() {
    let receiver = Receiver::http();
    pushes_the_verdict_metrics(&receiver, "http/protobuf");
    let headers = receiver.http_headers.lock().unwrap().clone();
    assert!(!headers.is_empty());
    for (path, content_type, encoding) in headers {
        assert_eq!(path, "/v1/metrics");
        assert_eq!(content_type, "application/x-protobuf");
        assert_eq!(encoding, "gzip");
    }
}

#[test]
fn the_final_push_on_sigterm_carries_what_was_analysed() {
    let receiver = Receiver::grpc();
    // No tick in the test's lifetime: only the shutdown push can deliver anything.
    let f = start(&receiver, "grpc", "1h");
    let sent = send_failing(&f, 1);
    assert_eq!(f.wait_metric("faultline_verdicts_total", 1.0, WAIT), 1.0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.requests().is_empty(), "no push before SIGTERM");

    let (status, log) = f.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    let pushes = receiver.requests();
    assert_eq!(pushes.len(), 1, "exactly the final push");
    let req = &pushes[0];
    assert_eq!(errors_value(req), 1.0);
    let e = &sum_points(req, "faultline.errors")[0].exemplars[0];
    assert_eq!((e.trace_id.clone(), e.span_id.clone()), sent[0]);
    assert_eq!(
        sum_points(req, "faultline.verdicts")
            .iter()
            .map(value)
            .sum::<f64>(),
        1.0
    );
}

#[test]
fn an_unreachable_collector_is_counted_and_never_stops_analysis() {
    let port = crate::support::free_port();
    let f = Faultline::start(&[
        "--trace-idle",
        "200ms",
        "--otlp-metrics-endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--otlp-metrics-interval",
        "100ms",
    ]);
    send_failing(&f, 1);
    assert_eq!(f.wait_metric("faultline_verdicts_total", 1.0, WAIT), 1.0);
    assert!(
        f.wait_metric(
            "faultline_otlp_metrics_exports_total{result=\"failed\"}",
            2.0,
            WAIT
        ) >= 2.0
    );
    assert_eq!(
        f.metric("faultline_otlp_metrics_exports_total{result=\"ok\"}"),
        0.0
    );
    let (status, log) = f.terminate();
    assert!(
        status.success(),
        "a failed final push does not fail the exit: {log}"
    );
}

#[test]
fn bad_otlp_metrics_options_stop_start_up_naming_the_option() {
    for (args, option) in [
        (
            vec!["--otlp-metrics-endpoint", "collector:4317"],
            "--otlp-metrics-endpoint",
        ),
        (
            vec!["--otlp-metrics-endpoint", "https://collector:4317"],
            "--otlp-metrics-endpoint",
        ),
        (
            vec![
                "--otlp-metrics-endpoint",
                "http://127.0.0.1:4317",
                "--otlp-metrics-protocol",
                "http/json",
            ],
            "--otlp-metrics-protocol",
        ),
        (
            vec!["--otlp-metrics-interval", "sometimes"],
            "--otlp-metrics-interval",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(option), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .env("FAULTLINE_OTLP_METRICS_PROTOCOL", "carrier-pigeon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--otlp-metrics-protocol"));

    let help = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--otlp-metrics-endpoint",
        "--otlp-metrics-protocol",
        "--otlp-metrics-interval",
    ] {
        let env = format!(
            "FAULTLINE_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(
            help.contains(flag) && help.contains(&env),
            "--help lacks {flag}"
        );
    }
}
