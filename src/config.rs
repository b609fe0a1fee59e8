//! Configuration: command-line flags, `FAULTLINE_*` environment variables and an optional
//! TOML file, merged once into one validated [`Config`] (flag > env > file > default).
//!
//! Nothing else in the crate reads the environment. Every raw value is parsed here, and a
//! bad value stops start-up with a message naming the option.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::analysis::AnalysisConfig;
use serde::Deserialize;

/// Errors turning raw options into a [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An option had a value that does not parse or is out of range.
    #[error("invalid value {value:?} for --{option}: {reason}")]
    Invalid {
        /// The option's flag name, without dashes.
        option: &'static str,
        /// The raw value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// An option that another option needs was not given.
    #[error("missing --{option}: {reason}")]
    Missing {
        /// The missing option's flag name, without dashes.
        option: &'static str,
        /// Which option needs it.
        reason: String,
    },
    /// A file named by an option (a certificate, a key, a token file) cannot be used.
    #[error("--{option} {}: {reason}", path.display())]
    File {
        /// The option's flag name, without dashes.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for faultline.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, naming the key.
        message: String,
    },
}

/// `faultline`: explains the HTTP 500s in your OpenTelemetry traces.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, long_about = None)]
pub struct Cli {
    /// What to run; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the service (also accepted without `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
// Parsed once at start-up and moved out at once: the size of `Serve` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve(ServeArgs),
    /// Check a TOML config file exactly as `--config FILE` would load it (same parsing and
    /// validation, no listener started): prints `FILE: ok` and exits 0, or prints the
    /// error start-up would and exits 2. Flags and `FAULTLINE_*` variables are ignored,
    /// so the verdict is about the file alone.
    CheckConfig(CheckConfigArgs),
    /// Analyse captured traces offline (OTLP/JSON lines or OTLP/protobuf files, `-` for
    /// standard input) and print the verdicts the service would give.
    #[command(after_help = crate::offline::AFTER_HELP)]
    Analyze(crate::offline::AnalyzeArgs),
}

