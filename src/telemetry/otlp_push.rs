//! The OTLP metrics push (`--otlp-metrics-endpoint`, docs/contract.md §5): every
//! `--otlp-metrics-interval`, the registry behind `/metrics` is converted
//! ([`super::otlp_metrics`]) and sent to a collector over OTLP/gRPC
//! (`MetricsService/Export`, gzip) or OTLP/HTTP (`POST /v1/metrics`,
//! `application/x-protobuf`, gzip); once more at shutdown, after analysis drained.
//!
//! A push never blocks ingest or analysis: it runs in its own task, encodes on a blocking
//! thread, and is bounded by [`PUSH_TIMEOUT`]. A failure is logged and counted in
//! `faultline_otlp_metrics_exports_total{result="failed"}`, and nothing is retried: the
//! values are cumulative, so the next tick carries everything the failed push had.
//!
//! Depends on the metric handles ([`super::metrics`]) and the config; the app starts it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use super::metrics::{ExportLabels, ExportResult, Metrics};
use super::otlp_metrics::{export_request, ConvertError, PushIdentity};
use crate::config::{OtlpMetricsConfig, OtlpMetricsProtocol};

/// Longest wait for one push, connection included: the OpenTelemetry SDKs' default
/// `OTEL_EXPORTER_OTLP_TIMEOUT`.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest collector answer read over HTTP (an `ExportMetricsServiceResponse` is tiny).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry did not encode.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The encoding thread died.
    #[error("the encoding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The collector answered with a gRPC error.
    #[error("collector answered gRPC status {code:?}: {message}")]
    Grpc {
        /// The status code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// The collector answered with an HTTP error.
    #[error("collector answered HTTP {0}")]
    HttpStatus(http::StatusCode),
    /// No connection or a broken one.
    #[error("cannot reach the collector: {0}")]
    Transport(String),
    /// No answer within [`PUSH_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What an accepted push came back with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Data points the collector rejected (OTLP partial success).
    pub rejected_data_points: i64,
}

enum Transport {
    Grpc(MetricsServiceClient<Channel>),
    Http {
        // Boxed: the pooled client is twice the size of the gRPC one.
        client: Box<hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>>,
        uri: http::Uri,
    },
}

/// Pushes one registry to one collector.
pub struct OtlpMetricsPusher {
    registry: Arc<Registry>,
    identity: PushIdentity,
    start_unix_nano: u64,
    transport: Transport,
    metrics: Metrics,
    endpoint: http::Uri,
    timeout: Duration,
}

