//! The registry behind `/metrics`, converted to an OTLP `ExportMetricsServiceRequest`
//! (DESIGN §5, last bullet): the same instruments, named the OpenTelemetry way, with
//! cumulative temporality and the trace exemplars that the OpenTelemetry SDK exporters
//! cannot send (opentelemetry-rust#3369).
//!
//! The conversion is generic: `prometheus-client` encodes the whole registry into
//! Prometheus' own data model (`io.prometheus.client`, [`prometheus_protobuf::encode`]),
//! and every family becomes one OTLP metric, so a family added to
//! [`super::metrics::Metrics`] is pushed without a line here (its OTel name follows
//! [`otel_name`]'s rule; add it to [`OTEL_NAMES`] to pin it).
//!
//! | Prometheus family | OTLP metric |
//! |---|---|
//! | counter | `Sum`, monotonic, cumulative (double); its exemplar kept |
//! | gauge, untyped (info series are gauges of 1) | `Gauge` (double) |
//! | histogram | `Histogram`, cumulative, explicit bounds without `+Inf`, per-bucket counts; bucket exemplars kept |
//!
//! Labels become string attributes; an exemplar's `trace_id`/`span_id` labels (lowercase
//! hex) become the binary `trace_id`/`span_id` fields of the OTLP exemplar (OTLP
//! metrics.proto, `Exemplar`), its other labels `filtered_attributes`.
//!
//! Pure: no I/O, no clock (times come in as arguments). Depends on `prometheus-client`
//! and the OTLP message types only; the transport is [`super::otlp_push`].

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::encoding::prometheus_protobuf::{self, prometheus_data_model as pm};
use prometheus_client::registry::Registry;

/// The instrumentation scope of every pushed metric.
pub const SCOPE_NAME: &str = "faultline";

/// The prefix every faultline family carries on `/metrics`.
const PROMETHEUS_PREFIX: &str = "faultline_";

/// The OTel namespace replacing [`PROMETHEUS_PREFIX`].
const OTEL_PREFIX: &str = "faultline.";

/// Sub-namespaces of faultline's metrics: `faultline_<ns>_<rest>` becomes
/// `faultline.<ns>.<rest>`. `receiver` follows the OpenTelemetry Collector's own
/// `otelcol_receiver_accepted_spans` → `otelcol.receiver.accepted_spans`.
pub const NAMESPACES: [&str; 4] = ["receiver", "otlp_metrics", "watch", "forward"];

/// Every family on `/metrics` today and its OTel name: the documented mapping, pinned by
/// a test that fails when a family is added without a decision here.
pub const OTEL_NAMES: [(&str, &str); 19] = [
    ("faultline_errors_total", "faultline.errors"),
    ("faultline_error_budget_share", "faultline.error_budget_share"),
    (
        "faultline_fingerprint_errors_total",
        "faultline.fingerprint_errors",
    ),
    ("faultline_fingerprint_info", "faultline.fingerprint_info"),
    (
        "faultline_metric_series_overflow_total",
        "faultline.metric_series_overflow",
    ),
    (
        "faultline_receiver_accepted_spans_total",
        "faultline.receiver.accepted_spans",
    ),
    (
        "faultline_receiver_refused_spans_total",
        "faultline.receiver.refused_spans",
    ),
    (
        "faultline_receiver_refused_requests_total",
        "faultline.receiver.refused_requests",
    ),
    ("faultline_traces_buffered", "faultline.traces_buffered"),
    ("faultline_spans_buffered", "faultline.spans_buffered"),
    (
        "faultline_traces_completed_total",
        "faultline.traces_completed",
    ),
    ("faultline_late_spans_total", "faultline.late_spans"),
    (
        "faultline_analysis_queue_depth",
        "faultline.analysis_queue_depth",
    ),
    ("faultline_traces_analyzed_total", "faultline.traces_analyzed"),
    ("faultline_spans_analyzed_total", "faultline.spans_analyzed"),
    ("faultline_verdicts_total", "faultline.verdicts"),
    ("faultline_verdicts_retained", "faultline.verdicts_retained"),
    (
        "faultline_watch_lagged_verdicts_total",
        "faultline.watch.lagged_verdicts",
    ),
    (
        "faultline_otlp_metrics_exports_total",
        "faultline.otlp_metrics.exports",
    ),
];

