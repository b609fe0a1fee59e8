//! End-to-end scenarios of the analysis core: one trace in, verdicts out, one test per
//! rule of docs/contract.md §3, a property-style test over pseudo-random garbage, and the captured
//! SDK fixtures when present.

use super::testing::*;
use super::*;
use crate::analysis::critical_path::{choose_blame, critical_path};
use crate::analysis::graph::SpanGraph;
use crate::model::{Span, SpanKind, StatusCode, Trace};

const T0: u64 = 1_700_000_000_123_000_000;

fn analyze(t: &Trace) -> Vec<Verdict> {
    analyze_trace(t, &AnalysisConfig::default(), T0)
}

fn one(t: &Trace) -> Verdict {
    let mut v = analyze(t);
    assert_eq!(v.len(), 1, "expected one verdict, got {v:#?}");
    v.remove(0)
}

fn has(v: &Verdict, needle: &str) -> bool {
    v.evidence.iter().any(|e| e.contains(needle))
}

const PY_STACK: &str = "Traceback (most recent call last):\n  File \"/app/inventory/views.py\", line 42, in get_stock\n    return stock[sku]\nKeyError: 'sku-1'";

#[test]
fn healthy_trace_and_lone_gateway_502_give_no_verdict() {
    let healthy = trace(vec![sp(1, None, "a", SERVER, "GET /", 0, 10).http(200)]);
    assert!(analyze(&healthy).is_empty());
    let gw = trace(vec![
        sp(1, None, "gateway", SERVER, "GET /", 0, 100).http(502),
        sp(2, Some(1), "gateway", CLIENT, "GET", 1, 99)
            .error()
            .exception("ConnectionError", "refused", ""),
    ]);
    assert!(analyze(&gw).is_empty());
}

#[test]
fn a_500_without_children_or_exceptions_is_inconclusive_and_says_what_is_missing() {
    let v = one(&trace(vec![sp(
        1,
        None,
        "a",
        SERVER,
        "GET /users/:id",
        0,
        10,
    )
    .http(500)
    .error()]));
    assert_eq!(v.classification, Classification::Inconclusive);
    assert_eq!(v.confidence, 0.0);
    assert!(v.origin.is_none());
    assert!(v.fingerprint.is_none());
    assert!(has(&v, "no child spans"));
    assert!(has(&v, "Missing evidence"));
    assert_eq!(v.entry.route, "/users/:id");
    assert_eq!(
        v.blame.as_ref().map(|b| b.span_id.clone()),
        Some(v.entry.span_id.clone())
    );
}

fn three_service_chain(inventory_failure: Span) -> Trace {
    trace(vec![
        sp(1, None, "edge", SERVER, "GET /checkout", 0, 200)
            .http(500)
            .error()
            .attr("http.route", "/checkout"),
        sp(2, Some(1), "edge", CLIENT, "POST", 10, 190)
            .http(500)
            .error(),
        sp(3, Some(2), "orders", SERVER, "POST /orders", 12, 188)
            .http(500)
            .error(),
        sp(4, Some(3), "orders", CLIENT, "GET", 20, 180)
            .http(500)
            .error(),
        sp(5, Some(4), "inventory", SERVER, "GET /stock/:sku", 22, 178)
            .http(500)
            .error()
            .res("service.version", "inv-3.1.0")
            .res("deployment.environment.name", "prod")
            .res("cloud.region", "us-east-1"),
        inventory_failure,
    ])
}

#[test]
fn nested_500s_across_three_services_blame_inventorys_own_keyerror() {
    let t = three_service_chain(
        sp(6, Some(5), "inventory", INTERNAL, "get_stock", 30, 170)
            .error()
            .exception("KeyError", "'sku-1'", PY_STACK)
            .res("service.version", "inv-3.1.0")
            .res("deployment.environment.name", "prod")
            .res("cloud.region", "us-east-1"),
    );
    let v = one(&t);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    assert_eq!(v.entry.service, "edge");
    assert_eq!(v.entry.route, "/checkout");
    let origin = v.origin.as_ref().expect("origin");
    assert_eq!(origin.service, "inventory");
    assert_eq!(origin.name, "get_stock");
    assert_eq!(origin.error, "KeyError: 'sku-1'");
    assert_eq!(v.chain.len(), 2);
    assert_eq!(v.chain[1].service, "inventory");
    assert!(has(&v, "crossed 2 nested failing entries"));
    assert_eq!(v.cohort.release.as_deref(), Some("inv-3.1.0"));
    assert_eq!(v.cohort.environment.as_deref(), Some("prod"));
    assert_eq!(v.cohort.region.as_deref(), Some("us-east-1"));
    assert_eq!(v.confidence, 0.8);
    assert!(v
        .fingerprint
        .as_deref()
        .is_some_and(|f| f.contains("KeyError")));
    let exc = v
        .exception
        .as_ref()
        .expect("exception kept for the fingerprinter");
    assert_eq!(exc.stacktrace, PY_STACK);
}

#[test]
fn nested_500s_with_inventorys_database_timing_out_is_a_dependency_failure() {
    let t = three_service_chain(
        sp(6, Some(5), "inventory", CLIENT, "SELECT stock", 30, 175)
            .attr("db.system", "postgresql")
            .error()
            .exception(
                "sqlalchemy.exc.OperationalError",
                "canceling statement due to statement timeout; timed out",
                "",
            ),
    );
    let v = one(&t);
    assert_eq!(v.classification, Classification::LateDependencyFailure);
    assert_eq!(
        v.origin.as_ref().map(|o| o.name.as_str()),
        Some("SELECT stock")
    );
    assert_eq!(
        v.blame.as_ref().map(|b| b.name.as_str()),
        Some("SELECT stock")
    );
    assert_eq!(v.confidence, 0.9);
}

