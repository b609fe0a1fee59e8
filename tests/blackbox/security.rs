//! TLS and bearer tokens on every listener, with real clients: the OpenTelemetry Python
//! SDK's gRPC and HTTP exporters (and raw grpc / requests calls for exact statuses, see
//! py/secure_client.py) against certificates generated here with rcgen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use faultline::api::grpc::proto::verdicts_client::VerdictsClient;
use faultline::api::grpc::proto::ListVerdictsRequest;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

use crate::support::{python, Faultline};

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by
/// it, and a client certificate from another CA, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ours = ca("faultline test CA");
        let theirs = ca("someone else's CA");
        std::fs::write(pki.path("ca.pem"), ours.pem()).unwrap();
        pki.leaf(
            &ours,
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.leaf(
            &ours,
            "client",
            &["sender"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        pki.leaf(
            &theirs,
            "stranger",
            &["stranger"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        pki
    }

    fn leaf(
        &self,
        issuer: &CertifiedIssuer<'static, KeyPair>,
        name: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// TLS flags for the two OTLP listeners (the API stays plain, for `Faultline::metric`).
    fn otlp_tls_args(&self) -> Vec<String> {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        [
            ("--otlp-grpc-tls-cert-file", &cert),
            ("--otlp-grpc-tls-key-file", &key),
            ("--otlp-http-tls-cert-file", &cert),
            ("--otlp-http-tls-key-file", &key),
        ]
        .into_iter()
        .flat_map(|(flag, v)| [flag.to_string(), v.clone()])
        .collect()
    }
}

fn start(args: &[String]) -> Faultline {
    Faultline::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Runs py/secure_client.py; returns its JSON line.
fn client(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox/py/secure_client.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        // requests lets these override a session's own CA file, so with them set the
        // HTTP exporter's `certificate_file=` is ignored (psf/requests#3829); some
        // machines set them globally.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("python client");
    assert!(
        out.status.success(),
        "client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("a line")).expect("json")
}

/// `secure_client.py export PROTOCOL URL --ca CA` plus `extra`.
fn export(protocol: &str, url: &str, pki: &Pki, extra: &[&str]) -> Value {
    let ca = pki.path("ca.pem");
    let mut args = vec!["export", protocol, url, "--ca", &ca];
    args.extend_from_slice(extra);
    client(&args)
}

fn accepted(fl: &Faultline, transport: &str) -> f64 {
    fl.metric(&format!(
        "faultline_receiver_accepted_spans_total{{transport=\"{transport}\"}}"
    ))
}

fn unauthenticated_spans(fl: &Faultline, transport: &str) -> f64 {
    fl.metric(&format!(
        "faultline_receiver_refused_spans_total{{transport=\"{transport}\",reason=\"unauthenticated\"}}"
    ))
}

fn unauthenticated_requests(fl: &Faultline, transport: &str) -> f64 {
    fl.metric(&format!(
        "faultline_receiver_refused_requests_total{{transport=\"{transport}\",reason=\"unauthenticated\"}}"
    ))
}

fn handshake_failures(fl: &Faultline, listener: &str) -> f64 {
    fl.metric(&format!(
        "faultline_tls_handshake_failures_total{{listener=\"{listener}\"}}"
    ))
}

fn write_tokens(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tokens");
    // Replaced the way a Secret volume or `mv` does it: never half-written.
    let tmp = dir.join("tokens.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Each `export` run sends its 3 spans twice (SDK exporter, then raw).
const SPANS_PER_RUN: f64 = 6.0;

#[test]
fn python_exporters_send_over_tls_trusting_the_test_ca() {
    let pki = Pki::new();
    let fl = start(&pki.otlp_tls_args());
    let log = fl.log();
    assert!(
        log.contains(&format!("listening for OTLP/gRPC on {} (TLS)", fl.grpc)),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "listening for OTLP/HTTP on {} (TLS)",
            fl.otlp_http
        )),
        "{log}"
    );

    let g = export("grpc", &format!("https://{}", fl.grpc), &pki, &[]);
    assert_eq!(
        (g["sdk"].as_str(), g["status"].as_str()),
        (Some("SUCCESS"), Some("OK")),
        "{g}"
    );
    let h = export("http", &format!("https://{}", fl.otlp_http), &pki, &[]);
    assert_eq!(
        (h["sdk"].as_str(), h["status"].as_u64()),
        (Some("SUCCESS"), Some(200)),
        "{h}"
    );
    assert_eq!(accepted(&fl, "grpc"), SPANS_PER_RUN);
    assert_eq!(accepted(&fl, "http"), SPANS_PER_RUN);
    assert_eq!(handshake_failures(&fl, "otlp_grpc"), 0.0);
}

#[test]
fn otlp_needs_a_listed_bearer_token_and_refusals_are_counted_alike() {
    let pki = Pki::new();
    let tokens = write_tokens(pki.dir.path(), "# senders\nright-token\n\nspare-token\n");
    let mut args = pki.otlp_tls_args();
    args.extend(["--auth-token-file".into(), tokens.to_str().unwrap().into()]);
    let fl = start(&args);
    assert!(fl.log().contains("(TLS, bearer token)"), "{}", fl.log());

    let grpc = format!("https://{}", fl.grpc);
    let ok = export("grpc", &grpc, &pki, &["--token", "right-token"]);
    assert_eq!(
        (ok["sdk"].as_str(), ok["status"].as_str()),
        (Some("SUCCESS"), Some("OK")),
        "{ok}"
    );
    let none = export("grpc", &grpc, &pki, &[]);
    let wrong = export("grpc", &grpc, &pki, &["--token", "right-token-but-longer"]);
    for refused in [&none, &wrong] {
        assert_eq!(refused["sdk"], "FAILURE", "{refused}");
        assert_eq!(refused["status"], "UNAUTHENTICATED", "{refused}");
    }
    assert_eq!(
        none["details"], wrong["details"],
        "no hint whether a token was close"
    );

    let http = format!("https://{}", fl.otlp_http);
    let ok = export("http", &http, &pki, &["--token", "spare-token"]);
    assert_eq!(
        (ok["sdk"].as_str(), ok["status"].as_u64()),
        (Some("SUCCESS"), Some(200)),
        "{ok}"
    );
    let none = export("http", &http, &pki, &[]);
    let wrong = export("http", &http, &pki, &["--token", "spare"]);
    for refused in [&none, &wrong] {
        assert_eq!(refused["sdk"], "FAILURE", "{refused}");
        assert_eq!(refused["status"], 401, "{refused}");
        assert!(
            refused["www_authenticate"]
                .as_str()
                .unwrap_or("")
                .starts_with("Bearer"),
            "{refused}"
        );
    }

    for transport in ["grpc", "http"] {
        assert_eq!(accepted(&fl, transport), SPANS_PER_RUN, "{transport}");
        // Two refused runs of two requests of 3 spans each.
        assert_eq!(
            unauthenticated_spans(&fl, transport),
            2.0 * SPANS_PER_RUN,
            "{transport}"
        );
        assert_eq!(unauthenticated_requests(&fl, transport), 4.0, "{transport}");
    }
    assert!(
        fl.log().contains("missing or invalid bearer token"),
        "refusals are logged"
    );
}

#[test]
fn a_changed_token_file_takes_effect_while_running() {
    let pki = Pki::new();
    let tokens = write_tokens(pki.dir.path(), "first-token\n");
    let mut args = pki.otlp_tls_args();
    args.extend(["--auth-token-file".into(), tokens.to_str().unwrap().into()]);
    let fl = start(&args);
    let grpc = format!("https://{}", fl.grpc);
    let http = format!("https://{}", fl.otlp_http);
    assert_eq!(
        export("grpc", &grpc, &pki, &["--token", "first-token"])["status"],
        "OK"
    );

    write_tokens(pki.dir.path(), "# rotated\nsecond-token\n");
    // The file is checked at most once a second.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        export("grpc", &grpc, &pki, &["--token", "second-token"])["status"],
        "OK"
    );
    assert_eq!(
        export("http", &http, &pki, &["--token", "second-token"])["status"],
        200
    );
    let old = export("grpc", &grpc, &pki, &["--token", "first-token"]);
    assert_eq!(old["status"], "UNAUTHENTICATED", "{old}");
    assert!(fl.log().contains("1 token(s) in force"), "{}", fl.log());
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let pki = Pki::new();
    let mut args = pki.otlp_tls_args();
    args.extend(["--tls-client-ca-file".into(), pki.path("ca.pem")]);
    // The shared client CA applies to the TLS listeners; the API stays plain text.
    let fl = start(&args);
    assert!(
        fl.log().contains("(TLS, client certificates)"),
        "{}",
        fl.log()
    );
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let (stranger, stranger_key) = (pki.path("stranger.pem"), pki.path("stranger.key"));

    let grpc = format!("https://{}", fl.grpc);
    let http = format!("https://{}", fl.otlp_http);
    let ok = export("grpc", &grpc, &pki, &["--cert", &cert, "--key", &key]);
    assert_eq!(
        (ok["sdk"].as_str(), ok["status"].as_str()),
        (Some("SUCCESS"), Some("OK")),
        "{ok}"
    );
    let ok = export("http", &http, &pki, &["--cert", &cert, "--key", &key]);
    assert_eq!(
        (ok["sdk"].as_str(), ok["status"].as_u64()),
        (Some("SUCCESS"), Some(200)),
        "{ok}"
    );

    for extra in [vec![], vec!["--cert", &stranger, "--key", &stranger_key]] {
        let g = export("grpc", &grpc, &pki, &extra);
        assert_eq!(g["sdk"], "FAILURE", "{g}");
        assert_eq!(g["status"], "UNAVAILABLE", "{g}");
        let h = export("http", &http, &pki, &extra);
        assert_eq!(h["sdk"], "FAILURE", "{h}");
        assert_eq!(h["status"], "connection_error", "{h}");
    }
    assert_eq!(accepted(&fl, "grpc"), SPANS_PER_RUN);
    assert_eq!(accepted(&fl, "http"), SPANS_PER_RUN);
    assert!(handshake_failures(&fl, "otlp_grpc") >= 2.0);
    assert!(handshake_failures(&fl, "otlp_http") >= 2.0);
}

#[test]
fn a_plain_text_client_against_a_tls_listener_fails_cleanly() {
    let pki = Pki::new();
    let fl = start(&pki.otlp_tls_args());
    let g = export("grpc", &format!("http://{}", fl.grpc), &pki, &[]);
    assert_eq!(g["sdk"], "FAILURE", "{g}");
    assert_eq!(g["status"], "UNAVAILABLE", "{g}");
    let h = export("http", &format!("http://{}", fl.otlp_http), &pki, &[]);
    assert_eq!(h["sdk"], "FAILURE", "{h}");
    assert_eq!(h["status"], "connection_error", "{h}");
    assert!(handshake_failures(&fl, "otlp_grpc") >= 1.0);
    assert!(handshake_failures(&fl, "otlp_http") >= 1.0);

    // The listeners keep serving.
    let g = export("grpc", &format!("https://{}", fl.grpc), &pki, &[]);
    assert_eq!(g["status"], "OK", "{g}");
    let h = export("http", &format!("https://{}", fl.otlp_http), &pki, &[]);
    assert_eq!(h["status"], 200, "{h}");
    assert_eq!(
        accepted(&fl, "grpc") + accepted(&fl, "http"),
        2.0 * SPANS_PER_RUN
    );
    assert_eq!(
        fl.metric(
            "faultline_receiver_refused_requests_total{transport=\"http\",reason=\"malformed\"}"
        ),
        0.0
    );
}

#[test]
fn probes_stay_open_while_metrics_and_the_api_need_the_api_token() {
    let pki = Pki::new();
    let tokens = write_tokens(pki.dir.path(), "scraper-token\n");
    let fl = start(&[
        "--tls-cert-file".into(),
        pki.path("server.pem"),
        "--tls-key-file".into(),
        pki.path("server.key"),
        "--api-auth-token-file".into(),
        tokens.to_str().unwrap().into(),
    ]);
    let log = fl.log();
    assert!(
        log.contains(&format!(
            "listening for the HTTP API on {} (TLS, bearer token)",
            fl.api
        )),
        "{log}"
    );
    let ca = pki.path("ca.pem");
    let get = |path: &str, token: Option<&str>| {
        let url = format!("https://{}{path}", fl.api);
        let mut args = vec!["get", url.as_str(), "--ca", ca.as_str()];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        client(&args)
    };
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(get(probe, None)["status"], 200, "{probe}");
    }
    for path in ["/metrics", "/api/v1/verdicts", "/api/v1/grafana/verdicts"] {
        let none = get(path, None);
        let wrong = get(path, Some("scraper"));
        assert_eq!(none["status"], 401, "{path}: {none}");
        assert_eq!(
            none, wrong,
            "{path}: the same answer for a missing and a wrong token"
        );
        assert!(none["www_authenticate"]
            .as_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(get(path, Some("scraper-token"))["status"], 200, "{path}");
    }
    // The API token does not guard the OTLP listeners (`--auth-token-file` does).
    let h = export("http", &format!("https://{}", fl.otlp_http), &pki, &[]);
    assert_eq!(h["status"], 200, "{h}");
    let page = get("/metrics", Some("scraper-token"));
    assert!(
        page["body"]
            .as_str()
            .unwrap()
            .contains("faultline_receiver_accepted_spans_total{transport=\"http\"} 6"),
        "{page}"
    );
}

#[test]
fn the_grpc_verdict_api_needs_the_token_too() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_tokens(dir.path(), "verdict-reader\n");
    let fl = Faultline::start(&["--auth-token-file", tokens.to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = VerdictsClient::connect(fl.grpc_endpoint()).await.unwrap();
        let refused = c
            .list_verdicts(ListVerdictsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let mut req = tonic::Request::new(ListVerdictsRequest::default());
        req.metadata_mut()
            .insert("authorization", "Bearer verdict-reader".parse().unwrap());
        c.list_verdicts(req)
            .await
            .expect("the token lets it through");
    });
    // The API listener has no token of its own here: /metrics is open.
    assert_eq!(fl.get("/metrics").status(), 200);
}

#[test]
fn unusable_tls_or_token_files_stop_start_up_naming_the_option() {
    let pki = Pki::new();
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let empty = pki.dir.path().join("empty-tokens");
    std::fs::write(&empty, "# nobody yet\n\n").unwrap();
    let (server, server_key) = (pki.path("server.pem"), pki.path("server.key"));
    let client_key = pki.path("client.key");
    let garbage = garbage.to_str().unwrap();
    let empty = empty.to_str().unwrap();
    let cases: [(Vec<&str>, &[&str]); 5] = [
        (vec!["--tls-cert-file", &server], &["--tls-key-file"]),
        (
            vec!["--tls-cert-file", garbage, "--tls-key-file", &server_key],
            &["--tls-cert-file", garbage],
        ),
        (
            vec![
                "--otlp-http-tls-cert-file",
                &server,
                "--otlp-http-tls-key-file",
                &client_key,
            ],
            &["--otlp-http-tls-key-file", "client.key"],
        ),
        (
            vec![
                "--tls-cert-file",
                &server,
                "--tls-key-file",
                &server_key,
                "--tls-client-ca-file",
                garbage,
            ],
            &["--tls-client-ca-file", garbage],
        ),
        (
            vec!["--auth-token-file", empty],
            &["--auth-token-file", empty, "no token"],
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "--otlp-grpc-listen",
                "127.0.0.1:0",
                "--otlp-http-listen",
                "127.0.0.1:0",
            ])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for e in expected {
            assert!(err.contains(e), "{args:?}: {err}");
        }
    }
}

/// The forwarder as a TLS client: a second faultline that requires TLS, a client
/// certificate and a token receives every span the first one forwards, over gRPC and HTTP;
/// without the test CA the first one cannot connect and keeps the spans queued.
#[test]
fn the_forwarder_speaks_mutual_tls_with_a_custom_ca_and_sends_its_headers() {
    let pki = Pki::new();
    let tokens = write_tokens(pki.dir.path(), "forward-secret\n");
    let mut downstream_args = pki.otlp_tls_args();
    downstream_args.extend(
        [
            "--tls-client-ca-file",
            &pki.path("ca.pem"),
            "--auth-token-file",
            tokens.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let downstream = start(&downstream_args);
    for (protocol, port) in [
        ("grpc", downstream.grpc.port()),
        ("http", downstream.otlp_http.port()),
    ] {
        let before = accepted(&downstream, protocol);
        let upstream = Faultline::start(&[
            "--forward-endpoint",
            &format!("https://localhost:{port}"),
            "--forward-protocol",
            protocol,
            "--forward-tls-ca-file",
            &pki.path("ca.pem"),
            "--forward-tls-cert-file",
            &pki.path("client.pem"),
            "--forward-tls-key-file",
            &pki.path("client.key"),
            "--forward-header",
            "authorization=Bearer forward-secret",
        ]);
        let (_, sent) = crate::support::python_send("grpc", &upstream.grpc_endpoint(), 4, 5, false);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The downstream counts a request before its answer is back upstream, where the
        // sent counter moves: wait for both.
        while (accepted(&downstream, protocol) < before + sent as f64
            || upstream.metric("faultline_forward_sent_spans_total") < sent as f64)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            accepted(&downstream, protocol),
            before + sent as f64,
            "{protocol}"
        );
        assert_eq!(
            upstream.metric("faultline_forward_sent_spans_total"),
            sent as f64
        );
    }
    // Without the CA the server's certificate is not trusted: nothing is delivered, the
    // spans stay queued and are retried.
    let untrusting = Faultline::start(&[
        "--forward-endpoint",
        &format!("https://localhost:{}", downstream.grpc.port()),
    ]);
    let (_, sent) = crate::support::python_send("grpc", &untrusting.grpc_endpoint(), 1, 5, false);
    assert!(
        untrusting.wait_metric(
            "faultline_forward_retried_spans_total{reason=\"unreachable\"}",
            1.0,
            Duration::from_secs(30)
        ) >= 1.0
    );
    assert_eq!(
        untrusting.metric("faultline_forward_queue_spans"),
        sent as f64
    );
}

/// A Kubernetes Secret volume as the kubelet's atomic writer lays it out: each file is a
/// symlink `name -> ..data/name`, `..data` a symlink to a version directory; an update
/// writes a new version directory and swaps `..data` to it with one rename.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: PathBuf, files: &[(&str, String)]) -> SecretVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = SecretVolume { dir, version: 0 };
        volume.publish(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.join(name)).unwrap();
        }
        volume
    }

    fn publish(&mut self, files: &[(&str, String)]) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        for (name, contents) in files {
            std::fs::write(self.dir.join(&version).join(name), contents).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

/// Whether a TLS handshake with `addr` succeeds for a rustls client trusting only the CA
/// in `ca` (the server certificate is checked for `localhost`).
fn handshake_trusting(addr: std::net::SocketAddr, ca: &str) -> bool {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

fn tls_reloads(fl: &Faultline, listener: &str, result: &str) -> f64 {
    fl.metric(&format!(
        "faultline_tls_reloads_total{{listener=\"{listener}\",result=\"{result}\"}}"
    ))
}

/// cert-manager rotating the Secret: certificate A (CA 1) is replaced by certificate B
/// from another CA, by a `..data` symlink swap; new handshakes get B within a couple of
/// seconds, without a restart; a garbage certificate after that keeps B in force.
#[test]
fn a_rotated_certificate_is_served_without_a_restart_and_a_bad_one_is_refused() {
    let pki = Pki::new();
    let other = ca("the next CA");
    std::fs::write(pki.path("ca2.pem"), other.pem()).unwrap();
    pki.leaf(
        &other,
        "server2",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).unwrap();
    let mut secret = SecretVolume::new(
        pki.dir.path().join("secret"),
        &[
            ("tls.crt", read("server.pem")),
            ("tls.key", read("server.key")),
        ],
    );
    let (cert, key) = (secret.path("tls.crt"), secret.path("tls.key"));
    let fl = start(
        &[
            "--otlp-grpc-tls-cert-file",
            &cert,
            "--otlp-grpc-tls-key-file",
            &key,
            "--otlp-http-tls-cert-file",
            &cert,
            "--otlp-http-tls-key-file",
            &key,
        ]
        .map(String::from),
    );
    let (ca1, ca2) = (pki.path("ca.pem"), pki.path("ca2.pem"));
    let grpc = format!("https://{}", fl.grpc);
    let http = format!("https://{}", fl.otlp_http);
    let h = client(&["export", "http", &http, "--ca", &ca1]);
    assert_eq!(
        (h["sdk"].as_str(), h["status"].as_u64()),
        (Some("SUCCESS"), Some(200)),
        "{h}"
    );
    assert!(!handshake_trusting(fl.otlp_http, &ca2));

    secret.publish(&[
        ("tls.crt", read("server2.pem")),
        ("tls.key", read("server2.key")),
    ]);
    // Checked at most once a second, by a handshake: B within a few attempts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !handshake_trusting(fl.otlp_http, &ca2) {
        assert!(
            std::time::Instant::now() < deadline,
            "B never served: {}",
            fl.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !handshake_trusting(fl.otlp_http, &ca1),
        "A is no longer served"
    );
    let h = client(&["export", "http", &http, "--ca", &ca2]);
    assert_eq!(
        (h["sdk"].as_str(), h["status"].as_u64()),
        (Some("SUCCESS"), Some(200)),
        "{h}"
    );
    let h = client(&["export", "http", &http, "--ca", &ca1]);
    assert_eq!(
        (h["sdk"].as_str(), h["status"].as_str()),
        (Some("FAILURE"), Some("connection_error")),
        "{h}"
    );
    // The gRPC listener shares the files and reloads on its own first handshake.
    let g = client(&["export", "grpc", &grpc, "--ca", &ca2]);
    assert_eq!(
        (g["sdk"].as_str(), g["status"].as_str()),
        (Some("SUCCESS"), Some("OK")),
        "{g}"
    );
    assert_eq!(tls_reloads(&fl, "otlp_http", "ok"), 1.0);
    assert_eq!(tls_reloads(&fl, "otlp_grpc", "ok"), 1.0);
    assert_eq!(tls_reloads(&fl, "otlp_http", "error"), 0.0);
    assert_eq!(accepted(&fl, "http"), 2.0 * SPANS_PER_RUN);

    // A garbage certificate: refused, counted and logged once; B is still served.
    secret.publish(&[
        (
            "tls.crt",
            "-----BEGIN CERTIFICATE-----\ngarbage\n".to_string(),
        ),
        ("tls.key", read("server2.key")),
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tls_reloads(&fl, "otlp_http", "error") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never refused: {}",
            fl.log()
        );
        assert!(handshake_trusting(fl.otlp_http, &ca2), "B stays in force");
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = client(&["export", "http", &http, "--ca", &ca2]);
    assert_eq!(
        (h["sdk"].as_str(), h["status"].as_u64()),
        (Some("SUCCESS"), Some(200)),
        "{h}"
    );
    assert_eq!(
        tls_reloads(&fl, "otlp_http", "error"),
        1.0,
        "not retried while unchanged"
    );
    assert_eq!(tls_reloads(&fl, "otlp_http", "ok"), 1.0);
    let log = fl.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keeping the TLS configuration") && l.contains("otlp_http"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(
        refusals[0].contains(&format!("--otlp-http-tls-cert-file {cert}")),
        "{log}"
    );
}

/// The forwarder's client certificate rotated while running: a downstream requiring
/// client certificates from the test CA refuses the first one (from another CA); once the
/// files are replaced by a certificate from the test CA, spans are delivered, over gRPC
/// and HTTP, without restarting the forwarder.
#[test]
fn a_rotated_forward_client_certificate_is_used_without_a_restart() {
    let pki = Pki::new();
    let mut downstream_args = pki.otlp_tls_args();
    downstream_args.extend(["--tls-client-ca-file".to_string(), pki.path("ca.pem")]);
    let downstream = start(&downstream_args);
    for (protocol, port, listener) in [
        ("grpc", downstream.grpc.port(), "otlp_grpc"),
        ("http", downstream.otlp_http.port(), "otlp_http"),
    ] {
        let (cert, key) = (
            pki.path(&format!("fwd-{protocol}.pem")),
            pki.path(&format!("fwd-{protocol}.key")),
        );
        std::fs::copy(pki.path("stranger.pem"), &cert).unwrap();
        std::fs::copy(pki.path("stranger.key"), &key).unwrap();
        let refused_before = handshake_failures(&downstream, listener);
        let accepted_at_start = accepted(&downstream, protocol);
        let upstream = Faultline::start(&[
            "--forward-endpoint",
            &format!("https://localhost:{port}"),
            "--forward-protocol",
            protocol,
            "--forward-tls-ca-file",
            &pki.path("ca.pem"),
            "--forward-tls-cert-file",
            &cert,
            "--forward-tls-key-file",
            &key,
        ]);
        let (_, refused_spans) =
            crate::support::python_send("grpc", &upstream.grpc_endpoint(), 1, 5, false);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while handshake_failures(&downstream, listener) <= refused_before {
            assert!(
                std::time::Instant::now() < deadline,
                "{protocol}: never refused"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // Rotated as `mv` does it: the key first, then the certificate.
        for (from, to) in [("client.key", &key), ("client.pem", &cert)] {
            let tmp = format!("{to}.new");
            std::fs::copy(pki.path(from), &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
        // Checked at most once a second: a send from now on uses the new certificate.
        std::thread::sleep(Duration::from_millis(1200));
        let (_, sent) = crate::support::python_send("grpc", &upstream.grpc_endpoint(), 2, 5, false);
        // Everything arrives: the new spans, and the ones the refused certificate held
        // back, which were kept queued and retried rather than dropped.
        let want = accepted_at_start + (refused_spans + sent) as f64;
        let now = downstream.wait_metric(
            &format!("faultline_receiver_accepted_spans_total{{transport=\"{protocol}\"}}"),
            want,
            Duration::from_secs(40),
        );
        assert_eq!(now, want, "{protocol}: {}", upstream.log());
        assert!(
            !upstream
                .metrics()
                .contains("faultline_forward_failed_spans_total{"),
            "{protocol}: nothing given up: {}",
            upstream.metrics()
        );
        assert!(
            upstream
                .log()
                .contains("forward TLS files changed, reloaded"),
            "{}",
            upstream.log()
        );
    }
}