/// The OTel name of a family exposed on `/metrics` as `prometheus_name`: `_total` is
/// dropped (OTel counters carry no suffix; the Prometheus exporter adds it back),
/// `faultline_` becomes `faultline.`, and a known sub-namespace ([`NAMESPACES`]) is
/// dotted too. Underscores inside a name stay: `error_budget_share` is one word.
pub fn otel_name(prometheus_name: &str) -> String {
    let base = prometheus_name
        .strip_suffix("_total")
        .unwrap_or(prometheus_name);
    let Some(rest) = base.strip_prefix(PROMETHEUS_PREFIX) else {
        return base.to_string();
    };
    for ns in NAMESPACES {
        if let Some(tail) = rest
            .strip_prefix(ns)
            .and_then(|t| t.strip_prefix('_'))
            .filter(|t| !t.is_empty())
        {
            return format!("{OTEL_PREFIX}{ns}.{tail}");
        }
    }
    format!("{OTEL_PREFIX}{rest}")
}

/// Who is pushing: the OTLP resource of every request.
#[derive(Clone, Debug)]
pub struct PushIdentity {
    /// `service.name`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// `service.instance.id`: unique per process, so two replicas' cumulative series
    /// never merge.
    pub service_instance_id: String,
}

impl PushIdentity {
    /// `faultline`, the crate version, and `instance_id`.
    pub fn faultline(instance_id: String) -> Self {
        PushIdentity {
            service_name: SCOPE_NAME.to_string(),
            service_version: env!("CARGO_PKG_VERSION").to_string(),
            service_instance_id: instance_id,
        }
    }
}

/// Errors converting a registry.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// `prometheus-client` refused to encode the registry (a label set failed to encode).
    #[error("cannot encode the metric registry")]
    Encode,
}

/// Encodes `registry` and converts it (see [`convert`]).
///
/// # Errors
/// The registry does not encode.
pub fn export_request(
    registry: &Registry,
    identity: &PushIdentity,
    start_unix_nano: u64,
    now_unix_nano: u64,
) -> Result<ExportMetricsServiceRequest, ConvertError> {
    let families = prometheus_protobuf::encode(registry).map_err(|_| ConvertError::Encode)?;
    Ok(convert(&families, identity, start_unix_nano, now_unix_nano))
}

