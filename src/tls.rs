//! TLS on the listeners: loading certificates, keys and client CAs into a rustls server
//! configuration, and [`Incoming`], the one accept loop the OTLP/gRPC (tonic) and both
//! axum listeners share, plain or TLS.
//!
//! rustls with the `ring` provider: no OpenSSL and no C toolchain at build time. With a
//! client CA the listener requires a client certificate chaining to it (mutual TLS,
//! verified by `rustls::server::WebPkiClientVerifier`).
//!
//! Handshakes run in their own tasks, so a slow or silent client never holds up the
//! accept loop: at most [`MAX_PENDING_HANDSHAKES`] at once (beyond that, new connections
//! wait in the kernel's backlog), each bounded by [`HANDSHAKE_TIMEOUT`]. A failed
//! handshake — a plain-text client, an unknown CA, a missing client certificate — is
//! logged at debug level, counted in `faultline_tls_handshake_failures_total{listener}`
//! and never fatal. Nothing here knows the handlers; `app` wires it.
//!
//! Certificates, keys and client CAs are reloaded while running ([`ServerTls`]): the
//! files are checked for changes (a `stat` through symlinks, `crate::file_watch`) at most
//! once every [`CHECK_EVERY`], by the handshake that finds the check due, as the token
//! files of `auth` are, so a Kubernetes Secret rotated by cert-manager takes effect for
//! new handshakes within a second or two of the kubelet swapping its `..data` link, and
//! connections already up keep the session they have. A changed set that cannot be used
//! (half-written, unparsable, a key that does not fit the certificate) is logged once as
//! an error naming the option and the file, counted in
//! `faultline_tls_reloads_total{listener, result="error"}`, and the previous
//! configuration stays in force; it is tried again when a file changes again.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsFiles};
use crate::file_watch::{DueCheck, FileStamp};
use crate::telemetry::metrics::{
    ListenerLabels, ListenerName, Metrics, ReloadResult, TlsReloadLabels,
};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress per listener before accepting pauses.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// How often a listener's TLS files are checked for changes (as token files are,
/// `crate::auth::CHECK_EVERY`).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// ALPN of the OTLP/gRPC listener: gRPC is HTTP/2 only, and gRPC clients insist on `h2`.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];

/// ALPN of the axum listeners, which serve both HTTP versions.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

fn file_error(option: &'static str, path: &Path, reason: impl ToString) -> ConfigError {
    ConfigError::File {
        option,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| file_error(option, path, format!("cannot read: {e}")))
}

/// Every certificate in a PEM file (at least one).
fn certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(option, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            option,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    Ok(certs)
}

