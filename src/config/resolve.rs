//! Flags + environment + TOML file → one validated [`Config`], and the errors saying
//! which option is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::cli::{AnalysisArgs, ServeArgs};
use super::{
    redact, AssemblyConfig, Config, ForwardConfig, ForwardMode, ForwardProtocol, ForwardTls,
    IngestConfig, MetricsConfig, OtlpMetricsConfig, OtlpMetricsProtocol, SecretUrl, SecurityConfig,
    StateConfig, StateLocation, TlsFiles,
};
use crate::analysis::AnalysisConfig;

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
            analysis: self.analysis.or(lower.analysis),
            verdict_retention: self.verdict_retention.or(lower.verdict_retention),
            verdict_retention_age: self.verdict_retention_age.or(lower.verdict_retention_age),
            state: self.state.or(lower.state),
            state_url_file: self.state_url_file.or(lower.state_url_file),
            state_tls_ca_file: self.state_tls_ca_file.or(lower.state_tls_ca_file),
            state_queue: self.state_queue.or(lower.state_queue),
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

impl AnalysisArgs {
    /// Fills every option that is unset here from `lower`.
    fn or(self, lower: AnalysisArgs) -> AnalysisArgs {
        AnalysisArgs {
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
    refuse_unknown_keys(&table)?;
    // `--error-status` and `--tenant-attribute` are declared once, in `AnalysisArgs`,
    // which `ServeArgs` flattens for clap; serde's `flatten` would lose the key names in
    // its messages, so their keys are taken out and read on their own.
    let mut analysis = toml::Table::new();
    for key in AnalysisArgs::FILE_KEYS {
        if let Some(v) = table.remove(key) {
            analysis.insert(key.to_string(), v);
        }
    }
    let analysis = AnalysisArgs::deserialize(analysis).map_err(|e| e.to_string())?;
    let serve = ServeArgs::deserialize(table).map_err(|e| e.to_string())?;
    Ok(ServeArgs { analysis, ..serve })
}

/// The keys a `--config` file may hold: every service flag but `--config` itself, in
/// declaration order (as serde would list a struct's fields).
fn file_keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        // Built once and kept for the process: the names borrow from it.
        let command: &'static clap::Command = Box::leak(Box::new(
            <ServeArgs as clap::Args>::augment_args(clap::Command::new("faultline")),
        ));
        command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|long| *long != "config")
            .collect()
    })
}

/// Refuses a key that names no option, with serde's own message (the keys expected).
fn refuse_unknown_keys(table: &toml::Table) -> Result<(), String> {
    let keys = file_keys();
    match table.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(key) => {
            Err(<toml::de::Error as serde::de::Error>::unknown_field(key, keys).to_string())
        }
        None => Ok(()),
    }
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
    let headers = forward_headers(&a.forward_header)?;
    let tls = forward_tls(a)?;
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
        queue_dir: trimmed_path(&a.forward_queue_dir),
        timeout,
        max_elapsed,
        concurrency,
    }))
}

