//! The registry behind `/metrics`, converted to an OTLP `ExportMetricsServiceRequest`
//! (docs/contract.md §5, last bullet): the same instruments, named the OpenTelemetry way, with
//! cumulative temporality and the trace exemplars that the OpenTelemetry SDK exporters
//! cannot send (opentelemetry-rust#3369).
//!
//! The conversion is generic: `prometheus-client` encodes the whole registry into
//! Prometheus' own data model (`io.prometheus.client`, [`prometheus_protobuf::encode`]),
//! and every family becomes one OTLP metric, so a family added to
//! [`super::metrics::Metrics`] is pushed without a line here (its OTel name follows
//! [`otel_name`]'s rule; give it its names in [`super::names`] to pin it).
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
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::encoding::prometheus_protobuf::{self, prometheus_data_model as pm};
use prometheus_client::registry::Registry;

/// The instrumentation scope of every pushed metric.
pub const SCOPE_NAME: &str = "faultline";

/// The prefix every faultline family carries on `/metrics` ([`super::names::PREFIX`]).
const PROMETHEUS_PREFIX: &str = "faultline_";

/// The OTel namespace replacing [`PROMETHEUS_PREFIX`].
const OTEL_PREFIX: &str = "faultline.";

/// Sub-namespaces of faultline's metrics: `faultline_<ns>_<rest>` becomes
/// `faultline.<ns>.<rest>`. `receiver` follows the OpenTelemetry Collector's own
/// `otelcol_receiver_accepted_spans` → `otelcol.receiver.accepted_spans`.
pub const NAMESPACES: [&str; 5] = ["receiver", "otlp_metrics", "watch", "forward", "state"];

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
    // The pinned name of a known family; the rule for one added without a name.
    let name = super::names::ALL
        .iter()
        .find(|m| m.exposed == family.name)
        .map_or_else(|| otel_name(&family.name), |m| m.otel.to_string());
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
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
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
    labels
        .iter()
        .map(|l| string_kv(&l.name, &l.value))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assembly::policy::Trigger;
    use crate::telemetry::metrics::{
        ExportLabels, ExportResult, ForwardReasonLabels, Metrics, RefuseReason, Transport,
        TransportLabels, TriggerLabels,
    };
    use crate::telemetry::verdict_metrics::tests::verdict;
    use crate::telemetry::verdict_metrics::{TraceExemplar, SHARE_BUCKETS};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};
    use std::time::{Duration, UNIX_EPOCH};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const START: u64 = 1_700_000_000_000_000_000;

    fn identity() -> PushIdentity {
        PushIdentity::faultline("instance-1".into())
    }

    fn metrics_of(req: &ExportMetricsServiceRequest) -> &[Metric] {
        &req.resource_metrics[0].scope_metrics[0].metrics
    }

    fn find<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        metrics_of(req)
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", metrics_of(req)))
    }

    fn sum(m: &Metric) -> &Sum {
        match &m.data {
            Some(Data::Sum(s)) => s,
            other => panic!("{} is not a sum: {other:?}", m.name),
        }
    }

    fn double(p: &NumberDataPoint) -> f64 {
        match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            other => panic!("not a double: {other:?}"),
        }
    }

    #[test]
    fn names_drop_total_and_dot_the_faultline_namespaces() {
        assert_eq!(otel_name("faultline_errors_total"), "faultline.errors");
        assert_eq!(
            otel_name("faultline_receiver_accepted_spans_total"),
            "faultline.receiver.accepted_spans"
        );
        assert_eq!(
            otel_name("faultline_error_budget_share"),
            "faultline.error_budget_share"
        );
        assert_eq!(
            otel_name("faultline_otlp_metrics_exports_total"),
            "faultline.otlp_metrics.exports"
        );
        // A namespace must be a whole word: `receivers_x` is not in `receiver`.
        assert_eq!(otel_name("faultline_receivers_x"), "faultline.receivers_x");
        assert_eq!(otel_name("faultline_receiver"), "faultline.receiver");
        assert_eq!(
            otel_name("process_cpu_seconds_total"),
            "process_cpu_seconds"
        );
        for m in crate::telemetry::names::ALL {
            assert_eq!(otel_name(m.exposed), m.otel, "the table follows the rule");
        }
    }

    #[test]
    fn every_family_on_metrics_has_its_documented_otel_name() {
        // The registry leaves out families without a series: give each one.
        let metrics = Metrics {
            forwarding: true,
            stateful: true,
            ..Metrics::default()
        };
        let timeout = ForwardReasonLabels { reason: "timeout" };
        metrics.forward.retried_spans.get_or_create(&timeout).inc();
        metrics.forward.failed_spans.get_or_create(&timeout).inc();
        let registry = metrics.registry();
        let grpc = || TransportLabels {
            transport: Transport::Grpc,
        };
        metrics.accepted_spans.get_or_create(&grpc()).inc();
        metrics.refuse_spans(Transport::Grpc, RefuseReason::Malformed, 1);
        metrics.refuse_request(Transport::Grpc, RefuseReason::Malformed);
        metrics
            .traces_completed
            .get_or_create(&TriggerLabels {
                trigger: Trigger::Idle.as_str(),
            })
            .inc();
        metrics
            .otlp_metrics_exports
            .get_or_create(&ExportLabels {
                result: ExportResult::Ok,
            })
            .inc();
        metrics
            .verdict_metrics
            .record(&verdict("/checkout", "SELECT", Some("fp1")));
        metrics
            .tls_handshake_failures
            .get_or_create(&crate::telemetry::metrics::ListenerLabels {
                listener: crate::telemetry::metrics::ListenerName::Http,
            })
            .inc();
        metrics
            .tls_reloads
            .get_or_create(&crate::telemetry::metrics::TlsReloadLabels {
                listener: crate::telemetry::metrics::ListenerName::Http,
                result: crate::telemetry::metrics::ReloadResult::Ok,
            })
            .inc();
        let families = prometheus_protobuf::encode(&registry).unwrap();
        let mut exposed: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        let mut documented: Vec<&str> = crate::telemetry::names::ALL
            .iter()
            .map(|m| m.exposed)
            .collect();
        exposed.sort_unstable();
        documented.sort_unstable();
        assert_eq!(
            exposed, documented,
            "a family was added or renamed: give it its names in telemetry::names"
        );
    }

    #[test]
    fn cumulative_buckets_become_per_bucket_counts_without_the_inf_bound() {
        let inf = f64::INFINITY;
        assert_eq!(
            otlp_buckets(6, &[(0.1, 1), (0.5, 1), (1.0, 4), (inf, 6)]),
            (vec![0.1, 0.5, 1.0], vec![1, 0, 3, 2])
        );
        // No +Inf bucket: the overflow count comes from the total.
        assert_eq!(
            otlp_buckets(6, &[(0.1, 1), (1.0, 4)]),
            (vec![0.1, 1.0], vec![1, 3, 2])
        );
        // A torn read (a bucket behind the one below it) never underflows.
        assert_eq!(
            otlp_buckets(2, &[(1.0, 3), (inf, 2)]),
            (vec![1.0], vec![3, 0])
        );
        assert_eq!(otlp_buckets(0, &[]), (vec![], vec![0]));
    }

    #[test]
    fn a_registered_histogram_arrives_with_its_buckets_sum_count_and_exemplar() {
        let h: HistogramWithExemplars<TraceExemplar> =
            HistogramWithExemplars::new(SHARE_BUCKETS.into_iter());
        let exemplar = TraceExemplar {
            trace_id: TRACE.into(),
            span_id: SPAN.into(),
        };
        for v in [0.05, 0.83, 0.85, 1.0, 0.35] {
            h.observe(v, Some(exemplar.clone()), None);
        }
        let mut registry = Registry::with_prefix("faultline");
        registry.register("error_budget_share", "share", h);
        let req = export_request(&registry, &identity(), START, START + 5).unwrap();
        let m = find(&req, "faultline.error_budget_share");
        let Some(Data::Histogram(hist)) = &m.data else {
            panic!("not a histogram: {m:?}")
        };
        assert_eq!(
            hist.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &hist.data_points[0];
        assert_eq!(p.explicit_bounds, SHARE_BUCKETS.to_vec());
        //                        0.1 .2 .3 .4 .5 .6 .7 .8 .9 1.0 +Inf
        assert_eq!(p.bucket_counts, vec![1, 0, 0, 1, 0, 0, 0, 0, 2, 1, 0]);
        assert_eq!(p.count, 5);
        assert!((p.sum.unwrap() - 3.08).abs() < 1e-9);
        assert_eq!(p.start_time_unix_nano, START);
        assert_eq!(p.time_unix_nano, START + 5);
        assert!(!p.exemplars.is_empty());
        assert!(p
            .exemplars
            .iter()
            .all(|e| e.trace_id == hex_id(TRACE).unwrap()));
    }

    #[test]
    fn exemplar_ids_become_binary_trace_and_span_ids() {
        let c: CounterWithExemplar<TraceExemplar> = CounterWithExemplar::default();
        let at = UNIX_EPOCH + Duration::from_nanos(START + 42);
        c.inc_by(
            3,
            Some(TraceExemplar {
                trace_id: TRACE.into(),
                span_id: SPAN.into(),
            }),
            Some(at),
        );
        let mut registry = Registry::with_prefix("faultline");
        registry.register("errors", "errors", c);
        let req = export_request(&registry, &identity(), START, START + 100).unwrap();
        let point = &sum(find(&req, "faultline.errors")).data_points[0];
        assert_eq!(double(point), 3.0);
        let e = &point.exemplars[0];
        assert_eq!(
            e.trace_id,
            vec![
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            e.span_id,
            vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(e.time_unix_nano, START + 42);
        assert_eq!(e.value, Some(exemplar::Value::AsDouble(3.0)));
        assert!(e.filtered_attributes.is_empty());
    }

    #[test]
    fn malformed_exemplar_ids_are_kept_as_attributes_not_ids() {
        let e = pm::Exemplar {
            label: vec![
                pm::LabelPair {
                    name: "trace_id".into(),
                    value: "abc".into(),
                },
                pm::LabelPair {
                    name: "span_id".into(),
                    value: TRACE.into(), // 16 bytes: the wrong length for a span id
                },
                pm::LabelPair {
                    name: "tenant".into(),
                    value: "acme".into(),
                },
            ],
            value: 1.0,
            timestamp: None,
        };
        let out = convert_exemplar(&e, 7);
        assert!(out.trace_id.is_empty() && out.span_id.is_empty());
        assert_eq!(out.time_unix_nano, 7);
        let attrs = attribute_map(&out.filtered_attributes);
        assert_eq!(attrs["trace_id"], "abc");
        assert_eq!(attrs["span_id"], TRACE);
        assert_eq!(attrs["tenant"], "acme");
        assert_eq!(hex_id("0G"), None);
        assert_eq!(hex_id("0A0b"), Some(vec![10, 11]));
    }

    #[test]
    fn counters_stay_cumulative_from_the_process_start_across_pushes() {
        let metrics = Metrics::default();
        let registry = metrics.registry();
        let grpc = TransportLabels {
            transport: Transport::Grpc,
        };
        metrics.accepted_spans.get_or_create(&grpc).inc_by(3);
        let first = export_request(&registry, &identity(), START, START + 10).unwrap();
        metrics.accepted_spans.get_or_create(&grpc).inc_by(2);
        metrics.traces_buffered.set(4);
        let second = export_request(&registry, &identity(), START, START + 20).unwrap();

        for (req, expected, at) in [(&first, 3.0, START + 10), (&second, 5.0, START + 20)] {
            let s = sum(find(req, "faultline.receiver.accepted_spans"));
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            let p = &s.data_points[0];
            assert_eq!(double(p), expected);
            assert_eq!(p.start_time_unix_nano, START, "same start on every push");
            assert_eq!(p.time_unix_nano, at);
            assert_eq!(attribute_map(&p.attributes)["transport"], "grpc");
        }
        let Some(Data::Gauge(g)) = &find(&second, "faultline.traces_buffered").data else {
            panic!("traces_buffered is a gauge")
        };
        assert_eq!(double(&g.data_points[0]), 4.0);
        // Families without a series yet are left out.
        assert!(!metrics_of(&first)
            .iter()
            .any(|m| m.name == "faultline.receiver.refused_spans"));
    }

    #[test]
    fn the_resource_and_scope_say_who_pushes() {
        let req = export_request(&Registry::default(), &identity(), START, START).unwrap();
        let rm = &req.resource_metrics[0];
        let resource = attribute_map(&rm.resource.as_ref().unwrap().attributes);
        assert_eq!(resource["service.name"], "faultline");
        assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(resource["service.instance.id"], "instance-1");
        let scope = rm.scope_metrics[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "faultline");
    }
}