#[test]
fn a_downstream_500_without_any_reason_is_inconclusive_and_named() {
    // The backend answered 500 and recorded nothing: it may be its own deliberate
    // answer or a failure it swallowed; the trace cannot tell which.
    let t = trace(vec![
        sp(1, None, "edge", SERVER, "GET /a", 0, 100).http(500),
        sp(2, Some(1), "edge", CLIENT, "GET", 5, 95).http(500),
        sp(3, Some(2), "backend", SERVER, "GET /a", 10, 90).http(500),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::Inconclusive);
    assert!(v.origin.is_none());
    assert_eq!(v.confidence, 0.0);
    assert!(
        has(&v, "leads down to backend `GET /a`"),
        "{:#?}",
        v.evidence
    );
    assert!(v.fingerprint.is_none());
}

#[test]
fn several_failing_entries_in_one_trace_get_one_verdict_each() {
    let t = trace(vec![
        sp(1, None, "bff", SERVER, "GET /home", 0, 100).http(200),
        sp(2, Some(1), "bff", CLIENT, "GET", 5, 40).http(500),
        sp(3, Some(2), "profile", SERVER, "GET /profile", 6, 39)
            .http(500)
            .exception("TypeError", "x is undefined", ""),
        sp(4, Some(1), "bff", CLIENT, "GET", 45, 90).http(500),
        sp(5, Some(4), "feed", SERVER, "GET /feed", 46, 89)
            .http(500)
            .exception("ValueError", "bad", ""),
    ]);
    let v = analyze(&t);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].entry.service, "profile");
    assert_eq!(v[1].entry.service, "feed");
}

