//! Configuration: command-line flags, `FAULTLINE_*` environment variables and an optional
//! TOML file, merged once into one validated [`Config`] (flag > env > file > default).
//!
//! - [`cli`]: every clap struct and subcommand (each flag declared once);
//! - [`resolve`](mod@resolve): flags + environment + file → [`Config`], and the [`ConfigError`]s;
//! - this module: the [`Config`] types the components are given.
//!
//! Nothing else in the crate reads the environment. Every raw value is parsed here, and a
//! bad value stops start-up with a message naming the option. This module imports only
//! the analysis' own option type: every component above it takes its sub-struct.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::analysis::AnalysisConfig;

pub mod cli;
pub mod resolve;

pub use cli::{
    AnalysisArgs, AnalyzeArgs, CheckConfigArgs, Cli, Command, GroupBy, InputFormat, OutputFormat,
    ServeArgs, ANALYZE_AFTER_HELP,
};
pub use resolve::{
    check_file, load, parse_state, read_file, resolve, ConfigError, DEFAULT_STATE_FILE,
};

/// Where the state is kept (`--state`, `--state-url-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// Nothing kept across restarts.
    Memory,
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server shared by the fleet.
    Postgres(SecretUrl),
    /// A file holding the `--state` value, read at start-up (files are named in the
    /// configuration, read by the service, as for TLS).
    UrlFile(PathBuf),
}

/// A database URL that may carry a password: its `Debug` form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(pub String);

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// `scheme://user:secret@host/…` as `scheme://user:***@host/…`; a `password=` parameter
/// likewise.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            if let Some(colon) = rest[..at].find(':') {
                let (a, b) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
                out.replace_range(a..b, "***");
            }
        }
    }
    if let Some(p) = out.find("password=") {
        let start = p + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

/// The state database and its writer.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Where.
    pub location: StateLocation,
    /// `--state-tls-ca-file`.
    pub tls_ca_file: Option<PathBuf>,
    /// `--state-queue`: verdicts waiting for the writer.
    pub queue: usize,
    /// `--verdict-retention-age`.
    pub retention_age: Duration,
}

/// The validated configuration of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// OTLP/gRPC listener.
    pub otlp_grpc_listen: SocketAddr,
    /// OTLP/HTTP listener.
    pub otlp_http_listen: SocketAddr,
    /// API, metrics and health listener.
    pub http_listen: SocketAddr,
    /// Ingest limits.
    pub ingest: IngestConfig,
    /// Trace assembly.
    pub assembly: AssemblyConfig,
    /// Shutdown deadline.
    pub shutdown_timeout: Duration,
    /// Log filter.
    pub log_level: String,
    /// What the analysis is told.
    pub analysis: AnalysisConfig,
    /// Traces whose verdicts are kept.
    pub verdict_retention: usize,
    /// The state database.
    pub state: StateConfig,
    /// Capacity of the `WatchVerdicts` feed, in verdicts.
    pub watch_buffer: usize,
    /// The verdict metrics on /metrics.
    pub metrics: MetricsConfig,
    /// The forwarder, when `--forward-endpoint` is set.
    pub forward: Option<ForwardConfig>,
    /// TLS and bearer-token authentication of the listeners (files named, not yet read:
    /// [`crate::tls`] and [`crate::auth`] load them at start-up).
    pub security: SecurityConfig,
}

/// The files of one TLS listener, after the per-listener options fell back to the shared
/// ones. Each path comes with the option that named it, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM) and its option.
    pub cert: (&'static str, PathBuf),
    /// The private key (PEM) and its option.
    pub key: (&'static str, PathBuf),
    /// The client CA (PEM) and its option, when client certificates are required.
    pub client_ca: Option<(&'static str, PathBuf)>,
}

/// TLS and authentication of the three listeners; `None` is plain text / no token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// TLS of `--otlp-grpc-listen`.
    pub otlp_grpc_tls: Option<TlsFiles>,
    /// TLS of `--otlp-http-listen`.
    pub otlp_http_tls: Option<TlsFiles>,
    /// TLS of `--http-listen`.
    pub http_tls: Option<TlsFiles>,
    /// `--auth-token-file`: tokens of the OTLP listeners.
    pub auth_token_file: Option<PathBuf>,
    /// `--api-auth-token-file`: tokens of /metrics and the API.
    pub api_auth_token_file: Option<PathBuf>,
}

/// The verdict metrics (docs/contract.md §5).
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Label sets per metric family before the `otel_metric_overflow` fold.
    pub max_series: usize,
    /// The OTLP metrics push, when `--otlp-metrics-endpoint` is set.
    pub otlp: Option<OtlpMetricsConfig>,
}

/// Protocol of the OTLP metrics push (the values of the OpenTelemetry SDKs'
/// `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpMetricsProtocol {
    /// `grpc`: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.
    Grpc,
    /// `http/protobuf`: `POST /v1/metrics`, `application/x-protobuf`.
    HttpProtobuf,
}

/// The OTLP metrics push (docs/contract.md §5).
#[derive(Debug, Clone)]
pub struct OtlpMetricsConfig {
    /// Where to push: for gRPC the collector's origin; for HTTP the full URL, with
    /// `/v1/metrics` already appended when the flag gave no path.
    pub endpoint: http::Uri,
    /// gRPC or HTTP.
    pub protocol: OtlpMetricsProtocol,
    /// Time between pushes.
    pub interval: Duration,
}

/// Wire protocol of the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardProtocol {
    /// OTLP/gRPC `TraceService/Export`.
    Grpc,
    /// OTLP/HTTP `POST /v1/traces`, `application/x-protobuf`.
    Http,
}

/// When spans are forwarded (docs/contract.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// As soon as they are accepted.
    Passthrough,
    /// When their trace has been analysed, with `faultline.*` attributes on the entry and
    /// blame spans of failing requests; late spans as they come.
    Annotate,
}

/// TLS towards the forward endpoint (files are read when the forwarder starts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardTls {
    /// CA bundle that signs the endpoint's certificate (web PKI roots when `None`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// The forwarder (docs/contract.md §6, issue "collector pipeline stage").
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// gRPC: the endpoint's origin; HTTP: the full URL (`/v1/traces` appended to a bare one).
    pub endpoint: http::Uri,
    /// gRPC or HTTP.
    pub protocol: ForwardProtocol,
    /// Passthrough or annotate.
    pub mode: ForwardMode,
    /// Headers (gRPC metadata) on every request.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Gzip the requests.
    pub gzip: bool,
    /// TLS settings (used for `https://` endpoints).
    pub tls: ForwardTls,
    /// Spans queued or in flight before senders are pushed back.
    pub queue_size: usize,
    /// The on-disk queue's directory.
    pub queue_dir: Option<PathBuf>,
    /// Deadline of one request.
    pub timeout: Duration,
    /// Give up on a batch after retrying this long.
    pub max_elapsed: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Limits of the OTLP receivers.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest request after decompression, bytes.
    pub max_request_size: usize,
}

/// Trace assembly policy.
#[derive(Debug, Clone)]
pub struct AssemblyConfig {
    /// Idle time after which a trace is complete.
    pub trace_idle: Duration,
    /// Age after which a trace is complete regardless.
    pub trace_max_age: Duration,
    /// Span budget.
    pub max_buffered_spans: usize,
    /// Capacity of the hand-off channel to analysis, in traces.
    pub analysis_queue_size: usize,
    /// How long analysed trace ids are remembered to recognise late spans.
    pub late_span_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction: an empty set of raw options resolves.
        resolve(ServeArgs::default()).expect("built-in defaults are valid")
    }
}
