//! The direct Grafana data-source path (docs/contract.md §5b): the `/api/v1/grafana/*` endpoints
//! answer as the Infinity data source's backend parser expects (flat rows, epoch-ms
//! windows, zero-filled long-format series, JSON 400s), every HTTP operation conforms to
//! `openapi/faultline.yaml` (schemathesis), and the shipped Infinity dashboard queries
//! only described endpoints and gets rows back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

use crate::support::{int_kv, python, str_kv, Faultline};

const WAIT: Duration = Duration::from_secs(30);

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One failing request: a SERVER span of `service` on `route` that answered 500 after
/// recording `exception_type`, in release `release`, for tenant `tenant`.
fn failing_request(
    trace: u8,
    service: &str,
    route: &str,
    exception_type: &str,
) -> ExportTraceServiceRequest {
    let end = now_ms() * 1_000_000;
    let stack = format!(
        "Traceback (most recent call last):\n  File \"/srv/app/{service}.py\", line 10, in handler\n    raise {exception_type}('boom')\n{exception_type}: boom\n"
    );
    let span = Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace; 8],
        name: format!("POST {route}"),
        kind: 2,
        start_time_unix_nano: end - 40_000_000,
        end_time_unix_nano: end,
        attributes: vec![
            str_kv("http.route", route),
            int_kv("http.response.status_code", 500),
            str_kv("app.tenant", "acme"),
        ],
        events: vec![Event {
            time_unix_nano: end - 1_000_000,
            name: "exception".into(),
            attributes: vec![
                str_kv("exception.type", exception_type),
                str_kv("exception.message", "boom"),
                str_kv("exception.stacktrace", &stack),
            ],
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    str_kv("service.name", service),
                    str_kv("service.version", "2026.11.1"),
                    str_kv("cloud.region", "eu-west-1"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn trace_hex(trace: u8) -> String {
    format!("{trace:02x}").repeat(16)
}

/// Sends the failing requests over OTLP/HTTP and waits for each verdict.
fn send_failing(f: &Faultline, requests: &[(u8, &str, &str, &str)]) {
    let client = reqwest::blocking::Client::new();
    for &(trace, service, route, exception) in requests {
        let resp = client
            .post(format!("{}/v1/traces", f.http_endpoint()))
            .header("content-type", "application/x-protobuf")
            .body(failing_request(trace, service, route, exception).encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for &(trace, ..) in requests {
        let deadline = Instant::now() + WAIT;
        while f
            .get(&format!("/api/v1/verdicts/{}", trace_hex(trace)))
            .status()
            != 200
        {
            assert!(Instant::now() < deadline, "no verdict for trace {trace}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// GET returning (status, JSON body).
fn get_json(f: &Faultline, path: &str) -> (u16, Value) {
    let resp = f.get(path);
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{path}: {ct}");
    (status, resp.json().expect("json body"))
}

fn rows(f: &Faultline, path: &str) -> Vec<Value> {
    let (status, body) = get_json(f, path);
    assert_eq!(status, 200, "{path}: {body}");
    body.as_array()
        .unwrap_or_else(|| panic!("{path}: not an array: {body}"))
        .clone()
}

/// Starts faultline and sends four failing requests: three of one bug in `orders`, one of
/// another in `billing`. Returns the instance and a window `[from, to)` around them.
fn with_failures() -> (Faultline, u64, u64) {
    let f = Faultline::start(&["--trace-idle", "200ms"]);
    let from = now_ms();
    send_failing(
        &f,
        &[
            (1, "orders", "/checkout", "KeyError"),
            (2, "orders", "/checkout", "KeyError"),
            (3, "orders", "/checkout", "KeyError"),
            (4, "billing", "/pay", "ValueError"),
        ],
    );
    (f, from, now_ms() + 1)
}

#[test]
fn verdict_and_fingerprint_tables_are_flat_rows_filtered_by_the_window() {
    let (f, from, to) = with_failures();
    let w = format!("from={from}&to={to}");

    let vs = rows(&f, &format!("/api/v1/grafana/verdicts?{w}"));
    assert_eq!(vs.len(), 4, "{vs:#?}");
    for v in &vs {
        let o = v.as_object().unwrap();
        assert!(
            o.values().all(|x| !x.is_object() && !x.is_array()),
            "flat: {v}"
        );
        let t = v["time"].as_u64().unwrap();
        assert!((from..to).contains(&t), "{t} outside [{from}, {to})");
        assert!(v["analyzed_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["classification"], "deterministic_handler_defect");
        assert_eq!(v["release"], "2026.11.1");
        assert_eq!(v["region"], "eu-west-1");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["status_code"], 500);
        assert!(v["fingerprint_id"].is_string() && v["blame_span"].is_string());
    }
    let times: Vec<u64> = vs.iter().map(|v| v["time"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|p| p[0] >= p[1]), "newest first");
    // Traces are analysed as each goes idle, not necessarily in the order they were sent.
    let billing = vs.iter().find(|v| v["service"] == "billing").unwrap();
    assert_eq!(billing["trace_id"], trace_hex(4));
    assert_eq!(billing["route"], "/pay");
    assert!(billing["origin_error"]
        .as_str()
        .unwrap()
        .contains("ValueError"));
    let newest_orders = vs.iter().find(|v| v["service"] == "orders").unwrap();

    // Filters.
    let n = |q: &str| rows(&f, &format!("/api/v1/grafana/verdicts?{w}&{q}")).len();
    assert_eq!(n("service=orders"), 3);
    assert_eq!(n("route=/pay"), 1);
    assert_eq!(n("classification=late_dependency_failure"), 0);
    assert_eq!(n("limit=2"), 2);
    assert_eq!(n("service="), 4, "an empty value is no filter");

    // The window excludes what lies outside it, on either side.
    let outside = [
        format!("from={to}&to={}", to + 3_600_000),
        format!("from=0&to={from}"),
    ];
    for q in &outside {
        assert!(rows(&f, &format!("/api/v1/grafana/verdicts?{q}")).is_empty());
        assert!(rows(&f, &format!("/api/v1/grafana/fingerprints?{q}")).is_empty());
    }
    // Without from/to: the last hour.
    assert_eq!(rows(&f, "/api/v1/grafana/verdicts").len(), 4);

    let groups = rows(&f, &format!("/api/v1/grafana/fingerprints?{w}"));
    assert_eq!(groups.len(), 2, "{groups:#?}");
    let g = &groups[0];
    assert!(g
        .as_object()
        .unwrap()
        .values()
        .all(|x| !x.is_object() && !x.is_array()));
    assert_eq!(g["count"], 3, "most frequent first");
    assert_eq!(g["total_count"], 3);
    assert_eq!(g["top_service"], "orders");
    assert_eq!(g["top_route"], "/checkout");
    assert_eq!(g["top_tenant"], "acme");
    assert_eq!(g["top_region"], "eu-west-1");
    assert_eq!(g["first_release"], "2026.11.1");
    assert_eq!(
        g["example_trace_id"], newest_orders["trace_id"],
        "the newest occurrence"
    );
    assert_eq!(g["fingerprint_id"], newest_orders["fingerprint_id"]);
    let (first, last) = (
        g["first_seen_ms"].as_u64().unwrap(),
        g["last_seen_ms"].as_u64().unwrap(),
    );
    assert!(from <= first && first <= last && last < to);
    assert_eq!(groups[1]["count"], 1);
    assert_eq!(
        rows(
            &f,
            &format!("/api/v1/grafana/fingerprints?{w}&service=billing")
        )
        .len(),
        1
    );
    assert_eq!(
        rows(&f, &format!("/api/v1/grafana/fingerprints?{w}&limit=1")).len(),
        1
    );
}

#[test]
fn series_are_zero_filled_aligned_buckets_of_bounded_number() {
    let (f, from, to) = with_failures();
    let step = 1_000;
    let start = from - from % step - 5 * step;
    let end = to + 5 * step;
    let expected_buckets = ((end - 1) / step - start / step + 1) as usize;

    let series = rows(
        &f,
        &format!("/api/v1/grafana/series?from={start}&to={end}&step={step}&by=service"),
    );
    assert_eq!(series.len(), expected_buckets * 2, "{series:#?}");
    let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
    let mut cells: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut last_time = 0;
    for r in &series {
        let o = r.as_object().unwrap();
        assert_eq!(o.len(), 3, "{{time, service, count}}: {r}");
        let t = r["time"].as_u64().unwrap();
        assert_eq!(t % step, 0, "aligned to the step");
        assert!((start..end).contains(&t));
        assert!(t >= last_time, "time ascending");
        last_time = t;
        let s = r["service"].as_str().unwrap().to_string();
        *per_service.entry(s.clone()).or_default() += r["count"].as_u64().unwrap();
        cells.insert((t, s));
    }
    assert_eq!(cells.len(), series.len(), "one row per bucket and service");
    assert_eq!(per_service["orders"], 3);
    assert_eq!(per_service["billing"], 1);
    let zeros = series.iter().filter(|r| r["count"] == 0).count();
    assert!(zeros >= series.len() - 4, "zero-filled: {zeros}");

    // By classification: all three always present; by route.
    let by_class = rows(
        &f,
        &format!("/api/v1/grafana/series?from={start}&to={end}&step={step}"),
    );
    assert_eq!(by_class.len(), expected_buckets * 3);
    let defects: u64 = by_class
        .iter()
        .filter(|r| r["classification"] == "deterministic_handler_defect")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(defects, 4);
    let by_route = rows(
        &f,
        &format!(
            "/api/v1/grafana/series?from={start}&to={end}&step={step}&by=route&service=orders"
        ),
    );
    assert_eq!(by_route.len(), expected_buckets);
    assert!(by_route.iter().all(|r| r["route"] == "/checkout"));

    // A window far past what one step can cover is answered in at most 1000 buckets.
    let wide = rows(
        &f,
        &format!(
            "/api/v1/grafana/series?from={}&to={end}&step=1",
            end - 7 * 86_400_000
        ),
    );
    let buckets: BTreeSet<u64> = wide.iter().map(|r| r["time"].as_u64().unwrap()).collect();
    assert!(
        buckets.len() <= 1_000 && buckets.len() >= 900,
        "{}",
        buckets.len()
    );
    let total: u64 = wide.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 4);
    // Nothing in the window: still zero-filled rows for the three classifications.
    let empty = rows(&f, "/api/v1/grafana/series?from=0&to=60000&step=60000");
    assert_eq!(empty.len(), 3);
    assert!(empty.iter().all(|r| r["count"] == 0 && r["time"] == 0));
}

#[test]
fn bad_parameters_are_json_400s() {
    let f = Faultline::start(&[]);
    for path in [
        "/api/v1/grafana/verdicts?from=abc",
        "/api/v1/grafana/verdicts?from=-1",
        "/api/v1/grafana/verdicts?from=1.5",
        "/api/v1/grafana/verdicts?from=now-1h",
        "/api/v1/grafana/verdicts?from=10&to=10",
        "/api/v1/grafana/verdicts?from=20&to=10",
        "/api/v1/grafana/verdicts?to=10000000000000",
        "/api/v1/grafana/verdicts?limit=0",
        "/api/v1/grafana/verdicts?limit=many",
        "/api/v1/grafana/verdicts?classification=bogus",
        "/api/v1/grafana/verdicts?from=1&from=2",
        "/api/v1/grafana/fingerprints?to=x",
        "/api/v1/grafana/fingerprints?limit=-3",
        "/api/v1/grafana/series?step=0",
        "/api/v1/grafana/series?step=1m",
        "/api/v1/grafana/series?by=tenant",
        "/api/v1/grafana/series?from=5&to=1",
        "/api/v1/verdicts?limit=1&limit=2",
        "/api/v1/fingerprints?limit=x",
    ] {
        let (status, body) = get_json(&f, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
}

/// The OpenAPI file as JSON (PyYAML comes with schemathesis in the test venv).
fn openapi() -> Value {
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(manifest().join("openapi/faultline.yaml"))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("openapi as json")
}

#[test]
fn every_http_operation_conforms_to_the_openapi_file() {
    let spec = openapi();
    let paths: BTreeSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/verdicts/{trace_id}",
        "/api/v1/verdicts",
        "/api/v1/fingerprints",
        "/api/v1/grafana/verdicts",
        "/api/v1/grafana/fingerprints",
        "/api/v1/grafana/series",
    ] {
        assert!(paths.contains(p), "{p} is not described");
    }

    let (f, _, _) = with_failures();
    // Schemathesis checks every response's status code, content type, headers and body
    // against the file, and that malformed parameters are refused. Not checked:
    // positive_data_acceptance, because two constraints are beyond OpenAPI (from < to;
    // the formats `since` accepts), and the auth and resource-lifecycle checks, which do
    // not apply. Bounded by examples per operation and a time budget.
    let report = tempfile::tempdir().unwrap();
    let st = python().with_file_name("schemathesis");
    let out = Command::new(&st)
        .arg("run")
        .arg(manifest().join("openapi/faultline.yaml"))
        .args(["--url", &format!("http://{}", f.api)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            "--max-time",
            "40",
            "--request-timeout",
            "5",
            "--seed",
            "20261125",
            "--workers",
            "2",
            "--no-color",
        ])
        .current_dir(report.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found nonconforming responses:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("9 selected"), "{stdout}");
}

/// Replaces Grafana's variables in `s` as a dashboard would at query time.
fn interpolate(s: &str, vars: &[(&str, String)]) -> String {
    let mut s = s.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("${{{k}}}"), v);
    }
    assert!(!s.contains('$'), "an unknown variable is left in {s:?}");
    s
}

#[test]
fn the_infinity_dashboard_queries_described_endpoints_and_gets_rows() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(manifest().join("grafana/dashboards/faultline-direct.json"))
            .unwrap(),
    )
    .expect("the dashboard parses");
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds_var = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data-source variable");
    assert_eq!(ds_var["query"], "yesoreyeram-infinity-datasource");
    let ds_ref = format!("${{{}}}", ds_var["name"].as_str().unwrap());

    let spec = openapi();
    let (f, from, to) = with_failures();
    let values = [
        ("faultline_url", format!("http://{}", f.api)),
        ("__from", (from - 60_000).to_string()),
        ("__to", to.to_string()),
        ("__interval_ms", "1000".to_string()),
        ("service", String::new()),
    ];
    for name in ["faultline_url", "service"] {
        assert!(
            vars.iter().any(|v| v["name"] == name),
            "{name} is a dashboard variable"
        );
    }

    let mut queried = BTreeSet::new();
    let mut panels = 0;
    for panel in dash["panels"].as_array().unwrap() {
        panels += 1;
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["type"], "yesoreyeram-infinity-datasource");
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str());
            assert_eq!(t["parser"], "backend", "alerting needs the backend parser");
            assert_eq!(t["type"], "json");
            assert_eq!(t["source"], "url");
            assert_eq!(t["root_selector"], "", "the answers are arrays of rows");
            assert!(["table", "timeseries"].contains(&t["format"].as_str().unwrap()));
            // Base-URL-free: the URL is the faultline variable plus a described path.
            let url = t["url"].as_str().unwrap();
            let path = url
                .strip_prefix("${faultline_url}")
                .unwrap_or_else(|| panic!("{url} does not start with ${{faultline_url}}"));
            let op = &spec["paths"][path]["get"];
            assert!(op.is_object(), "{path} is not a GET in the OpenAPI file");
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| match p["$ref"].as_str() {
                    Some(r) => {
                        let name = r.rsplit('/').next().unwrap();
                        spec["components"]["parameters"][name]["name"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    }
                    None => p["name"].as_str().unwrap().to_string(),
                })
                .collect();
            let mut query = Vec::new();
            for p in t["url_options"]["params"].as_array().unwrap() {
                let key = p["key"].as_str().unwrap();
                assert!(declared.contains(key), "{path}: {key} is not declared");
                query.push(format!(
                    "{key}={}",
                    interpolate(p["value"].as_str().unwrap(), &values)
                ));
            }
            let full = format!("{}?{}", interpolate(url, &values), query.join("&"));
            let resp = reqwest::blocking::get(&full).unwrap();
            assert_eq!(resp.status(), 200, "{full}");
            let body: Value = resp.json().unwrap();
            let rows = body.as_array().expect("rows");
            assert!(!rows.is_empty(), "{full}: no rows");
            let nonzero = rows.iter().any(|r| r.get("count").is_none_or(|c| c != 0));
            assert!(nonzero, "{full}: only zeros");
            // Every column the panel reads is a field of the rows.
            for c in t["columns"].as_array().unwrap() {
                let sel = c["selector"].as_str().unwrap();
                assert!(rows[0].get(sel).is_some(), "{full}: no column {sel}");
                let ty = c["type"].as_str().unwrap();
                assert!(
                    ["string", "number", "timestamp_epoch"].contains(&ty),
                    "{sel}: {ty}"
                );
            }
            queried.insert(path.to_string());
        }
    }
    assert!(panels >= 3);
    assert_eq!(
        queried.into_iter().collect::<Vec<_>>(),
        [
            "/api/v1/grafana/fingerprints",
            "/api/v1/grafana/series",
            "/api/v1/grafana/verdicts"
        ],
        "a verdict table, a fingerprint table and a series"
    );
}
