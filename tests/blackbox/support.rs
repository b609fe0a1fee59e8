//! Test support: start the real `faultline` binary on ephemeral loopback ports, read its
//! metrics, and provision real OTLP peers (the Python SDK, rotel-agent) in a venv.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running faultline process.
pub struct Faultline {
    child: Child,
    pub grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub api: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The default state file's directory (`FAULTLINE_STATE`), removed with the process.
    _state_dir: tempfile::TempDir,
}

fn parse_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    // The address may be followed by a note such as " (TLS, bearer token)".
    line.split(marker)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Faultline {
    /// Starts the binary with ephemeral ports plus `args`; waits until it listens. Its
    /// state is a SQLite file of its own (`FAULTLINE_STATE`; a `--state` in `args` wins).
    pub fn start(args: &[&str]) -> Faultline {
        let state_dir = tempfile::tempdir().expect("state dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "--otlp-grpc-listen",
                "127.0.0.1:0",
                "--otlp-http-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("FAULTLINE_LOG_LEVEL", "info")
            .env("FAULTLINE_STATE", state_dir.path().join("state.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start faultline");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // Into the log first: once `start` has seen a line, `log()` holds it.
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let (mut grpc, mut otlp_http, mut api) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while grpc.is_none() || otlp_http.is_none() || api.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!("faultline did not start; log: {:?}", log.lock().unwrap())
                });
            grpc = grpc.or(parse_addr(&line, "listening for OTLP/gRPC on "));
            otlp_http = otlp_http.or(parse_addr(&line, "listening for OTLP/HTTP on "));
            api = api.or(parse_addr(&line, "listening for the HTTP API on "));
        }
        Faultline {
            child,
            grpc: grpc.unwrap(),
            otlp_http: otlp_http.unwrap(),
            api: api.unwrap(),
            log,
            _state_dir: state_dir,
        }
    }

    /// Every line logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.otlp_http)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("http://{}{path}", self.api)).expect("GET")
    }

    /// Sends OTLP/gRPC Export requests one after the other; each must be accepted.
    pub fn export_grpc(
        &self,
        requests: Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut c = TraceServiceClient::connect(self.grpc_endpoint())
                .await
                .expect("connect");
            for req in requests {
                c.export(req).await.expect("export accepted");
            }
        });
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> String {
        self.get("/metrics").text().expect("metrics body")
    }

    /// The value of one series (`name{labels}` exactly as exposed), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// Waits until `series` reaches `at_least`; returns its last value.
    pub fn wait_metric(&self, series: &str, at_least: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(series);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for exit; returns the status and the whole log.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "faultline did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().join("\n");
        (status, log)
    }
}

impl Faultline {
    /// Kills the process with SIGKILL (a crash: no shutdown runs) and waits for it.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Faultline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one series' value from a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A process killed (with its children) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python interpreter of a venv with the OpenTelemetry SDK exporters and rotel
/// installed from PyPI (pinned in tests/blackbox/py/requirements.txt). Created once and
/// reused while the requirements file is unchanged.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let reqs = manifest_dir().join("tests/blackbox/py/requirements.txt");
        let wanted = std::fs::read_to_string(&reqs).expect("requirements");
        let venv = target_dir().join("blackbox-venv");
        let stamp = venv.join("faultline-requirements.txt");
        let py = venv.join("bin/python");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) || !py.exists()
        {
            let _ = std::fs::remove_dir_all(&venv);
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&reqs));
            std::fs::write(&stamp, wanted).expect("stamp");
        }
        py
    })
}

/// The `rotel-agent` binary shipped in the `rotel` PyPI package.
pub fn rotel_agent() -> PathBuf {
    let py = python();
    let out = Command::new(py)
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("locate rotel-agent");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf8").trim())
}

/// Runs tests/blackbox/py/send_spans.py; returns (trace ids, spans sent).
pub fn python_send(
    protocol: &str,
    endpoint: &str,
    traces: usize,
    per_trace: usize,
    gzip: bool,
) -> (Vec<String>, u64) {
    let script = manifest_dir().join("tests/blackbox/py/send_spans.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args([
        protocol,
        endpoint,
        &traces.to_string(),
        &per_trace.to_string(),
    ]);
    if gzip {
        cmd.arg("gzip");
    }
    let out = cmd.output().expect("python sender");
    assert!(
        out.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a line")).expect("json");
    let ids = v["trace_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    (ids, v["spans"].as_u64().expect("spans"))
}

/// Runs tests/blackbox/py/send_failing.py: `healthy` good requests and `failing`
/// requests that answer 500 after a dependency timeout, from the Python SDK.
pub fn python_send_failing(
    protocol: &str,
    endpoint: &str,
    healthy: usize,
    failing: usize,
) -> serde_json::Value {
    let script = manifest_dir().join("tests/blackbox/py/send_failing.py");
    let out = Command::new(python())
        .arg(script)
        .args([
            protocol,
            endpoint,
            &healthy.to_string(),
            &failing.to_string(),
        ])
        .output()
        .expect("python sender");
    assert!(
        out.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    serde_json::from_str(stdout.lines().last().expect("a line")).expect("json")
}

/// A free loopback port (bound then released; good enough for child processes that
/// take no port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OTLP attribute: `key` = `value`. The one builder of key-values the tests share.
pub fn kv(
    key: &str,
    value: opentelemetry_proto::tonic::common::v1::any_value::Value,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: key.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute.
pub fn str_kv(key: &str, value: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    kv(
        key,
        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(value.into()),
    )
}

/// An integer attribute.
pub fn int_kv(key: &str, value: i64) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    kv(
        key,
        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(value),
    )
}
