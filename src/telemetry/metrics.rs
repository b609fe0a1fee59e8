//! The metric families faultline exposes, named like the OpenTelemetry Collector's own
//! (`receiver_accepted_spans`, `receiver_refused_spans`), with bounded label sets: every
//! label value here comes from a closed enum, never from input.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::names;
use super::verdict_metrics::VerdictMetrics;

/// Receiving transport.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
}

/// Why spans or requests were refused.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RefuseReason {
    /// All-zero or wrongly sized trace/span/parent id (reported in partial_success).
    InvalidId,
    /// The payload did not decode (garbage, bad gzip, bad JSON).
    Malformed,
    /// Over `--max-request-size` after decompression.
    TooLarge,
    /// Neither protobuf nor JSON, or an unknown content encoding.
    UnsupportedMediaType,
    /// Span budget full and nothing could be evicted: the sender was asked to retry.
    Overloaded,
    /// The forward queue is full (the downstream is slow or down): the sender was asked
    /// to retry.
    ForwardQueueFull,
    /// No valid `Authorization: Bearer` token (`--auth-token-file`).
    Unauthenticated,
}

/// Which listener (for the TLS handshake counter).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ListenerName {
    /// `--otlp-grpc-listen`.
    OtlpGrpc,
    /// `--otlp-http-listen`.
    OtlpHttp,
    /// `--http-listen`.
    Http,
}

/// Labels `{listener}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// otlp_grpc | otlp_http | http
    pub listener: ListenerName,
}

/// How a reload of a listener's TLS files ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new files are in force for new handshakes.
    Ok,
    /// The new files were refused (unreadable, unparsable, a key that does not fit):
    /// the previous ones stay in force.
    Error,
}

/// Labels `{listener, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsReloadLabels {
    /// otlp_grpc | otlp_http | http
    pub listener: ListenerName,
    /// ok | error
    pub result: ReloadResult,
}

/// How an OTLP metrics push ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ExportResult {
    /// The collector accepted the request.
    Ok,
    /// Refused, timed out or unreachable (retried on the next tick with fresh values).
    Failed,
}

/// Labels `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExportLabels {
    /// ok | failed
    pub result: ExportResult,
}

/// Labels `{transport}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// grpc | http
    pub transport: Transport,
}

/// Labels `{transport, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// grpc | http
    pub transport: Transport,
    /// Why.
    pub reason: RefuseReason,
}

/// Labels `{trigger}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// Why the trace was completed: an `assembly::policy::Trigger` label value (the
    /// policy owns the trigger; telemetry, below it, only carries its name).
    pub trigger: &'static str,
}

/// Labels `{reason}` of the forwarder's retries and failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardReasonLabels {
    /// A `forward::retry::FailureReason` label value.
    pub reason: &'static str,
}

/// The forwarder's families (named after the Collector exporter helper's
/// `otelcol_exporter_sent_spans`, `..._send_failed_spans`, `..._queue_size`).
#[derive(Clone)]
pub struct ForwardMetrics {
    /// `faultline_forward_queue_spans`: spans queued or being delivered.
    pub queue_spans: Gauge,
    /// `faultline_forward_queue_capacity_spans`.
    pub queue_capacity_spans: Gauge,
    /// `faultline_forward_queue_disk_bytes`: size of the on-disk queue.
    pub queue_disk_bytes: Gauge,
    /// `faultline_forward_sent_spans_total`: spans the downstream accepted.
    pub sent_spans: Counter,
    /// `faultline_forward_retried_spans_total{reason}`: spans sent again after a
    /// retryable failure (once per retry).
    pub retried_spans: Family<ForwardReasonLabels, Counter>,
    /// `faultline_forward_failed_spans_total{reason}`: spans given up, by reason.
    pub failed_spans: Family<ForwardReasonLabels, Counter>,
    /// `faultline_forward_recovered_spans_total`: spans found in the on-disk queue at
    /// start-up.
    pub recovered_spans: Counter,
    /// `faultline_forward_queue_disk_errors_total`: failed writes to the on-disk queue
    /// (the data stays queued in memory).
    pub queue_disk_errors: Counter,
    /// `faultline_forward_queue_wait_seconds`: time from queuing to the first attempt.
    pub queue_wait: Histogram,
}

impl Default for ForwardMetrics {
    fn default() -> Self {
        ForwardMetrics {
            queue_spans: Gauge::default(),
            queue_capacity_spans: Gauge::default(),
            queue_disk_bytes: Gauge::default(),
            sent_spans: Counter::default(),
            retried_spans: Family::default(),
            failed_spans: Family::default(),
            recovered_spans: Counter::default(),
            queue_disk_errors: Counter::default(),
            // 1 ms .. ~65 s.
            queue_wait: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 4.0, 9,
            )),
        }
    }
}

