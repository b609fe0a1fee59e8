//! The gRPC verdict API (`faultline.v1.Verdicts`, docs/contract.md §4) on the OTLP/gRPC port of the
//! real binary, called with the tonic client generated from the same proto: the same
//! verdicts as the HTTP API, the same errors, and a live feed that delivers every verdict
//! in the order it was made without a slow subscriber ever holding analysis back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faultline::analysis::Verdict;
use faultline::api::grpc::proto::verdicts_client::VerdictsClient;
use faultline::api::grpc::proto::{
    watch_verdicts_response::Event, Classification, GetVerdictRequest, ListVerdictsRequest,
    WatchVerdictsRequest,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event as SpanEvent;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{kv, str_kv, Faultline};

const WAIT: Duration = Duration::from_secs(30);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Trace `n` of a test: distinct per `tag` so that tests never share ids.
fn trace_id(tag: u8, n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    vec![tag, hi, lo, 0x5e, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn exception(at: u64, ty: &str, message: &str, stack: &str) -> SpanEvent {
    SpanEvent {
        time_unix_nano: at,
        name: "exception".into(),
        attributes: vec![
            str_kv("exception.type", ty),
            str_kv("exception.message", message),
            str_kv("exception.stacktrace", stack),
        ],
        ..Default::default()
    }
}

fn error_status() -> Option<Status> {
    Some(Status {
        message: String::new(),
        code: status::StatusCode::Error as i32,
    })
}

/// A failing request of `service`: a SERVER span answering 500 with an exception event.
/// With `dependency`, the exception comes from a database call that timed out below it
/// (a late dependency failure); without, from the handler's own code (a handler defect).
fn failing(service: &str, trace: &[u8], dependency: bool) -> ResourceSpans {
    let start = now_nanos() - 50_000_000;
    let end = start + 40_000_000;
    let stack = "Traceback (most recent call last):\n  File \"/srv/app/handlers.py\", line 42, in checkout\n    total = cart['sku']\nKeyError: 'sku'\n";
    let mut server = Span {
        trace_id: trace.to_vec(),
        span_id: vec![1; 8],
        name: "POST /checkout".into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            str_kv("http.request.method", "POST"),
            str_kv("http.route", "/checkout"),
            kv("http.response.status_code", any_value::Value::IntValue(500)),
        ],
        status: error_status(),
        ..Default::default()
    };
    let mut spans = Vec::new();
    if dependency {
        let db_stack = "Traceback (most recent call last):\n  File \"/srv/app/handlers.py\", line 40, in checkout\n    rows = db.execute(q)\nTimeoutError: canceling statement due to statement timeout\n";
        spans.push(Span {
            trace_id: trace.to_vec(),
            span_id: vec![2; 8],
            parent_span_id: vec![1; 8],
            name: "SELECT stock".into(),
            kind: 3,
            start_time_unix_nano: start + 1_000_000,
            end_time_unix_nano: end - 1_000_000,
            attributes: vec![
                str_kv("db.system", "postgresql"),
                str_kv("server.address", "stock-db"),
            ],
            status: error_status(),
            events: vec![exception(
                end - 1_000_000,
                "TimeoutError",
                "canceling statement due to statement timeout",
                db_stack,
            )],
            ..Default::default()
        });
    } else {
        server.events = vec![exception(end - 1_000_000, "KeyError", "'sku'", stack)];
    }
    spans.push(server);
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                str_kv("service.name", service),
                str_kv("service.version", "2026.11.1"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

async fn export(f: &Faultline, resource_spans: Vec<ResourceSpans>) {
    let mut client = TraceServiceClient::connect(f.grpc_endpoint())
        .await
        .expect("connect OTLP");
    let resp = client
        .export(ExportTraceServiceRequest { resource_spans })
        .await
        .expect("export")
        .into_inner();
    assert!(resp.partial_success.is_none(), "{resp:?}");
}

async fn verdicts_client(f: &Faultline) -> VerdictsClient<Channel> {
    VerdictsClient::connect(f.grpc_endpoint())
        .await
        .expect("connect Verdicts")
}

/// Waits (without blocking the runtime) until `faultline_verdicts_total` reaches `n`.
async fn wait_verdicts(f: &Faultline, n: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = tokio::task::block_in_place(|| f.metrics());
        let made = crate::support::metric_value(&page, "faultline_verdicts_total");
        if made >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {made} of {n} verdicts made"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(verdicts: &[faultline::api::grpc::proto::Verdict]) -> Vec<String> {
    verdicts.iter().map(|v| v.trace_id.clone()).collect()
}

async fn list(
    client: &mut VerdictsClient<Channel>,
    req: ListVerdictsRequest,
) -> Vec<faultline::api::grpc::proto::Verdict> {
    client
        .list_verdicts(req)
        .await
        .expect("list")
        .into_inner()
        .verdicts
}

#[test]
fn get_and_list_answer_as_the_http_api_does() {
    let f = Faultline::start(&["--trace-idle", "200ms"]);
    rt().block_on(async {
        let (a, b, c) = (trace_id(1, 1), trace_id(1, 2), trace_id(1, 3));
        export(
            &f,
            vec![
                failing("orders", &a, false),
                failing("orders", &b, false),
                failing("billing", &c, true),
            ],
        )
        .await;
        wait_verdicts(&f, 3.0).await;
        let mut client = verdicts_client(&f).await;

        // GetVerdict: the same verdict as GET /api/v1/verdicts/{id}, field for field.
        for id in [&a, &b, &c] {
            let id = hex(id);
            let wire = client
                .get_verdict(GetVerdictRequest {
                    trace_id: id.clone(),
                })
                .await
                .expect("get")
                .into_inner();
            let over_http: serde_json::Value = tokio::task::block_in_place(|| {
                f.get(&format!("/api/v1/verdicts/{id}")).json().unwrap()
            });
            let over_grpc = serde_json::to_value(Verdict::try_from(wire).unwrap()).unwrap();
            assert_eq!(over_grpc, over_http);
        }
        let billing = client
            .get_verdict(GetVerdictRequest { trace_id: hex(&c) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            billing.classification(),
            Classification::LateDependencyFailure
        );
        assert_eq!(billing.origin.as_ref().unwrap().name, "SELECT stock");

        // Errors: NOT_FOUND like the 404, INVALID_ARGUMENT like the 400.
        let unknown = client
            .get_verdict(GetVerdictRequest {
                trace_id: hex(&trace_id(1, 99)),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
        for bad in ["", "xyz", &hex(&a).to_uppercase(), &hex(&a)[..30]] {
            let e = client
                .get_verdict(GetVerdictRequest {
                    trace_id: bad.to_string(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
        }

        // ListVerdicts: newest first, as the HTTP list; every filter honoured.
        let all = list(&mut client, ListVerdictsRequest::default()).await;
        let over_http: serde_json::Value =
            tokio::task::block_in_place(|| f.get("/api/v1/verdicts").json().unwrap());
        let http_ids: Vec<String> = over_http["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["trace_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids(&all), http_ids);
        assert_eq!(all.len(), 3);
        let orders = list(
            &mut client,
            ListVerdictsRequest {
                service: "orders".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(orders.len(), 2);
        assert!(orders
            .iter()
            .all(|v| v.entry.as_ref().unwrap().service == "orders"));
        let late = list(
            &mut client,
            ListVerdictsRequest {
                classification: Classification::LateDependencyFailure.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&late), vec![hex(&c)]);
        let defects = list(
            &mut client,
            ListVerdictsRequest {
                classification: Classification::DeterministicHandlerDefect.into(),
                route: "/checkout".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(defects.len(), 2);
        let by_fingerprint = list(
            &mut client,
            ListVerdictsRequest {
                fingerprint: billing.fingerprint_id.clone().unwrap(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&by_fingerprint), vec![hex(&c)]);
        let one = list(
            &mut client,
            ListVerdictsRequest {
                limit: 1,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&one), ids(&all[..1]));
        let recent = list(
            &mut client,
            ListVerdictsRequest {
                since: "10m".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(recent.len(), 3);
        let future_ms = (now_nanos() / 1_000_000 + 3_600_000).to_string();
        let none = list(
            &mut client,
            ListVerdictsRequest {
                since: future_ms,
                ..Default::default()
            },
        )
        .await;
        assert!(none.is_empty());

        for bad in [
            ListVerdictsRequest {
                since: "yesterday-ish".into(),
                ..Default::default()
            },
            ListVerdictsRequest {
                classification: 42,
                ..Default::default()
            },
        ] {
            let e = client.list_verdicts(bad).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        }
    });
}

/// Reads `n` verdicts from a watch stream (failing on a lag notice or a timeout).
async fn take_verdicts(
    stream: &mut tonic::Streaming<faultline::api::grpc::proto::WatchVerdictsResponse>,
    n: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let msg = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} verdicts watched: {got:?}", got.len()))
            .expect("stream status")
            .expect("stream open");
        match msg.event {
            Some(Event::Verdict(v)) => got.push(v.trace_id),
            other => panic!("unexpected watch event {other:?}"),
        }
    }
    got
}

#[test]
fn watch_delivers_every_verdict_made_while_subscribed_in_order_with_filters() {
    let f = Faultline::start(&["--trace-idle", "200ms"]);
    rt().block_on(async {
        // A verdict made before anyone watches is not replayed.
        let before = trace_id(2, 0);
        export(&f, vec![failing("orders", &before, false)]).await;
        wait_verdicts(&f, 1.0).await;

        let mut client = verdicts_client(&f).await;
        let mut everything = client
            .watch_verdicts(WatchVerdictsRequest::default())
            .await
            .expect("watch")
            .into_inner();
        let mut orders = client
            .watch_verdicts(WatchVerdictsRequest {
                service: "orders".into(),
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let mut late_billing = client
            .watch_verdicts(WatchVerdictsRequest {
                service: "billing".into(),
                classification: Classification::LateDependencyFailure.into(),
            })
            .await
            .expect("watch")
            .into_inner();
        let bad = client
            .watch_verdicts(WatchVerdictsRequest {
                classification: 42,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);

        // 30 failing requests over several exports: orders and billing, both classes.
        let total = 30u16;
        for batch in 0..3u16 {
            let spans = (0..10u16)
                .map(|i| {
                    let n = batch * 10 + i + 1;
                    let service = if n % 2 == 0 { "orders" } else { "billing" };
                    failing(service, &trace_id(2, n), n % 3 == 0)
                })
                .collect();
            export(&f, spans).await;
        }
        wait_verdicts(&f, f64::from(total) + 1.0).await;

        // The order verdicts were made in is the store's, oldest first.
        let mut made = list(&mut client, ListVerdictsRequest::default()).await;
        made.reverse();
        assert_eq!(made.len(), usize::from(total) + 1);
        assert_eq!(made[0].trace_id, hex(&before));
        let made = &made[1..];
        let expect = |keep: &dyn Fn(&faultline::api::grpc::proto::Verdict) -> bool| {
            made.iter()
                .filter(|v| keep(v))
                .map(|v| v.trace_id.clone())
                .collect::<Vec<_>>()
        };
        let want_all = expect(&|_| true);
        let want_orders = expect(&|v| v.entry.as_ref().unwrap().service == "orders");
        let want_late_billing = expect(&|v| {
            v.entry.as_ref().unwrap().service == "billing"
                && v.classification() == Classification::LateDependencyFailure
        });
        assert_eq!(want_orders.len(), 15);
        assert_eq!(want_late_billing.len(), 5);

        assert_eq!(
            take_verdicts(&mut everything, want_all.len()).await,
            want_all
        );
        assert_eq!(
            take_verdicts(&mut orders, want_orders.len()).await,
            want_orders
        );
        assert_eq!(
            take_verdicts(&mut late_billing, want_late_billing.len()).await,
            want_late_billing
        );
        // Nothing more is pending on the filtered streams.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), orders.message())
                .await
                .is_err(),
            "no verdict beyond those made"
        );
    });
}

#[test]
fn a_slow_watcher_never_stalls_analysis_and_what_it_missed_is_counted() {
    let f = Faultline::start(&["--trace-idle", "200ms", "--watch-buffer", "2"]);
    rt().block_on(async {
        // Small HTTP/2 windows, so the transport stops pulling from the server's stream
        // soon and the subscriber truly falls behind.
        let channel = tonic::transport::Endpoint::from_shared(f.grpc_endpoint())
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
        let mut stalled = VerdictsClient::new(channel)
            .watch_verdicts(WatchVerdictsRequest::default())
            .await
            .expect("watch")
            .into_inner();

        // Many verdicts while the subscriber reads nothing.
        // About 70 verdicts fill the 64 KiB window; ten times that leaves no doubt.
        let total: u16 = 700;
        for batch in 0..(total / 100) {
            let spans = (0..100u16)
                .map(|i| failing("orders", &trace_id(3, batch * 100 + i), i % 2 == 0))
                .collect();
            export(&f, spans).await;
        }
        // Analysis finished every one of them regardless.
        wait_verdicts(&f, f64::from(total)).await;

        // Now the subscriber reads: the verdicts already on their way, then a notice of
        // those skipped, then the newest ones the buffer kept. Each verdict is either
        // delivered (in order) or counted as missed.
        let mut made = list(
            &mut verdicts_client(&f).await,
            ListVerdictsRequest {
                limit: u32::from(total),
                ..Default::default()
            },
        )
        .await;
        made.reverse();
        let made = ids(&made);
        let (mut delivered, mut missed) = (Vec::new(), 0u64);
        while delivered.len() as u64 + missed < u64::from(total) {
            let msg = tokio::time::timeout(WAIT, stalled.message())
                .await
                .expect("the watch stream goes on after a lag")
                .expect("stream status")
                .expect("stream open");
            match msg.event {
                Some(Event::Verdict(v)) => delivered.push(v.trace_id),
                Some(Event::Lagged(l)) => {
                    assert!(l.missed > 0);
                    missed += l.missed;
                }
                None => panic!("empty watch event"),
            }
        }
        assert!(missed > 0, "the subscriber never lagged");
        assert_eq!(delivered.len() as u64 + missed, u64::from(total));
        let mut rest = made.iter();
        assert!(
            delivered.iter().all(|d| rest.any(|m| m == d)),
            "delivered verdicts keep the order they were made in"
        );
        assert_eq!(delivered.last(), made.last(), "the newest verdict arrives");
        let counted =
            tokio::task::block_in_place(|| f.metric("faultline_watch_lagged_verdicts_total"));
        assert_eq!(counted, missed as f64);
    });
}

#[test]
fn an_open_watch_ends_with_unavailable_and_does_not_hold_shutdown() {
    let f = Faultline::start(&["--trace-idle", "200ms"]);
    rt().block_on(async {
        let mut watching = verdicts_client(&f)
            .await
            .watch_verdicts(WatchVerdictsRequest::default())
            .await
            .expect("watch")
            .into_inner();
        let started = Instant::now();
        let (status, log) = tokio::task::block_in_place(|| f.terminate());
        assert!(status.success(), "{status:?}\n{log}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "shutdown waited for the watcher: {:?}",
            started.elapsed()
        );
        let end = tokio::time::timeout(WAIT, watching.message())
            .await
            .expect("the stream ends");
        assert_eq!(end.unwrap_err().code(), Code::Unavailable);
    });
}