/// `--forward-header KEY=VALUE`, each a valid header.
fn forward_headers(
    raw_headers: &[String],
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let mut headers = Vec::new();
    for raw in raw_headers {
        let Some((k, v)) = raw.split_once('=') else {
            return Err(invalid("forward-header", raw, "expected KEY=VALUE"));
        };
        let name = http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes())
            .map_err(|e| invalid("forward-header", raw, e))?;
        let value =
            http::HeaderValue::from_str(v.trim()).map_err(|e| invalid("forward-header", raw, e))?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// A path option given as a string; blank is no value.
fn trimmed_path(raw: &Option<String>) -> Option<PathBuf> {
    raw.as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The forwarder's TLS files: a CA, and a client certificate with its key (both or
/// neither).
fn forward_tls(a: &ServeArgs) -> Result<ForwardTls, ConfigError> {
    let path = trimmed_path;
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
    Ok(ForwardTls {
        ca_file: path(&a.forward_tls_ca_file),
        client_identity,
    })
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

/// Where `--state` points when it is not given.
pub const DEFAULT_STATE_FILE: &str = "faultline-data/state.db";

/// A `--state` value (`option` names where it came from, for the message).
///
/// # Errors
/// Empty, or a URL of a database faultline does not drive.
pub fn parse_state(option: &'static str, raw: &str) -> Result<StateLocation, ConfigError> {
    let v = raw.trim();
    if v.is_empty() {
        return Err(invalid(
            option,
            raw,
            "expected a file path, a postgres:// URL, or memory",
        ));
    }
    if v == "memory" {
        return Ok(StateLocation::Memory);
    }
    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
        return Ok(StateLocation::Postgres(SecretUrl(v.to_string())));
    }
    if let Some(path) = v
        .strip_prefix("sqlite://")
        .or_else(|| v.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(invalid(option, raw, "sqlite: needs a file path after it"));
        }
        return Ok(StateLocation::Sqlite(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = v.split_once("://") {
        return Err(invalid(
            option,
            &redact(v),
            format!("{scheme}:// is not a state database faultline drives; use a file path (SQLite), postgres://…, or memory"),
        ));
    }
    Ok(StateLocation::Sqlite(PathBuf::from(v)))
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
    let analysis = analysis_config(&a.analysis)?;
    let watch_buffer = count("watch-buffer", a.watch_buffer, 1024)?;
    if watch_buffer > MAX_WATCH_BUFFER {
        return Err(invalid(
            "watch-buffer",
            &watch_buffer.to_string(),
            format!("at most {MAX_WATCH_BUFFER} (the buffer is allocated up front)"),
        ));
    }
    let otlp = otlp_metrics(
        a.otlp_metrics_protocol,
        a.otlp_metrics_interval,
        a.otlp_metrics_endpoint,
    )?;
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
        analysis,
        verdict_retention: count("verdict-retention", a.verdict_retention, 100_000)?,
        state: StateConfig {
            location: match path_option(&a.state_url_file) {
                Some(file) => StateLocation::UrlFile(file),
                None => parse_state("state", a.state.as_deref().unwrap_or(DEFAULT_STATE_FILE))?,
            },
            tls_ca_file: path_option(&a.state_tls_ca_file),
            queue: count("state-queue", a.state_queue, 100_000)?,
            retention_age: duration("verdict-retention-age", a.verdict_retention_age, "7d")?,
        },
        watch_buffer,
        metrics: MetricsConfig {
            max_series: count("max-series", a.max_series, 1000)?,
            otlp,
        },
        forward,
        security,
    })
}

/// `--error-status` and `--tenant-attribute`, as the analysis takes them.
fn analysis_config(a: &AnalysisArgs) -> Result<AnalysisConfig, ConfigError> {
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
    if tenant_attributes.is_empty() {
        tenant_attributes = AnalysisConfig::default().tenant_attributes;
    }
    Ok(AnalysisConfig {
        error_statuses,
        tenant_attributes,
    })
}

/// The OTLP metrics push (`--otlp-metrics-*`); `None` without an endpoint.
fn otlp_metrics(
    protocol: Option<String>,
    interval: Option<String>,
    endpoint: Option<String>,
) -> Result<Option<OtlpMetricsConfig>, ConfigError> {
    // Protocol and interval are checked even without an endpoint: a typo in either
    // should not wait for the day the push is switched on.
    let otlp_protocol = otlp_protocol(protocol)?;
    let otlp_interval = duration("otlp-metrics-interval", interval, "60s")?;
    Ok(match endpoint.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(OtlpMetricsConfig {
            endpoint: otlp_endpoint(raw, otlp_protocol)?,
            protocol: otlp_protocol,
            interval: otlp_interval,
        }),
    })
}

/// A path option; an empty value (an unset variable in a Helm template) is no value.
fn path_option(raw: &Option<PathBuf>) -> Option<PathBuf> {
    raw.as_ref().filter(|p| !p.as_os_str().is_empty()).cloned()
}

/// One listener's TLS files: its own certificate and key as a pair when either is set,
/// else the shared pair; its own client CA when set, else the shared one. The files are
/// only named here; [`crate::tls`] reads them (so `--config` files can be checked on
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
mod tests;
