//! The embedded state database (`--state`, SQLite by default), driven through the real
//! binary: verdicts and fingerprint history survive a restart and a `kill -9` (losing at
//! most what the writer reported waiting), an unusable state file stops start-up naming
//! it, and `faultline` with no `--state` keeps its file under the working directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::metrics_export::failing_trace;
use crate::support::Faultline;

fn start(state: &Path) -> Faultline {
    Faultline::start(&["--trace-idle", "100ms", "--state", state.to_str().unwrap()])
}

/// Sends `n` failing traces (one fingerprint, one route) and waits for their verdicts.
fn send(f: &Faultline, first: u8, n: u8) -> Vec<String> {
    let before = f.metric("faultline_verdicts_total");
    let (requests, ids): (Vec<_>, Vec<_>) = (first..first + n)
        .map(|seq| failing_trace(seq, "/orders/{order_id}"))
        .unzip();
    f.export_grpc(requests);
    f.wait_metric(
        "faultline_verdicts_total",
        before + f64::from(n),
        Duration::from_secs(20),
    );
    ids
}

fn json(f: &Faultline, path: &str) -> (u16, Value) {
    let r = f.get(path);
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Waits until the writer has nothing waiting.
fn wait_written(f: &Faultline) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.metric("faultline_state_write_queue_depth") > 0.0 {
        assert!(Instant::now() < deadline, "the state writer did not drain");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn verdicts_and_fingerprint_history_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let f = start(&state);
    let ids = send(&f, 1, 3);
    wait_written(&f);
    assert_eq!(f.metric("faultline_state_verdicts_written_total"), 3.0);
    assert_eq!(f.metric("faultline_state_up"), 1.0);
    let (_, before) = json(&f, "/api/v1/fingerprints");
    let (status, _) = f.terminate();
    assert!(status.success());

    let f = start(&state);
    assert!(
        f.log().contains("state database open"),
        "start-up says where the state is: {}",
        f.log()
    );
    for id in &ids {
        let (status, v) = json(&f, &format!("/api/v1/verdicts/{id}"));
        assert_eq!(status, 200, "verdict {id} after the restart");
        assert_eq!(v["trace_id"], id.as_str());
        assert_eq!(v["classification"], "deterministic_handler_defect");
    }
    let (_, after) = json(&f, "/api/v1/fingerprints");
    let g = &after["fingerprints"][0];
    assert_eq!(g["count"], 3, "{after}");
    assert_eq!(g["first_release"], "1.4.2");
    assert_eq!(g["first_seen"], before["fingerprints"][0]["first_seen"]);
    let (_, listed) = json(&f, "/api/v1/verdicts?limit=10");
    assert_eq!(listed["verdicts"].as_array().unwrap().len(), 3);

    // The history goes on across the restart: the fourth occurrence says so.
    let more = send(&f, 4, 1);
    let (_, v) = json(&f, &format!("/api/v1/verdicts/{}", more[0]));
    let evidence = v["evidence"].to_string();
    assert!(evidence.contains("seen 4 times"), "{evidence}");
    let (_, after) = json(&f, "/api/v1/fingerprints");
    assert_eq!(after["fingerprints"][0]["count"], 4);
}

#[test]
fn kill_9_loses_at_most_what_the_writer_reported_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let f = start(&state);
    let ids = send(&f, 1, 40);
    let waiting = f.metric("faultline_state_write_queue_depth");
    f.kill_9();

    let f = start(&state);
    let found = ids
        .iter()
        .filter(|id| f.get(&format!("/api/v1/verdicts/{id}")).status() == 200)
        .count();
    let lost = ids.len() - found;
    assert!(
        lost as f64 <= waiting,
        "lost {lost} verdicts, the writer reported {waiting} waiting"
    );
}

#[test]
fn a_state_file_that_is_not_a_database_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    std::fs::write(&state, vec![0x42u8; 8192]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--otlp-grpc-listen", "127.0.0.1:0"])
        .args(["--otlp-http-listen", "127.0.0.1:0"])
        .args(["--state", state.to_str().unwrap()])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(state.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("--state"),
        "says which option to fix: {stderr}"
    );
}

#[test]
fn with_no_state_flag_the_state_is_a_file_under_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--otlp-grpc-listen", "127.0.0.1:0"])
        .args(["--otlp-http-listen", "127.0.0.1:0"])
        .env_remove("FAULTLINE_STATE")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = dir.path().join("faultline-data/state.db");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(file.exists(), "no {}", file.display());

    // And `--state memory` keeps nothing: no writer, no state metrics.
    let f = Faultline::start(&["--state", "memory"]);
    assert!(f.log().contains("memory only"), "{}", f.log());
    assert!(!f.metrics().contains("faultline_state_up"));
}

#[test]
fn a_trace_sent_again_after_the_late_span_window_keeps_one_verdict() {
    let f = Faultline::start(&["--trace-idle", "100ms", "--late-span-window", "200ms"]);
    let (request, id) = failing_trace(77, "/orders/{order_id}");
    f.export_grpc(vec![request.clone()]);
    f.wait_metric("faultline_verdicts_total", 1.0, Duration::from_secs(20));
    // Past the late-span window the buffer has forgotten the trace: an exporter's retry
    // of the same batch assembles it again.
    std::thread::sleep(Duration::from_millis(600));
    f.export_grpc(vec![request]);
    f.wait_metric(
        "faultline_resent_traces_total",
        1.0,
        Duration::from_secs(20),
    );
    assert_eq!(f.metric("faultline_verdicts_total"), 1.0);
    let (_, groups) = json(&f, "/api/v1/fingerprints");
    let g = &groups["fingerprints"][0];
    assert_eq!(g["count"], 1, "{groups}");
    assert_eq!(g["example_trace_ids"], serde_json::json!([id]));
    let (_, listed) = json(&f, "/api/v1/verdicts?limit=10");
    assert_eq!(listed["verdicts"].as_array().unwrap().len(), 1);
    let errors: f64 = f
        .metrics()
        .lines()
        .filter(|l| l.starts_with("faultline_fingerprint_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        errors, 1.0,
        "the fingerprint's counter counts the trace once"
    );
}