#[test]
fn three_retried_attempts_are_summed_and_the_last_timeout_is_the_origin() {
    let attempt = |id, s, e| {
        sp(id, Some(2), "orders", CLIENT, "GET", s, e)
            .attr("server.address", "pricing")
            .attr("http.request.method", "GET")
            .error()
            .exception(
                "requests.exceptions.ReadTimeout",
                "HTTPConnectionPool(host='pricing', port=80): Read timed out. (read timeout=1)",
                "",
            )
    };
    let t = trace(vec![
        sp(1, None, "orders", SERVER, "POST /orders", 0, 3200)
            .http(500)
            .error(),
        sp(2, Some(1), "orders", INTERNAL, "create_order", 50, 3150)
            .error()
            .exception("RuntimeError", "pricing unavailable", ""),
        attempt(3, 100, 1100),
        attempt(4, 1100, 2100),
        attempt(5, 2100, 3100),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::LateDependencyFailure);
    let blame = v.blame.as_ref().expect("blame");
    assert_eq!(blame.attempts, 3);
    assert!(blame.is_dependency);
    assert!(
        (blame.share - 3000.0 / 3200.0).abs() < 1e-3,
        "share {}",
        blame.share
    );
    assert!((blame.self_ms - 1000.0).abs() < 1e-6);
    assert_eq!(
        v.origin.as_ref().map(|o| o.span_id.clone()),
        Some(sid(5).to_string())
    );
    assert!(has(&v, "3 attempts"));
    // The handler's RuntimeError names the retried call's host only: a message match.
    assert_eq!(v.confidence, 0.85);
    assert!(has(&v, "names the call"), "{:#?}", v.evidence);
}

#[test]
fn slow_successful_dependency_with_a_handler_exception_is_a_handler_defect() {
    let t = trace(vec![
        sp(1, None, "api", SERVER, "GET /report", 0, 1000)
            .http(500)
            .error(),
        sp(2, Some(1), "api", CLIENT, "SELECT reports", 10, 900).attr("db.system", "postgresql"),
        sp(3, Some(1), "api", INTERNAL, "render", 900, 990)
            .error()
            .exception("ZeroDivisionError", "division by zero", PY_STACK),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    let blame = v.blame.as_ref().expect("blame");
    assert_eq!(blame.name, "SELECT reports");
    assert!(blame.is_dependency);
    assert_eq!(v.origin.as_ref().map(|o| o.name.as_str()), Some("render"));
    assert!(has(&v, "was slow"));
}

#[test]
fn fast_failing_dependency_is_still_a_dependency_failure() {
    let t = trace(vec![
        sp(1, None, "web", SERVER, "GET /cart", 0, 300).http(500).error(),
        sp(2, Some(1), "web", INTERNAL, "load cart", 5, 295),
        sp(3, Some(2), "web", CLIENT, "GET", 10, 12)
            .error()
            .exception("Error", "connect ECONNREFUSED 10.0.0.7:6379", "Error: connect ECONNREFUSED\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)"),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::LateDependencyFailure);
    assert_eq!(v.origin.as_ref().map(|o| o.name.as_str()), Some("GET"));
    assert_ne!(v.blame.as_ref().map(|b| b.name.as_str()), Some("GET"));
    assert!(has(&v, "connection failure"));
    assert_eq!(
        v.confidence, 0.9,
        "the failing call is on the path even if short"
    );
}

#[test]
fn gateway_502_over_a_backend_500_files_the_verdict_under_the_backend() {
    let t = trace(vec![
        sp(1, None, "gateway", SERVER, "GET /api/items", 0, 100).http(502),
        sp(2, Some(1), "gateway", CLIENT, "GET", 2, 98).http(500),
        sp(3, Some(2), "items", SERVER, "GET /api/items", 4, 96)
            .http(500)
            .exception("NameError", "name 'x' is not defined", PY_STACK),
    ]);
    let v = one(&t);
    assert_eq!(v.entry.service, "items");
    assert_eq!(v.entry.status_code, 500);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
}

#[test]
fn grpc_internal_entry_gets_a_verdict_with_its_grpc_code() {
    let t = trace(vec![
        sp(
            1,
            None,
            "payments",
            SERVER,
            "payments.v1.Payments/Charge",
            0,
            50,
        )
        .attr("rpc.system", "grpc")
        .attr("rpc.grpc.status_code", 13i64)
        .error(),
        sp(
            2,
            Some(1),
            "payments",
            CLIENT,
            "ledger.v1.Ledger/Post",
            5,
            45,
        )
        .attr("rpc.system", "grpc")
        .attr("rpc.grpc.status_code", 14i64)
        .error(),
    ]);
    let v = one(&t);
    assert_eq!(v.entry.status_code, 13);
    assert_eq!(v.classification, Classification::LateDependencyFailure);
    assert!(has(&v, "gRPC status 13 (INTERNAL)"));
    assert_eq!(v.entry.route, "payments.v1.Payments/Charge");
}

#[test]
fn pool_exhaustion_raised_inside_the_handler_counts_as_a_dependency_failure() {
    // Flask records the exception on the SERVER span itself; no database span exists.
    let t = trace(vec![sp(
        1,
        None,
        "orders",
        SERVER,
        "POST /orders",
        0,
        30_000,
    )
    .http(500)
    .error()
    .exception(
        "sqlalchemy.exc.TimeoutError",
        "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00",
        "Traceback (most recent call last):\n  File \"/app/orders/db.py\", line 9, in checkout\n",
    )]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::LateDependencyFailure);
    assert_eq!(
        v.origin.as_ref().map(|o| o.span_id.clone()),
        Some(v.entry.span_id.clone())
    );
    assert!(has(&v, "no span for the dependency call was recorded"));
}

#[test]
fn malformed_payload_is_a_handler_defect_naming_the_dependency_that_answered() {
    let t = trace(vec![
        sp(1, None, "web", SERVER, "GET /profile/:id", 0, 100).http(500).error(),
        sp(2, Some(1), "web", INTERNAL, "request handler - /profile/:id", 1, 99).error().exception(
            "TypeError",
            "Cannot read properties of null (reading 'name')",
            "TypeError: Cannot read properties of null (reading 'name')\n    at mapProfileResponse (/app/src/profile.js:12:20)",
        ),
        sp(3, Some(2), "web", CLIENT, "GET", 5, 80).attr("server.address", "profiles").attr("http.request.method", "GET").http(200),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    assert_eq!(
        v.origin.as_ref().map(|o| o.name.as_str()),
        Some("request handler - /profile/:id")
    );
    assert!(
        has(
            &v,
            "web `GET` to profiles answered HTTP 200 just before the exception"
        ),
        "{:#?}",
        v.evidence
    );
    assert!(
        !has(&v, "parse error"),
        "a TypeError is not named a parse error"
    );
}

#[test]
fn express_request_handler_span_with_the_exception_is_the_origin() {
    let t = trace(vec![
        sp(1, None, "web", SERVER, "GET /x", 0, 100).http(500),
        sp(2, Some(1), "web", INTERNAL, "middleware - query", 0, 1),
        sp(3, Some(1), "web", INTERNAL, "request handler - /x", 1, 99).exception(
            "ReferenceError",
            "y is not defined",
            "",
        ),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    assert_eq!(v.confidence, 0.6, "exception without stack");
}

#[test]
fn missing_parent_behind_an_uninstrumented_hop_is_followed_by_an_inferred_link() {
    let t = trace(vec![
        sp(1, None, "edge", SERVER, "GET /a", 0, 100).http(500),
        sp(2, Some(1), "edge", CLIENT, "GET", 5, 95).http(500),
        // The mesh proxy between them exported nothing: parent 77 never arrived.
        sp(3, Some(77), "backend", SERVER, "GET /a", 10, 90)
            .http(500)
            .exception("KeyError", "'a'", PY_STACK),
    ]);
    let v = one(&t);
    assert_eq!(v.entry.service, "edge");
    assert_eq!(
        v.origin.as_ref().map(|o| o.service.as_str()),
        Some("backend")
    );
    assert!(has(&v, "inferred link"));
    assert_eq!(v.chain.len(), 1);
    assert_eq!(v.confidence, 0.7, "inferred link costs 0.1");
}

#[test]
fn cycles_and_duplicates_are_survived_and_reported() {
    let t = trace(vec![
        sp(1, Some(3), "a", SERVER, "GET /x", 0, 100).http(500),
        sp(2, Some(1), "a", INTERNAL, "h", 5, 95).exception("KeyError", "'k'", ""),
        sp(3, Some(2), "a", INTERNAL, "loop", 10, 20),
        sp(2, Some(1), "a", INTERNAL, "dup", 5, 95),
    ]);
    let v = one(&t);
    assert!(has(&v, "cycle"));
    assert!(has(&v, "repeated an id"));
    assert_eq!(v.origin.as_ref().map(|o| o.name.as_str()), Some("h"));
}

#[test]
fn clock_skew_between_services_does_not_move_the_blame() {
    let build = |skew_ms: i64| {
        let skew = skew_ms * 1_000_000;
        trace(vec![
            sp(1, None, "edge", SERVER, "GET /a", 0, 500).http(500),
            sp(2, Some(1), "edge", CLIENT, "GET", 10, 490).http(500),
            sp(3, Some(2), "search", SERVER, "GET /q", 12, 488)
                .http(500)
                .shift_ns(skew, skew),
            sp(4, Some(3), "search", CLIENT, "elasticsearch query", 20, 470)
                .attr("db.system", "elasticsearch")
                .error()
                .exception("ConnectionTimeout", "read timed out", "")
                .shift_ns(skew, skew),
        ])
    };
    let reference = one(&build(0));
    for skew in [-200, -40, -3, 2, 35, 300] {
        let v = one(&build(skew));
        assert_eq!(
            v.blame.as_ref().map(|b| &b.name),
            reference.blame.as_ref().map(|b| &b.name),
            "skew {skew}"
        );
        assert_eq!(v.classification, Classification::LateDependencyFailure);
        let share = v.blame.as_ref().map(|b| b.share).unwrap_or(0.0);
        let ref_share = reference.blame.as_ref().map(|b| b.share).unwrap_or(0.0);
        assert!(
            (share - ref_share).abs() < 0.01,
            "skew {skew}: {share} vs {ref_share}"
        );
    }
}

#[test]
fn node_style_millisecond_start_truncation_does_not_move_the_blame() {
    // Exact times vs the same trace with every start truncated to the millisecond.
    let build = |truncate: bool| {
        let cut = |s: Span, frac: u64| {
            if truncate {
                s
            } else {
                s.shift_ns(frac as i64, 0)
            }
        };
        trace(vec![
            cut(
                sp(1, None, "web", SERVER, "GET /a", 0, 100)
                    .shift_ns(0, 700_000)
                    .http(500),
                0,
            ),
            cut(
                sp(2, Some(1), "web", INTERNAL, "request handler - /a", 0, 100)
                    .shift_ns(0, 600_000),
                900_000,
            ),
            cut(
                sp(3, Some(2), "web", CLIENT, "GET", 1, 31).shift_ns(0, 300_000),
                200_000,
            ),
            cut(
                sp(4, Some(2), "web", CLIENT, "SELECT", 31, 95).shift_ns(0, 100_000),
                400_000,
            )
            .attr("db.system", "postgresql")
            .error()
            .exception("Error", "timeout exceeded when trying to connect", ""),
        ])
    };
    let exact = one(&build(false));
    let truncated = one(&build(true));
    assert_eq!(
        exact.blame.as_ref().map(|b| &b.name),
        Some(&"SELECT".to_string())
    );
    assert_eq!(
        truncated.blame.as_ref().map(|b| &b.name),
        Some(&"SELECT".to_string())
    );
    assert_eq!(
        truncated.classification,
        Classification::LateDependencyFailure
    );
    // Both calls stay on the path in the truncated trace.
    let t = build(true);
    let g = SpanGraph::build(&t);
    let cp = critical_path(&g, 0);
    assert!(
        cp.exclusive_of(2) > 29_000_000,
        "the first call stays on the path"
    );
}

#[test]
fn verdict_serialises_with_the_contract_field_names() {
    let v = one(&trace(vec![sp(1, None, "a", SERVER, "GET /x", 0, 10)
        .http(500)
        .exception("KeyError", "'k'", PY_STACK)
        .attr("tenant", "acme")]));
    let json = serde_json::to_value(&v).expect("serialises");
    let obj = json.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "analyzed_at",
            "blame",
            "budget_ms",
            "classification",
            "cohort",
            "confidence",
            "entry",
            "evidence",
            "fingerprint",
            "fingerprint_id",
            "origin",
            "trace_id"
        ]
    );
    assert_eq!(json["classification"], "deterministic_handler_defect");
    assert_eq!(json["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(json["entry"]["span_id"].as_str().map(str::len), Some(16));
    let entry_keys: Vec<&str> = json["entry"]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(entry_keys.len(), 5, "{entry_keys:?}");
    for k in [
        "span_id",
        "service",
        "name",
        "kind",
        "share",
        "self_ms",
        "is_dependency",
    ] {
        assert!(json["blame"].get(k).is_some(), "blame.{k}");
    }
    for k in ["span_id", "service", "name", "error"] {
        assert!(json["origin"].get(k).is_some(), "origin.{k}");
    }
    for k in [
        "release",
        "environment",
        "region",
        "tenant",
        "feature_flags",
    ] {
        assert!(json["cohort"].get(k).is_some(), "cohort.{k}");
    }
    assert_eq!(json["cohort"]["tenant"], "acme");
    assert_eq!(json["analyzed_at"], "2023-11-14T22:13:20.123Z");
    let inconclusive = one(&trace(vec![
        sp(1, None, "a", SERVER, "GET /x", 0, 10).http(500)
    ]));
    let json = serde_json::to_value(&inconclusive).expect("serialises");
    assert!(
        json["origin"].is_null()
            && json["fingerprint"].is_null()
            && json["fingerprint_id"].is_null()
    );
    assert_eq!(json["classification"], "inconclusive");
}

#[test]
fn rfc3339_formatting_without_a_date_crate() {
    use super::verdict::rfc3339;
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(
        rfc3339(1_709_251_199_999_000_000),
        "2024-02-29T23:59:59.999Z"
    );
    assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709Z");
}

#[test]
fn recurrence_raises_confidence_and_says_so() {
    let v = one(&trace(vec![sp(1, None, "a", SERVER, "GET /x", 0, 10)
        .http(500)
        .exception("KeyError", "'k'", PY_STACK)]));
    let raised = v.clone().with_recurrence(4);
    assert!(raised.confidence > v.confidence && raised.confidence <= 0.97);
    assert!(has(&raised, "4 times"));
    assert_eq!(v.clone().with_recurrence(1).confidence, v.confidence);
}

#[test]
fn flask_fixture_loads_and_analyses() {
    let json = r#"{"spans":[
      {"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","parent_span_id":null,
       "name":"GET /items/<item_id>","kind":2,"start_unix_nano":"1700000000000000000","end_unix_nano":"1700000000012000000",
       "status":{"code":2,"message":"KeyError: 'item'"},
       "attributes":{"http.route":"/items/<item_id>","http.response.status_code":500,"http.request.method":"GET"},
       "events":[{"name":"exception","time_unix_nano":"1700000000011000000","attributes":{"exception.type":"KeyError","exception.message":"'item'","exception.stacktrace":"Traceback (most recent call last):\n  File \"/app/app.py\", line 12, in get_item\nKeyError: 'item'","exception.escaped":"False"}}],
       "resource":{"service.name":"catalog","service.version":"1.2.3","deployment.environment":"prod"},"scope":"opentelemetry.instrumentation.flask"}]}"#;
    let t = load_fixture(json).expect("loads");
    let v = one(&t);
    assert_eq!(v.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(v.entry.route, "/items/<item_id>");
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    assert_eq!(v.cohort.release.as_deref(), Some("1.2.3"));
    assert!((v.budget_ms - 12.0).abs() < 1e-9);
}

/// Captured SDK traces, when the fixtures directory exists (it lives in the main crate).
#[test]
fn captured_fixtures_analyse_without_breaking_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let trace = load_fixture(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for v in analyze(&trace) {
            check_verdict(&v);
        }
    }
}

fn check_verdict(v: &Verdict) {
    assert!(
        (0.0..=1.0).contains(&v.confidence),
        "confidence {}",
        v.confidence
    );
    assert!(v.budget_ms >= 0.0);
    if let Some(b) = &v.blame {
        assert!((0.0..=1.0).contains(&b.share), "share {}", b.share);
        assert!(
            b.self_ms <= v.budget_ms + 1e-6,
            "self {} budget {}",
            b.self_ms,
            v.budget_ms
        );
    }
    assert_eq!(v.trace_id.len(), 32);
    assert!(!v.evidence.is_empty());
}

#[test]
fn very_deep_and_wide_traces_are_handled_without_recursion_or_quadratic_blowup() {
    let n = 20_000u64;
    let mut spans = Vec::new();
    for id in 0..n {
        let parent = id.checked_sub(1);
        let s = sp(
            id,
            parent,
            if id % 2 == 0 { "a" } else { "b" },
            SERVER,
            "GET /deep",
            id / 100,
            1000 - id / 100,
        )
        .http(500);
        spans.push(if id == n - 1 {
            s.exception("KeyError", "'deep'", "")
        } else {
            s
        });
    }
    let v = one(&trace(spans));
    assert_eq!(v.chain.len(), (n - 1) as usize);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    check_verdict(&v);
}

#[test]
fn many_orphans_fitting_nowhere_stay_bounded() {
    let wide: Vec<Span> = (0..5_000u64)
        .map(|i| sp(i, Some(i + 100_000), "x", SERVER, "GET /", i, i + 1).http(500))
        .collect();
    assert_eq!(analyze(&trace(wide)).len(), 5_000);
}

/// A tiny deterministic generator (Knuth's MMIX LCG), so the property test needs no crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn random_trace(rng: &mut Lcg) -> Trace {
    let n = 1 + rng.below(40);
    let services = ["edge", "orders", "inventory", "db"];
    let kinds = [
        SERVER,
        CLIENT,
        INTERNAL,
        PRODUCER,
        SpanKind::Consumer,
        SpanKind::Unspecified,
    ];
    let mut spans = Vec::new();
    for id in 0..n {
        let parent = match rng.below(10) {
            0 => None,
            1 => Some(rng.below(1000)), // missing
            2 => Some(id),              // self
            _ => Some(rng.below(n)),    // anything, cycles included
        };
        let (start, end) = match rng.below(12) {
            0 => (u64::MAX, u64::MAX),
            1 => (u64::MAX - rng.below(1000), u64::MAX),
            2 => (0, u64::MAX),
            3 => (rng.below(1000), 0),
            _ => {
                let s = rng.below(1_000);
                (s, s + rng.below(500))
            }
        };
        let service = services[rng.below(4) as usize];
        let kind = kinds[rng.below(6) as usize];
        let mut s = sp(rng.below(n + 3), parent, service, kind, "op", 0, 0);
        s.span_id = sid(id % (n.saturating_sub(rng.below(2)).max(1))); // some duplicates
        s.start_unix_nano = if start >= u64::MAX - 1000 {
            start
        } else {
            BASE_MS * 1_000_000 + start * 1_000_000
        };
        s.end_unix_nano = if end >= u64::MAX - 1000 {
            end
        } else {
            BASE_MS * 1_000_000 + end * 1_000_000
        };
        s = match rng.below(6) {
            0 => s.http(500),
            1 => s.http(502),
            2 => s.attr("http.status_code", "500"),
            3 => s.attr("rpc.grpc.status_code", 13i64),
            _ => s,
        };
        if rng.below(3) == 0 {
            s.status_code = StatusCode::Error;
        }
        if rng.below(4) == 0 {
            s = s.exception("requests.exceptions.ReadTimeout", "read timed out", "");
        }
        spans.push(s);
    }
    trace(spans)
}

#[test]
fn property_random_garbage_never_panics_and_keeps_invariants() {
    let mut rng = Lcg(0x5eed);
    let cfg = AnalysisConfig::default();
    for _ in 0..1500 {
        let t = random_trace(&mut rng);
        let verdicts = analyze_trace(&t, &cfg, u64::MAX);
        for v in &verdicts {
            check_verdict(v);
        }
        let g = SpanGraph::build(&t);
        for req in entry::failing_requests(&g, &cfg) {
            let cp = critical_path(&g, req.entry);
            let (ws, we) = cp.window;
            let mut total = 0u64;
            let mut segs = cp.segments.clone();
            segs.sort_by_key(|s| s.start);
            for pair in segs.windows(2) {
                assert!(pair[0].end <= pair[1].start, "segments overlap");
            }
            for s in &cp.segments {
                assert!(
                    ws <= s.start && s.start < s.end && s.end <= we,
                    "segment outside the window"
                );
                total = total.saturating_add(s.end - s.start);
            }
            let exclusive: u64 = cp
                .exclusive
                .values()
                .fold(0u64, |a, b| a.saturating_add(*b));
            assert_eq!(total, exclusive);
            assert!(exclusive <= cp.budget_nanos);
            if let Some(b) = choose_blame(&g, &cp, req.entry) {
                assert!(
                    b.group_nanos <= cp.budget_nanos
                        && b.self_nanos <= b.group_nanos.max(b.self_nanos)
                );
            }
        }
    }
}

#[test]
fn property_well_formed_trees_have_a_path_covering_the_whole_budget() {
    // In a proper tree with every child inside its parent, CRISP's path tiles the entry
    // window: the exclusive times sum to exactly the budget.
    let mut rng = Lcg(42);
    for _ in 0..300 {
        let n = 1 + rng.below(30);
        let mut spans = vec![sp(0, None, "edge", SERVER, "GET /", 0, 1000).http(500)];
        let mut windows = vec![(0u64, 1000u64)];
        for id in 1..n {
            let p = rng.below(id);
            let (ps, pe) = windows[p as usize];
            let s = ps + rng.below(pe - ps + 1);
            let e = s + rng.below(pe - s + 1);
            windows.push((s, e));
            let service = ["edge", "orders"][rng.below(2) as usize];
            spans.push(sp(id, Some(p), service, CLIENT, "call", s, e));
        }
        let t = trace(spans);
        let g = SpanGraph::build(&t);
        let cp = critical_path(&g, 0);
        let exclusive: u64 = cp.exclusive.values().sum();
        assert_eq!(exclusive, cp.budget_nanos);
    }
}

fn fixture(name: &str) -> Option<Trace> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/traces")
        .join(name);
    let text = std::fs::read_to_string(path).ok()?;
    Some(load_fixture(&text).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// Real SDK captures (Python/Flask + requests + SQLAlchemy, Node/express); each file
/// holds several requests. Skipped when a file is absent.
#[test]
fn captured_fixtures_get_the_expected_verdicts() {
    let expect: [(&str, Classification, &str); 6] = [
        (
            "dependency_timeout.json",
            Classification::LateDependencyFailure,
            "orders",
        ),
        (
            "malformed_downstream.json",
            Classification::DeterministicHandlerDefect,
            "orders",
        ),
        (
            "missing_secret.json",
            Classification::DeterministicHandlerDefect,
            "payments",
        ),
        (
            "null_field.json",
            Classification::DeterministicHandlerDefect,
            "",
        ),
        (
            "pool_exhaustion.json",
            Classification::LateDependencyFailure,
            "orders",
        ),
        (
            "two_down.json",
            Classification::DeterministicHandlerDefect,
            "inventory",
        ),
    ];
    for (name, class, origin_service) in expect {
        let t = fixture(name).unwrap_or_else(|| panic!("fixture {name} is missing"));
        let verdicts = analyze(&t);
        assert!(!verdicts.is_empty(), "{name}: no verdict");
        for v in &verdicts {
            check_verdict(v);
            assert_eq!(v.classification, class, "{name}: {:#?}", v.evidence);
            let origin = v
                .origin
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no origin"));
            if !origin_service.is_empty() {
                assert_eq!(origin.service, origin_service, "{name}");
            }
            assert!(v.fingerprint.is_some(), "{name}: fingerprint");
        }
        match name {
            "dependency_timeout.json" => {
                for v in &verdicts {
                    assert!(v
                        .origin
                        .as_ref()
                        .is_some_and(|o| o.error.contains("ReadTimeout")));
                    assert!(v
                        .blame
                        .as_ref()
                        .is_some_and(|b| b.service == "inventory" && b.share > 0.8));
                }
            }
            "malformed_downstream.json" => {
                assert!(
                    verdicts.iter().all(|v| has(
                        v,
                        "to inventory `GET /inventory/<sku>/stock` answered HTTP 200"
                    )),
                    "the evidence names the dependency that answered: {:#?}",
                    verdicts[0].evidence
                );
                assert!(
                    verdicts.iter().all(|v| has(v, "which is a parse error")),
                    "{:#?}",
                    verdicts[0].evidence
                );
            }
            "missing_secret.json" => {
                assert!(verdicts
                    .iter()
                    .all(|v| v.cohort.feature_flags
                        == vec!["checkout.signed-receipts=v2".to_string()]));
            }
            "two_down.json" => {
                for v in &verdicts {
                    assert_eq!(v.entry.service, "edge");
                    assert_eq!(v.chain.len(), 2);
                    assert_eq!(
                        v.cohort.feature_flags,
                        vec!["inventory.fast-path=on".to_string()]
                    );
                }
            }
            _ => {}
        }
    }
    if let Some(t) = fixture("healthy.json") {
        assert!(analyze(&t).is_empty(), "healthy.json gives no verdict");
    }
}

#[test]
fn a_dependency_failure_is_fingerprinted_by_the_handler_stack_that_made_the_call() {
    // Python `requests` records the timeout on the client span with library frames only;
    // the Flask server span's copy shows which handler made the call.
    let lib_only = "Traceback (most recent call last):\n  File \"/srv/.venv/lib/python3.11/site-packages/requests/adapters.py\", line 713, in send\n    raise ReadTimeout(e, request=request)\nrequests.exceptions.ReadTimeout: HTTPConnectionPool(host='127.0.0.1', port=40111): Read timed out. (read timeout=0.3)\n";
    let in_app = "Traceback (most recent call last):\n  File \"/srv/app/orders/views.py\", line 88, in reserve_order\n    r = requests.post(url, timeout=0.3)\n  File \"/srv/.venv/lib/python3.11/site-packages/requests/api.py\", line 115, in post\n    return request(\"post\", url, data=data, json=json, **kwargs)\nrequests.exceptions.ReadTimeout: HTTPConnectionPool(host='127.0.0.1', port=40111): Read timed out. (read timeout=0.3)\n";
    let t = trace(vec![
        sp(1, None, "orders", SERVER, "POST /orders", 0, 400)
            .http(500)
            .error()
            .exception("requests.exceptions.ReadTimeout", "Read timed out.", in_app),
        sp(2, Some(1), "orders", CLIENT, "POST", 10, 320)
            .attr("server.address", "inventory")
            .error()
            .exception(
                "requests.exceptions.ReadTimeout",
                "Read timed out.",
                lib_only,
            ),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::LateDependencyFailure);
    assert_eq!(v.origin.as_ref().map(|o| o.name.as_str()), Some("POST"));
    let fp = v.fingerprint.as_deref().unwrap_or_default();
    assert!(fp.contains("reserve_order"), "{fp}");
}

#[test]
fn a_redis_command_wrong_for_the_data_is_a_handler_defect_like_a_rejected_query() {
    // ioredis: the key holds a string, the code asks for a list.
    let t = trace(vec![
        sp(1, None, "catalog", SERVER, "GET /recs", 0, 100)
            .http(503)
            .error(),
        sp(2, Some(1), "catalog", INTERNAL, "request handler", 1, 99).exception(
            "ServiceUnavailableError",
            "recommendations unavailable",
            "",
        ),
        sp(3, Some(2), "catalog", CLIENT, "lrange", 10, 12)
            .attr("db.system", "redis")
            .error()
            .exception(
                "ReplyError",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                "",
            ),
    ]);
    let cfg = AnalysisConfig {
        error_statuses: vec![503],
        ..AnalysisConfig::default()
    };
    let v = analyze_trace(&t, &cfg, 0).remove(0);
    assert_eq!(
        v.classification,
        Classification::DeterministicHandlerDefect,
        "{:#?}",
        v.evidence
    );
    assert_eq!(v.origin.as_ref().map(|o| o.name.as_str()), Some("lrange"));
}

#[test]
fn a_query_the_database_rejects_is_a_handler_defect_not_a_dependency_failure() {
    let t = trace(vec![
        sp(1, None, "orders", SERVER, "GET /orders/<id>", 0, 100)
            .http(500)
            .error()
            .exception(
                "sqlalchemy.exc.ProgrammingError",
                "(psycopg2.errors.UndefinedColumn) column orders.discount_code does not exist",
                "Traceback (most recent call last):\n  File \"/srv/app/orders/views.py\", line 30, in get_order\n    row = session.execute(q).one()\nsqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedColumn) column orders.discount_code does not exist\n",
            ),
        sp(2, Some(1), "orders", CLIENT, "SELECT orders", 10, 20)
            .attr("db.system", "postgresql")
            .attr("db.response.status_code", "42703")
            .error()
            .exception(
                "psycopg2.errors.UndefinedColumn",
                "column orders.discount_code does not exist",
                "",
            ),
    ]);
    let v = one(&t);
    assert_eq!(
        v.classification,
        Classification::DeterministicHandlerDefect,
        "{:#?}",
        v.evidence
    );
    assert_eq!(
        v.origin.as_ref().map(|o| o.name.as_str()),
        Some("SELECT orders")
    );
    assert!(has(&v, "rejecting the query"), "{:#?}", v.evidence);
    assert!(v
        .fingerprint
        .as_deref()
        .unwrap_or_default()
        .contains("get_order"));
}

#[test]
fn a_database_that_times_out_or_deadlocks_is_still_a_dependency_failure() {
    for (ty, msg) in [
        (
            "sqlalchemy.exc.OperationalError",
            "(psycopg2.errors.QueryCanceled) canceling statement due to statement timeout",
        ),
        (
            "psycopg2.errors.LockNotAvailable",
            "could not obtain lock on row in relation \"orders\"",
        ),
        ("sqlite3.OperationalError", "database is locked"),
    ] {
        let t = trace(vec![
            sp(1, None, "orders", SERVER, "GET /orders/<id>", 0, 100)
                .http(500)
                .error(),
            sp(2, Some(1), "orders", CLIENT, "SELECT orders", 10, 90)
                .attr("db.system", "postgresql")
                .error()
                .exception(ty, msg, ""),
        ]);
        let v = one(&t);
        assert_eq!(
            v.classification,
            Classification::LateDependencyFailure,
            "{ty}: {:#?}",
            v.evidence
        );
        assert!(
            v.confidence >= 0.75,
            "{ty}: a recognised timeout or lock failure: {}",
            v.confidence
        );
    }
}

#[test]
fn sqlite_no_such_table_is_a_rejected_query() {
    let t = trace(vec![
        sp(1, None, "orders", SERVER, "GET /orders/<id>", 0, 100)
            .http(500)
            .error(),
        sp(2, Some(1), "orders", CLIENT, "SELECT orders.sqlite", 10, 12)
            .attr("db.system", "sqlite")
            .error()
            .exception("sqlite3.OperationalError", "no such table: orderz", ""),
    ]);
    assert_eq!(
        one(&t).classification,
        Classification::DeterministicHandlerDefect
    );
}

// ---- shapes from the Node zoo (Express 5, Fastify, NestJS under auto-instrumentation)

/// The Node SDK truncates span starts to whole milliseconds, so the error responder's
/// own throw can carry an event time *before* the handler's error it was handling. The
/// handler's error bubbled up through every layer (recorded three times); the
/// responder's throw is recorded once, on a sibling branch: that one ended the request.
#[test]
fn an_error_responder_that_throws_is_the_origin_even_when_the_clock_says_it_came_first() {
    let t = trace(vec![
        sp(1, None, "catalog", SERVER, "POST /cart/validate", 0, 6).http(500),
        sp(
            2,
            Some(1),
            "catalog",
            INTERNAL,
            "middleware - patched",
            1,
            4,
        )
        .exception("invalid_cart", "1 cart line(s) invalid", ""),
        sp(3, Some(2), "catalog", INTERNAL, "request handler", 1, 4)
            .error()
            .exception("invalid_cart", "1 cart line(s) invalid", ""),
        sp(
            4,
            Some(3),
            "catalog",
            INTERNAL,
            "request handler - /cart/validate",
            1,
            4,
        )
        .exception("invalid_cart", "1 cart line(s) invalid", ""),
        sp(
            5,
            Some(1),
            "catalog",
            INTERNAL,
            "middleware - errorResponder",
            1,
            4,
        )
        .shift_ns(0, -500_000)
        .exception("TypeError", "Converting circular structure to JSON", ""),
    ]);
    let v = one(&t);
    assert_eq!(v.classification, Classification::DeterministicHandlerDefect);
    assert_eq!(
        v.origin.as_ref().map(|o| o.name.as_str()),
        Some("middleware - errorResponder"),
        "{:#?}",
        v.evidence
    );
}

/// NestJS: the exception filter's own TypeError is recorded on the router spans that
/// enclose the controller spans holding the original error: the enclosing one is later.
#[test]
fn an_exception_recorded_on_an_enclosing_span_replaces_the_inner_one() {
    let t = trace(vec![
        sp(1, None, "edge", SERVER, "POST /cart", 0, 5).http(500),
        sp(
            2,
            Some(1),
            "edge",
            INTERNAL,
            "request handler - /cart",
            0,
            3,
        )
        .exception("TypeError", "Converting circular structure to JSON", ""),
        sp(
            3,
            Some(2),
            "edge",
            INTERNAL,
            "CartController.addToCart",
            1,
            2,
        )
        .attr("http.route", "/cart")
        .attr("http.url", "http://127.0.0.1:3000/cart")
        .exception("validation_failed", "qty must be positive", ""),
    ]);
    let v = one(&t);
    assert_eq!(
        v.origin.as_ref().map(|o| o.name.as_str()),
        Some("request handler - /cart"),
        "{:#?}",
        v.evidence
    );
}

/// NestJS controller spans copy `http.url` and `http.method` from the request and name
/// the route: they are the serving side's code, not HTTP client calls.
#[test]
fn a_framework_span_that_names_the_route_is_not_a_call() {
    let t = trace(vec![
        sp(1, None, "catalog", SERVER, "GET /items/:sku", 0, 10).http(500),
        sp(2, Some(1), "catalog", INTERNAL, "ItemsController.getItem", 1, 9)
            .attr("http.route", "/items/:sku")
            .attr("http.url", "http://127.0.0.1:3001/items/SKU-3")
            .attr("http.method", "GET")
            .error()
            .exception(
                "TypeError",
                "Cannot read properties of null (reading 'carrier')",
                "TypeError: Cannot read properties of null (reading 'carrier')\n    at ItemsController.getItem (/srv/app/dist/catalog/main.js:40:31)\n",
            ),
    ]);
    let v = one(&t);
    assert_eq!(
        v.classification,
        Classification::DeterministicHandlerDefect,
        "{:#?}",
        v.evidence
    );
}

/// Fastify: the `onRequest` hook's span ends at once and the route handler, with the
/// database call below it, runs in its context for 1.5 s. The request waited for that.
#[test]
fn work_that_outlives_its_parent_on_the_same_clock_stays_on_the_critical_path() {
    let t = trace(vec![
        sp(1, None, "catalog", SERVER, "GET /reports", 0, 1510).http(500),
        sp(
            2,
            Some(1),
            "catalog",
            INTERNAL,
            "middleware - requestContext",
            1,
            1,
        ),
        sp(
            3,
            Some(2),
            "catalog",
            INTERNAL,
            "request handler - slowMovers",
            1,
            1508,
        )
        .error()
        .exception("Error", "Query read timeout", ""),
        sp(
            4,
            Some(3),
            "catalog",
            CLIENT,
            "pg.query:SELECT zoo",
            2,
            1505,
        )
        .attr("db.system", "postgresql")
        .error()
        .exception("Error", "Query read timeout", ""),
    ]);
    let v = one(&t);
    let blame = v.blame.as_ref().expect("blame");
    assert_eq!(blame.name, "pg.query:SELECT zoo", "{:#?}", v.evidence);
    assert!(blame.share > 0.9, "{}", blame.share);
}

/// Two different dependency failures behind the same wrapper helper called from one
/// anonymous route handler: the cause's type keeps them apart, the wrapper's call site
/// keeps the code path.
#[test]
fn causes_behind_one_wrapper_helper_keep_their_own_fingerprints() {
    let wrapper = |msg: &str, line: u32| {
        format!("UpstreamError: {msg}\n    at requestJson (/srv/app/lib/upstream.js:30:17)\n    at async /srv/app/catalog/app.js:{line}:12\n")
    };
    let fp = |cause_ty: &str, cause_msg: &str, wrapper_msg: &str, route: &str| {
        let t = trace(vec![
            sp(1, None, "catalog", SERVER, route, 0, 400)
                .http(500)
                .attr("http.route", route.split(' ').nth(1).unwrap_or("/"))
                .attr("http.request.method", "GET"),
            sp(2, Some(1), "catalog", INTERNAL, "request handler", 1, 399)
                .error()
                .exception("UpstreamError", wrapper_msg, &wrapper(wrapper_msg, 66)),
            sp(3, Some(2), "catalog", CLIENT, "GET", 2, 302)
                .attr("url.full", "http://127.0.0.1:4000/rates/fx")
                .error()
                .exception(cause_ty, cause_msg, &format!("{cause_ty}: {cause_msg}\n    at listOnTimeout (node:internal/timers:581:17)\n")),
        ]);
        one(&t).fingerprint_id.expect("fingerprint")
    };
    let timeout = fp(
        "TimeoutError",
        "The operation was aborted due to timeout",
        "pricing request failed: The operation was aborted due to timeout",
        "GET /products/:sku/fx",
    );
    let refused = fp(
        "ECONNREFUSED",
        "connect ECONNREFUSED 127.0.0.1:4000",
        "pricing request failed: fetch failed",
        "GET /products/:sku/fx",
    );
    let timeout_elsewhere = fp(
        "TimeoutError",
        "The operation was aborted due to timeout",
        "pricing request failed: The operation was aborted due to timeout",
        "GET /products/:sku/tax",
    );
    let timeout_again = fp(
        "TimeoutError",
        "The operation was aborted due to timeout",
        "pricing request failed: The operation was aborted due to timeout",
        "GET /products/:sku/fx",
    );
    assert_ne!(timeout, refused, "different causes, different groups");
    assert_ne!(
        timeout, timeout_elsewhere,
        "an anonymous handler is told apart by its route"
    );
    assert_eq!(timeout, timeout_again, "the same bug, the same group");
}

/// A real Python message ends with its cause; a verdict keeps the whole of it (up to
/// 4 KiB, with head and tail around a marker beyond that).
#[test]
fn the_origin_error_keeps_the_end_of_a_long_message() {
    let msg = format!(
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /v1/{} (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] Connection refused'))",
        "a".repeat(180)
    );
    let t = trace(vec![
        sp(1, None, "api", SERVER, "GET /a", 0, 10).http(500),
        sp(2, Some(1), "api", CLIENT, "GET", 1, 5)
            .attr("url.full", "http://127.0.0.1:1/v1/a")
            .error()
            .exception("requests.exceptions.ConnectionError", &msg, ""),
    ]);
    let v = one(&t);
    let error = &v.origin.as_ref().expect("origin").error;
    assert!(
        error.ends_with("[Errno 111] Connection refused'))"),
        "{error}"
    );
    let huge = "x".repeat(10_000) + " the cause";
    let cut = verdict::bounded(&huge, verdict::ERROR_TEXT_MAX_BYTES);
    assert!(cut.len() <= verdict::ERROR_TEXT_MAX_BYTES, "{}", cut.len());
    assert!(
        cut.ends_with(" the cause") && cut.contains("bytes cut]"),
        "{cut}"
    );
}

/// ASGI `http send` spans get status ERROR from the 5xx they send, with no exception and
/// no message of their own: they report the 500, they are not its origin.
#[test]
fn an_asgi_send_span_in_error_only_for_the_status_it_sent_is_not_an_origin() {
    let t = trace(vec![
        sp(1, None, "catalog", SERVER, "GET /inventory/sync", 0, 3)
            .http(500)
            .error(),
        sp(
            2,
            Some(1),
            "catalog",
            INTERNAL,
            "GET /inventory/sync http send",
            2,
            2,
        )
        .attr("http.status_code", 500i64)
        .error(),
    ]);
    let v = one(&t);
    assert_eq!(
        v.classification,
        Classification::Inconclusive,
        "{:#?}",
        v.evidence
    );
    assert!(v.origin.is_none());
}

/// psycopg_pool's timeout, raised through Django with no span for the checkout.
#[test]
fn a_psycopg_pool_timeout_without_a_call_span_is_a_dependency_failure() {
    let t = trace(vec![sp(
        1,
        None,
        "catalog",
        SERVER,
        "GET exports/<str:kind>",
        0,
        310,
    )
    .http(500)
    .error()
    .exception(
        "django.db.utils.OperationalError",
        "couldn't get a connection after 0.30 sec",
        "",
    )]);
    let v = one(&t);
    assert_eq!(
        v.classification,
        Classification::LateDependencyFailure,
        "{:#?}",
        v.evidence
    );
}