/// Options of `faultline check-config`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Raw service options as given on the command line or in the environment. Every field
/// is optional so that the TOML file and the defaults can fill the gaps.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with options (keys are the flag names, e.g. `trace-idle = "10s"`).
    #[arg(long, env = "FAULTLINE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "FAULTLINE_OTLP_GRPC_LISTEN", value_name = "ADDR")]
    pub otlp_grpc_listen: Option<String>,

    /// OTLP/HTTP listen address (`POST /v1/traces`) [default: 127.0.0.1:4318].
    #[arg(long, env = "FAULTLINE_OTLP_HTTP_LISTEN", value_name = "ADDR")]
    pub otlp_http_listen: Option<String>,

    /// Listen address of /metrics, /api/v1, /healthz and /readyz [default: 127.0.0.1:9464].
    #[arg(long, env = "FAULTLINE_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<String>,

    /// Largest accepted OTLP request after decompression; larger ones get 413 /
    /// RESOURCE_EXHAUSTED [default: 4MiB].
    #[arg(long, env = "FAULTLINE_MAX_REQUEST_SIZE", value_name = "SIZE")]
    pub max_request_size: Option<String>,

    /// A trace is analysed when none of its spans arrived for this long [default: 10s].
    #[arg(long, env = "FAULTLINE_TRACE_IDLE", value_name = "DURATION")]
    pub trace_idle: Option<String>,

    /// A trace is analysed at the latest this long after its first span arrived [default: 60s].
    #[arg(long, env = "FAULTLINE_TRACE_MAX_AGE", value_name = "DURATION")]
    pub trace_max_age: Option<String>,

    /// Most spans held in memory; beyond it the oldest traces are analysed early, then
    /// senders are asked to retry [default: 1000000].
    #[arg(long, env = "FAULTLINE_MAX_BUFFERED_SPANS", value_name = "N")]
    pub max_buffered_spans: Option<String>,

    /// Completed traces waiting for the analysis stage; when full, traces stay buffered
    /// [default: 4096].
    #[arg(long, env = "FAULTLINE_ANALYSIS_QUEUE_SIZE", value_name = "N")]
    pub analysis_queue_size: Option<String>,

    /// How long a late span's trace id is remembered after its trace was analysed
    /// [default: 5m].
    #[arg(long, env = "FAULTLINE_LATE_SPAN_WINDOW", value_name = "DURATION")]
    pub late_span_window: Option<String>,

    /// On SIGTERM/SIGINT, time allowed to analyse what is buffered and flush [default: 20s].
    #[arg(long, env = "FAULTLINE_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// HTTP status that makes a SERVER span the entry of a failing request; repeat or
    /// comma-separate for several [default: 500].
    #[arg(
        long,
        env = "FAULTLINE_ERROR_STATUS",
        value_name = "CODE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub error_status: Vec<String>,

    /// Attribute keys naming the tenant, in order of preference; repeat or
    /// comma-separate [default: app.tenant,tenant.id,tenant].
    #[arg(
        long,
        env = "FAULTLINE_TENANT_ATTRIBUTE",
        value_name = "KEY",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub tenant_attribute: Vec<String>,

    /// Verdicts are kept for the newest this many traces [default: 100000].
    #[arg(long, env = "FAULTLINE_VERDICT_RETENTION", value_name = "N")]
    pub verdict_retention: Option<String>,

    /// Verdicts held for each `WatchVerdicts` subscriber that has not read them yet; a
    /// subscriber further behind skips the oldest and is told how many [default: 1024].
    #[arg(long, env = "FAULTLINE_WATCH_BUFFER", value_name = "N")]
    pub watch_buffer: Option<String>,

    /// Log filter in `RUST_LOG` syntax [default: info].
    #[arg(long, env = "FAULTLINE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Most label sets per verdict metric family on /metrics; further ones fold into one
    /// series labelled `otel_metric_overflow="true"` [default: 1000].
    #[arg(long, env = "FAULTLINE_MAX_SERIES", value_name = "N")]
    pub max_series: Option<String>,

    /// Push the /metrics instruments as OTLP metrics to this collector, e.g.
    /// http://127.0.0.1:4317 (gRPC) or http://127.0.0.1:4318 (HTTP; `/v1/metrics` is
    /// appended when the URL has no path) [default: no push].
    #[arg(long, env = "FAULTLINE_OTLP_METRICS_ENDPOINT", value_name = "URL")]
    pub otlp_metrics_endpoint: Option<String>,

    /// OTLP metrics push protocol: grpc or http/protobuf [default: grpc].
    #[arg(long, env = "FAULTLINE_OTLP_METRICS_PROTOCOL", value_name = "PROTOCOL")]
    pub otlp_metrics_protocol: Option<String>,

    /// Time between OTLP metrics pushes (cumulative values; one more at shutdown)
    /// [default: 60s].
    #[arg(long, env = "FAULTLINE_OTLP_METRICS_INTERVAL", value_name = "DURATION")]
    pub otlp_metrics_interval: Option<String>,

    /// Forward every accepted span onward over OTLP to this endpoint, e.g.
    /// http://tempo:4317 (gRPC) or https://backend:4318 (HTTP; `/v1/traces` is appended
    /// when the URL has no path) [default: no forwarding].
    #[arg(long, env = "FAULTLINE_FORWARD_ENDPOINT", value_name = "URL")]
    pub forward_endpoint: Option<String>,

    /// Forwarding protocol: grpc or http (OTLP/HTTP protobuf) [default: grpc].
    #[arg(long, env = "FAULTLINE_FORWARD_PROTOCOL", value_name = "PROTOCOL")]
    pub forward_protocol: Option<String>,

    /// passthrough: forward spans as they arrive; annotate: hold each trace until its
    /// verdict and add `faultline.*` attributes to its entry and blame spans
    /// [default: passthrough].
    #[arg(long, env = "FAULTLINE_FORWARD_MODE", value_name = "MODE")]
    pub forward_mode: Option<String>,

    /// Header sent with every forwarded request, as KEY=VALUE (e.g.
    /// `authorization=Bearer abc`); repeat or comma-separate for several.
    #[arg(
        long,
        env = "FAULTLINE_FORWARD_HEADER",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub forward_header: Vec<String>,

    /// Compression of forwarded requests: none or gzip [default: none].
    #[arg(long, env = "FAULTLINE_FORWARD_COMPRESSION", value_name = "CODEC")]
    pub forward_compression: Option<String>,

    /// PEM file of the CA(s) that sign the forward endpoint's certificate (https://
    /// endpoints; the system's web PKI roots when unset).
    #[arg(long, env = "FAULTLINE_FORWARD_TLS_CA_FILE", value_name = "FILE")]
    pub forward_tls_ca_file: Option<String>,

    /// PEM client certificate for mutual TLS with the forward endpoint (with
    /// --forward-tls-key-file).
    #[arg(long, env = "FAULTLINE_FORWARD_TLS_CERT_FILE", value_name = "FILE")]
    pub forward_tls_cert_file: Option<String>,

    /// PEM private key of --forward-tls-cert-file.
    #[arg(long, env = "FAULTLINE_FORWARD_TLS_KEY_FILE", value_name = "FILE")]
    pub forward_tls_key_file: Option<String>,

    /// Most spans waiting to be forwarded (queued or in flight); when full, senders are
    /// asked to retry [default: 100000].
    #[arg(long, env = "FAULTLINE_FORWARD_QUEUE_SIZE", value_name = "N")]
    pub forward_queue_size: Option<String>,

    /// Keep the forward queue in this directory as well, so spans accepted but not yet
    /// delivered survive a restart or a crash [default: memory only].
    #[arg(long, env = "FAULTLINE_FORWARD_QUEUE_DIR", value_name = "DIR")]
    pub forward_queue_dir: Option<String>,

    /// Time allowed for one forward request [default: 5s].
    #[arg(long, env = "FAULTLINE_FORWARD_TIMEOUT", value_name = "DURATION")]
    pub forward_timeout: Option<String>,

    /// A batch the downstream keeps refusing retryably is dropped (counted) after this
    /// long [default: 5m].
    #[arg(long, env = "FAULTLINE_FORWARD_MAX_ELAPSED", value_name = "DURATION")]
    pub forward_max_elapsed: Option<String>,

    /// Forward requests in flight at once [default: 4].
    #[arg(long, env = "FAULTLINE_FORWARD_CONCURRENCY", value_name = "N")]
    pub forward_concurrency: Option<String>,
    /// TLS certificate chain (PEM) for every listener that has no certificate of its own;
    /// needs --tls-key-file [default: plain text].
    #[arg(long, env = "FAULTLINE_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) matching --tls-cert-file.
    #[arg(long, env = "FAULTLINE_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to: mutual TLS on every
    /// TLS listener that has no client CA of its own [default: no client certificates].
    #[arg(long, env = "FAULTLINE_TLS_CLIENT_CA_FILE", value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// TLS certificate chain (PEM) of the OTLP/gRPC listener [default: --tls-cert-file].
    #[arg(long, env = "FAULTLINE_OTLP_GRPC_TLS_CERT_FILE", value_name = "FILE")]
    pub otlp_grpc_tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM) of the OTLP/gRPC listener [default: --tls-key-file].
    #[arg(long, env = "FAULTLINE_OTLP_GRPC_TLS_KEY_FILE", value_name = "FILE")]
    pub otlp_grpc_tls_key_file: Option<PathBuf>,

    /// Client CA (PEM) of the OTLP/gRPC listener [default: --tls-client-ca-file].
    #[arg(
        long,
        env = "FAULTLINE_OTLP_GRPC_TLS_CLIENT_CA_FILE",
        value_name = "FILE"
    )]
    pub otlp_grpc_tls_client_ca_file: Option<PathBuf>,

    /// TLS certificate chain (PEM) of the OTLP/HTTP listener [default: --tls-cert-file].
    #[arg(long, env = "FAULTLINE_OTLP_HTTP_TLS_CERT_FILE", value_name = "FILE")]
    pub otlp_http_tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM) of the OTLP/HTTP listener [default: --tls-key-file].
    #[arg(long, env = "FAULTLINE_OTLP_HTTP_TLS_KEY_FILE", value_name = "FILE")]
    pub otlp_http_tls_key_file: Option<PathBuf>,

    /// Client CA (PEM) of the OTLP/HTTP listener [default: --tls-client-ca-file].
    #[arg(
        long,
        env = "FAULTLINE_OTLP_HTTP_TLS_CLIENT_CA_FILE",
        value_name = "FILE"
    )]
    pub otlp_http_tls_client_ca_file: Option<PathBuf>,

    /// TLS certificate chain (PEM) of the --http-listen listener [default: --tls-cert-file].
    #[arg(long, env = "FAULTLINE_HTTP_TLS_CERT_FILE", value_name = "FILE")]
    pub http_tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM) of the --http-listen listener [default: --tls-key-file].
    #[arg(long, env = "FAULTLINE_HTTP_TLS_KEY_FILE", value_name = "FILE")]
    pub http_tls_key_file: Option<PathBuf>,

    /// Client CA (PEM) of the --http-listen listener [default: --tls-client-ca-file].
    #[arg(long, env = "FAULTLINE_HTTP_TLS_CLIENT_CA_FILE", value_name = "FILE")]
    pub http_tls_client_ca_file: Option<PathBuf>,

    /// Bearer tokens (one a line; blank lines and `#` comments ignored) required as
    /// `Authorization: Bearer <token>` on the OTLP/gRPC (verdict API included) and OTLP/HTTP
    /// listeners; re-read when the file changes [default: no authentication].
    #[arg(long, env = "FAULTLINE_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Bearer tokens (same format) required for /metrics, /api/v1/... and the Grafana
    /// endpoints on --http-listen; /healthz and /readyz stay open [default: open].
    #[arg(long, env = "FAULTLINE_API_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub api_auth_token_file: Option<PathBuf>,
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
    /// Capacity of the `WatchVerdicts` feed, in verdicts.
    pub watch_buffer: usize,
    /// The verdict metrics on /metrics.
    pub metrics: MetricsConfig,
    /// The forwarder, when `--forward-endpoint` is set.
    pub forward: Option<ForwardConfig>,
    /// TLS and bearer-token authentication of the listeners (files named, not yet read:
    /// `crate::security` loads them at start-up).
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

