//! The verdict store: the newest `--verdict-retention` traces' verdicts, looked up by trace
//! id or filtered, and the fingerprint groups built from every verdict.
//!
//! One `std::sync::Mutex` guards both: the analysis thread writes one verdict at a time
//! and API reads are short scans; no `.await` is ever held under it. Depends on the
//! analysis types only (no async or wire crates).

pub mod fingerprints;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::analysis::{Classification, Verdict};
use fingerprints::{FingerprintIndex, FingerprintSummary};

/// Something that reacts to each verdict once the store holds it (metrics, live
/// subscribers): the hook the analysis stage feeds beside the store.
/// Called on the analysis thread: implementations must not block.
pub trait VerdictObserver: Send + Sync + 'static {
    /// One new verdict, with cross-trace evidence already added.
    fn on_verdict(&self, verdict: &Arc<Verdict>);
}

/// Filters of `GET /api/v1/verdicts`.
#[derive(Debug, Default, Clone)]
pub struct VerdictQuery {
    /// Entry service.
    pub service: Option<String>,
    /// Entry route.
    pub route: Option<String>,
    /// Classification.
    pub classification: Option<Classification>,
    /// Fingerprint id or text.
    pub fingerprint: Option<String>,
    /// Only verdicts made at or after this time (Unix nanoseconds).
    pub since_unix_nano: Option<u64>,
    /// Only verdicts made before this time (Unix nanoseconds).
    pub until_unix_nano: Option<u64>,
    /// Most verdicts returned.
    pub limit: usize,
}

impl VerdictQuery {
    fn matches(&self, v: &Verdict) -> bool {
        self.service.as_deref().is_none_or(|s| v.entry.service == s)
            && self.route.as_deref().is_none_or(|r| v.entry.route == r)
            && self.classification.is_none_or(|c| v.classification == c)
            && self.fingerprint.as_deref().is_none_or(|f| {
                v.fingerprint_id.as_deref() == Some(f) || v.fingerprint.as_deref() == Some(f)
            })
            && self
                .since_unix_nano
                .is_none_or(|t| v.analyzed_at_unix_nano >= t)
            && self
                .until_unix_nano
                .is_none_or(|t| v.analyzed_at_unix_nano < t)
    }
}

#[derive(Default)]
struct Inner {
    /// Verdicts in the order they were made (oldest first).
    order: VecDeque<Arc<Verdict>>,
    /// Trace id → the verdict of its outermost (first) failing entry.
    by_trace: HashMap<String, Arc<Verdict>>,
    /// Traces retained, in arrival order (for retention).
    traces: VecDeque<String>,
    fingerprints: FingerprintIndex,
}

/// Verdicts and fingerprint groups.
pub struct VerdictStore {
    inner: Mutex<Inner>,
    retention: usize,
}

