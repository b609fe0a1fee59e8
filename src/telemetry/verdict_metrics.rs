//! The verdict metric families of docs/contract.md §5, updated once per verdict by a
//! [`VerdictObserver`] on the analysis thread:
//!
//! - `faultline_errors_total{service_name, http_route, classification, blame_service,
//!   blame_span}`, with an exemplar `{trace_id, span_id}` (the entry span) of the newest
//!   failing request, so Grafana links each point to its trace;
//! - `faultline_error_budget_share{service_name, classification}`, a histogram of the
//!   blame span's share of the entry's budget, buckets 0.1 … 1.0, an exemplar per bucket;
//! - `faultline_fingerprint_errors_total{service_name, fingerprint_id, classification}`;
//! - `faultline_fingerprint_info{fingerprint_id, fingerprint, first_release,
//!   classification}` = 1, an info-style gauge giving the fingerprint table its text and
//!   the release it was first seen in (joined on `fingerprint_id` in PromQL).
//!
//! Every family is capped by `--max-series` ([`super::series_cap`]); label values come
//! only from route templates, span names, service names, the classification and
//! fingerprint ids, and are bounded again here ([`label_value`], [`route_label`]) so a
//! badly instrumented service cannot blow up the series count with raw ids.
//!
//! Depends on the verdict type ([`crate::analysis::Verdict`]) and the observer trait of
//! [`crate::pipeline`]; exemplars and exposition are `prometheus-client`'s.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::names;
use super::series_cap::{CappedFamily, SeriesCap, Slot};
use crate::analysis::Verdict;
use crate::store::VerdictObserver;

/// Default of `--max-series`.
pub const DEFAULT_MAX_SERIES: usize = 1000;

/// Longest label value kept, in characters (longer ones are cut and marked with `…`).
pub const MAX_LABEL_CHARS: usize = 128;

/// Longest fingerprint text kept in `faultline_fingerprint_info`.
pub const MAX_FINGERPRINT_CHARS: usize = 200;

/// Bucket bounds of `faultline_error_budget_share`: 0.1, 0.2, … 1.0 (written out, so the
/// `le` labels are exact decimals rather than sums of 0.1).
pub const SHARE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Label value when a verdict has no blame span, no release, ...
pub const UNKNOWN: &str = "unknown";

/// Labels of `faultline_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Entry service.
    pub service_name: String,
    /// Entry route template.
    pub http_route: String,
    /// Classification wire name.
    pub classification: String,
    /// Service of the blame span.
    pub blame_service: String,
    /// Name of the blame span.
    pub blame_span: String,
}

/// Labels `{service_name, classification}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShareLabels {
    /// Entry service.
    pub service_name: String,
    /// Classification wire name.
    pub classification: String,
}

/// Labels of `faultline_fingerprint_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FingerprintLabels {
    /// Entry service.
    pub service_name: String,
    /// Stable fingerprint id.
    pub fingerprint_id: String,
    /// Classification wire name.
    pub classification: String,
}

/// Labels of `faultline_fingerprint_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FingerprintInfoLabels {
    /// Stable fingerprint id.
    pub fingerprint_id: String,
    /// Fingerprint text (templated: no ids, no numbers), cut to [`MAX_FINGERPRINT_CHARS`].
    pub fingerprint: String,
    /// `service.version` of the first verdict with this fingerprint this process saw.
    pub first_release: String,
    /// Classification of that first verdict.
    pub classification: String,
}

/// The exemplar: the trace and its entry span. 63 characters of labels, well inside
/// OpenMetrics' 128.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// 32 lowercase hex.
    pub trace_id: String,
    /// 16 lowercase hex: the entry span.
    pub span_id: String,
}

/// Which capped family overflowed (`faultline_metric_series_overflow_total{metric}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CappedMetric {
    /// `faultline_errors_total`.
    Errors,
    /// `faultline_error_budget_share`.
    ErrorBudgetShare,
    /// `faultline_fingerprint_errors_total`.
    FingerprintErrors,
    /// `faultline_fingerprint_info`.
    FingerprintInfo,
}