/// The verdict metrics (DESIGN §5).
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

/// The OTLP metrics push (DESIGN §5).
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

/// When spans are forwarded (DESIGN §6).
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

/// The forwarder (DESIGN §6, issue "collector pipeline stage").
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

impl ServeArgs {
    /// Fills every option that is unset here from `lower` (used for env/flag over file).
    fn or(self, lower: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config.or(lower.config),
            otlp_grpc_listen: self.otlp_grpc_listen.or(lower.otlp_grpc_listen),
            otlp_http_listen: self.otlp_http_listen.or(lower.otlp_http_listen),
            http_listen: self.http_listen.or(lower.http_listen),
            max_request_size: self.max_request_size.or(lower.max_request_size),
            trace_idle: self.trace_idle.or(lower.trace_idle),
            trace_max_age: self.trace_max_age.or(lower.trace_max_age),
            max_buffered_spans: self.max_buffered_spans.or(lower.max_buffered_spans),
            analysis_queue_size: self.analysis_queue_size.or(lower.analysis_queue_size),
            late_span_window: self.late_span_window.or(lower.late_span_window),
            shutdown_timeout: self.shutdown_timeout.or(lower.shutdown_timeout),
            log_level: self.log_level.or(lower.log_level),
            error_status: if self.error_status.is_empty() {
                lower.error_status
            } else {
                self.error_status
            },
            tenant_attribute: if self.tenant_attribute.is_empty() {
                lower.tenant_attribute
            } else {
                self.tenant_attribute
            },
            verdict_retention: self.verdict_retention.or(lower.verdict_retention),
            watch_buffer: self.watch_buffer.or(lower.watch_buffer),
            max_series: self.max_series.or(lower.max_series),
            otlp_metrics_endpoint: self.otlp_metrics_endpoint.or(lower.otlp_metrics_endpoint),
            otlp_metrics_protocol: self.otlp_metrics_protocol.or(lower.otlp_metrics_protocol),
            otlp_metrics_interval: self.otlp_metrics_interval.or(lower.otlp_metrics_interval),
            forward_endpoint: self.forward_endpoint.or(lower.forward_endpoint),
            forward_protocol: self.forward_protocol.or(lower.forward_protocol),
            forward_mode: self.forward_mode.or(lower.forward_mode),
            forward_header: if self.forward_header.is_empty() {
                lower.forward_header
            } else {
                self.forward_header
            },
            forward_compression: self.forward_compression.or(lower.forward_compression),
            forward_tls_ca_file: self.forward_tls_ca_file.or(lower.forward_tls_ca_file),
            forward_tls_cert_file: self.forward_tls_cert_file.or(lower.forward_tls_cert_file),
            forward_tls_key_file: self.forward_tls_key_file.or(lower.forward_tls_key_file),
            forward_queue_size: self.forward_queue_size.or(lower.forward_queue_size),
            forward_queue_dir: self.forward_queue_dir.or(lower.forward_queue_dir),
            forward_timeout: self.forward_timeout.or(lower.forward_timeout),
            forward_max_elapsed: self.forward_max_elapsed.or(lower.forward_max_elapsed),
            forward_concurrency: self.forward_concurrency.or(lower.forward_concurrency),
            tls_cert_file: self.tls_cert_file.or(lower.tls_cert_file),
            tls_key_file: self.tls_key_file.or(lower.tls_key_file),
            tls_client_ca_file: self.tls_client_ca_file.or(lower.tls_client_ca_file),
            otlp_grpc_tls_cert_file: self
                .otlp_grpc_tls_cert_file
                .or(lower.otlp_grpc_tls_cert_file),
            otlp_grpc_tls_key_file: self.otlp_grpc_tls_key_file.or(lower.otlp_grpc_tls_key_file),
            otlp_grpc_tls_client_ca_file: self
                .otlp_grpc_tls_client_ca_file
                .or(lower.otlp_grpc_tls_client_ca_file),
            otlp_http_tls_cert_file: self
                .otlp_http_tls_cert_file
                .or(lower.otlp_http_tls_cert_file),
            otlp_http_tls_key_file: self.otlp_http_tls_key_file.or(lower.otlp_http_tls_key_file),
            otlp_http_tls_client_ca_file: self
                .otlp_http_tls_client_ca_file
                .or(lower.otlp_http_tls_client_ca_file),
            http_tls_cert_file: self.http_tls_cert_file.or(lower.http_tls_cert_file),
            http_tls_key_file: self.http_tls_key_file.or(lower.http_tls_key_file),
            http_tls_client_ca_file: self
                .http_tls_client_ca_file
                .or(lower.http_tls_client_ca_file),
            auth_token_file: self.auth_token_file.or(lower.auth_token_file),
            api_auth_token_file: self.api_auth_token_file.or(lower.api_auth_token_file),
        }
    }
}

/// Reads the optional TOML file named by `--config`.
///
/// # Errors
/// The file cannot be read, is not TOML, or has an unknown key or a wrong type.
pub fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