/// The crypto provider: `ring` (see the module doc).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `files` into a rustls server configuration offering `alpn`.
///
/// # Errors
/// [`ConfigError::File`] naming the option and file that cannot be read, holds no usable
/// PEM, or (for the key) does not match the certificate.
pub fn server_config(
    files: &TlsFiles,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, ConfigError> {
    let (cert_option, cert_path) = (files.cert.0, files.cert.1.as_path());
    let (key_option, key_path) = (files.key.0, files.key.1.as_path());
    let chain = certificates(cert_option, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_option, key_path)?).map_err(|e| {
        file_error(
            key_option,
            key_path,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file: {e}"),
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| file_error(cert_option, cert_path, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some((ca_option, ca_path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca_option, ca_path)? {
                roots.add(cert).map_err(|e| {
                    file_error(ca_option, ca_path, format!("unusable CA certificate: {e}"))
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .map_err(|e| file_error(ca_option, ca_path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        file_error(
            key_option,
            key_path,
            format!(
                "the key does not fit --{cert_option} {}: {e}",
                cert_path.display()
            ),
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The stamps of a listener's files (certificate, key, client CA), as last looked at.
type Stamps = [Option<FileStamp>; 3];

fn stamps(files: &TlsFiles) -> Stamps {
    [
        FileStamp::of(&files.cert.1),
        FileStamp::of(&files.key.1),
        files.client_ca.as_ref().and_then(|(_, p)| FileStamp::of(p)),
    ]
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    /// The version of the files last looked at, loaded or refused: a refused version is
    /// not retried (nor logged again) until a file changes again.
    stamps: Stamps,
}

/// The TLS configuration of one listener, reloaded when its files change (module doc).
///
/// What is swapped is the whole `rustls::ServerConfig`, taken afresh for each handshake,
/// rather than only the certificate behind a `ResolvesServerCert`:
/// - one swap covers the certificate, the key and the client CA together, so a rotation
///   that replaces all of them is seen as one version, never a new certificate beside a
///   stale CA;
/// - a client CA cannot be swapped cleanly inside a `ServerConfig`: its verifier hands
///   out borrowed `root_hint_subjects(&self)`, which a verifier delegating to a
///   replaceable inner one cannot return;
/// - a new `ServerConfig` comes with a new session cache, so sessions resumed after a
///   rotation are fully handshaken again, never resumed on the authority of the old
///   certificate or CA.
///
/// Taking the configuration is a read lock and an `Arc` clone; the previous configuration
/// lives on in the connections made with it, which are not disturbed.
pub struct ServerTls {
    files: TlsFiles,
    alpn: &'static [&'static [u8]],
    listener: ListenerName,
    // A std lock: held only to clone or replace an `Arc`, never across an await.
    loaded: RwLock<Loaded>,
    check: DueCheck,
    reloaded: Counter,
    refused: Counter,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads `files` for the listener `listener`, offering `alpn`; reloads are counted in
    /// `metrics` (both results start at zero, so an alert on errors has a series).
    ///
    /// # Errors
    /// See [`server_config`]: at start-up an unusable file is a bad option.
    pub fn load(
        files: &TlsFiles,
        alpn: &'static [&'static [u8]],
        listener: ListenerName,
        metrics: &Metrics,
    ) -> Result<ServerTls, ConfigError> {
        let before = stamps(files);
        let config = Arc::new(server_config(files, alpn)?);
        let counter = |result| {
            metrics
                .tls_reloads
                .get_or_create(&TlsReloadLabels { listener, result })
                .clone()
        };
        Ok(ServerTls {
            files: files.clone(),
            alpn,
            listener,
            loaded: RwLock::new(Loaded {
                config,
                stamps: before,
            }),
            check: DueCheck::new(CHECK_EVERY),
            reloaded: counter(ReloadResult::Ok),
            refused: counter(ReloadResult::Error),
        })
    }

    /// [`ServerTls::load`] for a listener that may be plain text (`files` is `None`).
    ///
    /// # Errors
    /// See [`server_config`].
    pub fn load_optional(
        files: Option<&TlsFiles>,
        alpn: &'static [&'static [u8]],
        listener: ListenerName,
        metrics: &Metrics,
    ) -> Result<Option<Arc<ServerTls>>, ConfigError> {
        files
            .map(|f| ServerTls::load(f, alpn, listener, metrics).map(Arc::new))
            .transpose()
    }

    /// Checks the files every `every` instead of [`CHECK_EVERY`] (tests use zero: every
    /// handshake checks).
    pub fn check_every(mut self, every: Duration) -> ServerTls {
        self.check = DueCheck::new(every);
        self
    }

    fn read_loaded(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        // `Loaded` is replaced whole, so a lock poisoned by a panic elsewhere still holds a
        // consistent value.
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration for a new handshake, after re-reading the files if a check is
    /// due and they changed.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        // One handshake a second does the check; the others take what is in force.
        if self.check.take() {
            // Refusals are logged and counted in `refresh`; the old config stays.
            let _ = self.refresh();
        }
        Arc::clone(&self.read_loaded().config)
    }

    /// Re-reads the files if any changed since they were last looked at. `Ok(true)`: the
    /// new files are in force; `Ok(false)`: nothing changed.
    ///
    /// # Errors
    /// The changed files cannot be used ([`server_config`]); the previous configuration
    /// stays in force. Logged and counted here.
    pub fn refresh(&self) -> Result<bool, ConfigError> {
        let now = stamps(&self.files);
        if now == self.read_loaded().stamps {
            return Ok(false);
        }
        let result = server_config(&self.files, self.alpn);
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.stamps = now;
        let listener = self.listener.as_str();
        match result {
            Ok(config) => {
                loaded.config = Arc::new(config);
                self.reloaded.inc();
                tracing::info!(
                    listener,
                    option = self.files.cert.0,
                    path = %self.files.cert.1.display(),
                    "TLS files changed, reloaded; new handshakes use them"
                );
                Ok(true)
            }
            Err(e) => {
                self.refused.inc();
                tracing::error!(
                    listener,
                    error = %e,
                    "keeping the TLS configuration loaded before (retried when a file changes)"
                );
                Err(e)
            }
        }
    }
}

/// An accepted connection: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Conn {
    /// Plain text.
    Plain(TcpStream),
    /// TLS, handshake completed.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// A listener's accept loop, plain or TLS (module doc).
pub struct Incoming {
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    handshakes: JoinSet<Handshake>,
    failures: Counter,
    name: ListenerName,
}

impl Incoming {
    /// Accepts on `listener`, with TLS when `tls` is set; handshake failures are counted
    /// under `name` in `metrics`.
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<ServerTls>>,
        name: ListenerName,
        metrics: &Metrics,
    ) -> Self {
        let failures = metrics
            .tls_handshake_failures
            .get_or_create(&ListenerLabels { listener: name })
            .clone();
        Incoming {
            listener,
            tls,
            handshakes: JoinSet::new(),
            failures,
            name,
        }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The next connection (after its handshake, with TLS). Accept errors are logged and
    /// retried, as axum's own listener does; this never fails.
    pub async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Some(tls) = &self.tls else {
                match self.listener.accept().await {
                    Ok((tcp, peer)) => return (Conn::Plain(tcp), peer),
                    Err(e) => accept_error(e).await,
                }
                continue;
            };
            // Both futures are cancel-safe: a connection accepted or a handshake finished
            // is never lost when the other branch wins.
            tokio::select! {
                done = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Some(Ok(Some((tls, peer)))) = done {
                        return (Conn::Tls(Box::new(tls)), peer);
                    }
                }
                accepted = self.listener.accept(),
                    if self.handshakes.len() < MAX_PENDING_HANDSHAKES =>
                {
                    match accepted {
                        Ok((tcp, peer)) => {
                            let tls = Arc::clone(tls);
                            let failures = self.failures.clone();
                            let name = self.name;
                            self.handshakes.spawn(async move {
                                // The configuration in force now (checking the files when
                                // due, here rather than on the accept loop): a reload
                                // applies from the next handshake on.
                                let handshake = TlsAcceptor::from(tls.config()).accept(tcp);
                                let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await;
                                match outcome {
                                    Ok(Ok(tls)) => Some((tls, peer)),
                                    Ok(Err(e)) => {
                                        failures.inc();
                                        tracing::debug!(listener = name.as_str(), %peer, error = %e, "TLS handshake failed");
                                        None
                                    }
                                    Err(_) => {
                                        failures.inc();
                                        tracing::debug!(listener = name.as_str(), %peer, "TLS handshake timed out");
                                        None
                                    }
                                }
                            });
                        }
                        Err(e) => accept_error(e).await,
                    }
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Conn>> + Send {
        futures::stream::unfold(self, |mut incoming| async move {
            let (conn, _) = incoming.accept().await;
            Some((Ok(conn), incoming))
        })
    }
}

/// Per-connection errors (the peer gave up) are routine; others (out of file
/// descriptors) would spin the loop, so they are logged and waited out.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        Incoming::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: ("tls-cert-file", dir.join("cert.pem")),
            key: ("tls-key-file", dir.join("key.pem")),
            client_ca: None,
        }
    }

    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap()
    }

    #[test]
    fn a_certificate_and_its_key_load_with_the_alpn_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let ck = self_signed();
        let f = files(
            dir.path(),
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        );
        let c = server_config(&f, ALPN_GRPC).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
    }

    #[test]
    fn unusable_files_name_the_option_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ck = self_signed();
        let key = ck.signing_key.serialize_pem();
        let cert = ck.cert.pem();
        let other_key = self_signed().signing_key.serialize_pem();
        let cases: [(&[u8], &[u8], &str); 4] = [
            (b"not pem", key.as_bytes(), "tls-cert-file"),
            (cert.as_bytes(), b"not pem", "tls-key-file"),
            (key.as_bytes(), key.as_bytes(), "tls-cert-file"),
            (cert.as_bytes(), other_key.as_bytes(), "tls-key-file"),
        ];
        for (cert, key, option) in cases {
            let f = files(dir.path(), cert, key);
            let e = server_config(&f, ALPN_HTTP).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--{option} ")), "{e}");
            assert!(e.contains(dir.path().to_str().unwrap()), "{e}");
        }
        let mut f = files(dir.path(), cert.as_bytes(), key.as_bytes());
        f.cert.1 = dir.path().join("absent.pem");
        let e = server_config(&f, ALPN_HTTP).unwrap_err().to_string();
        assert!(
            e.starts_with("--tls-cert-file ") && e.contains("absent.pem: cannot read"),
            "{e}"
        );
        f = files(dir.path(), cert.as_bytes(), key.as_bytes());
        std::fs::write(dir.path().join("ca.pem"), "garbage").unwrap();
        f.client_ca = Some(("otlp-grpc-tls-client-ca-file", dir.path().join("ca.pem")));
        let e = server_config(&f, ALPN_HTTP).unwrap_err().to_string();
        assert!(e.starts_with("--otlp-grpc-tls-client-ca-file "), "{e}");
    }

    #[tokio::test]
    async fn a_failed_handshake_is_counted_and_the_next_client_is_served() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let ck = self_signed();
        let f = files(
            dir.path(),
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::default();
        let mut incoming = Incoming::new(
            listener,
            ServerTls::load_optional(Some(&f), ALPN_HTTP, ListenerName::OtlpHttp, &metrics)
                .unwrap(),
            ListenerName::OtlpHttp,
            &metrics,
        );
        assert!(incoming.is_tls());
        let server = tokio::spawn(async move { incoming.accept().await });

        // A plain-text client: the server answers with an alert and closes.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = plain.read_to_end(&mut reply).await;
        assert!(!reply.starts_with(b"HTTP/"), "no HTTP answer in plain text");

        // A TLS client trusting the certificate gets through.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let _tls = connector.connect(name, tcp).await.unwrap();
        let (conn, _) = server.await.unwrap();
        assert!(matches!(conn, Conn::Tls(_)));
        let failures = metrics
            .tls_handshake_failures
            .get_or_create(&ListenerLabels {
                listener: ListenerName::OtlpHttp,
            })
            .get();
        assert_eq!(failures, 1);
    }

    /// A CA, and a leaf it signs for `localhost` with `usage`, as PEM.
    struct Issued {
        ca: String,
        cert: String,
        key: String,
    }

    fn issue(usage: rcgen::ExtendedKeyUsagePurpose) -> Issued {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        Issued {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server_pair() -> Issued {
        issue(rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Replaces `path` the way a Secret volume or `mv` does: never half-written.
    fn replace(path: &Path, contents: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Whether a handshake with `server` succeeds on both sides, for a client trusting
    /// only `trusted` and presenting `client` (certificate, key) when given.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        trusted: &str,
        client: Option<&Issued>,
    ) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(trusted)).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(c) => builder
                .with_client_auth_cert(
                    vec![der(&c.cert)],
                    PrivateKeyDer::from_pem_slice(c.key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let (s, c) = tokio::join!(
            TlsAcceptor::from(server).accept(server_end),
            connector.connect(name, client_end)
        );
        s.is_ok() && c.is_ok()
    }

    fn reloads(metrics: &Metrics, result: ReloadResult) -> u64 {
        metrics
            .tls_reloads
            .get_or_create(&TlsReloadLabels {
                listener: ListenerName::OtlpHttp,
                result,
            })
            .get()
    }

    fn reloading(f: &TlsFiles, metrics: &Metrics) -> ServerTls {
        ServerTls::load(f, ALPN_HTTP, ListenerName::OtlpHttp, metrics)
            .unwrap()
            .check_every(Duration::ZERO)
    }

    #[tokio::test]
    async fn a_replaced_certificate_is_used_by_the_next_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (server_pair(), server_pair());
        let f = files(dir.path(), a.cert.as_bytes(), a.key.as_bytes());
        let metrics = Metrics::default();
        let tls = reloading(&f, &metrics);
        let before = tls.config();
        assert!(handshake(Arc::clone(&before), &a.ca, None).await);

        // Unchanged files: the same configuration, nothing counted.
        assert!(Arc::ptr_eq(&tls.config(), &before));
        replace(&f.key.1, &b.key);
        replace(&f.cert.1, &b.cert);
        let after = tls.config();
        assert!(handshake(Arc::clone(&after), &b.ca, None).await);
        assert!(!handshake(Arc::clone(&after), &a.ca, None).await);
        // What was taken before the swap (a connection being made) is undisturbed.
        assert!(handshake(before, &a.ca, None).await);
        assert_eq!(reloads(&metrics, ReloadResult::Ok), 1);
        assert_eq!(reloads(&metrics, ReloadResult::Error), 0);
        assert_eq!(
            after.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[tokio::test]
    async fn an_unusable_new_file_keeps_the_previous_certificate_and_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (server_pair(), server_pair());
        let f = files(dir.path(), a.cert.as_bytes(), a.key.as_bytes());
        let metrics = Metrics::default();
        let tls = reloading(&f, &metrics);

        // Half-written, or garbage: refused, naming the option and the file.
        replace(&f.cert.1, &b.cert[..b.cert.len() / 2]);
        let e = tls.refresh().unwrap_err().to_string();
        assert!(e.starts_with("--tls-cert-file "), "{e}");
        assert!(e.contains(f.cert.1.to_str().unwrap()), "{e}");
        assert!(handshake(tls.config(), &a.ca, None).await);
        // The same bad version is not retried, nor reported again.
        assert!(!tls.refresh().unwrap());
        assert_eq!(reloads(&metrics, ReloadResult::Error), 1);

        // B's certificate beside A's key: the key does not fit.
        replace(&f.cert.1, &b.cert);
        let e = tls.refresh().unwrap_err().to_string();
        assert!(e.starts_with("--tls-key-file "), "{e}");
        assert!(handshake(tls.config(), &a.ca, None).await);
        assert_eq!(reloads(&metrics, ReloadResult::Error), 2);

        // The key arrives: B is in force.
        replace(&f.key.1, &b.key);
        assert!(tls.refresh().unwrap());
        assert!(handshake(tls.config(), &b.ca, None).await);
        // A file gone (a Secret deleted) is refused too, and B stays.
        std::fs::remove_file(&f.key.1).unwrap();
        let e = tls.refresh().unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        assert!(handshake(tls.config(), &b.ca, None).await);
        assert_eq!(reloads(&metrics, ReloadResult::Ok), 1);
        assert_eq!(reloads(&metrics, ReloadResult::Error), 3);
    }

    #[tokio::test]
    async fn a_replaced_client_ca_decides_the_next_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_pair();
        let (old, new) = (
            issue(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
            issue(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
        );
        let mut f = files(dir.path(), server.cert.as_bytes(), server.key.as_bytes());
        let ca = dir.path().join("client-ca.pem");
        std::fs::write(&ca, &old.ca).unwrap();
        f.client_ca = Some(("tls-client-ca-file", ca.clone()));
        let metrics = Metrics::default();
        let tls = reloading(&f, &metrics);
        assert!(handshake(tls.config(), &server.ca, Some(&old)).await);
        assert!(!handshake(tls.config(), &server.ca, Some(&new)).await);

        replace(&ca, &new.ca);
        assert!(handshake(tls.config(), &server.ca, Some(&new)).await);
        assert!(!handshake(tls.config(), &server.ca, Some(&old)).await);
        assert_eq!(reloads(&metrics, ReloadResult::Ok), 1);
    }

    #[test]
    fn files_are_checked_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (server_pair(), server_pair());
        let f = files(dir.path(), a.cert.as_bytes(), a.key.as_bytes());
        let metrics = Metrics::default();
        let tls = ServerTls::load(&f, ALPN_HTTP, ListenerName::OtlpHttp, &metrics)
            .unwrap()
            .check_every(Duration::from_secs(3600));
        let before = tls.config();
        replace(&f.key.1, &b.key);
        replace(&f.cert.1, &b.cert);
        assert!(Arc::ptr_eq(&tls.config(), &before), "not checked yet");
        assert_eq!(reloads(&metrics, ReloadResult::Ok), 0);
    }
}
