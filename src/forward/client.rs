//! The OTLP clients of the forwarder: one request = one encoded
//! `ExportTraceServiceRequest`, sent as bytes (never re-encoded), over gRPC (tonic) or
//! HTTP (hyper), with TLS by rustls; each answer classified by [`super::retry`].
//!
//! The TLS files (`--forward-tls-cert-file`, `--forward-tls-key-file`,
//! `--forward-tls-ca-file`) are reloaded when they change, checked as the listeners'
//! certificates are (`crate::file_watch`, at most once a second, by the send that finds
//! the check due): the connection is rebuilt with the new files, and requests in flight
//! finish on the old one. A changed set that cannot be used is logged once, naming the
//! options and files, and the previous one stays in use. The whole client is rebuilt rather than its
//! certificate swapped behind a rustls `ResolvesClientCert`, because tonic's
//! `ClientTlsConfig` takes PEM bytes only (no resolver), and one mechanism for both
//! protocols beats two; a rotation costs one new connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::retry::{self, Attempt, FailureReason};
use crate::config::{ForwardConfig, ForwardProtocol, ForwardTls};
use crate::file_watch::{DueCheck, FileStamp};

/// How often the client certificate files are checked for changes (as the listeners'
/// certificates, `crate::tls::CHECK_EVERY`).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The gRPC method (OTLP/gRPC).
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Largest response body read from an HTTP endpoint (an OTLP response is tiny; an error
/// page is only logged).
const MAX_RESPONSE: usize = 64 * 1024;

/// The forwarder cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS file is unreadable or holds no usable PEM.
    #[error("--{option} {path}: {reason}")]
    TlsFile {
        /// The flag.
        option: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TLS settings were refused by the TLS library.
    #[error("forward TLS: {0}")]
    Tls(String),
}

/// A client of the forward endpoint, rebuilt when its TLS files change (module doc).
pub struct Client {
    cfg: ForwardConfig,
    // A std lock: held only to clone or replace the connection, never across an await.
    connection: RwLock<Connection>,
    watch: Option<TlsFilesWatch>,
}

/// The TLS files of an `https://` endpoint (CA, client certificate and key, those set)
/// and the version of them last looked at.
struct TlsFilesWatch {
    files: Vec<(&'static str, PathBuf)>,
    check: DueCheck,
    /// Loaded or refused: a refused version is not retried until a file changes again.
    stamps: RwLock<Vec<Option<FileStamp>>>,
}

impl TlsFilesWatch {
    fn new(tls: &ForwardTls) -> Option<TlsFilesWatch> {
        let mut files = Vec::new();
        if let Some(ca) = &tls.ca_file {
            files.push(("forward-tls-ca-file", ca.clone()));
        }
        if let Some((cert, key)) = &tls.client_identity {
            files.push(("forward-tls-cert-file", cert.clone()));
            files.push(("forward-tls-key-file", key.clone()));
        }
        if files.is_empty() {
            return None;
        }
        let stamps = RwLock::new(stamps(&files));
        Some(TlsFilesWatch {
            files,
            check: DueCheck::new(CHECK_EVERY),
            stamps,
        })
    }

    /// `--option file, ...` for log lines.
    fn describe(&self) -> String {
        let named: Vec<String> = self
            .files
            .iter()
            .map(|(option, path)| format!("--{option} {}", path.display()))
            .collect();
        named.join(", ")
    }
}

fn stamps(files: &[(&'static str, PathBuf)]) -> Vec<Option<FileStamp>> {
    files.iter().map(|(_, p)| FileStamp::of(p)).collect()
}

impl Client {
    /// Builds the client; connects lazily, so a downstream that is down at start-up is
    /// retried like any other failure.
    ///
    /// # Errors
    /// A TLS file is unreadable or invalid.
    pub fn new(cfg: &ForwardConfig) -> Result<Client, ClientError> {
        let watch = if https(cfg) {
            TlsFilesWatch::new(&cfg.tls)
        } else {
            None
        };
        Ok(Client {
            connection: RwLock::new(Connection::new(cfg)?),
            cfg: cfg.clone(),
            watch,
        })
    }

    /// Sends one encoded request and classifies the answer.
    pub async fn send(&self, body: Bytes) -> Attempt {
        if self.watch.as_ref().is_some_and(|w| w.check.take()) {
            // Refusals are logged in `refresh`; the connection in use stays.
            let _ = self.refresh();
        }
        // `Connection` is cheap to clone (a channel or a pooled client).
        let connection = self
            .connection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        connection.send(body).await
    }

    /// Rebuilds the connection if a TLS file changed since they were last looked at.
    /// `Ok(true)`: the new files are in use for new connections.
    ///
    /// # Errors
    /// The changed files cannot be used; the previous connection stays. Logged here.
    pub fn refresh(&self) -> Result<bool, ClientError> {
        let Some(watch) = &self.watch else {
            return Ok(false);
        };
        let now = stamps(&watch.files);
        {
            let mut last = watch.stamps.write().unwrap_or_else(|p| p.into_inner());
            if *last == now {
                return Ok(false);
            }
            *last = now;
        }
        match Connection::new(&self.cfg) {
            Ok(connection) => {
                *self.connection.write().unwrap_or_else(|p| p.into_inner()) = connection;
                tracing::info!(
                    files = %watch.describe(),
                    "forward TLS files changed, reloaded; new connections use them"
                );
                Ok(true)
            }
            Err(e) => {
                tracing::error!(
                    files = %watch.describe(),
                    error = %e,
                    "keeping the forward TLS files loaded before (retried when a file changes)"
                );
                Err(e)
            }
        }
    }
}

fn https(cfg: &ForwardConfig) -> bool {
    cfg.endpoint.scheme_str() == Some("https")
}

/// The connection to the forward endpoint. Cheap to clone (connections are shared).
#[derive(Clone)]
enum Connection {
    /// OTLP/gRPC.
    Grpc(GrpcClient),
    /// OTLP/HTTP.
    Http(Box<HttpClient>),
}

impl Connection {
    fn new(cfg: &ForwardConfig) -> Result<Connection, ClientError> {
        let https = https(cfg);
        Ok(match cfg.protocol {
            ForwardProtocol::Grpc => Connection::Grpc(GrpcClient::new(cfg, https)?),
            ForwardProtocol::Http => Connection::Http(Box::new(HttpClient::new(cfg, https)?)),
        })
    }

    async fn send(&self, body: Bytes) -> Attempt {
        match self {
            Connection::Grpc(c) => c.send(body).await,
            Connection::Http(c) => c.send(body).await,
        }
    }
}

fn read_file(option: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::TlsFile {
        option,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = read_file(option, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::TlsFile {
            option,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientError::TlsFile {
            option,
            path: path.display().to_string(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The rustls client configuration: the given CA (or web PKI roots) and an optional
/// client certificate.
fn rustls_config(tls: &ForwardTls) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for cert in certificates("forward-tls-ca-file", ca)? {
                roots.add(cert).map_err(|e| ClientError::TlsFile {
                    option: "forward-tls-ca-file",
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match &tls.client_identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certificates("forward-tls-cert-file", cert)?;
            let key_pem = read_file("forward-tls-key-file", key)?;
            let key =
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ClientError::TlsFile {
                    option: "forward-tls-key-file",
                    path: key.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Tls(e.to_string()))
        }
    }
}

/// OTLP/gRPC over a tonic channel, bytes in and out.
#[derive(Clone)]
pub struct GrpcClient {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    headers: Arc<tonic::metadata::MetadataMap>,
    timeout: Duration,
}

impl GrpcClient {
    fn new(cfg: &ForwardConfig, https: bool) -> Result<GrpcClient, ClientError> {
        let mut endpoint = tonic::transport::Endpoint::from(cfg.endpoint.clone())
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if https {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            match &cfg.tls.ca_file {
                Some(ca) => {
                    let pem = read_file("forward-tls-ca-file", ca)?;
                    certificates("forward-tls-ca-file", ca)?; // refuse a file without one
                    tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                }
                None => tls = tls.with_webpki_roots(),
            }
            if let Some((cert, key)) = &cfg.tls.client_identity {
                let cert = read_file("forward-tls-cert-file", cert)?;
                let key = read_file("forward-tls-key-file", key)?;
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| ClientError::Tls(e.to_string()))?;
        }
        let channel = endpoint.connect_lazy();
        let mut grpc = tonic::client::Grpc::new(channel);
        if cfg.gzip {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        grpc = grpc.accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let mut headers = tonic::metadata::MetadataMap::new();
        for (name, value) in &cfg.headers {
            // Header names were validated as HTTP names; gRPC metadata takes the same.
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_bytes()),
            ) {
                headers.insert(k, v);
            }
        }
        Ok(GrpcClient {
            grpc,
            headers: Arc::new(headers),
            timeout: cfg.timeout,
        })
    }

    async fn send(&self, body: Bytes) -> Attempt {
        let mut grpc = self.grpc.clone();
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("not connected: {e}")))?;
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = (*self.headers).clone();
            request.set_timeout(self.timeout);
            let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
            grpc.unary(request, path, RawCodec).await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Attempt::Retry {
                reason: FailureReason::Timeout,
                hint: None,
                detail: format!("no answer within {:?}", self.timeout),
            },
            Ok(Ok(response)) => delivered(response.into_inner()),
            Ok(Err(status)) => grpc_status_attempt(&status),
        }
    }
}

/// Classifies a failed gRPC call.
///
/// A status the server sent is classified by its code (OTLP's rules, `retry`). A status
/// tonic made up locally from a transport failure (the connection or its TLS session broke
/// before an answer came: a reset, a client certificate the server refused after the
/// handshake) is UNKNOWN and carries that error as its source. The server decided nothing
/// then, so it is retried as unreachable, as grpc-go (the Collector's exporter) reports
/// such failures as UNAVAILABLE; dropping the batch as permanent would lose spans.
fn grpc_status_attempt(status: &tonic::Status) -> Attempt {
    use tonic_types::StatusExt;
    if status.code() == tonic::Code::Unknown && std::error::Error::source(status).is_some() {
        return Attempt::Retry {
            reason: FailureReason::Unreachable,
            hint: None,
            detail: format!("transport failure: {}", status.message()),
        };
    }
    let hint = status.get_details_retry_info().and_then(|r| r.retry_delay);
    retry::grpc_failure(status.code() as i32, hint, status.message())
}

fn delivered(response: ExportTraceServiceResponse) -> Attempt {
    match response.partial_success {
        Some(p) if p.rejected_spans > 0 => Attempt::Delivered {
            rejected: p.rejected_spans as u64,
            message: p.error_message,
        },
        _ => Attempt::Delivered {
            rejected: 0,
            message: String::new(),
        },
    }
}

/// A gRPC codec for OTLP trace exports that are already encoded: sends the bytes as they
/// are; decodes the response with prost (an undecodable one counts as accepted). Also
/// used by the load generator.
#[derive(Clone, Copy, Default, Debug)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        // An undecodable response to an accepted request still means "accepted".
        Ok(Some(
            ExportTraceServiceResponse::decode(src).unwrap_or_default(),
        ))
    }
}

type HttpsConnector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// OTLP/HTTP (`application/x-protobuf`) over hyper's pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: hyper_util::client::legacy::Client<HttpsConnector, Full<Bytes>>,
    endpoint: http::Uri,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    gzip: bool,
    timeout: Duration,
}

impl HttpClient {
    fn new(cfg: &ForwardConfig, https: bool) -> Result<HttpClient, ClientError> {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = if https {
            builder
                .with_tls_config(rustls_config(&cfg.tls)?)
                .https_only()
                .enable_http1()
                .wrap_connector(http)
        } else {
            // Plain http:// URLs; the TLS config is unused but the type is one.
            builder
                .with_tls_config(rustls_config(&ForwardTls::default())?)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
        Ok(HttpClient {
            client,
            endpoint: cfg.endpoint.clone(),
            headers: Arc::new(cfg.headers.clone()),
            gzip: cfg.gzip,
            timeout: cfg.timeout,
        })
    }

    async fn send(&self, body: Bytes) -> Attempt {
        let mut builder = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        for (k, v) in self.headers.iter() {
            builder = builder.header(k, v);
        }
        let body = if self.gzip {
            builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        let request = match builder.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Permanent {
                    detail: format!("cannot build the request: {e}"),
                }
            }
        };
        let call = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, body))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Attempt::Retry {
                reason: FailureReason::Timeout,
                hint: None,
                detail: format!("no answer within {:?}", self.timeout),
            },
            Ok(Err(e)) => Attempt::Retry {
                reason: FailureReason::Unreachable,
                hint: None,
                detail: format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
            },
            Ok(Ok((status, _, body))) if status.is_success() => {
                delivered(ExportTraceServiceResponse::decode(body).unwrap_or_default())
            }
            Ok(Ok((status, retry_after, body))) => retry::http_failure(
                status.as_u16(),
                retry_after,
                &String::from_utf8_lossy(&body),
            ),
        }
    }
}

fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ForwardMode;

    #[test]
    fn a_local_transport_failure_is_retried_and_a_server_unknown_is_not() {
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer closed the TLS session",
        )));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert!(matches!(
            grpc_status_attempt(&broken),
            Attempt::Retry {
                reason: FailureReason::Unreachable,
                ..
            }
        ));
        // The same code sent by the server is the server's decision: not retried.
        let answered = tonic::Status::unknown("handler blew up");
        assert!(matches!(
            grpc_status_attempt(&answered),
            Attempt::Permanent { .. }
        ));
        assert!(matches!(
            grpc_status_attempt(&tonic::Status::unavailable("busy")),
            Attempt::Retry { .. }
        ));
    }

    fn pair() -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["sender".to_string()]).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    fn replace(path: &Path, contents: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn config(protocol: ForwardProtocol, cert: &Path, key: &Path) -> ForwardConfig {
        ForwardConfig {
            endpoint: "https://localhost:4317".parse().unwrap(),
            protocol,
            mode: ForwardMode::Passthrough,
            headers: Vec::new(),
            gzip: false,
            tls: ForwardTls {
                ca_file: None,
                client_identity: Some((cert.to_owned(), key.to_owned())),
            },
            queue_size: 1,
            queue_dir: None,
            timeout: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(1),
            concurrency: 1,
        }
    }

    #[tokio::test]
    async fn a_changed_client_certificate_rebuilds_the_connection_and_a_bad_one_is_refused() {
        for protocol in [ForwardProtocol::Grpc, ForwardProtocol::Http] {
            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
            let (a_cert, a_key) = pair();
            std::fs::write(&cert, &a_cert).unwrap();
            std::fs::write(&key, &a_key).unwrap();
            let client = Client::new(&config(protocol, &cert, &key)).unwrap();
            assert!(!client.refresh().unwrap(), "unchanged");

            let (b_cert, b_key) = pair();
            // B's certificate beside A's key: refused; then not retried while unchanged.
            replace(&cert, &b_cert);
            assert!(client.refresh().is_err(), "{protocol:?}");
            assert!(!client.refresh().unwrap());
            replace(&key, &b_key);
            assert!(client.refresh().unwrap(), "{protocol:?}");
            replace(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n");
            assert!(client.refresh().is_err(), "{protocol:?}");
        }
    }
}