/// Converts Prometheus metric families into one OTLP request: one resource, one scope,
/// one metric per non-empty family. Cumulative points start at `start_unix_nano` (the
/// process start: every counter starts at zero then) and are stamped `now_unix_nano`.
pub fn convert(
    families: &[pm::MetricFamily],
    identity: &PushIdentity,
    start_unix_nano: u64,
    now_unix_nano: u64,
) -> ExportMetricsServiceRequest {
    let times = Times {
        start: start_unix_nano,
        now: now_unix_nano,
    };
    let metrics = families
        .iter()
        .filter_map(|f| convert_family(f, times))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", &identity.service_name),
                    string_kv("service.version", &identity.service_version),
                    string_kv("service.instance.id", &identity.service_instance_id),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    version: identity.service_version.clone(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[derive(Clone, Copy)]
struct Times {
    start: u64,
    now: u64,
}

fn convert_family(family: &pm::MetricFamily, t: Times) -> Option<Metric> {
    let name = otel_name(&family.name);
    let data = match pm::MetricType::try_from(family.r#type).ok()? {
        pm::MetricType::Counter => metric::Data::Sum(Sum {
            data_points: family
                .metric
                .iter()
                .filter_map(|m| counter_point(m, m.counter.as_ref()?, t))
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        pm::MetricType::Gauge | pm::MetricType::Untyped => metric::Data::Gauge(Gauge {
            data_points: family
                .metric
                .iter()
                .filter_map(|m| {
                    let value = match (&m.gauge, &m.untyped) {
                        (Some(g), _) => g.value,
                        (None, Some(u)) => u.value,
                        (None, None) => return None,
                    };
                    Some(gauge_point(m, value, t))
                })
                .collect(),
        }),
        pm::MetricType::Histogram => metric::Data::Histogram(Histogram {
            data_points: family
                .metric
                .iter()
                .filter_map(|m| Some(histogram_point(m, m.histogram.as_ref()?, t)))
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        // faultline registers neither (and a gauge histogram has no cumulative meaning).
        pm::MetricType::Summary | pm::MetricType::GaugeHistogram => return None,
    };
    let empty = match &data {
        metric::Data::Sum(s) => s.data_points.is_empty(),
        metric::Data::Gauge(g) => g.data_points.is_empty(),
        metric::Data::Histogram(h) => h.data_points.is_empty(),
        _ => true,
    };
    // A family with no series yet (no refusal so far, say) is left out rather than sent
    // as a metric without points, which some receivers reject.
    (!empty).then(|| Metric {
        name,
        description: family.help.clone(),
        unit: family.unit.clone(),
        data: Some(data),
        ..Default::default()
    })
}

/// Counters are doubles: Prometheus' data model has no integer counter, so every point
/// of every push has the same type (as with the Collector's Prometheus receiver);
/// faultline's counts are exact in a double up to 2^53.
fn counter_point(m: &pm::Metric, c: &pm::Counter, t: Times) -> Option<NumberDataPoint> {
    Some(NumberDataPoint {
        attributes: attributes(&m.label),
        start_time_unix_nano: t.start,
        time_unix_nano: t.now,
        exemplars: c
            .exemplar
            .iter()
            .map(|e| convert_exemplar(e, t.now))
            .collect(),
        value: Some(number_data_point::Value::AsDouble(c.value)),
        ..Default::default()
    })
}

fn gauge_point(m: &pm::Metric, value: f64, t: Times) -> NumberDataPoint {
    // A gauge is a value at `time_unix_nano`; its start time is unused (OTLP metrics.proto).
    NumberDataPoint {
        attributes: attributes(&m.label),
        time_unix_nano: t.now,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn histogram_point(m: &pm::Metric, h: &pm::Histogram, t: Times) -> HistogramDataPoint {
    let buckets: Vec<(f64, u64)> = h
        .bucket
        .iter()
        .map(|b| (b.upper_bound, b.cumulative_count))
        .collect();
    let (explicit_bounds, bucket_counts) = otlp_buckets(h.sample_count, &buckets);
    HistogramDataPoint {
        attributes: attributes(&m.label),
        start_time_unix_nano: t.start,
        time_unix_nano: t.now,
        count: h.sample_count,
        sum: Some(h.sample_sum),
        bucket_counts,
        explicit_bounds,
        exemplars: h
            .bucket
            .iter()
            .filter_map(|b| b.exemplar.as_ref())
            .chain(&h.exemplars)
            .map(|e| convert_exemplar(e, t.now))
            .collect(),
        ..Default::default()
    }
}

/// Prometheus buckets (upper bound, cumulative count) into OTLP's explicit bounds and
/// per-bucket counts. OTLP has one more count than bounds, the last bucket implicitly
/// reaching `+Inf`, so a `+Inf` bound is dropped; without one (Prometheus makes it
/// optional) the last count is what `count` has above the highest bound. Counts are
/// differenced, saturating so that a torn read can never underflow.
pub fn otlp_buckets(count: u64, buckets: &[(f64, u64)]) -> (Vec<f64>, Vec<u64>) {
    let mut bounds = Vec::with_capacity(buckets.len());
    let mut counts = Vec::with_capacity(buckets.len() + 1);
    let mut below = 0u64;
    for &(bound, cumulative) in buckets {
        counts.push(cumulative.saturating_sub(below));
        below = below.max(cumulative);
        bounds.push(bound);
    }
    if bounds.last().is_some_and(|b| b.is_infinite()) {
        bounds.pop();
    } else {
        counts.push(count.saturating_sub(below));
    }
    (bounds, counts)
}

/// A Prometheus exemplar as an OTLP one: `trace_id`/`span_id` hex labels become the
/// binary id fields (16 and 8 bytes); labels that are not well-formed ids, and every
/// other label, are kept as `filtered_attributes`. Without a timestamp it is stamped
/// `now_unix_nano`.
pub fn convert_exemplar(e: &pm::Exemplar, now_unix_nano: u64) -> Exemplar {
    let mut out = Exemplar {
        time_unix_nano: e
            .timestamp
            .as_ref()
            .and_then(|ts| {
                let secs = u64::try_from(ts.seconds).ok()?;
                let nanos = u64::try_from(ts.nanos).ok()?;
                secs.checked_mul(1_000_000_000)?.checked_add(nanos)
            })
            .unwrap_or(now_unix_nano),
        value: Some(exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for label in &e.label {
        match (label.name.as_str(), hex_id(&label.value)) {
            ("trace_id", Some(id)) if id.len() == 16 => out.trace_id = id,
            ("span_id", Some(id)) if id.len() == 8 => out.span_id = id,
            _ => out
                .filtered_attributes
                .push(string_kv(&label.name, &label.value)),
        }
    }
    out
}

/// Lowercase or uppercase hex into bytes; `None` unless every character is a hex digit
/// and there is an even number of them.
pub fn hex_id(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

fn attributes(labels: &[pm::LabelPair]) -> Vec<KeyValue> {
    labels.iter().map(|l| string_kv(&l.name, &l.value)).collect()
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The attributes of a point as a map (tests and receivers compare them this way).
pub fn attribute_map(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}
