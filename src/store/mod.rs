//! The verdict store: the newest `--verdict-retention` traces' verdicts, looked up by trace
//! id or filtered, and the fingerprint groups built from every verdict.
//!
//! Memory answers first. One `std::sync::Mutex` guards the verdicts and groups: the
//! analysis thread writes one trace's verdicts at a time and API reads are short scans;
//! no `.await` is ever held under it. With a state database ([`backend`]) every verdict
//! is also queued to the [`writer`] thread, and reads the memory cannot answer (a trace
//! analysed before a restart or by another replica, the fleet's fingerprint counts) go to
//! the database, unless the database is known to be down. Those reads block: async
//! callers run them on a blocking thread ([`VerdictStore::reads_block`] says when).
//! Depends on the analysis types only (no async or wire crates).

pub mod backend;
pub mod fingerprints;
pub mod postgres;
pub mod sqlite;
pub mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::analysis::{Classification, Verdict};
use backend::{Backend, BackendError, Row};
use fingerprints::{FingerprintIndex, FingerprintSummary};
use writer::Writer;

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
    /// Service of the origin (where the failure started).
    pub origin_service: Option<String>,
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
            && self
                .origin_service
                .as_deref()
                .is_none_or(|s| v.origin.as_ref().is_some_and(|o| o.service == s))
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

/// The state database and its writer.
struct State {
    backend: Arc<dyn Backend>,
    writer: Writer,
}

impl Drop for VerdictStore {
    fn drop(&mut self) {
        // A backend may own a runtime of its own (the blocking PostgreSQL client does),
        // which must not be dropped on a thread that drives async tasks: the last store
        // is often dropped inside the service's runtime. Drop it on a plain thread.
        if let Some(state) = self.state.take() {
            let _ = std::thread::Builder::new()
                .name("faultline-state-close".into())
                .spawn(move || drop(state))
                .map(|t| t.join());
        }
    }
}

/// Verdicts and fingerprint groups.
pub struct VerdictStore {
    inner: Mutex<Inner>,
    retention: usize,
    state: Option<State>,
}

impl VerdictStore {
    /// A store keeping the newest `retention` traces' verdicts, in memory only.
    pub fn new(retention: usize) -> Self {
        VerdictStore {
            inner: Mutex::new(Inner::default()),
            retention: retention.max(1),
            state: None,
        }
    }

    /// A store that also keeps its verdicts in `backend`, written by `writer`. The
    /// fingerprint groups the database holds are put back in memory first, so that
    /// cross-trace evidence continues where the last run left it.
    ///
    /// # Errors
    /// The groups cannot be read back.
    pub fn with_state(
        retention: usize,
        backend: Arc<dyn Backend>,
        writer: Writer,
    ) -> Result<Self, BackendError> {
        let mut inner = Inner::default();
        for g in backend.load_groups(fingerprints::MAX_GROUPS)? {
            inner
                .fingerprints
                .restore(&g.fingerprint_id, &g.record, &g.durations_ms, &g.examples);
        }
        Ok(VerdictStore {
            inner: Mutex::new(inner),
            retention: retention.max(1),
            state: Some(State { backend, writer }),
        })
    }

    /// True when reads may wait on a database: async callers must then call them from a
    /// blocking thread (`tokio::task::spawn_blocking`), never from the runtime's workers.
    pub fn reads_block(&self) -> bool {
        self.state.is_some()
    }

    /// The database to read from, when there is one and it answered the last write.
    fn readable(&self) -> Option<&dyn Backend> {
        self.state
            .as_ref()
            .filter(|s| s.writer.is_up())
            .map(|s| &*s.backend)
    }

    /// Writes what the writer still holds, for at most `deadline`; returns the verdicts
    /// left unwritten (0 without a database).
    pub fn close(&self, deadline: std::time::Duration) -> usize {
        self.state.as_ref().map_or(0, |s| s.writer.close(deadline))
    }

