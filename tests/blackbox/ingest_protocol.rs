//! Protocol edge cases on both transports, answered as the OTLP specification says.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::codec::CompressionEncoding;

use crate::support::{str_kv, Faultline};

const WAIT: Duration = Duration::from_secs(20);

/// The OTLP/JSON example of the OTLP specification (examples/trace.json in
/// open-telemetry/opentelemetry-proto): uppercase hex ids, int64 as strings, enum as int.
const SPEC_JSON_EXAMPLE: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [
          {"key": "my.span.attr", "value": {"stringValue": "some value"}},
          {"key": "http.response.status_code", "value": {"intValue": "200"}}
        ]
      }]
    }]
  }]
}"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn span(trace: u8, id: u8, parent: Option<u8>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span-{id}"),
        kind: 2,
        start_time_unix_nano: 1_000 + u64::from(id),
        end_time_unix_nano: 2_000,
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![str_kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn post(
    f: &Faultline,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    let mut req = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", f.http_endpoint()))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().unwrap()
}

#[test]
fn the_specification_json_example_is_accepted_and_assembled() {
    let f = Faultline::start(&["--trace-idle", "100ms"]);
    let resp = post(&f, "application/json", None, SPEC_JSON_EXAMPLE.into());
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().unwrap(), "{}");
    assert_eq!(
        f.wait_metric("faultline_traces_analyzed_total", 1.0, WAIT),
        1.0
    );
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"http\"}"),
        1.0
    );
}

#[test]
fn gzip_is_accepted_on_both_transports() {
    let f = Faultline::start(&[]);
    let resp = post(
        &f,
        "application/json",
        Some("gzip"),
        gzip(SPEC_JSON_EXAMPLE.as_bytes()),
    );
    assert_eq!(resp.status(), 200);
    let body = request("svc", vec![span(3, 1, None), span(3, 2, Some(1))]).encode_to_vec();
    let resp = post(&f, "application/x-protobuf", Some("gzip"), gzip(&body));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"http\"}"),
        3.0
    );
    rt().block_on(async {
        let mut c = TraceServiceClient::connect(f.grpc_endpoint())
            .await
            .unwrap()
            .send_compressed(CompressionEncoding::Gzip);
        c.export(request("svc", vec![span(4, 1, None)]))
            .await
            .unwrap();
    });
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"grpc\"}"),
        1.0
    );
}

#[test]
fn zero_or_wrongly_sized_ids_are_rejected_in_partial_success() {
    let f = Faultline::start(&[]);
    let mut zero_trace = span(0, 1, None);
    zero_trace.trace_id = vec![0; 16];
    let mut short_span = span(5, 2, None);
    short_span.span_id = vec![2; 7];
    let mut zero_span = span(5, 3, None);
    zero_span.span_id = vec![0; 8];
    let req = request(
        "svc",
        vec![zero_trace, short_span, zero_span, span(5, 4, None)],
    );
    let resp = rt().block_on(async {
        let mut c = TraceServiceClient::connect(f.grpc_endpoint())
            .await
            .unwrap();
        c.export(req.clone()).await.unwrap().into_inner()
    });
    let partial = resp.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 3);
    assert!(!partial.error_message.is_empty());

    let http = post(&f, "application/x-protobuf", None, req.encode_to_vec());
    assert_eq!(http.status(), 200);
    let decoded = ExportTraceServiceResponse::decode(http.bytes().unwrap()).unwrap();
    assert_eq!(decoded.partial_success.unwrap().rejected_spans, 3);

    // OTLP/JSON: a 15-byte trace id is accepted by the decoder, so we must catch it.
    let json = SPEC_JSON_EXAMPLE.replace(
        "5B8EFFF798038103D269B633813FC60C",
        "5B8EFFF798038103D269B633813FC6",
    );
    let j: serde_json::Value = post(&f, "application/json", None, json.into())
        .json()
        .unwrap();
    assert_eq!(
        j["partialSuccess"]["rejectedSpans"].as_i64(),
        Some(1),
        "{j}"
    );

    assert_eq!(
        f.metric(
            "faultline_receiver_refused_spans_total{transport=\"grpc\",reason=\"invalid_id\"}"
        ),
        3.0
    );
    assert_eq!(
        f.metric(
            "faultline_receiver_refused_spans_total{transport=\"http\",reason=\"invalid_id\"}"
        ),
        4.0
    );
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"grpc\"}"),
        1.0
    );
}

#[test]
fn garbage_and_wrong_content_types_are_refused_and_counted() {
    let f = Faultline::start(&[]);
    let resp = post(
        &f,
        "application/x-protobuf",
        None,
        b"\xff\xff\xffnot protobuf".to_vec(),
    );
    assert_eq!(resp.status(), 400);
    let resp = post(
        &f,
        "application/json",
        None,
        b"{\"resourceSpans\": 7".to_vec(),
    );
    assert_eq!(resp.status(), 400);
    let status: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        status["code"], 3,
        "a google.rpc.Status body with INVALID_ARGUMENT"
    );
    let resp = post(
        &f,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    );
    assert_eq!(resp.status(), 400);
    assert_eq!(
        post(&f, "text/plain", None, b"hello".to_vec()).status(),
        415
    );
    assert_eq!(
        post(&f, "application/json", Some("br"), b"{}".to_vec()).status(),
        415
    );

    // Garbage inside a well-formed gRPC frame.
    let client = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut frame = vec![0u8, 0, 0, 0, 12];
    frame.extend_from_slice(b"\xff\xff\xffgarbage!!");
    let resp = client
        .post(format!(
            "{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            f.grpc_endpoint()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .unwrap();
    assert_eq!(
        resp.headers()["grpc-status"],
        "3",
        "INVALID_ARGUMENT for an undecodable message"
    );

    assert_eq!(
        f.metric(
            "faultline_receiver_refused_requests_total{transport=\"http\",reason=\"malformed\"}"
        ),
        3.0
    );
    assert_eq!(f.metric("faultline_receiver_refused_requests_total{transport=\"http\",reason=\"unsupported_media_type\"}"), 2.0);
    assert_eq!(
        f.metric(
            "faultline_receiver_refused_requests_total{transport=\"grpc\",reason=\"malformed\"}"
        ),
        1.0
    );
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"http\"}"),
        0.0
    );
}