/// Parses TOML text; values may be strings or (for counts) integers.
fn parse_file(text: &str) -> Result<ServeArgs, String> {
    // Accept `max-buffered-spans = 1000` as well as `"1000"`: turn scalars into strings.
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    fn stringify(v: &mut toml::Value) {
        match v {
            toml::Value::Integer(i) => *v = toml::Value::String(i.to_string()),
            toml::Value::Float(f) => *v = toml::Value::String(f.to_string()),
            toml::Value::Boolean(b) => *v = toml::Value::String(b.to_string()),
            toml::Value::Array(items) => items.iter_mut().for_each(stringify),
            _ => {}
        }
    }
    for (key, v) in table.iter_mut() {
        stringify(v);
        // List options also take one comma-separated string, as on the command line.
        if let ("error-status" | "tenant-attribute" | "forward-header", toml::Value::String(s)) =
            (key.as_str(), &*v)
        {
            *v = toml::Value::Array(
                s.split(',')
                    .map(|p| toml::Value::String(p.trim().to_string()))
                    .collect(),
            );
        }
    }
    ServeArgs::deserialize(table).map_err(|e| e.to_string())
}

/// Merges flags/env with the TOML file they name, then resolves defaults and validates.
///
/// # Errors
/// See [`ConfigError`].
pub fn load(args: ServeArgs) -> Result<Config, ConfigError> {
    let merged = match &args.config {
        Some(path) => args.clone().or(read_file(path)?),
        None => args,
    };
    resolve(merged)
}

/// Loads `path` as `--config path` with no flag or environment variable set: what
/// `faultline check-config` runs.
///
/// # Errors
/// The same as [`load`]: the file is unreadable, not TOML for faultline, or holds an
/// invalid value (named).
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    load(ServeArgs {
        config: Some(path.to_owned()),
        ..ServeArgs::default()
    })
}

fn invalid(option: &'static str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn addr(
    option: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let v = raw.unwrap_or_else(|| default.to_string());
    v.parse().map_err(|_| {
        invalid(
            option,
            &v,
            "expected HOST:PORT with an IP address, e.g. 127.0.0.1:4317",
        )
    })
}

/// Parses `500ms`, `5s`, `2m`, `1h 30m`.
fn duration(
    option: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let v = raw.unwrap_or_else(|| default.to_string());
    let d = humantime::parse_duration(&v).map_err(|e| {
        invalid(
            option,
            &v,
            format!("{e}; expected a duration like 500ms, 5s or 2m"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(option, &v, "must be greater than zero"));
    }
    Ok(d)
}

/// Parses `4MiB`, `512KiB`, `1MB`, `1048576`.
fn size(option: &'static str, raw: Option<String>, default: &str) -> Result<usize, ConfigError> {
    let v = raw.unwrap_or_else(|| default.to_string());
    let b: bytesize::ByteSize = v
        .parse()
        .map_err(|e| invalid(option, &v, format!("{e}; expected a size like 4MiB")))?;
    let n = usize::try_from(b.as_u64()).map_err(|_| invalid(option, &v, "too large"))?;
    if n == 0 {
        return Err(invalid(option, &v, "must be greater than zero"));
    }
    Ok(n)
}

/// Parses `grpc` or `http/protobuf`.
fn otlp_protocol(raw: Option<String>) -> Result<OtlpMetricsProtocol, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("grpc") => Ok(OtlpMetricsProtocol::Grpc),
        Some("http/protobuf") => Ok(OtlpMetricsProtocol::HttpProtobuf),
        Some(other) => Err(invalid(
            "otlp-metrics-protocol",
            other,
            "expected grpc or http/protobuf",
        )),
    }
}

/// Parses an `http://HOST:PORT[/PATH]` collector URL. Plain HTTP only: the push goes to
/// a local collector or node agent, and no TLS stack is built in.
fn otlp_endpoint(raw: &str, protocol: OtlpMetricsProtocol) -> Result<http::Uri, ConfigError> {
    let grpc = protocol == OtlpMetricsProtocol::Grpc;
    otlp_url("otlp-metrics-endpoint", raw, grpc, "/v1/metrics", false)
}

/// Parses the URL of an OTLP endpoint for `option`: `http://` (or `https://` when
/// `https` is allowed), a host, no query. A gRPC endpoint has no path; a bare HTTP one
/// gets `http_path` (the OTLP exporter specification's `/v1/traces`, `/v1/metrics`).
fn otlp_url(
    option: &'static str,
    raw: &str,
    grpc: bool,
    http_path: &'static str,
    https: bool,
) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = raw.trim().parse().map_err(|e| {
        invalid(
            option,
            raw,
            format!("{e}; expected a URL like http://127.0.0.1:4317"),
        )
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if https => {}
        Some("https") => {
            return Err(invalid(
                option,
                raw,
                "https is not supported; push over http:// to a local collector",
            ))
        }
        _ if https => {
            return Err(invalid(
                option,
                raw,
                "expected a URL starting with http:// or https://",
            ))
        }
        _ => {
            return Err(invalid(
                option,
                raw,
                "expected a URL starting with http://, e.g. http://127.0.0.1:4317",
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(option, raw, "the URL has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid(option, raw, "the URL must not have a query"));
    }
    let bare = matches!(uri.path(), "" | "/");
    if grpc && !bare {
        return Err(invalid(
            option,
            raw,
            "a gRPC endpoint has no path (the service path is fixed by OTLP)",
        ));
    }
    if grpc || !bare {
        return Ok(uri);
    }
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static(http_path));
    http::Uri::from_parts(parts).map_err(|e| invalid(option, raw, e))
}

/// Resolves the `forward-*` options; `None` without `--forward-endpoint`. The other
/// options are checked even then, so a typo does not wait for the day forwarding is on.
fn forward(a: &ServeArgs) -> Result<Option<ForwardConfig>, ConfigError> {
    let protocol = match a.forward_protocol.as_deref().map(str::trim) {
        None | Some("grpc") => ForwardProtocol::Grpc,
        Some("http" | "http/protobuf") => ForwardProtocol::Http,
        Some(other) => return Err(invalid("forward-protocol", other, "expected grpc or http")),
    };
    let mode = match a.forward_mode.as_deref().map(str::trim) {
        None | Some("passthrough") => ForwardMode::Passthrough,
        Some("annotate") => ForwardMode::Annotate,
        Some(other) => {
            return Err(invalid(
                "forward-mode",
                other,
                "expected passthrough or annotate",
            ))
        }
    };
    let gzip = match a.forward_compression.as_deref().map(str::trim) {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(invalid(
                "forward-compression",
                other,
                "expected none or gzip",
            ))
        }
    };
    let mut headers = Vec::new();
    for raw in &a.forward_header {
        let Some((k, v)) = raw.split_once('=') else {
            return Err(invalid("forward-header", raw, "expected KEY=VALUE"));
        };
        let name = http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes())
            .map_err(|e| invalid("forward-header", raw, e))?;
        let value =
            http::HeaderValue::from_str(v.trim()).map_err(|e| invalid("forward-header", raw, e))?;
        headers.push((name, value));
    }
    let path = |raw: &Option<String>| {
        raw.as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    };
    let client_identity = match (
        path(&a.forward_tls_cert_file),
        path(&a.forward_tls_key_file),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(c), None) => {
            return Err(invalid(
                "forward-tls-key-file",
                "",
                format!("--forward-tls-cert-file {} needs its key", c.display()),
            ))
        }
        (None, Some(k)) => {
            return Err(invalid(
                "forward-tls-cert-file",
                "",
                format!(
                    "--forward-tls-key-file {} needs its certificate",
                    k.display()
                ),
            ))
        }
    };
    let tls = ForwardTls {
        ca_file: path(&a.forward_tls_ca_file),
        client_identity,
    };
    let queue_size = count("forward-queue-size", a.forward_queue_size.clone(), 100_000)?;
    let timeout = duration("forward-timeout", a.forward_timeout.clone(), "5s")?;
    let max_elapsed = duration("forward-max-elapsed", a.forward_max_elapsed.clone(), "5m")?;
    let concurrency = count("forward-concurrency", a.forward_concurrency.clone(), 4)?;
    if concurrency > 256 {
        return Err(invalid(
            "forward-concurrency",
            &concurrency.to_string(),
            "at most 256",
        ));
    }
    let Some(raw) = a
        .forward_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return Ok(None);
    };
    let endpoint = forward_endpoint(raw, protocol, &tls)?;
    Ok(Some(ForwardConfig {
        endpoint,
        protocol,
        mode,
        headers,
        gzip,
        tls,
        queue_size,
        queue_dir: path(&a.forward_queue_dir),
        timeout,
        max_elapsed,
        concurrency,
    }))
}