impl CappedMetric {
    /// The exposed family name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CappedMetric::Errors => names::ERRORS.exposed,
            CappedMetric::ErrorBudgetShare => names::ERROR_BUDGET_SHARE.exposed,
            CappedMetric::FingerprintErrors => names::FINGERPRINT_ERRORS.exposed,
            CappedMetric::FingerprintInfo => names::FINGERPRINT_INFO.exposed,
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for CappedMetric {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels `{metric}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    /// The family that folded a label set.
    pub metric: CappedMetric,
}

type ShareHistogram = HistogramWithExemplars<TraceExemplar>;

fn share_histogram() -> ShareHistogram {
    HistogramWithExemplars::new(SHARE_BUCKETS.into_iter())
}

/// The verdict families. Cheap to clone; every clone records into the same series.
#[derive(Clone)]
pub struct VerdictMetrics {
    cap: SeriesCap,
    errors: CappedFamily<ErrorLabels, CounterWithExemplar<TraceExemplar>>,
    budget_share: CappedFamily<ShareLabels, ShareHistogram>,
    fingerprint_errors: CappedFamily<FingerprintLabels, Counter>,
    fingerprint_info: CappedFamily<FingerprintInfoLabels, Gauge>,
    /// Fingerprint ids that have their info series (at most the cap): the info series
    /// is keyed by its first release too, so this is what makes it "first".
    fingerprints_seen: Arc<Mutex<HashSet<String>>>,
    overflow: Family<OverflowLabels, Counter>,
}

impl Default for VerdictMetrics {
    fn default() -> Self {
        VerdictMetrics::new(DEFAULT_MAX_SERIES)
    }
}

impl VerdictMetrics {
    /// Families capped at `max_series` label sets each.
    pub fn new(max_series: usize) -> Self {
        let cap = SeriesCap::new(max_series);
        let overflow: Family<OverflowLabels, Counter> = Family::default();
        let counter_of = |metric| overflow.get_or_create(&OverflowLabels { metric }).clone();
        VerdictMetrics {
            errors: CappedFamily::new(
                cap.clone(),
                counter_of(CappedMetric::Errors),
                CounterWithExemplar::default,
            ),
            budget_share: CappedFamily::new(
                cap.clone(),
                counter_of(CappedMetric::ErrorBudgetShare),
                share_histogram,
            ),
            fingerprint_errors: CappedFamily::new(
                cap.clone(),
                counter_of(CappedMetric::FingerprintErrors),
                Counter::default,
            ),
            fingerprint_info: CappedFamily::new(
                cap.clone(),
                counter_of(CappedMetric::FingerprintInfo),
                Gauge::default,
            ),
            fingerprints_seen: Arc::default(),
            overflow,
            cap,
        }
    }

    /// Sets `--max-series` (at start-up, before the first verdict).
    pub fn set_max_series(&self, n: usize) {
        self.cap.set(n);
    }

    /// Registers the families in `r` (a registry prefixed `faultline`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            names::ERRORS.name,
            "Analysed failing requests (HTTP 500s) by entry service, route, classification and blamed operation",
            self.errors.family().clone(),
        );
        r.register(
            names::ERROR_BUDGET_SHARE.name,
            "Share of the failing request's time budget spent by the blamed operation",
            self.budget_share.family().clone(),
        );
        r.register(
            names::FINGERPRINT_ERRORS.name,
            "Analysed failing requests by error fingerprint",
            self.fingerprint_errors.family().clone(),
        );
        r.register(
            names::FINGERPRINT_INFO.name,
            "One series per error fingerprint: its text and the release it was first seen in (value 1)",
            self.fingerprint_info.family().clone(),
        );
        r.register(
            names::METRIC_SERIES_OVERFLOW.name,
            "Measurements folded into the otel_metric_overflow series because a family reached --max-series",
            self.overflow.clone(),
        );
    }

    /// Records one verdict. Never blocks for long: the fast path reads existing series;
    /// a new series takes a family's write lock (held by a scrape for at most the
    /// encoding of that family).
    pub fn record(&self, v: &Verdict) {
        let service_name = label_value(&v.entry.service);
        let classification = v.classification.as_str().to_string();
        let exemplar = TraceExemplar {
            trace_id: v.trace_id.clone(),
            span_id: v.entry.span_id.clone(),
        };
        let at = Some(UNIX_EPOCH + Duration::from_nanos(v.analyzed_at_unix_nano));
        let (blame_service, blame_span) = match &v.blame {
            Some(b) => (label_value(&b.service), route_label(&b.name)),
            None => (UNKNOWN.to_string(), UNKNOWN.to_string()),
        };
        self.errors.record(
            ErrorLabels {
                service_name: service_name.clone(),
                http_route: route_label(&v.entry.route),
                classification: classification.clone(),
                blame_service,
                blame_span,
            },
            |c| {
                c.inc_by(1, Some(exemplar.clone()), at);
            },
        );
        if let Some(b) = &v.blame {
            self.budget_share.record(
                ShareLabels {
                    service_name: service_name.clone(),
                    classification: classification.clone(),
                },
                |h| h.observe(b.share.clamp(0.0, 1.0), Some(exemplar.clone()), at),
            );
        }
        if let Some(id) = &v.fingerprint_id {
            let fingerprint_id = label_value(id);
            self.fingerprint_errors.record(
                FingerprintLabels {
                    service_name,
                    fingerprint_id: fingerprint_id.clone(),
                    classification: classification.clone(),
                },
                |c| {
                    c.inc();
                },
            );
            self.record_fingerprint_info(v, fingerprint_id, classification);
        }
    }

    fn record_fingerprint_info(&self, v: &Verdict, fingerprint_id: String, classification: String) {
        let mut seen = self
            .fingerprints_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains(&fingerprint_id) {
            return;
        }
        let labels = FingerprintInfoLabels {
            fingerprint: truncate(
                v.fingerprint.as_deref().unwrap_or(UNKNOWN),
                MAX_FINGERPRINT_CHARS,
            ),
            first_release: v
                .cohort
                .release
                .as_deref()
                .map(label_value)
                .unwrap_or_else(|| UNKNOWN.to_string()),
            fingerprint_id: fingerprint_id.clone(),
            classification,
        };
        if self.fingerprint_info.record(labels, |g| {
            g.set(1);
        }) == Slot::New
        {
            seen.insert(fingerprint_id);
        }
    }
}

impl VerdictObserver for VerdictMetrics {
    fn on_verdict(&self, verdict: &Arc<Verdict>) {
        self.record(verdict);
    }
}

/// A label value from a service or span name: control characters become spaces, empty
/// becomes [`UNKNOWN`], longer than [`MAX_LABEL_CHARS`] is cut.
pub fn label_value(raw: &str) -> String {
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.is_empty() {
        UNKNOWN.to_string()
    } else {
        truncate(&cleaned, MAX_LABEL_CHARS)
    }
}

/// A route (or span name) label: the analysis already prefers `http.route`, but a span
/// name can still carry a raw path. The query string is dropped and path segments that
/// are ids (digits, UUIDs, long hex) become `{id}`, so `/users/42?x=1` and `/users/43`
/// share one series. Templates (`/users/:id`, `/users/{id}`) pass unchanged.
pub fn route_label(raw: &str) -> String {
    let without_query = raw.split(['?', '#']).next().unwrap_or("");
    let templated: Vec<&str> = without_query
        .split('/')
        .map(|seg| if is_id_segment(seg) { "{id}" } else { seg })
        .collect();
    label_value(&templated.join("/"))
}

fn is_id_segment(seg: &str) -> bool {
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    if seg.is_empty() || digits == 0 {
        return false;
    }
    let all_digits = digits == seg.len();
    let hexish = seg.len() >= 8 && seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    all_digits || hexish
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::analysis::cohort::Cohort;
    use crate::analysis::verdict::{BlameInfo, EntryInfo};
    use crate::analysis::Classification;
    use prometheus_client::encoding::{prometheus_text, text};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// A verdict of `checkout` on `route` blaming `blame` (the OTLP push tests use it too).
    pub(crate) fn verdict(route: &str, blame: &str, fingerprint: Option<&str>) -> Verdict {
        Verdict {
            trace_id: TRACE.into(),
            classification: Classification::LateDependencyFailure,
            confidence: 0.9,
            budget_ms: 120.0,
            entry: EntryInfo {
                span_id: "00f067aa0ba902b7".into(),
                service: "checkout".into(),
                name: format!("POST {route}"),
                route: route.into(),
                status_code: 500,
                start_unix_nano: 0,
            },
            blame: Some(BlameInfo {
                span_id: "00f067aa0ba902b8".into(),
                service: "payments".into(),
                name: blame.into(),
                kind: "client".into(),
                share: 0.83,
                self_ms: 100.0,
                is_dependency: true,
                attempts: 1,
            }),
            origin: None,
            fingerprint: fingerprint.map(|f| format!("TimeoutError: {f}")),
            fingerprint_id: fingerprint.map(str::to_string),
            cohort: Cohort {
                release: Some("1.4.2".into()),
                ..Default::default()
            },
            evidence: vec![],
            analyzed_at: "2026-11-25T10:00:00Z".into(),
            analyzed_at_unix_nano: 1_795_000_000_000_000_000,
            exception: None,
            chain: vec![],
        }
    }

    fn expose(m: &VerdictMetrics) -> (String, String) {
        let mut r = Registry::with_prefix(names::PREFIX);
        m.register(&mut r);
        let (mut om, mut prom) = (String::new(), String::new());
        text::encode(&mut om, &r).unwrap();
        prometheus_text::encode(&mut prom, &r).unwrap();
        (om, prom)
    }

    #[test]
    fn exemplars_are_in_openmetrics_and_never_in_prometheus_text() {
        let m = VerdictMetrics::new(10);
        m.record(&verdict("/checkout", "POST /charge", Some("a1b2")));
        let (om, prom) = expose(&m);
        let exemplar = format!("# {{trace_id=\"{TRACE}\",span_id=\"00f067aa0ba902b7\"}} 1");
        let line = om
            .lines()
            .find(|l| l.starts_with("faultline_errors_total{"))
            .expect("errors series");
        assert!(line.contains(&exemplar), "{line}");
        assert!(
            line.contains("service_name=\"checkout\",http_route=\"/checkout\",classification=\"late_dependency_failure\",blame_service=\"payments\",blame_span=\"POST /charge\""),
            "{line}"
        );
        let bucket = om
            .lines()
            .find(|l| {
                l.starts_with("faultline_error_budget_share_bucket{") && l.contains("le=\"0.9\"")
            })
            .expect("0.9 bucket");
        assert!(
            bucket.contains(&format!("trace_id=\"{TRACE}\"")),
            "{bucket}"
        );
        assert!(om.ends_with("# EOF\n"));

        assert!(!prom.contains(TRACE), "{prom}");
        assert!(!prom.contains(" # {"), "{prom}");
        assert!(!prom.contains("# EOF"));
        assert!(prom.contains("faultline_errors_total{service_name=\"checkout\""));
        assert!(prom.contains("faultline_fingerprint_info{fingerprint_id=\"a1b2\",fingerprint=\"TimeoutError: a1b2\",first_release=\"1.4.2\""));
    }

    #[test]
    fn families_fold_beyond_max_series_and_count_the_folds() {
        let m = VerdictMetrics::new(3);
        for i in 0..8 {
            m.record(&verdict(
                &format!("/r{i}"),
                "SELECT",
                Some(&format!("fp{i}")),
            ));
        }
        let (_, prom) = expose(&m);
        let errors: Vec<&str> = prom
            .lines()
            .filter(|l| l.starts_with("faultline_errors_total{"))
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            prom.contains("faultline_errors_total{otel_metric_overflow=\"true\"} 5"),
            "{prom}"
        );
        assert!(
            prom.contains("faultline_fingerprint_errors_total{otel_metric_overflow=\"true\"} 5")
        );
        assert!(prom.contains(
            "faultline_metric_series_overflow_total{metric=\"faultline_errors_total\"} 5"
        ));
        assert!(prom.contains(
            "faultline_metric_series_overflow_total{metric=\"faultline_fingerprint_info\"} 5"
        ));
        // One label set for the histogram: never folded.
        assert!(prom.contains(
            "faultline_metric_series_overflow_total{metric=\"faultline_error_budget_share\"} 0"
        ));
    }

    #[test]
    fn the_first_release_of_a_fingerprint_sticks() {
        let m = VerdictMetrics::new(10);
        m.record(&verdict("/a", "x", Some("fp")));
        let mut later = verdict("/a", "x", Some("fp"));
        later.cohort.release = Some("2.0.0".into());
        m.record(&later);
        let (_, prom) = expose(&m);
        assert!(prom.contains("first_release=\"1.4.2\""));
        assert!(!prom.contains("2.0.0"), "{prom}");
        assert!(prom.contains(
            "faultline_fingerprint_errors_total{service_name=\"checkout\",fingerprint_id=\"fp\",classification=\"late_dependency_failure\"} 2"
        ));
    }

    #[test]
    fn label_values_are_bounded() {
        assert_eq!(route_label("/users/12345?token=abc"), "/users/{id}");
        assert_eq!(
            route_label("/orders/3f2a9c1e-7b4d-4e1a-9c3b-2d1e0f9a8b7c/items"),
            "/orders/{id}/items"
        );
        assert_eq!(route_label("/users/:id"), "/users/:id");
        assert_eq!(route_label("/v2/users/{id}"), "/v2/users/{id}");
        assert_eq!(route_label("checkout.Cart/Add"), "checkout.Cart/Add");
        assert_eq!(label_value(""), UNKNOWN);
        assert_eq!(label_value("a\nb"), "a b");
        let long = label_value(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_LABEL_CHARS + 1);

        // A thousand raw URLs on one route template make one series.
        let m = VerdictMetrics::new(10);
        for i in 0..1000 {
            m.record(&verdict(&format!("/users/{i}"), "GET", None));
        }
        assert_eq!(m.errors.admitted(), 1);
    }
}
