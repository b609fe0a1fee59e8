//! The series cap of docs/contract.md §5 (`--max-series`): a metric family that holds at most N
//! label sets; every further label set folds into ONE series whose only label is
//! `otel_metric_overflow="true"`, as the OpenTelemetry SDK's cardinality limit does
//! (specification, metrics SDK, "Cardinality limits"). Each folded measurement is
//! counted in `faultline_metric_series_overflow_total{metric}`.
//!
//! Memory is bounded: a family never holds more than N + 1 series, whatever the input.
//! Depends only on `prometheus-client`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};

/// The label the OpenTelemetry SDK puts on its overflow series.
pub const OVERFLOW_LABEL: &str = "otel_metric_overflow";

/// A series of a capped family: the real label set, or the one overflow series.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Series<L> {
    /// A label set admitted under the cap.
    Labels(L),
    /// Everything beyond the cap: `{otel_metric_overflow="true"}`.
    Overflow,
}

impl<L: EncodeLabelSet> EncodeLabelSet for Series<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self {
            Series::Labels(l) => l.encode(encoder),
            Series::Overflow => [(OVERFLOW_LABEL, "true")].encode(encoder),
        }
    }
}

/// Where a measurement went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Into a series that already existed.
    Existing,
    /// Into a series created for it, under the cap.
    New,
    /// Into the overflow series (counted).
    Overflow,
}

/// The cap shared by every capped family of one registry; set once at start-up from
/// `--max-series`.
#[derive(Clone, Debug)]
pub struct SeriesCap(Arc<AtomicUsize>);

impl SeriesCap {
    /// A cap of `n` label sets per family.
    pub fn new(n: usize) -> Self {
        SeriesCap(Arc::new(AtomicUsize::new(n)))
    }

    /// Changes the cap (start-up only: families already over it keep their series).
    pub fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The cap.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A [`Family`] holding at most [`SeriesCap`] label sets plus the overflow series.
pub struct CappedFamily<L, M, C = fn() -> M> {
    family: Family<Series<L>, M, C>,
    cap: SeriesCap,
    /// Series of `faultline_metric_series_overflow_total` counting this family's folds.
    overflow: Counter,
    /// Serialises the slow path (a series not seen yet), so that the check against the
    /// cap and the insert are one step even with several writers. A std Mutex: it is
    /// never held across an `.await`, and the fast path (a known series) never takes it.
    /// Label sets admitted so far (guarded by the mutex: only changed while holding it).
    admit: Arc<Mutex<usize>>,
}

impl<L, M, C: Clone> Clone for CappedFamily<L, M, C> {
    fn clone(&self) -> Self {
        CappedFamily {
            family: self.family.clone(),
            cap: self.cap.clone(),
            overflow: self.overflow.clone(),
            admit: Arc::clone(&self.admit),
        }
    }
}

impl<L, M, C> CappedFamily<L, M, C>
where
    L: Clone + std::hash::Hash + Eq,
    C: MetricConstructor<M>,
{
    /// A family under `cap` whose folds are counted in `overflow`, building each series
    /// with `constructor`.
    pub fn new(cap: SeriesCap, overflow: Counter, constructor: C) -> Self {
        CappedFamily {
            family: Family::new_with_constructor(constructor),
            cap,
            overflow,
            admit: Arc::new(Mutex::new(0)),
        }
    }

    /// The family to register (its series are `Series<L>`).
    pub fn family(&self) -> &Family<Series<L>, M, C> {
        &self.family
    }

    /// Label sets admitted under the cap (the overflow series not included).
    pub fn admitted(&self) -> usize {
        *self.admit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `record` on the series of `labels`, or on the overflow series when `labels`
    /// is new and the family is full.
    pub fn record(&self, labels: L, record: impl FnOnce(&M)) -> Slot {
        let key = Series::Labels(labels);
        if let Some(m) = self.family.get(&key) {
            record(&m);
            return Slot::Existing;
        }
        // A poisoned lock only means another writer panicked between check and insert;
        // the family itself is still consistent, so carry on.
        let mut admitted = self.admit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = self.family.get(&key) {
            record(&m);
            Slot::Existing
        } else if *admitted < self.cap.get() {
            *admitted += 1;
            record(&self.family.get_or_create(&key));
            Slot::New
        } else {
            self.overflow.inc();
            record(&self.family.get_or_create(&Series::Overflow));
            Slot::Overflow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Route {
        route: String,
    }

    fn route(i: usize) -> Route {
        Route {
            route: format!("/r{i}"),
        }
    }

    #[test]
    fn label_sets_beyond_the_cap_fold_into_one_overflow_series_and_are_counted() {
        let overflow = Counter::default();
        let f: CappedFamily<Route, Counter> =
            CappedFamily::new(SeriesCap::new(3), overflow.clone(), Counter::default);
        let slots: Vec<Slot> = (0..10)
            .map(|i| {
                f.record(route(i), |c| {
                    c.inc();
                })
            })
            .collect();
        assert_eq!(&slots[..3], &[Slot::New; 3]);
        assert!(slots[3..].iter().all(|s| *s == Slot::Overflow));
        // Admitted label sets keep counting after the family is full.
        assert_eq!(
            f.record(route(1), |c| {
                c.inc();
            }),
            Slot::Existing
        );
        assert_eq!(f.admitted(), 3);
        assert_eq!(f.family().get(&Series::Overflow).unwrap().get(), 7);
        assert_eq!(overflow.get(), 7);

        let mut registry = Registry::default();
        registry.register("requests", "r", f.family().clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("requests_total{otel_metric_overflow=\"true\"} 7"),
            "{text}"
        );
        assert!(text.contains("requests_total{route=\"/r1\"} 2"), "{text}");
        assert!(!text.contains("/r5"), "{text}");
    }

    #[test]
    fn memory_stays_bounded_whatever_the_input() {
        let f: CappedFamily<Route, Counter> =
            CappedFamily::new(SeriesCap::new(50), Counter::default(), Counter::default);
        for i in 0..10_000 {
            f.record(route(i), |c| {
                c.inc();
            });
        }
        assert_eq!(f.admitted(), 50);
        let mut registry = Registry::default();
        registry.register("requests", "r", f.family().clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("requests_total{"))
            .count();
        assert_eq!(series, 51, "fifty label sets plus one overflow series");
    }
}