impl ForwardMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::FORWARD_QUEUE_SPANS.name,
            "Spans waiting in the forward queue or being delivered",
            self.queue_spans.clone(),
        );
        r.register(
            names::FORWARD_QUEUE_CAPACITY_SPANS.name,
            "Capacity of the forward queue (--forward-queue-size)",
            self.queue_capacity_spans.clone(),
        );
        r.register(
            names::FORWARD_QUEUE_DISK_BYTES.name,
            "Bytes of the on-disk forward queue (--forward-queue-dir)",
            self.queue_disk_bytes.clone(),
        );
        r.register(
            names::FORWARD_SENT_SPANS.name,
            "Spans the forward endpoint accepted",
            self.sent_spans.clone(),
        );
        r.register(
            names::FORWARD_RETRIED_SPANS.name,
            "Spans sent again after a retryable failure, by reason",
            self.retried_spans.clone(),
        );
        r.register(
            names::FORWARD_FAILED_SPANS.name,
            "Spans the forwarder gave up on, by reason",
            self.failed_spans.clone(),
        );
        r.register(
            names::FORWARD_RECOVERED_SPANS.name,
            "Spans recovered from the on-disk forward queue at start-up",
            self.recovered_spans.clone(),
        );
        r.register(
            names::FORWARD_QUEUE_DISK_ERRORS.name,
            "Failed writes to the on-disk forward queue (the data stays queued in memory)",
            self.queue_disk_errors.clone(),
        );
        r.register(
            names::FORWARD_QUEUE_WAIT_SECONDS.name,
            "Time spans waited in the forward queue before their first delivery attempt",
            self.queue_wait.clone(),
        );
    }
}

/// Labels `{reason}` of the state writer's families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateReasonLabels {
    /// unavailable | rejected | corrupt | queue_full
    pub reason: StateReason,
}

/// Why the state writer failed a write or gave up on verdicts.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StateReason {
    /// The database could not be reached or answered with a transient error.
    Unavailable,
    /// The database refused the statement.
    Rejected,
    /// A row did not decode.
    Corrupt,
    /// The writer's queue (`--state-queue`) was full.
    QueueFull,
}

impl StateReason {
    fn from_name(name: &str) -> StateReason {
        match name {
            "unavailable" => StateReason::Unavailable,
            "corrupt" => StateReason::Corrupt,
            "queue_full" => StateReason::QueueFull,
            _ => StateReason::Rejected,
        }
    }
}

/// The state writer's families (registered only with a state database).
#[derive(Clone)]
pub struct StateMetrics {
    /// `faultline_state_verdicts_written_total`.
    pub written: Counter,
    /// `faultline_state_write_failures_total{reason}`: failed batch writes.
    pub write_failures: Family<StateReasonLabels, Counter>,
    /// `faultline_state_verdicts_dropped_total{reason}`: verdicts not written.
    pub dropped: Family<StateReasonLabels, Counter>,
    /// `faultline_state_write_queue_depth`.
    pub queue_depth: Gauge,
    /// `faultline_state_write_duration_seconds`: one committed batch.
    pub write_seconds: Histogram,
    /// `faultline_state_up`.
    pub up: Gauge,
}

impl Default for StateMetrics {
    fn default() -> Self {
        StateMetrics {
            written: Counter::default(),
            write_failures: Family::default(),
            dropped: Family::default(),
            queue_depth: Gauge::default(),
            // 0.5 ms .. ~8 s.
            write_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0005, 4.0, 8),
            ),
            up: Gauge::default(),
        }
    }
}

impl StateMetrics {
    fn register(&self, r: &mut Registry) {
        // Every reason's series exists from the start at 0, so the first failure shows in
        // `increase()`.
        for reason in [
            StateReason::Unavailable,
            StateReason::Rejected,
            StateReason::Corrupt,
        ] {
            let _ = self
                .write_failures
                .get_or_create(&StateReasonLabels { reason });
        }
        for reason in [StateReason::QueueFull, StateReason::Rejected] {
            let _ = self.dropped.get_or_create(&StateReasonLabels { reason });
        }
        r.register(
            names::STATE_VERDICTS_WRITTEN.name,
            "Verdicts committed to the state database",
            self.written.clone(),
        );
        r.register(
            names::STATE_WRITE_FAILURES.name,
            "Failed batch writes to the state database, by reason (retried)",
            self.write_failures.clone(),
        );
        r.register(
            names::STATE_VERDICTS_DROPPED.name,
            "Verdicts never written to the state database (kept in memory), by reason",
            self.dropped.clone(),
        );
        r.register(
            names::STATE_WRITE_QUEUE_DEPTH.name,
            "Verdicts waiting for the state writer (--state-queue bounds it)",
            self.queue_depth.clone(),
        );
        r.register(
            names::STATE_WRITE_DURATION_SECONDS.name,
            "Time to commit one batch of verdicts to the state database",
            self.write_seconds.clone(),
        );
        r.register(
            names::STATE_UP.name,
            "1 when the state database accepted the last write, else 0",
            self.up.clone(),
        );
    }
}