    /// Verdicts waiting for the state writer.
    pub fn pending_writes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.writer.pending())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the service; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the verdicts of one trace (outermost entry first), adding cross-trace
    /// evidence from the fingerprint groups. Returns them as stored: empty when the trace
    /// already has verdicts (its spans arrived again after it was analysed, an exporter's
    /// re-send): one trace is one verdict, and its first stands.
    pub fn record(&self, verdicts: Vec<Verdict>) -> Vec<Arc<Verdict>> {
        let mut inner = self.lock();
        if verdicts
            .first()
            .is_some_and(|v| inner.by_trace.contains_key(&v.trace_id))
        {
            return Vec::new();
        }
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
        drop(inner);
        if let Some(state) = &self.state {
            state
                .writer
                .submit(stored.iter().enumerate().map(|(i, v)| Row {
                    verdict: Arc::clone(v),
                    ordinal: u32::try_from(i).unwrap_or(u32::MAX),
                }));
        }
        stored
    }

    /// The verdict of a trace's outermost entry: from memory, else from the database.
    pub fn get(&self, trace_id: &str) -> Option<Arc<Verdict>> {
        if let Some(v) = self.lock().by_trace.get(trace_id).cloned() {
            return Some(v);
        }
        let db = self.readable()?;
        match read_db(db, |db| db.verdict(trace_id)) {
            Ok(v) => v.map(Arc::new),
            Err(e) => {
                read_failed(db, &e);
                None
            }
        }
    }

    /// Verdicts matching `q`, newest first: this process's, merged with the database's
    /// (older ones, and with a shared database other replicas' ones).
    pub fn list(&self, q: &VerdictQuery) -> Vec<Arc<Verdict>> {
        let (mine, oldest_in_memory) = {
            let inner = self.lock();
            let mine: Vec<Arc<Verdict>> = inner
                .order
                .iter()
                .rev()
                .filter(|v| q.matches(v))
                .take(q.limit)
                .cloned()
                .collect();
            (mine, inner.order.front().map(|v| v.analyzed_at_unix_nano))
        };
        let Some(db) = self.readable() else {
            return mine;
        };
        let mut q = q.clone();
        if !db.shared() {
            // This process wrote everything the file holds since the oldest verdict in
            // memory: ask the file only for what is older (before a restart, or evicted).
            if mine.len() >= q.limit {
                return mine;
            }
            if let Some(oldest) = oldest_in_memory {
                q.until_unix_nano = Some(q.until_unix_nano.map_or(oldest, |u| u.min(oldest)));
            }
        }
        match read_db(db, |db| db.verdicts(&q)) {
            Ok(stored) => merge_newest_first(mine, stored, q.limit),
            Err(e) => {
                read_failed(db, &e);
                mine
            }
        }
    }

    /// The summary of one fingerprint group; `None` when unknown or forgotten. With a
    /// shared database, the fleet's.
    pub fn fingerprint(&self, fingerprint_id: &str) -> Option<FingerprintSummary> {
        if let Some(db) = self.readable().filter(|db| db.shared()) {
            match read_db(db, |db| db.group(fingerprint_id)) {
                Ok(Some(g)) => return Some(g),
                Ok(None) => {}
                Err(e) => read_failed(db, &e),
            }
        }
        self.lock().fingerprints.summary_of(fingerprint_id)
    }

    /// Fingerprint groups, most frequent first. With a shared database, the fleet's.
    pub fn fingerprints(&self, service: Option<&str>, limit: usize) -> Vec<FingerprintSummary> {
        if let Some(db) = self.readable().filter(|db| db.shared()) {
            match read_db(db, |db| db.groups(service, limit)) {
                Ok(g) => return g,
                Err(e) => read_failed(db, &e),
            }
        }
        self.lock().fingerprints.summaries(service, limit)
    }

    /// Traces retained.
    pub fn retained_traces(&self) -> usize {
        self.lock().traces.len()
    }
}

/// Reads from `db`, once more when the first try finds it unavailable: a connection the
/// server closed while it sat idle (a database restart) fails its next statement and is
/// replaced on the retry.
fn read_db<T>(
    db: &dyn Backend,
    read: impl Fn(&dyn Backend) -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    match read(db) {
        Err(BackendError::Unavailable(_)) => read(db),
        other => other,
    }
}

/// A database read failed: the answer comes from memory; say so (at debug level: the
/// writer already logs an unavailable database once per interval).
fn read_failed(db: &dyn Backend, e: &BackendError) {
    tracing::debug!(state = db.kind(), error = %e, "state read failed; answering from memory");
}

/// `mine` and `stored` (each newest first) as one list without repeats, newest first.
fn merge_newest_first(
    mine: Vec<Arc<Verdict>>,
    stored: Vec<Verdict>,
    limit: usize,
) -> Vec<Arc<Verdict>> {
    let mut seen: HashSet<(String, String)> = mine
        .iter()
        .map(|v| (v.trace_id.clone(), v.entry.span_id.clone()))
        .collect();
    let mut all = mine;
    for v in stored {
        if seen.insert((v.trace_id.clone(), v.entry.span_id.clone())) {
            all.push(Arc::new(v));
        }
    }
    // Stable: verdicts made at the same time keep memory's order.
    all.sort_by_key(|v| std::cmp::Reverse(v.analyzed_at_unix_nano));
    all.truncate(limit);
    all
}

/// Verdicts for the store's tests (and its backends').
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::analysis::{analyze_trace, AnalysisConfig};
    use crate::model::{
        Attributes, Event, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
    };

    /// A one-span failing request with a Python KeyError, for `tenant` in `release`.
    pub(crate) fn failing(
        trace: u8,
        release: &str,
        tenant: &str,
        line: u32,
        at: u64,
    ) -> Vec<Verdict> {
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
}

#[cfg(test)]
mod tests {
    use super::testing::failing;
    use super::*;
    use crate::model::TraceId;

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