/// Parses the forward URL (see [`otlp_url`]); TLS files need an `https://` URL.
fn forward_endpoint(
    raw: &str,
    protocol: ForwardProtocol,
    tls: &ForwardTls,
) -> Result<http::Uri, ConfigError> {
    let grpc = protocol == ForwardProtocol::Grpc;
    let uri = otlp_url("forward-endpoint", raw, grpc, "/v1/traces", true)?;
    if uri.scheme_str() == Some("http") && (tls.ca_file.is_some() || tls.client_identity.is_some())
    {
        return Err(invalid(
            "forward-endpoint",
            raw,
            "TLS files are set but the URL is http://; use https://",
        ));
    }
    Ok(uri)
}

/// Largest `--watch-buffer`: `tokio::sync::broadcast` allocates every slot at start-up.
const MAX_WATCH_BUFFER: usize = 1 << 20;

fn count(option: &'static str, raw: Option<String>, default: usize) -> Result<usize, ConfigError> {
    match raw {
        None => Ok(default),
        Some(v) => match v.trim().replace('_', "").parse::<usize>() {
            Ok(0) => Err(invalid(option, &v, "must be greater than zero")),
            Ok(n) => Ok(n),
            Err(e) => Err(invalid(option, &v, e)),
        },
    }
}

/// Resolves defaults and validates every option.
///
/// # Errors
/// The first invalid option, named.
pub fn resolve(a: ServeArgs) -> Result<Config, ConfigError> {
    let forward = forward(&a)?;
    let security = security(&a)?;
    let trace_idle = duration("trace-idle", a.trace_idle, "10s")?;
    let trace_max_age = duration("trace-max-age", a.trace_max_age, "60s")?;
    if trace_max_age < trace_idle {
        return Err(invalid(
            "trace-max-age",
            &humantime::format_duration(trace_max_age).to_string(),
            "must not be shorter than --trace-idle",
        ));
    }
    let log_level = a.log_level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(invalid(
            "log-level",
            &log_level,
            "expected a filter like info or faultline=debug",
        ));
    }
    let mut error_statuses = Vec::new();
    for raw in &a.error_status {
        match raw.trim().parse::<i64>() {
            Ok(code @ 100..=599) => error_statuses.push(code),
            _ => {
                return Err(invalid(
                    "error-status",
                    raw,
                    "expected an HTTP status code 100-599",
                ))
            }
        }
    }
    if error_statuses.is_empty() {
        error_statuses.push(500);
    }
    let mut tenant_attributes: Vec<String> = a
        .tenant_attribute
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let watch_buffer = count("watch-buffer", a.watch_buffer, 1024)?;
    if watch_buffer > MAX_WATCH_BUFFER {
        return Err(invalid(
            "watch-buffer",
            &watch_buffer.to_string(),
            format!("at most {MAX_WATCH_BUFFER} (the buffer is allocated up front)"),
        ));
    }
    if tenant_attributes.is_empty() {
        tenant_attributes = AnalysisConfig::default().tenant_attributes;
    }
    // Protocol and interval are checked even without an endpoint: a typo in either
    // should not wait for the day the push is switched on.
    let otlp_protocol = otlp_protocol(a.otlp_metrics_protocol)?;
    let otlp_interval = duration("otlp-metrics-interval", a.otlp_metrics_interval, "60s")?;
    let otlp = match a.otlp_metrics_endpoint.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(OtlpMetricsConfig {
            endpoint: otlp_endpoint(raw, otlp_protocol)?,
            protocol: otlp_protocol,
            interval: otlp_interval,
        }),
    };
    Ok(Config {
        otlp_grpc_listen: addr("otlp-grpc-listen", a.otlp_grpc_listen, "127.0.0.1:4317")?,
        otlp_http_listen: addr("otlp-http-listen", a.otlp_http_listen, "127.0.0.1:4318")?,
        http_listen: addr("http-listen", a.http_listen, "127.0.0.1:9464")?,
        ingest: IngestConfig {
            max_request_size: size("max-request-size", a.max_request_size, "4MiB")?,
        },
        assembly: AssemblyConfig {
            trace_idle,
            trace_max_age,
            max_buffered_spans: count("max-buffered-spans", a.max_buffered_spans, 1_000_000)?,
            analysis_queue_size: count("analysis-queue-size", a.analysis_queue_size, 4096)?,
            late_span_window: duration("late-span-window", a.late_span_window, "5m")?,
        },
        shutdown_timeout: duration("shutdown-timeout", a.shutdown_timeout, "20s")?,
        log_level,
        analysis: AnalysisConfig {
            error_statuses,
            tenant_attributes,
        },
        verdict_retention: count("verdict-retention", a.verdict_retention, 100_000)?,
        watch_buffer,
        metrics: MetricsConfig {
            max_series: count("max-series", a.max_series, 1000)?,
            otlp,
        },
        forward,
        security,
    })
}

