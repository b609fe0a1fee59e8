//! `faultline analyze`: captures written with the OpenTelemetry Python SDK's own OTLP
//! encoder, laid out as the Collector's `file` exporter writes them (OTLP/JSON lines,
//! length-prefixed protobuf) and as one raw protobuf request, give the verdicts the
//! running service gives for the same spans, sent to it by the SDK's OTLP/HTTP exporter
//! in the same run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{python, Faultline};

/// The capture files and what the service said about the same spans.
struct Captured {
    dir: PathBuf,
    failing: Vec<String>,
    healthy: Vec<String>,
    /// `GET /api/v1/verdicts/{id}` for each failing trace, in `failing` order.
    served: Vec<Value>,
    /// `GET /api/v1/fingerprints`.
    fingerprints: Value,
}

impl Captured {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Records the requests once (the script pauses between them) and stops the service.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("analyze-capture");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A short idle, well under the script's pause: each request is analysed before
        // the next one starts, in the order `faultline analyze` uses.
        let f = Faultline::start(&["--trace-idle", "300ms"]);
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox/py/capture_spans.py");
        let out = Command::new(python())
            .arg(script)
            .arg(f.http_endpoint())
            .arg(&dir)
            .arg("1.5")
            .output()
            .expect("python capture");
        assert!(
            out.status.success(),
            "capture failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: Value =
            serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
        let list = |k: &str| -> Vec<String> {
            ids[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let (failing, healthy) = (list("failing"), list("healthy"));
        let served: Vec<Value> = failing.iter().map(|id| served_verdict(&f, id)).collect();
        for id in &healthy {
            assert_eq!(
                f.get(&format!("/api/v1/verdicts/{id}")).status(),
                404,
                "healthy trace {id} has no verdict"
            );
        }
        let fingerprints: Value = f.get("/api/v1/fingerprints").json().unwrap();
        let (status, log) = f.terminate();
        assert!(status.success(), "{log}");
        Captured {
            dir,
            failing,
            healthy,
            served,
            fingerprints,
        }
    })
}

fn served_verdict(f: &Faultline, trace_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = f.get(&format!("/api/v1/verdicts/{trace_id}"));
        if resp.status() == 200 {
            return resp.json().unwrap();
        }
        assert!(Instant::now() < deadline, "no verdict for {trace_id}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `faultline analyze ARGS`, feeding `stdin`.
fn analyze(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("analyze")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faultline analyze");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn analyze_file(file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![file.to_str().unwrap()];
    args.extend(extra);
    let out = analyze(&args, b"");
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A verdict without what depends on when it was made: `analyzed_at`, and the time in
/// "Fingerprint seen N times since <first occurrence>" (the service's clock reading,
/// offline the end of the first trace).
fn timeless(mut v: Value) -> Value {
    let since = regex::Regex::new(r"since \d{4}-\d\d-\d\dT[0-9:.]+Z").unwrap();
    v.as_object_mut().unwrap().remove("analyzed_at");
    for e in v["evidence"].as_array_mut().unwrap() {
        *e = Value::from(
            since
                .replace_all(e.as_str().unwrap(), "since T")
                .into_owned(),
        );
    }
    v
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_real_exporters_capture_gives_the_services_verdicts_in_every_layout() {
    let c = captured();
    assert_eq!((c.failing.len(), c.healthy.len()), (3, 1));
    let classes: Vec<&str> = c
        .served
        .iter()
        .map(|v| v["classification"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "late_dependency_failure",
            "deterministic_handler_defect",
            "deterministic_handler_defect"
        ],
        "the scenario means what it says"
    );
    assert!(
        c.served[2]["evidence"]
            .to_string()
            .contains("failed 2 times"),
        "the service added recurrence: {}",
        c.served[2]
    );
    let expected: Vec<Value> = c.served.iter().cloned().map(timeless).collect();
    for name in ["capture.jsonl", "capture.pb", "capture.raw.pb"] {
        let offline = json_lines(&analyze_file(&c.file(name), &["--output", "json"]));
        let ids: Vec<&str> = offline
            .iter()
            .map(|v| v["trace_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids, c.failing,
            "{name}: one verdict per failing trace, in order"
        );
        let offline: Vec<Value> = offline.into_iter().map(timeless).collect();
        for (o, s) in offline.iter().zip(&expected) {
            assert_eq!(o, s, "{name}: trace {}", s["trace_id"]);
        }
    }
    // The protobuf layout must really be the length-prefixed one.
    let framed = std::fs::read(c.file("capture.pb")).unwrap();
    assert_eq!(framed[0], 0, "starts with a big-endian length");
}

#[test]
fn grouping_by_fingerprint_matches_the_fingerprints_endpoint() {
    let c = captured();
    let out = analyze_file(
        &c.file("capture.pb"),
        &["--group-by", "fingerprint", "--output", "json"],
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strip = |body: &Value| -> Vec<Value> {
        body["fingerprints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let mut g = g.clone();
                let o = g.as_object_mut().unwrap();
                o.remove("first_seen");
                o.remove("last_seen");
                g
            })
            .collect()
    };
    let groups = strip(&offline);
    assert_eq!(groups, strip(&c.fingerprints));
    let keyerror = groups
        .iter()
        .find(|g| g["fingerprint"].as_str().unwrap().starts_with("KeyError"))
        .expect("the KeyError group");
    assert_eq!(keyerror["count"], 2);

    let table = analyze_file(&c.file("capture.jsonl"), &["--group-by", "fingerprint"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("FINGERPRINT ID"), "{table}");
    assert!(
        table.contains(keyerror["fingerprint_id"].as_str().unwrap()),
        "{table}"
    );
}

#[test]
fn standard_input_and_the_table_show_the_same_verdicts() {
    let c = captured();
    let capture = std::fs::read(c.file("capture.jsonl")).unwrap();
    let from_stdin = analyze(&["-", "--output", "json"], &capture);
    assert!(from_stdin.status.success());
    let from_file = analyze_file(&c.file("capture.jsonl"), &["--output", "json"]);
    assert_eq!(from_stdin.stdout, from_file.stdout);

    let table = analyze_file(&c.file("capture.jsonl"), &[]);
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + c.failing.len(), "{table}");
    assert!(lines[0].starts_with("TRACE ID"), "{table}");
    for (line, (id, v)) in lines[1..].iter().zip(c.failing.iter().zip(&c.served)) {
        assert!(line.starts_with(id.as_str()), "{table}");
        assert!(
            line.contains(v["classification"].as_str().unwrap()),
            "{table}"
        );
    }
    assert!(!table.contains('\x1b'), "no colours when not a terminal");
}

#[test]
fn unreadable_input_fails_naming_the_file_and_the_line() {
    let c = captured();
    let missing = c.file("no-such-capture.jsonl");
    let out = analyze(&[missing.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-capture.jsonl"), "{err}");
    assert!(out.stdout.is_empty());

    let capture = std::fs::read_to_string(c.file("capture.jsonl")).unwrap();
    let mut lines = capture.lines();
    let broken = format!(
        "{}\n{}\n{{\"resourceSpans\": [}}\n",
        lines.next().unwrap(),
        lines.next().unwrap()
    );
    let path = c.file("broken.jsonl");
    std::fs::write(&path, broken).unwrap();
    let out = analyze(&[path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.jsonl:3:"), "{err}");
    assert!(out.stdout.is_empty());
}

/// A fixture attribute map (`{"key": value}`) as OTLP attributes.
fn attributes(map: &Value) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue};
    fn any(v: &Value) -> AnyValue {
        let value = match v {
            Value::String(s) => any_value::Value::StringValue(s.clone()),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => any_value::Value::IntValue(i),
                None => any_value::Value::DoubleValue(n.as_f64().unwrap()),
            },
            Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
                values: items.iter().map(any).collect(),
            }),
            other => panic!("unexpected fixture value {other}"),
        };
        AnyValue { value: Some(value) }
    }
    map.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| crate::support::kv(k, any(v).value.unwrap()))
        .collect()
}

/// The real SDK traces of tests/fixtures/traces, one OTLP request per trace (one
/// `ResourceSpans` per span, which OTLP allows), oldest trace first.
fn fixture_requests() -> Vec<(
    String,
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
)> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    let hex = |v: &Value| -> Vec<u8> {
        let s = v.as_str().unwrap_or("");
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
    let mut by_trace: std::collections::BTreeMap<String, (u64, Vec<ResourceSpans>)> =
        Default::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let fixture: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for s in fixture["spans"].as_array().unwrap() {
            let start = s["start_unix_nano"].as_u64().unwrap();
            let span = Span {
                trace_id: hex(&s["trace_id"]),
                span_id: hex(&s["span_id"]),
                parent_span_id: hex(&s["parent_span_id"]),
                name: s["name"].as_str().unwrap().into(),
                kind: s["kind"].as_i64().unwrap() as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: s["end_unix_nano"].as_u64().unwrap(),
                attributes: attributes(&s["attributes"]),
                events: s["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| span::Event {
                        name: e["name"].as_str().unwrap().into(),
                        time_unix_nano: e["time_unix_nano"].as_u64().unwrap(),
                        attributes: attributes(&e["attributes"]),
                        ..Default::default()
                    })
                    .collect(),
                status: Some(Status {
                    code: s["status"]["code"].as_i64().unwrap() as i32,
                    message: s["status"]["message"].as_str().unwrap_or("").into(),
                }),
                ..Default::default()
            };
            let trace = by_trace
                .entry(s["trace_id"].as_str().unwrap().to_string())
                .or_insert((u64::MAX, Vec::new()));
            trace.0 = trace.0.min(start);
            trace.1.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: attributes(&s["resource"]),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: s["scope"].as_str().unwrap_or("").into(),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    let mut traces: Vec<(u64, String, Vec<ResourceSpans>)> = by_trace
        .into_iter()
        .map(|(id, (start, rs))| (start, id, rs))
        .collect();
    traces.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    traces
        .into_iter()
        .map(|(_, id, resource_spans)| (id, ExportTraceServiceRequest { resource_spans }))
        .collect()
}

#[test]
fn the_fixture_traces_get_the_services_verdicts_offline() {
    let requests = fixture_requests();
    assert!(requests.len() >= 30, "{} traces", requests.len());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("analyze-fixtures");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl: String = requests
        .iter()
        .map(|(_, r)| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("fixtures.jsonl"), &jsonl).unwrap();
    let mut framed = Vec::new();
    for (_, r) in &requests {
        let b = prost::Message::encode_to_vec(r);
        framed.extend_from_slice(&(b.len() as u32).to_be_bytes());
        framed.extend_from_slice(&b);
    }
    std::fs::write(dir.join("fixtures.pb"), &framed).unwrap();

    let offline = json_lines(&analyze_file(
        &dir.join("fixtures.jsonl"),
        &["--output", "json"],
    ));
    let from_protobuf = analyze_file(&dir.join("fixtures.pb"), &["--output", "json"]);
    assert_eq!(json_lines(&from_protobuf), offline);
    let failing: std::collections::HashSet<&str> = offline
        .iter()
        .map(|v| v["trace_id"].as_str().unwrap())
        .collect();
    assert!(failing.len() >= 10, "{} failing traces", failing.len());

    // The service gets the traces in the same order, each failing one analysed before
    // the next is sent, so its cross-trace evidence builds up in the same order.
    let f = Faultline::start(&["--trace-idle", "200ms"]);
    let mut served = Vec::new();
    for (id, request) in requests {
        f.export_grpc(vec![request]);
        if failing.contains(id.as_str()) {
            served.push(served_verdict(&f, &id));
        }
    }
    let listed: Value = f.get("/api/v1/verdicts?limit=1000").json().unwrap();
    assert_eq!(
        listed["verdicts"].as_array().unwrap().len(),
        offline.len(),
        "no verdict the offline analysis lacks"
    );
    assert_eq!(served.len(), offline.len());
    for (o, s) in offline.into_iter().zip(served) {
        assert_eq!(timeless(o), timeless(s));
    }
}

#[test]
fn zstd_captures_in_every_layout_the_file_exporter_writes_give_the_same_verdicts() {
    let c = captured();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox/py/zstd_capture.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&c.dir)
        .output()
        .expect("python zstd");
    assert!(
        out.status.success(),
        "compressing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = analyze_file(&c.file("capture.jsonl"), &["--output", "json"]);
    assert_eq!(json_lines(&json).len(), c.failing.len());
    let json = json.stdout;
    let protobuf = analyze_file(&c.file("capture.pb"), &["--output", "json"]).stdout;
    for (name, uncompressed) in [
        ("capture.rotating.jsonl.zst", &json),
        ("capture.flushed.jsonl.zst", &json),
        ("capture.pb.zst", &protobuf),
        ("capture.flushed.pb.zst", &protobuf),
        ("capture.records.json.zst", &json),
        ("capture.records.pb.zst", &protobuf),
    ] {
        let file = c.file(name);
        let compressed = std::fs::read(&file).unwrap();
        let magic = if name.contains(".records.") {
            &compressed[4..8]
        } else {
            &compressed[..4]
        };
        assert_eq!(magic, [0x28, 0xb5, 0x2f, 0xfd], "{name} holds zstd frames");
        let offline = analyze_file(&file, &["--output", "json"]).stdout;
        assert_eq!(
            String::from_utf8_lossy(&offline),
            String::from_utf8_lossy(uncompressed),
            "{name}"
        );
        // Told by its content, not its name; standard input as well.
        let from_stdin = analyze(&["-", "--output", "json"], &compressed);
        assert!(from_stdin.status.success(), "{name} on stdin");
        assert_eq!(from_stdin.stdout, offline, "{name} on stdin");
    }
    // A capture cut short (a file the Collector is still writing) fails, naming it.
    let stream = std::fs::read(c.file("capture.flushed.jsonl.zst")).unwrap();
    let cut = c.file("cut.jsonl.zst");
    std::fs::write(&cut, &stream[..stream.len() - 5]).unwrap();
    let out = analyze(&[cut.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.jsonl.zst: cannot read: zstd"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(out.stdout.is_empty());
}
