//! The labelled scenario zoo, live: real apps of one Node and one Python framework
//! (tests/zoo/apps, stock OpenTelemetry auto-instrumentation, a private PostgreSQL and
//! Redis started by tests/zoo/zoo.py on 127.0.0.1) export straight to the real binary;
//! every labelled 500's verdict is read back through the HTTP API and scored against its
//! label with the same scorer as the stored captures (`faultline::eval`). The other
//! suites are replayed from their captures by the library's eval tests, which is the
//! fast path; these runs prove the binary sees what the captures saw.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use faultline::eval::{answer_from_api, read_labels, score_answers};
use serde_json::Value;

use crate::support::Faultline;

/// The suites run live; all of them are replayed from captures.
const LIVE: [&str; 2] = ["express", "flask"];

fn zoo_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zoo/zoo.py")
}

/// Packages of the live suites (npm ci, venvs), installed once per test run into a
/// directory kept between runs (set-up is idempotent and keyed by the lock files).
fn env_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zoo-env");
        let out = Command::new("python3")
            .arg(zoo_py())
            .arg("setup")
            .args(LIVE)
            .arg("--env-dir")
            .arg(&dir)
            .output()
            .expect("zoo.py setup");
        assert!(
            out.status.success(),
            "zoo setup failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// Polls the verdict of `trace_id` until it exists or 30 s have passed.
fn verdict(f: &Faultline, trace_id: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = f.get(&format!("/api/v1/verdicts/{trace_id}"));
        if resp.status() == 200 {
            return resp.json().ok();
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn live(suite: &str, protocol: &str) {
    // One live suite at a time: their timeouts are by design, not by a loaded machine.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let env = env_dir();
    let f = Faultline::start(&["--trace-idle", "1500ms"]);
    let endpoint = if protocol == "grpc" {
        f.grpc_endpoint()
    } else {
        f.http_endpoint()
    };
    let out = Command::new("python3")
        .arg(zoo_py())
        .args([
            "run",
            suite,
            "--requests",
            "2",
            "--otlp-endpoint",
            &endpoint,
        ])
        .args(["--protocol", protocol, "--env-dir"])
        .arg(env)
        .output()
        .expect("zoo.py run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{suite} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(stdout.lines().last().expect("summary")).expect("summary json");
    let labels = read_labels(&summary["labels"]).expect("labels");
    assert!(labels.len() >= 10, "{suite}: only {} labels", labels.len());
    let answers: HashMap<String, _> = labels
        .iter()
        .filter_map(|l| {
            Some((
                l.trace_id.clone(),
                answer_from_api(&verdict(&f, &l.trace_id)?),
            ))
        })
        .collect();
    // Every labelled trace has been analysed by now; the healthy ones of the same run,
    // which ended before the last labelled one, have been too.
    std::thread::sleep(Duration::from_millis(2000));
    let false_verdicts: Vec<String> = summary["healthy_trace_ids"]
        .as_array()
        .expect("healthy ids")
        .iter()
        .filter_map(Value::as_str)
        .filter(|id| f.get(&format!("/api/v1/verdicts/{id}")).status() == 200)
        .map(String::from)
        .collect();
    let report = score_answers(&labels, &answers, false_verdicts);
    let o = &report.overall;
    let all_right = report.outcomes.iter().all(|x| x.wrong.is_empty());
    assert!(
        all_right
            && o.missing == 0
            && o.false_verdicts == 0
            && o.fingerprint_precision >= 0.98
            && o.fingerprint_recall >= 0.98,
        "{suite} over {protocol}:\n{}",
        report.to_markdown()
    );
}

#[test]
fn express_live_over_otlp_http_every_labelled_verdict_is_right() {
    live(LIVE[0], "http/protobuf");
}

#[test]
fn flask_live_over_otlp_http_every_labelled_verdict_is_right() {
    // The suite's pinned packages carry the OTLP/HTTP exporter only.
    live(LIVE[1], "http/protobuf");
}