impl crate::store::writer::StateObserver for StateMetrics {
    fn written(&self, n: usize, seconds: f64) {
        self.written.inc_by(n as u64);
        self.write_seconds.observe(seconds);
    }
    fn write_failed(&self, reason: &'static str) {
        self.write_failures
            .get_or_create(&StateReasonLabels {
                reason: StateReason::from_name(reason),
            })
            .inc();
    }
    fn dropped(&self, reason: &'static str, n: usize) {
        self.dropped
            .get_or_create(&StateReasonLabels {
                reason: StateReason::from_name(reason),
            })
            .inc_by(n as u64);
    }
    fn queue_depth(&self, n: usize) {
        self.queue_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    fn up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}

/// All metric handles. Cheap to clone (every handle is an `Arc` inside).
#[derive(Clone, Default)]
pub struct Metrics {
    /// `faultline_receiver_accepted_spans_total{transport}`.
    pub accepted_spans: Family<TransportLabels, Counter>,
    /// `faultline_receiver_refused_spans_total{transport, reason}`.
    pub refused_spans: Family<RefusedLabels, Counter>,
    /// `faultline_receiver_refused_requests_total{transport, reason}`: whole requests whose
    /// span count is unknown (undecodable, too large) or that were pushed back.
    pub refused_requests: Family<RefusedLabels, Counter>,
    /// `faultline_traces_buffered`.
    pub traces_buffered: Gauge,
    /// `faultline_spans_buffered`.
    pub spans_buffered: Gauge,
    /// `faultline_traces_completed_total{trigger}`.
    pub traces_completed: Family<TriggerLabels, Counter>,
    /// `faultline_late_spans_total`.
    pub late_spans: Counter,
    /// `faultline_analysis_queue_depth`: completed traces waiting for analysis.
    pub analysis_queue_depth: Gauge,
    /// `faultline_traces_analyzed_total`.
    pub traces_analyzed: Counter,
    /// `faultline_spans_analyzed_total`.
    pub spans_analyzed: Counter,
    /// `faultline_verdicts_total`: verdicts made (one per failing request).
    pub verdicts: Counter,
    /// `faultline_verdicts_retained`: traces whose verdicts the store holds.
    pub verdicts_retained: Gauge,
    /// `faultline_watch_lagged_verdicts_total`: verdicts `WatchVerdicts` subscribers
    /// missed because they read too slowly (summed over subscribers).
    pub watch_lagged_verdicts: Counter,
    /// `faultline_otlp_metrics_exports_total{result}`: OTLP metrics pushes.
    pub otlp_metrics_exports: Family<ExportLabels, Counter>,
    /// The per-verdict families (`faultline_errors_total`, ...), capped by `--max-series`.
    pub verdict_metrics: VerdictMetrics,
    /// `faultline_corrupt_spans_total`: buffered spans skipped because their bytes did
    /// not decode when their trace was materialised (ingest reads only a span's head).
    pub corrupt_spans: Counter,
    /// The forwarder's families (registered only when forwarding is on).
    pub forward: ForwardMetrics,
    /// True when `forward` is registered.
    pub forwarding: bool,
    /// The state writer's families (registered only with a state database).
    pub state: StateMetrics,
    /// True when `state` is registered.
    pub stateful: bool,
    /// `faultline_resent_traces_total`: traces whose spans arrived again after their
    /// verdict was made (an exporter's retry); the first verdict stands, counted once.
    pub resent_traces: Counter,
    /// `faultline_tls_handshake_failures_total{listener}`: TLS connections that failed or
    /// timed out before the handshake completed (plain-text clients, unknown CAs, missing
    /// client certificates).
    pub tls_handshake_failures: Family<ListenerLabels, Counter>,
    /// `faultline_tls_reloads_total{listener, result}`: changed certificate, key or client
    /// CA files re-read while running, by outcome.
    pub tls_reloads: Family<TlsReloadLabels, Counter>,
}

impl Metrics {
    /// Registers every family in a new registry.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix(names::PREFIX);
        r.register(
            names::RECEIVER_ACCEPTED_SPANS.name,
            "Spans accepted by the OTLP receivers",
            self.accepted_spans.clone(),
        );
        r.register(
            names::RECEIVER_REFUSED_SPANS.name,
            "Spans refused by the OTLP receivers, by reason",
            self.refused_spans.clone(),
        );
        r.register(
            names::RECEIVER_REFUSED_REQUESTS.name,
            "Export requests refused whole, by reason",
            self.refused_requests.clone(),
        );
        r.register(
            names::TRACES_BUFFERED.name,
            "Traces being assembled",
            self.traces_buffered.clone(),
        );
        r.register(
            names::SPANS_BUFFERED.name,
            "Spans held in the assembly buffer",
            self.spans_buffered.clone(),
        );
        r.register(
            names::TRACES_COMPLETED.name,
            "Traces handed to analysis, by what completed them",
            self.traces_completed.clone(),
        );
        r.register(
            names::LATE_SPANS.name,
            "Spans that arrived after their trace was analysed",
            self.late_spans.clone(),
        );
        r.register(
            names::ANALYSIS_QUEUE_DEPTH.name,
            "Completed traces waiting for the analysis stage",
            self.analysis_queue_depth.clone(),
        );
        r.register(
            names::TRACES_ANALYZED.name,
            "Traces the analysis stage processed",
            self.traces_analyzed.clone(),
        );
        r.register(
            names::SPANS_ANALYZED.name,
            "Spans the analysis stage processed",
            self.spans_analyzed.clone(),
        );
        r.register(
            names::VERDICTS.name,
            "Verdicts made, one per failing request",
            self.verdicts.clone(),
        );
        r.register(
            names::VERDICTS_RETAINED.name,
            "Traces whose verdicts are retained",
            self.verdicts_retained.clone(),
        );
        r.register(
            names::WATCH_LAGGED_VERDICTS.name,
            "Verdicts WatchVerdicts subscribers missed because they read too slowly",
            self.watch_lagged_verdicts.clone(),
        );
        r.register(
            names::OTLP_METRICS_EXPORTS.name,
            "OTLP metrics pushes to --otlp-metrics-endpoint, by result",
            self.otlp_metrics_exports.clone(),
        );
        self.verdict_metrics.register(&mut r);
        r.register(
            names::CORRUPT_SPANS.name,
            "Buffered spans skipped at analysis because they do not decode",
            self.corrupt_spans.clone(),
        );
        if self.forwarding {
            self.forward.register(&mut r);
        }
        if self.stateful {
            self.state.register(&mut r);
        }
        r.register(
            names::RESENT_TRACES.name,
            "Traces whose spans arrived again after their verdict; not analysed twice",
            self.resent_traces.clone(),
        );
        r.register(
            names::TLS_HANDSHAKE_FAILURES.name,
            "TLS connections that failed or timed out in the handshake, by listener",
            self.tls_handshake_failures.clone(),
        );
        r.register(
            names::TLS_RELOADS.name,
            "Changed TLS certificate, key or client CA files re-read, by listener and result",
            self.tls_reloads.clone(),
        );
        r
    }

