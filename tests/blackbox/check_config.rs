//! `faultline check-config FILE`: the file is loaded exactly as `--config FILE` would load
//! it, nothing is started, and the answer is `FILE: ok` / exit 0 or start-up's own message
//! / exit 2.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `faultline check-config FILE`.
pub fn check_config(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run faultline check-config")
}

fn checked(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, text).unwrap();
    let out = check_config(&file);
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_valid_file_is_ok_and_nothing_listens() {
    // Port 1 would need privileges to bind: "ok" proves no listener was started.
    let (code, stdout, stderr) = checked(
        "otlp-grpc-listen = \"0.0.0.0:1\"\ntrace-idle = \"5s\"\nmax-buffered-spans = 1000\n\
         error-status = [500, 503]\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.trim_end().ends_with("faultline.toml: ok"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_key_is_refused_with_exit_2_naming_it() {
    let (code, stdout, stderr) = checked("trace-idel = \"5s\"\n");
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("trace-idel"), "{stderr}");
}

#[test]
fn a_bad_value_gives_the_message_start_up_gives() {
    let text = "max-request-size = \"4 parsecs\"\n";
    let (code, _, stderr) = checked(text);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--max-request-size"), "{stderr}");
    // The service refuses the same file with the same words.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, text).unwrap();
    let serve = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
    let serve_err = String::from_utf8(serve.stderr).unwrap();
    let message = |s: &str| s.split("--max-request-size").nth(1).map(str::to_string);
    assert_eq!(
        message(&stderr),
        message(&serve_err),
        "{stderr} / {serve_err}"
    );
}

#[test]
fn a_cross_option_rule_and_a_missing_file_are_refused() {
    let (code, _, stderr) = checked("trace-idle = \"1m\"\ntrace-max-age = \"10s\"\n");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--trace-max-age"), "{stderr}");
    let out = check_config(Path::new("/nonexistent/faultline.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("/nonexistent/faultline.toml"));
}

#[test]
fn environment_variables_do_not_change_the_verdict_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, "trace-idle = \"5s\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .env("FAULTLINE_TRACE_IDLE", "never")
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
