//! The command line: `--help` is complete, bad values stop start-up naming the option,
//! environment and file are honoured.

use std::process::Command;

use crate::support::Faultline;

const FLAGS: [&str; 13] = [
    "--config",
    "--otlp-grpc-listen",
    "--otlp-http-listen",
    "--http-listen",
    "--max-request-size",
    "--trace-idle",
    "--trace-max-age",
    "--max-buffered-spans",
    "--analysis-queue-size",
    "--late-span-window",
    "--shutdown-timeout",
    "--log-level",
    "--max-series",
];

#[test]
fn help_lists_every_option_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in FLAGS {
        assert!(help.contains(flag), "--help lacks {flag}");
        let env = format!(
            "FAULTLINE_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[test]
fn a_bad_value_stops_start_up_naming_the_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["--trace-idle", "tomorrow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--trace-idle") && err.contains("tomorrow"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .env("FAULTLINE_MAX_REQUEST_SIZE", "huge")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--max-request-size"));
}

#[test]
fn options_come_from_the_config_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, "max-request-size = \"1KiB\"\ntrace-idle = \"1h\"\n").unwrap();
    // The file's 1KiB limit applies (a 2 KiB body is refused); its trace-idle is
    // overridden by the flag, which start-up accepts.
    let f = Faultline::start(&["--config", file.to_str().unwrap(), "--trace-idle", "2s"]);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", f.http_endpoint()))
        .header("content-type", "application/json")
        .body(vec![b' '; 2048])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 413);

    std::fs::write(&file, "trace-idel = \"1s\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("trace-idel"));
}