/// A path option; an empty value (an unset variable in a Helm template) is no value.
fn path_option(raw: &Option<PathBuf>) -> Option<PathBuf> {
    raw.as_ref().filter(|p| !p.as_os_str().is_empty()).cloned()
}

/// One listener's TLS files: its own certificate and key as a pair when either is set,
/// else the shared pair; its own client CA when set, else the shared one. The files are
/// only named here; `crate::security` reads them (so `--config` files can be checked on
/// a machine without the mounted secrets).
fn tls_files(
    own: [(&'static str, Option<PathBuf>); 3],
    shared: [(&'static str, Option<PathBuf>); 3],
) -> Result<Option<TlsFiles>, ConfigError> {
    let pair = |[(cert_opt, cert), (key_opt, key), _]: &[(&'static str, Option<PathBuf>); 3]| match (
        path_option(cert),
        path_option(key),
    ) {
        (Some(c), Some(k)) => Ok(Some(((*cert_opt, c), (*key_opt, k)))),
        (Some(c), None) => Err(ConfigError::Missing {
            option: key_opt,
            reason: format!("--{cert_opt} {} is set without its key", c.display()),
        }),
        (None, Some(k)) => Err(ConfigError::Missing {
            option: cert_opt,
            reason: format!("--{key_opt} {} is set without its certificate", k.display()),
        }),
        (None, None) => Ok(None),
    };
    let own_pair = pair(&own)?;
    let shared_pair = pair(&shared)?;
    let (own_ca_opt, own_ca) = &own[2];
    let (shared_ca_opt, shared_ca) = &shared[2];
    let own_ca = path_option(own_ca).map(|p| (*own_ca_opt, p));
    match (own_pair.or(shared_pair), own_ca) {
        (Some((cert, key)), own_ca) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca: own_ca.or_else(|| path_option(shared_ca).map(|p| (*shared_ca_opt, p))),
        })),
        // A listener's own client CA only means anything on a TLS listener (the shared
        // one applies to the TLS listeners; `security` checks that there is one).
        (None, Some((option, path))) => Err(ConfigError::Missing {
            option: shared[0].0,
            reason: format!(
                "--{option} {} asks for client certificates, which need TLS: set --{} and \
                 --{} (or the listener's own)",
                path.display(),
                shared[0].0,
                shared[1].0
            ),
        }),
        (None, None) => Ok(None),
    }
}

/// The listeners' TLS files and the token files (see [`SecurityConfig`]).
fn security(a: &ServeArgs) -> Result<SecurityConfig, ConfigError> {
    let shared = || {
        [
            ("tls-cert-file", a.tls_cert_file.clone()),
            ("tls-key-file", a.tls_key_file.clone()),
            ("tls-client-ca-file", a.tls_client_ca_file.clone()),
        ]
    };
    let config = SecurityConfig {
        otlp_grpc_tls: tls_files(
            [
                ("otlp-grpc-tls-cert-file", a.otlp_grpc_tls_cert_file.clone()),
                ("otlp-grpc-tls-key-file", a.otlp_grpc_tls_key_file.clone()),
                (
                    "otlp-grpc-tls-client-ca-file",
                    a.otlp_grpc_tls_client_ca_file.clone(),
                ),
            ],
            shared(),
        )?,
        otlp_http_tls: tls_files(
            [
                ("otlp-http-tls-cert-file", a.otlp_http_tls_cert_file.clone()),
                ("otlp-http-tls-key-file", a.otlp_http_tls_key_file.clone()),
                (
                    "otlp-http-tls-client-ca-file",
                    a.otlp_http_tls_client_ca_file.clone(),
                ),
            ],
            shared(),
        )?,
        http_tls: tls_files(
            [
                ("http-tls-cert-file", a.http_tls_cert_file.clone()),
                ("http-tls-key-file", a.http_tls_key_file.clone()),
                ("http-tls-client-ca-file", a.http_tls_client_ca_file.clone()),
            ],
            shared(),
        )?,
        auth_token_file: path_option(&a.auth_token_file),
        api_auth_token_file: path_option(&a.api_auth_token_file),
    };
    let no_tls = [
        &config.otlp_grpc_tls,
        &config.otlp_http_tls,
        &config.http_tls,
    ]
    .iter()
    .all(|t| t.is_none());
    match path_option(&a.tls_client_ca_file) {
        Some(ca) if no_tls => Err(ConfigError::Missing {
            option: "tls-cert-file",
            reason: format!(
                "--tls-client-ca-file {} asks for client certificates, which need TLS: set \
                 --tls-cert-file and --tls-key-file (or a listener's own)",
                ca.display()
            ),
        }),
        _ => Ok(config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.otlp_grpc_listen.to_string(), "127.0.0.1:4317");
        assert_eq!(c.otlp_http_listen.to_string(), "127.0.0.1:4318");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.ingest.max_request_size, 4 * 1024 * 1024);
        assert_eq!(c.assembly.trace_idle, Duration::from_secs(10));
        assert_eq!(c.assembly.trace_max_age, Duration::from_secs(60));
        assert_eq!(c.assembly.max_buffered_spans, 1_000_000);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
    }

    #[test]
    fn bad_values_name_the_option() {
        let a = ServeArgs {
            trace_idle: Some("soon".into()),
            ..Default::default()
        };
        let e = resolve(a).unwrap_err().to_string();
        assert!(e.contains("--trace-idle"), "{e}");
        let a = ServeArgs {
            max_request_size: Some("4 parsecs".into()),
            ..Default::default()
        };
        assert!(resolve(a)
            .unwrap_err()
            .to_string()
            .contains("--max-request-size"));
        let a = ServeArgs {
            otlp_grpc_listen: Some("localhost".into()),
            ..Default::default()
        };
        assert!(resolve(a)
            .unwrap_err()
            .to_string()
            .contains("--otlp-grpc-listen"));
        let a = ServeArgs {
            max_buffered_spans: Some("0".into()),
            ..Default::default()
        };
        assert!(resolve(a)
            .unwrap_err()
            .to_string()
            .contains("--max-buffered-spans"));
    }

    #[test]
    fn sizes_and_durations_use_the_documented_forms() {
        let a = ServeArgs {
            max_request_size: Some("512KiB".into()),
            trace_idle: Some("500ms".into()),
            trace_max_age: Some("2m".into()),
            ..Default::default()
        };
        let c = resolve(a).unwrap();
        assert_eq!(c.ingest.max_request_size, 512 * 1024);
        assert_eq!(c.assembly.trace_idle, Duration::from_millis(500));
        assert_eq!(c.assembly.trace_max_age, Duration::from_secs(120));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = parse_file(
            "trace-idle = \"3s\"\nmax-buffered-spans = 500\nhttp-listen = \"127.0.0.1:1\"",
        )
        .unwrap();
        let flags = ServeArgs {
            trace_idle: Some("1s".into()),
            ..Default::default()
        };
        let c = resolve(flags.or(file)).unwrap();
        assert_eq!(c.assembly.trace_idle, Duration::from_secs(1));
        assert_eq!(c.assembly.max_buffered_spans, 500);
        assert_eq!(c.http_listen.port(), 1);
    }

    #[test]
    fn list_options_accept_repeats_lists_and_commas() {
        let file =
            parse_file("error-status = [500, 503]\ntenant-attribute = \"org.id, tenant\"").unwrap();
        let c = resolve(file).unwrap();
        assert_eq!(c.analysis.error_statuses, vec![500, 503]);
        assert_eq!(c.analysis.tenant_attributes, vec!["org.id", "tenant"]);
        let bad = ServeArgs {
            error_status: vec!["5xx".into()],
            ..Default::default()
        };
        assert!(resolve(bad)
            .unwrap_err()
            .to_string()
            .contains("--error-status"));
        assert_eq!(Config::default().analysis.error_statuses, vec![500]);
    }

    #[test]
    fn watch_buffer_is_a_bounded_positive_count() {
        assert_eq!(Config::default().watch_buffer, 1024);
        let file = parse_file("watch-buffer = 2").unwrap();
        assert_eq!(resolve(file).unwrap().watch_buffer, 2);
        for bad in ["0", "lots", "2000000"] {
            let a = ServeArgs {
                watch_buffer: Some(bad.into()),
                ..Default::default()
            };
            let e = resolve(a).unwrap_err().to_string();
            assert!(e.contains("--watch-buffer"), "{e}");
        }
    }

    #[test]
    fn max_series_defaults_to_1000_and_refuses_zero() {
        assert_eq!(Config::default().metrics.max_series, 1000);
        let c = resolve(parse_file("max-series = 3").unwrap()).unwrap();
        assert_eq!(c.metrics.max_series, 3);
        let bad = ServeArgs {
            max_series: Some("0".into()),
            ..Default::default()
        };
        assert!(resolve(bad)
            .unwrap_err()
            .to_string()
            .contains("--max-series"));
    }

    #[test]
    fn the_otlp_metrics_push_is_off_by_default_and_grpc_every_minute_when_on() {
        assert!(Config::default().metrics.otlp.is_none());
        let c = resolve(parse_file("otlp-metrics-endpoint = \"http://10.0.0.7:4317\"").unwrap())
            .unwrap();
        let otlp = c.metrics.otlp.unwrap();
        assert_eq!(otlp.protocol, OtlpMetricsProtocol::Grpc);
        assert_eq!(otlp.interval, Duration::from_secs(60));
        assert_eq!(otlp.endpoint.to_string(), "http://10.0.0.7:4317/");
    }

    #[test]
    fn the_http_push_appends_v1_metrics_only_to_a_bare_url() {
        let resolve_http = |endpoint: &str| {
            let a = ServeArgs {
                otlp_metrics_endpoint: Some(endpoint.into()),
                otlp_metrics_protocol: Some("http/protobuf".into()),
                otlp_metrics_interval: Some("200ms".into()),
                ..Default::default()
            };
            resolve(a).unwrap().metrics.otlp.unwrap()
        };
        let bare = resolve_http("http://collector:4318");
        assert_eq!(bare.protocol, OtlpMetricsProtocol::HttpProtobuf);
        assert_eq!(bare.interval, Duration::from_millis(200));
        assert_eq!(
            bare.endpoint.to_string(),
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(
            resolve_http("http://collector:4318/custom/metrics")
                .endpoint
                .to_string(),
            "http://collector:4318/custom/metrics"
        );
    }

    #[test]
    fn bad_otlp_metrics_values_name_their_option() {
        let cases = [
            ("otlp-metrics-endpoint", Some("localhost:4317"), None, None),
            (
                "otlp-metrics-endpoint",
                Some("https://collector:4317"),
                None,
                None,
            ),
            ("otlp-metrics-endpoint", Some("http://:4317"), None, None),
            (
                "otlp-metrics-endpoint",
                Some("http://c:4317/v1/metrics"),
                None,
                None,
            ),
            ("otlp-metrics-endpoint", Some("not a url"), None, None),
            ("otlp-metrics-protocol", None, Some("http/json"), None),
            ("otlp-metrics-protocol", None, Some("udp"), None),
            ("otlp-metrics-interval", None, None, Some("often")),
            ("otlp-metrics-interval", None, None, Some("0s")),
        ];
        for (option, endpoint, protocol, interval) in cases {
            let a = ServeArgs {
                otlp_metrics_endpoint: endpoint.map(str::to_string),
                otlp_metrics_protocol: protocol.map(str::to_string),
                otlp_metrics_interval: interval.map(str::to_string),
                ..Default::default()
            };
            let e = resolve(a).unwrap_err().to_string();
            assert!(e.contains(&format!("--{option}")), "{e}");
        }
    }

    #[test]
    fn listeners_are_plain_text_without_tls_options() {
        let c = Config::default();
        assert_eq!(c.security, SecurityConfig::default());
    }

    #[test]
    fn shared_tls_files_apply_to_every_listener_and_own_ones_win() {
        let c = resolve(
            parse_file(
                "tls-cert-file = \"/s/cert.pem\"\ntls-key-file = \"/s/key.pem\"\n\
                 tls-client-ca-file = \"/s/ca.pem\"\n\
                 http-tls-cert-file = \"/h/cert.pem\"\nhttp-tls-key-file = \"/h/key.pem\"\n\
                 otlp-http-tls-client-ca-file = \"/o/ca.pem\"\n\
                 auth-token-file = \"/t/otlp\"\napi-auth-token-file = \"/t/api\"",
            )
            .unwrap(),
        )
        .unwrap()
        .security;
        let grpc = c.otlp_grpc_tls.unwrap();
        assert_eq!(grpc.cert, ("tls-cert-file", PathBuf::from("/s/cert.pem")));
        assert_eq!(grpc.key, ("tls-key-file", PathBuf::from("/s/key.pem")));
        assert_eq!(
            grpc.client_ca,
            Some(("tls-client-ca-file", PathBuf::from("/s/ca.pem")))
        );
        let otlp_http = c.otlp_http_tls.unwrap();
        assert_eq!(otlp_http.cert.1, PathBuf::from("/s/cert.pem"));
        assert_eq!(
            otlp_http.client_ca,
            Some(("otlp-http-tls-client-ca-file", PathBuf::from("/o/ca.pem")))
        );
        let http = c.http_tls.unwrap();
        assert_eq!(
            http.cert,
            ("http-tls-cert-file", PathBuf::from("/h/cert.pem"))
        );
        assert_eq!(http.key.1, PathBuf::from("/h/key.pem"));
        assert_eq!(c.auth_token_file, Some(PathBuf::from("/t/otlp")));
        assert_eq!(c.api_auth_token_file, Some(PathBuf::from("/t/api")));
    }

    #[test]
    fn one_listener_can_have_tls_alone() {
        let a = ServeArgs {
            otlp_grpc_tls_cert_file: Some("/g/cert.pem".into()),
            otlp_grpc_tls_key_file: Some("/g/key.pem".into()),
            // An empty value (an unset Helm value) is no value.
            tls_cert_file: Some("".into()),
            ..Default::default()
        };
        let c = resolve(a).unwrap().security;
        assert!(c.otlp_grpc_tls.is_some());
        assert!(c.otlp_http_tls.is_none() && c.http_tls.is_none());
    }

    #[test]
    fn a_certificate_without_its_key_names_the_missing_option() {
        let cases = [
            (
                ServeArgs {
                    tls_cert_file: Some("/c.pem".into()),
                    ..Default::default()
                },
                "missing --tls-key-file: --tls-cert-file /c.pem",
            ),
            (
                ServeArgs {
                    tls_key_file: Some("/k.pem".into()),
                    ..Default::default()
                },
                "missing --tls-cert-file: --tls-key-file /k.pem",
            ),
            (
                ServeArgs {
                    otlp_http_tls_cert_file: Some("/c.pem".into()),
                    tls_key_file: Some("/k.pem".into()),
                    tls_cert_file: Some("/s.pem".into()),
                    ..Default::default()
                },
                "missing --otlp-http-tls-key-file",
            ),
            (
                ServeArgs {
                    tls_client_ca_file: Some("/ca.pem".into()),
                    ..Default::default()
                },
                "missing --tls-cert-file: --tls-client-ca-file /ca.pem",
            ),
            (
                ServeArgs {
                    http_tls_client_ca_file: Some("/ca.pem".into()),
                    otlp_grpc_tls_cert_file: Some("/c.pem".into()),
                    otlp_grpc_tls_key_file: Some("/k.pem".into()),
                    ..Default::default()
                },
                "missing --tls-cert-file: --http-tls-client-ca-file /ca.pem",
            ),
        ];
        for (args, expected) in cases {
            let e = resolve(args).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{e}");
        }
    }

    #[test]
    fn tls_and_token_options_come_from_the_environment_too() {
        let cli = Cli::try_parse_from([
            "faultline",
            "--otlp-grpc-tls-cert-file",
            "/g.pem",
            "--otlp-grpc-tls-key-file",
            "/g.key",
            "--auth-token-file",
            "/tokens",
        ])
        .unwrap();
        let c = resolve(cli.serve).unwrap().security;
        assert!(c.otlp_grpc_tls.is_some());
        assert_eq!(c.auth_token_file, Some(PathBuf::from("/tokens")));
        let names: Vec<String> = <Cli as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for env in [
            "FAULTLINE_TLS_CERT_FILE",
            "FAULTLINE_TLS_KEY_FILE",
            "FAULTLINE_TLS_CLIENT_CA_FILE",
            "FAULTLINE_OTLP_GRPC_TLS_CLIENT_CA_FILE",
            "FAULTLINE_OTLP_HTTP_TLS_KEY_FILE",
            "FAULTLINE_HTTP_TLS_CERT_FILE",
            "FAULTLINE_AUTH_TOKEN_FILE",
            "FAULTLINE_API_AUTH_TOKEN_FILE",
        ] {
            assert!(names.iter().any(|n| n == env), "{env}");
        }
    }

    #[test]
    fn forwarding_is_off_by_default_and_its_urls_follow_the_otlp_exporter_rules() {
        assert!(Config::default().forward.is_none());
        let c = resolve(
            parse_file("forward-endpoint = \"https://tempo:4318\"\nforward-protocol = \"http\"\nforward-header = \"authorization=Bearer x, x-tenant=a\"").unwrap(),
        )
        .unwrap();
        let f = c.forward.unwrap();
        assert_eq!(f.endpoint.to_string(), "https://tempo:4318/v1/traces");
        assert_eq!(f.mode, ForwardMode::Passthrough);
        assert_eq!((f.queue_size, f.concurrency, f.gzip), (100_000, 4, false));
        assert_eq!(f.headers.len(), 2);
        assert_eq!(f.headers[1].0.as_str(), "x-tenant");
        let refused = |endpoint: &str, extra: &str| {
            let text = format!("forward-endpoint = \"{endpoint}\"\n{extra}");
            resolve(parse_file(&text).unwrap()).unwrap_err().to_string()
        };
        assert!(refused("http://tempo:4317/v1/traces", "").contains("no path"));
        assert!(refused("tempo:4317", "").contains("--forward-endpoint"));
        assert!(
            refused("http://tempo:4317", "forward-tls-ca-file = \"/ca.pem\"")
                .contains("use https://")
        );
        assert!(refused("https://t:1", "forward-tls-cert-file = \"/c.pem\"")
            .contains("--forward-tls-key-file"));
        assert!(refused("https://t:1", "forward-mode = \"tee\"").contains("--forward-mode"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let e = parse_file("trace-idel = \"3s\"").unwrap_err();
        assert!(e.contains("trace-idel"), "{e}");
    }
}