impl OtlpMetricsPusher {
    /// A pusher of `metrics`' registry to `config.endpoint`; cumulative points start at
    /// `start_unix_nano`. Connects lazily (a collector started later is fine).
    pub fn new(
        config: &OtlpMetricsConfig,
        metrics: Metrics,
        identity: PushIdentity,
        start_unix_nano: u64,
    ) -> Self {
        let timeout = PUSH_TIMEOUT;
        let transport = match config.protocol {
            OtlpMetricsProtocol::Grpc => {
                let channel = tonic::transport::Endpoint::from(config.endpoint.clone())
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .connect_lazy();
                Transport::Grpc(
                    MetricsServiceClient::new(channel).send_compressed(CompressionEncoding::Gzip),
                )
            }
            OtlpMetricsProtocol::HttpProtobuf => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeout));
                connector.set_nodelay(true);
                Transport::Http {
                    client: Box::new(
                        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                            .build(connector),
                    ),
                    uri: config.endpoint.clone(),
                }
            }
        };
        OtlpMetricsPusher {
            registry: Arc::new(metrics.registry()),
            identity,
            start_unix_nano,
            transport,
            metrics,
            endpoint: config.endpoint.clone(),
            timeout,
        }
    }

    /// Converts the registry as it is now and sends it once; counts the result in
    /// `faultline_otlp_metrics_exports_total`.
    ///
    /// # Errors
    /// See [`PushError`].
    pub async fn push(&self) -> Result<PushOutcome, PushError> {
        let result = self.push_uncounted().await;
        let result_label = match result {
            Ok(_) => ExportResult::Ok,
            Err(_) => ExportResult::Failed,
        };
        self.metrics
            .otlp_metrics_exports
            .get_or_create(&ExportLabels {
                result: result_label,
            })
            .inc();
        result
    }

    async fn push_uncounted(&self) -> Result<PushOutcome, PushError> {
        let registry = Arc::clone(&self.registry);
        let identity = self.identity.clone();
        let start = self.start_unix_nano;
        let now = unix_nano(SystemTime::now());
        // Encoding 10,000 series is CPU work: keep it off the async workers.
        let request =
            tokio::task::spawn_blocking(move || export_request(&registry, &identity, start, now))
                .await??;
        match tokio::time::timeout(self.timeout, self.send(request)).await {
            Ok(result) => result,
            Err(_) => Err(PushError::Timeout(self.timeout)),
        }
    }

    async fn send(&self, request: ExportMetricsServiceRequest) -> Result<PushOutcome, PushError> {
        let response = match &self.transport {
            Transport::Grpc(client) => client
                .clone()
                .export(request)
                .await
                .map(tonic::Response::into_inner)
                // A refused connection arrives here too, as `Unavailable`.
                .map_err(|s| PushError::Grpc {
                    code: s.code(),
                    message: s.message().to_string(),
                })?,
            Transport::Http { client, uri } => {
                let body = gzip(&request.encode_to_vec())
                    .map_err(|e| PushError::Transport(e.to_string()))?;
                let req = http::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .header(http::header::CONTENT_ENCODING, "gzip")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| PushError::Transport(e.to_string()))?;
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| PushError::Transport(e.to_string()))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(PushError::HttpStatus(status));
                }
                let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                // An empty or unreadable body on 200 still means accepted (OTLP/HTTP).
                ExportMetricsServiceResponse::decode(bytes).unwrap_or_default()
            }
        };
        Ok(PushOutcome {
            rejected_data_points: response
                .partial_success
                .map(|p| p.rejected_data_points)
                .unwrap_or(0),
        })
    }

    /// Pushes every `interval` (the first push one interval after start) until `stop`,
    /// then once more: the final push, which the caller makes after analysis drained.
    pub fn spawn(self, interval: Duration, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(
                "pushing OTLP metrics to {} every {}",
                self.endpoint,
                humantime::format_duration(interval)
            );
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut healthy = true;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => healthy = self.push_logged(healthy, false).await,
                }
            }
            self.push_logged(healthy, true).await;
        })
    }

    /// Pushes and logs: a failure once when pushes start failing (not on every tick of
    /// a long outage), the recovery, and the final push's result always.
    async fn push_logged(&self, was_healthy: bool, last: bool) -> bool {
        match self.push().await {
            Ok(outcome) => {
                if outcome.rejected_data_points > 0 {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        rejected_data_points = outcome.rejected_data_points,
                        "OTLP metrics push: the collector rejected data points"
                    );
                }
                if last {
                    tracing::info!(endpoint = %self.endpoint, "final OTLP metrics push done");
                } else if !was_healthy {
                    tracing::info!(endpoint = %self.endpoint, "OTLP metrics push works again");
                }
                true
            }
            Err(e) => {
                if was_healthy || last {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %e,
                        retrying_every_tick = !last,
                        "OTLP metrics push failed"
                    );
                } else {
                    tracing::debug!(endpoint = %self.endpoint, error = %e, "OTLP metrics push failed");
                }
                false
            }
        }
    }
}

/// A `service.instance.id` unique to this process: a hash of the pid, the start time
/// and the host name, as 32 hex digits (the form of a random UUID without dashes).
pub fn instance_id(start: SystemTime) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let seed = format!(
        "{}/{}/{}",
        host.trim(),
        std::process::id(),
        unix_nano(start)
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(seed.as_bytes()))
}

/// Nanoseconds since the Unix epoch (0 before it).
pub fn unix_nano(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(metrics: &Metrics, result: ExportResult) -> u64 {
        metrics
            .otlp_metrics_exports
            .get_or_create(&ExportLabels { result })
            .get()
    }

    #[tokio::test]
    async fn an_unreachable_collector_is_a_counted_failure_on_both_protocols() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for (protocol, path) in [
            (OtlpMetricsProtocol::Grpc, ""),
            (OtlpMetricsProtocol::HttpProtobuf, "/v1/metrics"),
        ] {
            let metrics = Metrics::default();
            let config = OtlpMetricsConfig {
                endpoint: format!("http://127.0.0.1:{port}{path}").parse().unwrap(),
                protocol,
                interval: Duration::from_secs(60),
            };
            let pusher = OtlpMetricsPusher::new(
                &config,
                metrics.clone(),
                PushIdentity::faultline("t".into()),
                0,
            );
            let err = pusher.push().await.unwrap_err();
            assert!(
                matches!(
                    (&err, protocol),
                    (
                        PushError::Grpc {
                            code: tonic::Code::Unavailable,
                            ..
                        },
                        OtlpMetricsProtocol::Grpc
                    ) | (PushError::Transport(_), OtlpMetricsProtocol::HttpProtobuf)
                ),
                "{protocol:?}: {err}"
            );
            assert_eq!(exports(&metrics, ExportResult::Failed), 1);
            assert_eq!(exports(&metrics, ExportResult::Ok), 0);
        }
    }

    #[test]
    fn instance_ids_are_32_hex_digits_and_differ_by_start() {
        let a = instance_id(UNIX_EPOCH + Duration::from_secs(1));
        let b = instance_id(UNIX_EPOCH + Duration::from_secs(2));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