impl VerdictStore {
    /// A store keeping the newest `retention` traces' verdicts.
    pub fn new(retention: usize) -> Self {
        VerdictStore {
            inner: Mutex::new(Inner::default()),
            retention: retention.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the service; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the verdicts of one trace (outermost entry first), adding cross-trace
    /// evidence from the fingerprint groups. Returns them as stored.
    pub fn record(&self, verdicts: Vec<Verdict>) -> Vec<Arc<Verdict>> {
        let mut inner = self.lock();
        let mut stored = Vec::with_capacity(verdicts.len());
        for v in verdicts {
            let v = Arc::new(inner.fingerprints.record(v));
            if !inner.by_trace.contains_key(&v.trace_id) {
                inner.by_trace.insert(v.trace_id.clone(), Arc::clone(&v));
                inner.traces.push_back(v.trace_id.clone());
            }
            inner.order.push_back(Arc::clone(&v));
            stored.push(v);
        }
        while inner.traces.len() > self.retention {
            let Some(old) = inner.traces.pop_front() else {
                break;
            };
            inner.by_trace.remove(&old);
            while inner.order.front().is_some_and(|v| v.trace_id == old) {
                inner.order.pop_front();
            }
        }
        stored
    }

    /// The verdict of a trace's outermost entry.
    pub fn get(&self, trace_id: &str) -> Option<Arc<Verdict>> {
        self.lock().by_trace.get(trace_id).cloned()
    }

    /// Verdicts matching `q`, newest first.
    pub fn list(&self, q: &VerdictQuery) -> Vec<Arc<Verdict>> {
        self.lock()
            .order
            .iter()
            .rev()
            .filter(|v| q.matches(v))
            .take(q.limit)
            .cloned()
            .collect()
    }

    /// The summary of one fingerprint group; `None` when unknown or forgotten.
    pub fn fingerprint(&self, fingerprint_id: &str) -> Option<FingerprintSummary> {
        self.lock().fingerprints.summary_of(fingerprint_id)
    }

    /// Fingerprint groups, most frequent first.
    pub fn fingerprints(&self, service: Option<&str>, limit: usize) -> Vec<FingerprintSummary> {
        self.lock().fingerprints.summaries(service, limit)
    }

    /// Traces retained.
    pub fn retained_traces(&self) -> usize {
        self.lock().traces.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{analyze_trace, AnalysisConfig};
    use crate::model::{
        Attributes, Event, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
    };

    /// A one-span failing request with a Python KeyError, for `tenant` in `release`.
    fn failing(trace: u8, release: &str, tenant: &str, line: u32, at: u64) -> Vec<Verdict> {
        let resource = Arc::new(Resource {
            attributes: [("service.name", "orders"), ("service.version", release)]
                .into_iter()
                .collect(),
        });
        let stack = format!(
            "Traceback (most recent call last):\n  File \"/srv/app/orders.py\", line {line}, in checkout\n    total = cart['sku']\nKeyError: 'sku'\n"
        );
        let span = Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            name: "POST /checkout".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_050_000_000,
            status_code: StatusCode::Error,
            status_message: String::new(),
            attributes: [
                ("http.route", Value::from("/checkout")),
                ("http.response.status_code", Value::Int(500)),
                ("app.tenant", Value::from(tenant)),
            ]
            .into_iter()
            .collect(),
            events: vec![Event {
                name: "exception".into(),
                time_unix_nano: 1_040_000_000,
                attributes: [
                    ("exception.type", "KeyError"),
                    ("exception.message", "'sku'"),
                    ("exception.stacktrace", stack.as_str()),
                ]
                .into_iter()
                .collect::<Attributes>(),
            }],
            resource,
            scope_name: "flask".into(),
        };
        analyze_trace(
            &Trace {
                trace_id: TraceId([trace; 16]),
                spans: vec![span],
            },
            &AnalysisConfig::default(),
            at,
        )
    }

    #[test]
    fn retention_keeps_the_newest_traces() {
        let store = VerdictStore::new(2);
        for t in 1..=3u8 {
            store.record(failing(t, "r1", "acme", 10, u64::from(t)));
        }
        assert_eq!(store.retained_traces(), 2);
        assert!(store.get(&TraceId([1; 16]).to_string()).is_none());
        assert!(store.get(&TraceId([3; 16]).to_string()).is_some());
        let listed = store.list(&VerdictQuery {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[0].trace_id,
            TraceId([3; 16]).to_string(),
            "newest first"
        );
    }

    #[test]
    fn recurrence_on_the_same_route_raises_confidence_and_states_the_first_release() {
        let store = VerdictStore::new(100);
        let first = store
            .record(failing(1, "2026.04.15-2", "legacy-import", 10, 1))
            .remove(0);
        // A later release whose code moved by a few lines: same bug, same group.
        let second = store
            .record(failing(2, "2026.04.16-1", "legacy-import", 14, 2))
            .remove(0);
        assert_eq!(first.fingerprint_id, second.fingerprint_id);
        assert!(
            second.confidence > first.confidence,
            "{} vs {}",
            second.confidence,
            first.confidence
        );
        let evidence = second.evidence.join(" ");
        assert!(
            evidence.contains("first in release 2026.04.15-2"),
            "{evidence}"
        );
        assert!(
            evidence.contains("only on tenant legacy-import"),
            "{evidence}"
        );

        let groups = store.fingerprints(None, 10);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.count, 2);
        assert_eq!(g.first_release.as_deref(), Some("2026.04.15-2"));
        assert_eq!(g.releases.get("2026.04.16-1"), Some(&1));
        assert_eq!(g.routes[0].value, "orders /checkout");
        assert_eq!(g.top_cohort.tenant[0].value, "legacy-import");
        assert_eq!(g.example_trace_ids[0], TraceId([2; 16]).to_string());
        assert!(store.fingerprints(Some("billing"), 10).is_empty());
    }

    #[test]
    fn list_filters_by_each_field() {
        let store = VerdictStore::new(100);
        store.record(failing(1, "r1", "a", 10, 100));
        store.record(failing(2, "r1", "b", 10, 200));
        let q = |f: fn(&mut VerdictQuery)| {
            let mut q = VerdictQuery {
                limit: 10,
                ..Default::default()
            };
            f(&mut q);
            store.list(&q).len()
        };
        assert_eq!(q(|q| q.service = Some("orders".into())), 2);
        assert_eq!(q(|q| q.service = Some("billing".into())), 0);
        assert_eq!(q(|q| q.route = Some("/checkout".into())), 2);
        assert_eq!(
            q(|q| q.classification = Some(Classification::LateDependencyFailure)),
            0
        );
        assert_eq!(q(|q| q.since_unix_nano = Some(150)), 1);
        assert_eq!(q(|q| q.limit = 1), 1);
    }
}