    /// Counts spans refused for `reason`.
    pub fn refuse_spans(&self, transport: Transport, reason: RefuseReason, n: u64) {
        if n > 0 {
            self.refused_spans
                .get_or_create(&RefusedLabels { transport, reason })
                .inc_by(n);
        }
    }

    /// Counts one request refused whole for `reason`.
    pub fn refuse_request(&self, transport: Transport, reason: RefuseReason) {
        self.refused_requests
            .get_or_create(&RefusedLabels { transport, reason })
            .inc();
    }
}

/// Label values from a closed set of names.
macro_rules! label_values {
    ($($ty:ident { $($variant:ident => $name:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The label value.
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )+};
}

label_values! {
    Transport { Grpc => "grpc", Http => "http" }
    RefuseReason {
        InvalidId => "invalid_id",
        Malformed => "malformed",
        TooLarge => "too_large",
        UnsupportedMediaType => "unsupported_media_type",
        Overloaded => "overloaded",
        ForwardQueueFull => "forward_queue_full",
        Unauthenticated => "unauthenticated",
    }
    ListenerName { OtlpGrpc => "otlp_grpc", OtlpHttp => "otlp_http", Http => "http" }
    ExportResult { Ok => "ok", Failed => "failed" }
    StateReason {
        Unavailable => "unavailable",
        Rejected => "rejected",
        Corrupt => "corrupt",
        QueueFull => "queue_full",
    }
    ReloadResult { Ok => "ok", Error => "error" }
}