/// A request whose protobuf is `size` bytes, nearly all of it one compressible string.
fn big_request(size: usize) -> ExportTraceServiceRequest {
    let mut s = span(9, 1, None);
    s.name = "a".repeat(size);
    request("svc", vec![s])
}

#[test]
fn oversized_and_decompression_bomb_requests_are_refused_on_both_transports() {
    let f = Faultline::start(&["--max-request-size", "64KiB"]);
    let big = big_request(100 * 1024).encode_to_vec();
    assert_eq!(
        post(&f, "application/x-protobuf", None, big.clone()).status(),
        413
    );
    // 64 MiB of protobuf compressing to ~64 KiB: refused after inflating at most the limit.
    let bomb = gzip(&big_request(64 << 20).encode_to_vec());
    assert!(bomb.len() < 64 * 1024 + 1024, "{}", bomb.len());
    assert_eq!(
        post(&f, "application/x-protobuf", Some("gzip"), bomb).status(),
        413
    );
    let small_ok = request("svc", vec![span(8, 1, None)]).encode_to_vec();
    assert_eq!(
        post(&f, "application/x-protobuf", Some("gzip"), gzip(&small_ok)).status(),
        200
    );

    rt().block_on(async {
        let mut c = TraceServiceClient::connect(f.grpc_endpoint())
            .await
            .unwrap();
        let err = c.export(big_request(100 * 1024)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        let mut gz = TraceServiceClient::connect(f.grpc_endpoint())
            .await
            .unwrap()
            .send_compressed(CompressionEncoding::Gzip);
        let err = gz.export(big_request(32 << 20)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    });
    assert_eq!(
        f.metric(
            "faultline_receiver_refused_requests_total{transport=\"http\",reason=\"too_large\"}"
        ),
        2.0
    );
    assert_eq!(
        f.metric(
            "faultline_receiver_refused_requests_total{transport=\"grpc\",reason=\"too_large\"}"
        ),
        2.0
    );
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"http\"}"),
        1.0
    );
}

#[test]
fn one_trace_split_over_requests_from_several_services_out_of_order_is_assembled_once() {
    // Idle long enough that a loaded CI machine never splits the trace between requests.
    let f = Faultline::start(&["--trace-idle", "2s"]);
    rt().block_on(async {
        let mut c = TraceServiceClient::connect(f.grpc_endpoint())
            .await
            .unwrap();
        // Leaves first, root last, from three services and both transports.
        c.export(request(
            "inventory",
            vec![span(7, 4, Some(3)), span(7, 5, Some(3))],
        ))
        .await
        .unwrap();
        c.export(request("orders", vec![span(7, 3, Some(2))]))
            .await
            .unwrap();
    });
    let resp = post(
        &f,
        "application/x-protobuf",
        None,
        request("edge", vec![span(7, 2, Some(1)), span(7, 1, None)]).encode_to_vec(),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(
        f.wait_metric("faultline_traces_analyzed_total", 1.0, WAIT),
        1.0
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        f.metric("faultline_traces_analyzed_total"),
        1.0,
        "one trace, not several partial ones"
    );
    assert_eq!(f.metric("faultline_spans_analyzed_total"), 5.0);
    assert_eq!(
        f.metric("faultline_traces_completed_total{trigger=\"idle\"}"),
        1.0
    );
}

#[test]
fn late_spans_are_counted_and_not_reanalysed() {
    let f = Faultline::start(&["--trace-idle", "100ms"]);
    let body = request("svc", vec![span(6, 1, None)]).encode_to_vec();
    assert_eq!(post(&f, "application/x-protobuf", None, body).status(), 200);
    assert_eq!(
        f.wait_metric("faultline_traces_analyzed_total", 1.0, WAIT),
        1.0
    );
    let late = request("svc", vec![span(6, 2, Some(1)), span(6, 3, Some(1))]).encode_to_vec();
    assert_eq!(post(&f, "application/x-protobuf", None, late).status(), 200);
    assert_eq!(f.metric("faultline_late_spans_total"), 2.0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.metric("faultline_traces_analyzed_total"), 1.0);
}

#[test]
fn a_small_span_budget_analyses_the_oldest_traces_early() {
    let f = Faultline::start(&["--max-buffered-spans", "50", "--trace-idle", "1m"]);
    for t in 1..=10u8 {
        let spans = (1..=10u8)
            .map(|i| span(t, i, (i > 1).then_some(1)))
            .collect();
        let resp = post(
            &f,
            "application/x-protobuf",
            None,
            request("svc", spans).encode_to_vec(),
        );
        assert_eq!(
            resp.status(),
            200,
            "eviction makes room; nothing is pushed back"
        );
    }
    assert_eq!(
        f.metric("faultline_receiver_accepted_spans_total{transport=\"http\"}"),
        100.0
    );
    assert!(f.metric("faultline_spans_buffered") <= 50.0);
    let evicted = f.wait_metric(
        "faultline_traces_completed_total{trigger=\"eviction\"}",
        5.0,
        WAIT,
    );
    assert!(evicted >= 5.0, "{evicted}");
    assert_eq!(f.metric("faultline_traces_analyzed_total"), evicted);
}
