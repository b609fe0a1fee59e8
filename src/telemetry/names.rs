//! Metric names, defined once. Each family has the name it is registered under (in a
//! registry prefixed [`PREFIX`]), the name `/metrics` shows (`faultline_…`, with `_total`
//! on counters, as `prometheus-client` writes it) and its OTLP name (docs/contract.md §5). The
//! registry ([`super::metrics`], [`super::verdict_metrics`]) registers by these
//! constants, and the OTLP push ([`super::otlp_metrics`]) pins its names to [`ALL`].

/// The prefix of the registry every family is registered in.
pub const PREFIX: &str = "faultline";

/// One metric family's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricName {
    /// As registered, without the prefix or the counter suffix: `receiver_accepted_spans`.
    pub name: &'static str,
    /// On `/metrics`: `faultline_receiver_accepted_spans_total`.
    pub exposed: &'static str,
    /// In the OTLP push: `faultline.receiver.accepted_spans`.
    pub otel: &'static str,
}

macro_rules! metric_names {
    ($($(#[$doc:meta])* $konst:ident: $name:literal $(+ $suffix:literal)? => $otel:literal;)+) => {
        $(
            $(#[$doc])*
            pub const $konst: MetricName = MetricName {
                name: $name,
                exposed: concat!("faultline_", $name $(, $suffix)?),
                otel: $otel,
            };
        )+
        /// Every family on `/metrics` and its OTLP name: the documented mapping, pinned
        /// by a test that fails when a family is added without a name here.
        pub const ALL: &[MetricName] = &[$($konst),+];
    };
}

metric_names! {
    /// `faultline_errors_total` (OTLP `faultline.errors`).
    ERRORS: "errors" + "_total" => "faultline.errors";
    /// `faultline_corrupt_spans_total` (OTLP `faultline.corrupt_spans`).
    CORRUPT_SPANS: "corrupt_spans" + "_total" => "faultline.corrupt_spans";
    /// `faultline_error_budget_share` (OTLP `faultline.error_budget_share`).
    ERROR_BUDGET_SHARE: "error_budget_share" => "faultline.error_budget_share";
    /// `faultline_fingerprint_errors_total` (OTLP `faultline.fingerprint_errors`).
    FINGERPRINT_ERRORS: "fingerprint_errors" + "_total" => "faultline.fingerprint_errors";
    /// `faultline_fingerprint_info` (OTLP `faultline.fingerprint_info`).
    FINGERPRINT_INFO: "fingerprint_info" => "faultline.fingerprint_info";
    /// `faultline_metric_series_overflow_total` (OTLP `faultline.metric_series_overflow`).
    METRIC_SERIES_OVERFLOW: "metric_series_overflow" + "_total" => "faultline.metric_series_overflow";
    /// `faultline_receiver_accepted_spans_total` (OTLP `faultline.receiver.accepted_spans`).
    RECEIVER_ACCEPTED_SPANS: "receiver_accepted_spans" + "_total" => "faultline.receiver.accepted_spans";
    /// `faultline_receiver_refused_spans_total` (OTLP `faultline.receiver.refused_spans`).
    RECEIVER_REFUSED_SPANS: "receiver_refused_spans" + "_total" => "faultline.receiver.refused_spans";
    /// `faultline_receiver_refused_requests_total` (OTLP `faultline.receiver.refused_requests`).
    RECEIVER_REFUSED_REQUESTS: "receiver_refused_requests" + "_total" => "faultline.receiver.refused_requests";
    /// `faultline_traces_buffered` (OTLP `faultline.traces_buffered`).
    TRACES_BUFFERED: "traces_buffered" => "faultline.traces_buffered";
    /// `faultline_spans_buffered` (OTLP `faultline.spans_buffered`).
    SPANS_BUFFERED: "spans_buffered" => "faultline.spans_buffered";
    /// `faultline_traces_completed_total` (OTLP `faultline.traces_completed`).
    TRACES_COMPLETED: "traces_completed" + "_total" => "faultline.traces_completed";
    /// `faultline_late_spans_total` (OTLP `faultline.late_spans`).
    LATE_SPANS: "late_spans" + "_total" => "faultline.late_spans";
    /// `faultline_analysis_queue_depth` (OTLP `faultline.analysis_queue_depth`).
    ANALYSIS_QUEUE_DEPTH: "analysis_queue_depth" => "faultline.analysis_queue_depth";
    /// `faultline_traces_analyzed_total` (OTLP `faultline.traces_analyzed`).
    TRACES_ANALYZED: "traces_analyzed" + "_total" => "faultline.traces_analyzed";
    /// `faultline_spans_analyzed_total` (OTLP `faultline.spans_analyzed`).
    SPANS_ANALYZED: "spans_analyzed" + "_total" => "faultline.spans_analyzed";
    /// `faultline_verdicts_total` (OTLP `faultline.verdicts`).
    VERDICTS: "verdicts" + "_total" => "faultline.verdicts";
    /// `faultline_verdicts_retained` (OTLP `faultline.verdicts_retained`).
    VERDICTS_RETAINED: "verdicts_retained" => "faultline.verdicts_retained";
    /// `faultline_watch_lagged_verdicts_total` (OTLP `faultline.watch.lagged_verdicts`).
    WATCH_LAGGED_VERDICTS: "watch_lagged_verdicts" + "_total" => "faultline.watch.lagged_verdicts";
    /// `faultline_otlp_metrics_exports_total` (OTLP `faultline.otlp_metrics.exports`).
    OTLP_METRICS_EXPORTS: "otlp_metrics_exports" + "_total" => "faultline.otlp_metrics.exports";
    /// `faultline_tls_handshake_failures_total` (OTLP `faultline.tls_handshake_failures`).
    TLS_HANDSHAKE_FAILURES: "tls_handshake_failures" + "_total" => "faultline.tls_handshake_failures";
    /// `faultline_tls_reloads_total` (OTLP `faultline.tls_reloads`).
    TLS_RELOADS: "tls_reloads" + "_total" => "faultline.tls_reloads";
    /// `faultline_forward_queue_spans` (OTLP `faultline.forward.queue_spans`).
    FORWARD_QUEUE_SPANS: "forward_queue_spans" => "faultline.forward.queue_spans";
    /// `faultline_forward_queue_capacity_spans` (OTLP `faultline.forward.queue_capacity_spans`).
    FORWARD_QUEUE_CAPACITY_SPANS: "forward_queue_capacity_spans" => "faultline.forward.queue_capacity_spans";
    /// `faultline_forward_queue_disk_bytes` (OTLP `faultline.forward.queue_disk_bytes`).
    FORWARD_QUEUE_DISK_BYTES: "forward_queue_disk_bytes" => "faultline.forward.queue_disk_bytes";
    /// `faultline_forward_sent_spans_total` (OTLP `faultline.forward.sent_spans`).
    FORWARD_SENT_SPANS: "forward_sent_spans" + "_total" => "faultline.forward.sent_spans";
    /// `faultline_forward_retried_spans_total` (OTLP `faultline.forward.retried_spans`).
    FORWARD_RETRIED_SPANS: "forward_retried_spans" + "_total" => "faultline.forward.retried_spans";
    /// `faultline_forward_failed_spans_total` (OTLP `faultline.forward.failed_spans`).
    FORWARD_FAILED_SPANS: "forward_failed_spans" + "_total" => "faultline.forward.failed_spans";
    /// `faultline_forward_recovered_spans_total` (OTLP `faultline.forward.recovered_spans`).
    FORWARD_RECOVERED_SPANS: "forward_recovered_spans" + "_total" => "faultline.forward.recovered_spans";
    /// `faultline_forward_queue_disk_errors_total` (OTLP `faultline.forward.queue_disk_errors`).
    FORWARD_QUEUE_DISK_ERRORS: "forward_queue_disk_errors" + "_total" => "faultline.forward.queue_disk_errors";
    /// `faultline_state_verdicts_written_total` (OTLP `faultline.state.verdicts_written`).
    STATE_VERDICTS_WRITTEN: "state_verdicts_written" + "_total" => "faultline.state.verdicts_written";
    /// `faultline_state_write_failures_total` (OTLP `faultline.state.write_failures`).
    STATE_WRITE_FAILURES: "state_write_failures" + "_total" => "faultline.state.write_failures";
    /// `faultline_state_verdicts_dropped_total` (OTLP `faultline.state.verdicts_dropped`).
    STATE_VERDICTS_DROPPED: "state_verdicts_dropped" + "_total" => "faultline.state.verdicts_dropped";
    /// `faultline_state_write_queue_depth` (OTLP `faultline.state.write_queue_depth`).
    STATE_WRITE_QUEUE_DEPTH: "state_write_queue_depth" => "faultline.state.write_queue_depth";
    /// `faultline_state_write_duration_seconds` (OTLP `faultline.state.write_duration_seconds`).
    STATE_WRITE_DURATION_SECONDS: "state_write_duration_seconds" => "faultline.state.write_duration_seconds";
    /// `faultline_state_up` (OTLP `faultline.state.up`).
    STATE_UP: "state_up" => "faultline.state.up";
    /// `faultline_resent_traces_total` (OTLP `faultline.resent_traces`).
    RESENT_TRACES: "resent_traces" + "_total" => "faultline.resent_traces";
    /// `faultline_forward_queue_wait_seconds` (OTLP `faultline.forward.queue_wait_seconds`).
    FORWARD_QUEUE_WAIT_SECONDS: "forward_queue_wait_seconds" => "faultline.forward.queue_wait_seconds";
}
