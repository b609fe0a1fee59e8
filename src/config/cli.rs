//! The command line: every clap struct and subcommand of the `faultline` binary, each
//! flag declared once. Values stay raw strings here; [`super::resolve`](mod@super::resolve) parses and
//! validates them into a [`super::Config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

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
    #[command(after_help = ANALYZE_AFTER_HELP)]
    Analyze(AnalyzeArgs),
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

    /// `--error-status` and `--tenant-attribute`, declared once for `serve` and `analyze`.
    /// Read from the TOML file by [`AnalysisArgs::FILE_KEYS`] (see `resolve::parse_file`).
    #[command(flatten)]
    #[serde(skip)]
    pub analysis: AnalysisArgs,

    /// Verdicts are kept for the newest this many traces [default: 100000].
    #[arg(long, env = "FAULTLINE_VERDICT_RETENTION", value_name = "N")]
    pub verdict_retention: Option<String>,

    /// The state database deletes verdicts older than this, in batches; fingerprint
    /// history (counts, first seen, first release) is kept longer [default: 7d].
    #[arg(long, env = "FAULTLINE_VERDICT_RETENTION_AGE", value_name = "DURATION")]
    pub verdict_retention_age: Option<String>,

    /// Where verdicts and fingerprint history are kept across restarts: a SQLite file
    /// (a path, or sqlite:PATH; created with its directory), a PostgreSQL URL
    /// (postgres://user@host:5432/db?sslmode=require) shared by several replicas, or
    /// `memory` (nothing kept) [default: faultline-data/state.db, relative to the working
    /// directory].
    #[arg(long, env = "FAULTLINE_STATE", value_name = "PATH|URL|memory")]
    pub state: Option<String>,

    /// Read `--state` from this file instead (a PostgreSQL URL with its password, e.g. a
    /// mounted Kubernetes Secret); surrounding whitespace is ignored [default: none].
    #[arg(long, env = "FAULTLINE_STATE_URL_FILE", value_name = "PATH")]
    pub state_url_file: Option<PathBuf>,

    /// CA bundle (PEM) that a PostgreSQL server's certificate is verified against when the
    /// URL asks for TLS (sslmode=require) [default: the web PKI roots].
    #[arg(long, env = "FAULTLINE_STATE_TLS_CA_FILE", value_name = "PATH")]
    pub state_tls_ca_file: Option<PathBuf>,

    /// Verdicts waiting for the state writer; past this, while the database is slow or
    /// down, the oldest waiting are not written (they stay in memory) and are counted in
    /// faultline_state_verdicts_dropped_total [default: 100000].
    #[arg(long, env = "FAULTLINE_STATE_QUEUE", value_name = "N")]
    pub state_queue: Option<String>,

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

/// The analysis options that `serve` and `analyze` share: each flag is declared here
/// once, and both subcommands flatten it.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AnalysisArgs {
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
}

impl AnalysisArgs {
    /// Their keys in a `--config` file (the flag names).
    pub const FILE_KEYS: [&'static str; 2] = ["error-status", "tenant-attribute"];
}

/// The end of `faultline analyze --help`.
pub const ANALYZE_AFTER_HELP: &str = "\
Output: `--output json` prints one verdict a line, oldest request first, each as \
GET /api/v1/verdicts/{trace_id} returns it; with `--group-by fingerprint`, one \
{\"fingerprints\": [...]} object as GET /api/v1/fingerprints returns it. `analyzed_at` is \
the end of the trace's last span, so a capture always gives the same output. Counts and \
warnings (spans skipped for invalid ids) go to standard error.

Inputs: OTLP/JSON lines, length-prefixed or raw OTLP/protobuf, told apart by their \
content; gzip- or zstd-compressed or not (zstd as the Collector's file exporter writes \
it with `compression: zstd`, whole-file streams and per-record frames alike). They are \
read a record at a time; `--max-record-size` bounds one record after decompression.

Exit status: 0 when every input was read (with or without verdicts); 1 when an input \
cannot be read or decoded (the message names the file and the line, or the byte offset \
for protobuf); 2 for a bad option.";

/// Options of `faultline analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Captured traces: OTLP/JSON lines or OTLP/protobuf (length-prefixed as the
    /// Collector's file exporter writes them, or one raw request), optionally gzip- or
    /// zstd-compressed (the file exporter's `compression: zstd`, in any of its layouts);
    /// `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Input format; `auto` tells JSON from protobuf by the content.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,

    /// `table`: aligned columns for a terminal; `json`: one verdict a line, each exactly
    /// as `GET /api/v1/verdicts/{trace_id}` returns it (with `--group-by fingerprint`,
    /// the `/api/v1/fingerprints` body).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Summarise the verdicts by exception fingerprint, like `/api/v1/fingerprints`.
    #[arg(long, value_enum, value_name = "KEY")]
    pub group_by: Option<GroupBy>,

    /// `--error-status` and `--tenant-attribute`, as `serve` takes them.
    #[command(flatten)]
    pub analysis: AnalysisArgs,

    /// Largest record read, after decompression: a JSON line, a length-prefixed
    /// message, or a whole JSON document or raw protobuf request. Inputs are read a
    /// record at a time, so this bounds the memory reading takes (against decompression
    /// bombs, and files that are not captures).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_record_size: usize,
}

/// `--max-record-size`: `256MiB`, `64MB`, `1048576`.
fn parse_size(raw: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = raw
        .parse()
        .map_err(|e| format!("{e}; expected a size like 256MiB"))?;
    match usize::try_from(size.as_u64()) {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large".into()),
    }
}

/// How an input is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// JSON when the first non-blank byte is `{`, protobuf otherwise.
    Auto,
    /// OTLP/JSON lines, or one JSON request.
    Json,
    /// Length-prefixed OTLP/protobuf requests, or one raw request.
    Proto,
}

/// How verdicts are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// The API's JSON.
    Json,
}

/// What `--group-by` summarises by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// Exception fingerprint.
    Fingerprint,
}
