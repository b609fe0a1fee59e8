//! `/metrics` as docs/contract.md §5 and §5b say: the Prometheus text passes `promtool check
//! metrics`, the OpenMetrics page passes Python's strict parser, a real Prometheus
//! (Debian's 2.42, exemplar storage on) scrapes the verdict series and their trace
//! exemplars, every PromQL query of the shipped dashboards returns data from it, and
//! `--max-series` folds extra label sets into the `otel_metric_overflow` series.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::Value;

use crate::support::{free_port, kv, metric_value, python, str_kv, Faultline, Guard};

const WAIT: Duration = Duration::from_secs(20);
const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const PY_STACK: &str = "Traceback (most recent call last):\n  File \"/srv/app/.venv/lib/python3.11/site-packages/flask/app.py\", line 1484, in full_dispatch_request\n    rv = self.dispatch_request()\n  File \"/srv/app/checkout/handlers.py\", line 42, in place_order\n    sku = item[\"sku\"]\nKeyError: 'sku'\n";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// One failing request: a SERVER entry on `route` answering 500 with an exception event,
/// and a slow database call under it. Returns the request and the trace id (hex).
pub(crate) fn failing_trace(seq: u8, route: &str) -> (ExportTraceServiceRequest, String) {
    let trace_id: Vec<u8> = (0..16).map(|i| 0xa0 ^ seq.wrapping_add(i)).collect();
    let start = now_ns() - 200_000_000;
    let entry = Span {
        trace_id: trace_id.clone(),
        span_id: vec![seq, 1, 2, 3, 4, 5, 6, 7],
        name: format!("POST {route}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 120_000_000,
        attributes: vec![
            str_kv("http.request.method", "POST"),
            str_kv("http.route", route),
            kv("http.response.status_code", any_value::Value::IntValue(500)),
        ],
        events: vec![span::Event {
            time_unix_nano: start + 110_000_000,
            name: "exception".into(),
            attributes: vec![
                str_kv("exception.type", "KeyError"),
                str_kv("exception.message", "'sku'"),
                str_kv("exception.stacktrace", PY_STACK),
            ],
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let query = Span {
        trace_id: trace_id.clone(),
        span_id: vec![seq, 9, 9, 9, 9, 9, 9, 9],
        parent_span_id: entry.span_id.clone(),
        name: "SELECT orders".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start + 5_000_000,
        end_time_unix_nano: start + 100_000_000,
        attributes: vec![str_kv("db.system.name", "postgresql")],
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    str_kv("service.name", "checkout"),
                    str_kv("service.version", "1.4.2"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![entry, query],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let hex = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    (request, hex)
}

/// Sends one failing trace per route over OTLP/gRPC and waits for their verdicts.
fn send_failing(f: &Faultline, routes: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    let requests: Vec<_> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (req, id) = failing_trace(i as u8 + 1, r);
            ids.push(id);
            req
        })
        .collect();
    f.export_grpc(requests);
    let made = f.wait_metric("faultline_verdicts_total", routes.len() as f64, WAIT);
    assert_eq!(made, routes.len() as f64, "verdicts made");
    ids
}

fn openmetrics(f: &Faultline) -> (String, String) {
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://{}/metrics", f.api))
        .header("accept", OPENMETRICS_ACCEPT)
        .send()
        .unwrap();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, resp.text().unwrap())
}

/// Debian's `prometheus` package brings `prometheus` and `promtool`; install it when
/// missing (we run as root in CI; `apt-get update` only when the install needs it).
fn ensure_prometheus() {
    let present = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present("promtool") && present("prometheus") {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "cannot install Debian's prometheus package");
    }
}

/// Runs `cmd` with `text` on its standard input and returns what it printed.
fn run_with_stdin(cmd: &mut Command, text: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn promtool_check(text: &str) -> std::process::Output {
    run_with_stdin(Command::new("promtool").args(["check", "metrics"]), text)
}

fn strict_openmetrics_parse(text: &str) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox/py/parse_openmetrics.py");
    let out = run_with_stdin(Command::new(python()).arg(script), text);
    assert!(
        out.status.success(),
        "the strict OpenMetrics parser refused the page: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Prometheus server on loopback scraping `target` every second, exemplar storage on;
/// killed (and its storage removed) when dropped.
struct Prometheus {
    _process: Guard,
    _storage: tempfile::TempDir,
    base: String,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let storage = tempfile::tempdir().unwrap();
        // Prometheus 2.42 has no `scrape_protocols` (2.49+); its scrape Accept header
        // already lists OpenMetrics first, which is what exemplars need.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: faultline\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = storage.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                storage.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            _process: Guard(process),
            _storage: storage,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + WAIT;
        while !reqwest::blocking::get(format!("{}/-/ready", p.base))
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), params).unwrap();
        let v: Value = reqwest::blocking::get(url).unwrap().json().unwrap();
        assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
        v["data"].clone()
    }

    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", promql)]);
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `promql` until it returns something (first samples take ~5 s: Prometheus
    /// batches target updates).
    fn wait_for(&self, promql: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.query(promql);
            if !r.is_empty() {
                return r;
            }
            assert!(Instant::now() < deadline, "no data for {promql}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Every PromQL expression of a dashboard that targets the Prometheus data source
/// (panels, rows' nested panels, query variables), with Grafana's variables substituted:
/// `$__rate_interval`/`$__interval` → `1m`, `$__range` → `5m`, any other variable (a
/// `=~` regex in our queries) → `.*`. `label_values(m, l)` becomes `group by (l) (m)`.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn is_prometheus(ds: &Value) -> bool {
        ds["type"] == "prometheus" || ds.as_str().is_some_and(|s| s.contains("datasource"))
    }
    fn collect(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            collect(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                let ds = if t["datasource"].is_null() {
                    &p["datasource"]
                } else {
                    &t["datasource"]
                };
                if let (true, Some(expr)) = (is_prometheus(ds), t["expr"].as_str()) {
                    out.push((
                        p["title"].as_str().unwrap_or("?").to_string(),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] == "query" && is_prometheus(&v["datasource"]) {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or("");
            let label_values = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(','));
            let promql = match label_values {
                Some((metric, label)) => format!("group by ({}) ({})", label.trim(), metric.trim()),
                None => q.to_string(),
            };
            out.push((format!("variable {}", v["name"]), promql));
        }
    }
    out.into_iter()
        .map(|(title, expr)| (title, substitute(&expr)))
        .collect()
}

fn substitute(expr: &str) -> String {
    let mut s = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "1m")
        .replace("${__interval}", "1m")
        .replace("$__range", "5m")
        .replace("${__range}", "5m");
    // Remaining `$name` / `${name}` / `${name:format}` are template variables.
    while let Some(i) = s.find('$') {
        let rest = &s[i + 1..];
        let len = if let Some(inner) = rest.strip_prefix('{') {
            inner.find('}').map(|e| e + 2).unwrap_or(rest.len())
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        };
        s.replace_range(i..i + 1 + len, ".*");
    }
    s
}

#[test]
fn both_expositions_are_valid_and_only_openmetrics_carries_exemplars() {
    ensure_prometheus();
    let f = Faultline::start(&["--trace-idle", "100ms"]);
    let ids = send_failing(&f, &["/orders/{order_id}", "/cart"]);

    let prom = f.metrics();
    let check = promtool_check(&prom);
    assert!(
        check.status.success() && check.stdout.is_empty() && check.stderr.is_empty(),
        "promtool check metrics: {}{}\n{prom}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !prom.contains(" # {"),
        "no exemplars in the text format:\n{prom}"
    );
    assert!(!prom.contains("# EOF"));
    let cart = prom
        .lines()
        .find(|l| {
            l.starts_with("faultline_errors_total{service_name=\"checkout\",http_route=\"/cart\",")
        })
        .unwrap_or_else(|| panic!("no /cart series:\n{prom}"));
    assert!(cart.ends_with(" 1"), "{cart}");

    let (content_type, om) = openmetrics(&f);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(om.ends_with("# EOF\n"));
    let parsed = strict_openmetrics_parse(&om);
    let exemplars = parsed["exemplars"].as_array().unwrap();
    for id in &ids {
        assert!(
            exemplars
                .iter()
                .any(|e| e["sample"] == "faultline_errors_total"
                    && e["exemplar"]["trace_id"] == *id.as_str()),
            "no errors_total exemplar for {id}: {exemplars:?}"
        );
    }
    assert!(
        exemplars
            .iter()
            .any(|e| e["sample"] == "faultline_error_budget_share_bucket"),
        "histogram buckets carry exemplars: {exemplars:?}"
    );
    for e in exemplars {
        let span = e["exemplar"]["span_id"].as_str().unwrap();
        assert_eq!(span.len(), 16, "{e}");
    }
}

#[test]
fn a_real_prometheus_scrapes_series_exemplars_and_every_dashboard_query_has_data() {
    ensure_prometheus();
    let f = Faultline::start(&["--trace-idle", "100ms"]);
    let ids = send_failing(&f, &["/orders/{order_id}", "/orders/{order_id}", "/cart"]);
    let prometheus = Prometheus::start(f.api);

    let series = prometheus.wait_for("faultline_errors_total{http_route=\"/cart\"}");
    assert_eq!(series.len(), 1, "{series:?}");
    let verdict: Value = f
        .get(&format!("/api/v1/verdicts/{}", ids[2]))
        .json()
        .unwrap();
    let labels = &series[0]["metric"];
    assert_eq!(labels["service_name"], "checkout");
    assert_eq!(labels["http_route"], "/cart");
    assert_eq!(labels["classification"], verdict["classification"]);
    assert_eq!(labels["blame_service"], verdict["blame"]["service"]);
    assert_eq!(labels["blame_span"], verdict["blame"]["name"]);
    assert_eq!(labels["job"], "faultline");
    let orders = prometheus.query("sum(faultline_errors_total{http_route=\"/orders/{order_id}\"})");
    assert_eq!(orders[0]["value"][1], "2", "{orders:?}");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let exemplars = prometheus.api(
        "/api/v1/query_exemplars",
        &[
            ("query", "faultline_errors_total{http_route=\"/cart\"}"),
            ("start", &start),
            ("end", &end),
        ],
    );
    let found: Vec<&Value> = exemplars
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap())
        .collect();
    assert!(
        found
            .iter()
            .any(|e| e["labels"]["trace_id"] == *ids[2].as_str()
                && e["labels"]["span_id"]
                    .as_str()
                    .is_some_and(|s| s.len() == 16)),
        "exemplar with trace id {}: {exemplars}",
        ids[2]
    );
    let histogram = prometheus.api(
        "/api/v1/query_exemplars",
        &[
            ("query", "faultline_error_budget_share_bucket"),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert!(
        !histogram.as_array().unwrap().is_empty(),
        "bucket exemplars: {histogram}"
    );

    // Two scrapes at least, so rate() and increase() have a window to work with.
    std::thread::sleep(Duration::from_secs(2));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (title, promql) in dashboard_queries(&dashboard) {
            let result = prometheus.query(&promql);
            assert!(
                !result.is_empty(),
                "{}: panel {title:?}: no data for {promql}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} dashboard queries found");
}

#[test]
fn label_sets_beyond_max_series_fold_into_the_overflow_series_and_are_counted() {
    let f = Faultline::start(&["--trace-idle", "100ms", "--max-series", "3"]);
    send_failing(&f, &["/a", "/b", "/c", "/d", "/e", "/f"]);
    let page = f.metrics();
    let errors: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("faultline_errors_total{"))
        .collect();
    assert_eq!(
        errors.len(),
        4,
        "three label sets and the overflow series: {errors:?}"
    );
    assert_eq!(
        metric_value(
            &page,
            "faultline_errors_total{otel_metric_overflow=\"true\"}"
        ),
        3.0,
        "{page}"
    );
    assert_eq!(
        metric_value(
            &page,
            "faultline_metric_series_overflow_total{metric=\"faultline_errors_total\"}"
        ),
        3.0
    );
    // Which three are admitted depends on the order traces complete; three are.
    let admitted = ["/a", "/b", "/c", "/d", "/e", "/f"]
        .iter()
        .filter(|r| page.contains(&format!("http_route=\"{r}\"")))
        .count();
    assert_eq!(admitted, 3, "{page}");
}

#[test]
fn the_dashboard_variable_substitution_covers_grafana_forms() {
    assert_eq!(
        substitute(
            "rate(x{a=~\"$service\", b=~\"${route}\", c=~\"${x:regex}\"}[$__rate_interval])"
        ),
        "rate(x{a=~\".*\", b=~\".*\", c=~\".*\"}[1m])"
    );
}
