//! The state writer: a thread of its own that writes verdicts to the state database in
//! batches, so that ingest and analysis never wait for it.
//!
//! [`Writer::submit`] only appends to a bounded queue (a mutex held for a push). The
//! thread takes up to [`WriterConfig::batch`] rows at a time and writes them in one
//! transaction. When the database is unavailable the same batch is retried with
//! exponential back-off (jittered, capped) while the queue keeps filling; past
//! [`WriterConfig::queue`] the oldest waiting verdicts are dropped from the queue (they
//! stay in memory) and counted. A batch the database refuses is split in halves until
//! the refused verdict is alone, and only that one is dropped. Retention
//! ([`super::backend::Retention`]) runs on the same thread, once at start and then every
//! [`WriterConfig::prune_every`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::backend::{Backend, BackendError, Retention, Row};

/// What the writer reports; the service's metrics implement it.
pub trait StateObserver: Send + Sync + 'static {
    /// `n` verdicts were committed (re-sends included) in `seconds`.
    fn written(&self, n: usize, seconds: f64);
    /// A batch write failed with `reason` (`unavailable`, `rejected`, `corrupt`).
    fn write_failed(&self, reason: &'static str);
    /// `n` verdicts were given up on (`queue_full`, `rejected`).
    fn dropped(&self, reason: &'static str, n: usize);
    /// Verdicts waiting (queued and in flight).
    fn queue_depth(&self, n: usize);
    /// Whether the last write succeeded.
    fn up(&self, up: bool);
}

/// An observer that ignores everything (tests, offline runs).
pub struct NoObserver;

impl StateObserver for NoObserver {
    fn written(&self, _: usize, _: f64) {}
    fn write_failed(&self, _: &'static str) {}
    fn dropped(&self, _: &'static str, _: usize) {}
    fn queue_depth(&self, _: usize) {}
    fn up(&self, _: bool) {}
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most verdicts waiting (`--state-queue`).
    pub queue: usize,
    /// Most verdicts per transaction.
    pub batch: usize,
    /// Longest a verdict waits for a batch to fill.
    pub linger: Duration,
    /// Verdicts older than this are deleted (`--verdict-retention-age`).
    pub max_age: Duration,
    /// Most verdicts kept (`--verdict-retention`).
    pub max_verdicts: u64,
    /// Most fingerprint groups kept.
    pub max_groups: u64,
    /// Time between retention runs.
    pub prune_every: Duration,
    /// First retry delay after a failed write; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 100_000,
            batch: 2_000,
            linger: Duration::from_millis(200),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_verdicts: 100_000,
            max_groups: super::fingerprints::MAX_GROUPS as u64,
            prune_every: Duration::from_secs(60),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Queue {
    rows: VecDeque<Row>,
    /// Rows taken by the thread and not yet committed.
    in_flight: usize,
    closing: bool,
    /// Set by `close` when its deadline passed: the thread stops retrying.
    abandoned: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signals rows queued or closing (to the thread) and a batch done (to `flush`).
    changed: Condvar,
    /// False after a write failed as unavailable, until one succeeds.
    up: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread and its queue.
pub struct Writer {
    shared: Arc<Shared>,
    cfg: WriterConfig,
    observer: Arc<dyn StateObserver>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Writer {
    /// Starts the writer thread on `backend`.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start(
        backend: Arc<dyn Backend>,
        cfg: WriterConfig,
        observer: Arc<dyn StateObserver>,
    ) -> std::io::Result<Writer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            up: AtomicBool::new(true),
        });
        observer.up(true);
        observer.queue_depth(0);
        let thread = {
            let (shared, cfg, observer) = (Arc::clone(&shared), cfg.clone(), Arc::clone(&observer));
            std::thread::Builder::new()
                .name("faultline-state".into())
                .spawn(move || run(&*backend, &shared, &cfg, &*observer))?
        };
        Ok(Writer {
            shared,
            cfg,
            observer,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues rows for writing; never waits for the database. Past the queue's bound the
    /// oldest waiting rows are dropped and counted.
    pub fn submit(&self, rows: impl IntoIterator<Item = Row>) {
        let mut q = self.shared.lock();
        if q.closing {
            return;
        }
        q.rows.extend(rows);
        let over = q.rows.len().saturating_sub(self.cfg.queue);
        if over > 0 {
            q.rows.drain(..over);
            self.observer.dropped("queue_full", over);
        }
        self.observer.queue_depth(q.rows.len() + q.in_flight);
        drop(q);
        self.shared.changed.notify_all();
    }

    /// Whether the database answered the last write.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// Verdicts waiting (queued and in flight).
    pub fn pending(&self) -> usize {
        let q = self.shared.lock();
        q.rows.len() + q.in_flight
    }

    /// Stops taking rows, writes what is waiting until `deadline`, stops the thread.
    /// Returns the verdicts left unwritten (0 when everything was committed).
    pub fn close(&self, deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        let mut q = self.shared.lock();
        q.closing = true;
        self.shared.changed.notify_all();
        while q.rows.len() + q.in_flight > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .shared
                .changed
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let unwritten = q.rows.len() + q.in_flight;
        q.rows.clear();
        q.abandoned = true;
        drop(q);
        self.shared.changed.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if unwritten == 0 {
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
        unwritten
    }
}

/// The thread: take a batch, write it (retrying), prune now and then, until closed and
/// drained.
fn run(backend: &dyn Backend, shared: &Shared, cfg: &WriterConfig, observer: &dyn StateObserver) {
    let mut next_prune = Instant::now();
    let mut log = FailureLog::default();
    loop {
        if Instant::now() >= next_prune {
            prune(backend, cfg, &mut log);
            next_prune = Instant::now() + cfg.prune_every;
        }
        let Some(batch) = take_batch(shared, cfg, next_prune) else {
            return;
        };
        if batch.is_empty() {
            continue;
        }
        write_with_retry(backend, shared, cfg, observer, &mut log, &batch);
        let mut q = shared.lock();
        if q.abandoned {
            return;
        }
        q.in_flight = 0;
        observer.queue_depth(q.rows.len());
        drop(q);
        shared.changed.notify_all();
    }
}

/// Waits until a batch is full, `linger` passed with rows waiting, the next prune is due,
/// or the writer closes. `None` when closed and nothing is left.
fn take_batch(shared: &Shared, cfg: &WriterConfig, next_prune: Instant) -> Option<Vec<Row>> {
    let mut q = shared.lock();
    let mut first_seen: Option<Instant> = None;
    loop {
        if q.closing && q.rows.is_empty() {
            return None;
        }
        let now = Instant::now();
        if !q.rows.is_empty() {
            let since = *first_seen.get_or_insert(now);
            if q.rows.len() >= cfg.batch || q.closing || now >= since + cfg.linger {
                let n = q.rows.len().min(cfg.batch);
                let batch: Vec<Row> = q.rows.drain(..n).collect();
                q.in_flight = batch.len();
                return Some(batch);
            }
        }
        if now >= next_prune {
            return Some(Vec::new());
        }
        let wake = match first_seen {
            Some(s) => (s + cfg.linger).min(next_prune),
            None => next_prune,
        };
        q = shared
            .changed
            .wait_timeout(q, wake.saturating_duration_since(now))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Writes `batch`, retrying while the database is unavailable (until it answers, or
/// `close` gave up at its deadline and reported the rows unwritten).
fn write_with_retry(
    backend: &dyn Backend,
    shared: &Shared,
    cfg: &WriterConfig,
    observer: &dyn StateObserver,
    log: &mut FailureLog,
    batch: &[Row],
) {
    let mut backoff = cfg.min_backoff;
    loop {
        let started = Instant::now();
        match backend.write(batch) {
            Ok(_) => {
                observer.written(batch.len(), started.elapsed().as_secs_f64());
                if !shared.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        state = backend.kind(),
                        location = %backend.location(),
                        "state database answers again; writing the backlog"
                    );
                }
                observer.up(true);
                return;
            }
            Err(e @ BackendError::Unavailable(_)) => {
                observer.write_failed(e.reason());
                shared.up.store(false, Ordering::Relaxed);
                observer.up(false);
                log.failed(backend, &e, "will retry");
                if !sleep_jittered(shared, backoff) {
                    return;
                }
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
            Err(e) => {
                observer.write_failed(e.reason());
                if batch.len() == 1 {
                    observer.dropped("rejected", 1);
                    log.failed(backend, &e, "dropped the verdict");
                    return;
                }
                let (a, b) = batch.split_at(batch.len() / 2);
                write_with_retry(backend, shared, cfg, observer, log, a);
                write_with_retry(backend, shared, cfg, observer, log, b);
                return;
            }
        }
    }
}

/// Sleeps `d` ±20%; false (at once) when `close` gave up on the writer.
fn sleep_jittered(shared: &Shared, d: Duration) -> bool {
    let until = Instant::now() + d.mul_f64(0.8 + fastrand::f64() * 0.4);
    let mut q = shared.lock();
    while !q.abandoned {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        q = shared
            .changed
            .wait_timeout(q, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    false
}

fn prune(backend: &dyn Backend, cfg: &WriterConfig, log: &mut FailureLog) {
    let cutoff = now_unix_nano().saturating_sub(cfg.max_age.as_nanos() as u64);
    let retention = Retention {
        cutoff_unix_nano: cutoff,
        max_verdicts: cfg.max_verdicts,
        max_groups: cfg.max_groups,
        batch: 10_000,
    };
    match backend.prune(&retention) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(deleted = n, "state retention deleted old verdicts"),
        Err(e) => log.failed(backend, &e, "retention will run again later"),
    }
}

/// Logs failures once per interval: the first at once, then a summary of how many.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    suppressed: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(30);

impl FailureLog {
    fn failed(&mut self, backend: &dyn Backend, e: &BackendError, then: &str) {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            state = backend.kind(),
            location = %backend.location(),
            error = %e,
            failures_since_last_log = self.suppressed,
            "state database write failed; {then} (the API answers from memory meanwhile)"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::analysis::Verdict;
    use crate::store::backend::LoadedGroup;
    use crate::store::fingerprints::FingerprintSummary;
    use crate::store::sqlite::SqliteBackend;
    use crate::store::testing::failing;
    use crate::store::{VerdictQuery, VerdictStore};

    /// A backend that fails as told, then records what it is given.
    #[derive(Default)]
    struct Scripted {
        unavailable_first: AtomicUsize,
        refuse_trace: Mutex<Option<String>>,
        written: Mutex<Vec<String>>,
        attempts: AtomicUsize,
    }

    impl Backend for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        fn location(&self) -> String {
            "memory".into()
        }
        fn shared(&self) -> bool {
            false
        }
        fn write(&self, rows: &[Row]) -> Result<usize, BackendError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self
                .unavailable_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(BackendError::Unavailable("connection refused".into()));
            }
            let refused = self.refuse_trace.lock().unwrap().clone();
            if rows
                .iter()
                .any(|r| Some(&r.verdict.trace_id) == refused.as_ref())
            {
                return Err(BackendError::Rejected("constraint".into()));
            }
            let mut w = self.written.lock().unwrap();
            w.extend(rows.iter().map(|r| r.verdict.trace_id.clone()));
            Ok(rows.len())
        }
        fn verdict(&self, _: &str) -> Result<Option<Verdict>, BackendError> {
            Ok(None)
        }
        fn verdicts(&self, _: &VerdictQuery) -> Result<Vec<Verdict>, BackendError> {
            Ok(Vec::new())
        }
        fn group(&self, _: &str) -> Result<Option<FingerprintSummary>, BackendError> {
            Ok(None)
        }
        fn groups(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<FingerprintSummary>, BackendError> {
            Ok(Vec::new())
        }
        fn load_groups(&self, _: usize) -> Result<Vec<LoadedGroup>, BackendError> {
            Ok(Vec::new())
        }
        fn prune(&self, _: &Retention) -> Result<u64, BackendError> {
            Ok(0)
        }
    }

    /// Counts what the writer reports.
    #[derive(Default)]
    struct Counting {
        written: AtomicUsize,
        failed: Mutex<Vec<&'static str>>,
        dropped: Mutex<Vec<(&'static str, usize)>>,
        up: AtomicBool,
    }

    impl StateObserver for Counting {
        fn written(&self, n: usize, _: f64) {
            self.written.fetch_add(n, Ordering::SeqCst);
        }
        fn write_failed(&self, reason: &'static str) {
            self.failed.lock().unwrap().push(reason);
        }
        fn dropped(&self, reason: &'static str, n: usize) {
            self.dropped.lock().unwrap().push((reason, n));
        }
        fn queue_depth(&self, _: usize) {}
        fn up(&self, up: bool) {
            self.up.store(up, Ordering::SeqCst);
        }
    }

    fn fast() -> WriterConfig {
        WriterConfig {
            linger: Duration::from_millis(5),
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..WriterConfig::default()
        }
    }

    fn row(trace: u8) -> Row {
        Row {
            verdict: Arc::new(failing(trace, "r1", "a", 10, u64::from(trace)).remove(0)),
            ordinal: 0,
        }
    }

    #[test]
    fn an_unavailable_database_is_retried_until_it_takes_the_batch() {
        let backend = Arc::new(Scripted::default());
        backend.unavailable_first.store(3, Ordering::SeqCst);
        let seen = Arc::new(Counting::default());
        let w = Writer::start(backend.clone(), fast(), seen.clone()).unwrap();
        w.submit((1..=5).map(row));
        assert_eq!(w.close(Duration::from_secs(10)), 0, "everything written");
        assert_eq!(backend.written.lock().unwrap().len(), 5);
        assert_eq!(*seen.failed.lock().unwrap(), vec!["unavailable"; 3]);
        assert_eq!(seen.written.load(Ordering::SeqCst), 5);
        assert!(seen.up.load(Ordering::SeqCst), "up again after the retry");
        assert!(seen.dropped.lock().unwrap().is_empty());
    }

    #[test]
    fn a_refused_verdict_is_dropped_alone_and_the_rest_of_its_batch_is_written() {
        let backend = Arc::new(Scripted::default());
        *backend.refuse_trace.lock().unwrap() = Some(row(3).verdict.trace_id.clone());
        let seen = Arc::new(Counting::default());
        let w = Writer::start(
            backend.clone(),
            WriterConfig {
                linger: Duration::from_millis(50),
                ..fast()
            },
            seen.clone(),
        )
        .unwrap();
        w.submit((1..=8).map(row));
        assert_eq!(w.close(Duration::from_secs(10)), 0);
        assert_eq!(backend.written.lock().unwrap().len(), 7);
        assert_eq!(*seen.dropped.lock().unwrap(), vec![("rejected", 1)]);
    }

    #[test]
    fn past_the_queue_bound_the_oldest_waiting_are_dropped_and_counted() {
        let backend = Arc::new(Scripted::default());
        // Down for long enough that the queue fills behind the first batch.
        backend
            .unavailable_first
            .store(usize::MAX / 2, Ordering::SeqCst);
        let seen = Arc::new(Counting::default());
        let w = Writer::start(
            backend.clone(),
            WriterConfig { queue: 4, ..fast() },
            seen.clone(),
        )
        .unwrap();
        w.submit((1..=3).map(row));
        // Let the thread take the first batch (in flight, retrying).
        let until = Instant::now() + Duration::from_secs(5);
        while backend.attempts.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        w.submit((10..=15).map(row));
        let dropped: usize = seen.dropped.lock().unwrap().iter().map(|(_, n)| n).sum();
        assert_eq!(
            dropped, 2,
            "6 queued behind a full in-flight batch, bound 4"
        );
        assert!(!w.is_up());
        assert_eq!(w.pending(), 3 + 4);
        let left = w.close(Duration::from_millis(100));
        assert_eq!(
            left, 7,
            "closing with the database down reports what is lost"
        );
    }

    #[test]
    fn a_restarted_store_finds_its_verdicts_and_fingerprint_history_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let open = || {
            let db: Arc<dyn Backend> = Arc::new(SqliteBackend::open(&path).unwrap());
            let w = Writer::start(Arc::clone(&db), fast(), Arc::new(NoObserver)).unwrap();
            VerdictStore::with_state(100, db, w).unwrap()
        };
        let first = open();
        let v1 = first.record(failing(1, "2026.04.15-2", "legacy", 10, 1_000));
        first.record(failing(2, "2026.04.16-1", "legacy", 14, 2_000));
        assert_eq!(first.close(Duration::from_secs(10)), 0);
        drop(first);

        let second = open();
        let trace = &v1[0].trace_id;
        let back = second.get(trace).expect("from the file");
        assert_eq!(
            serde_json::to_value(&*back).unwrap(),
            serde_json::to_value(&*v1[0]).unwrap()
        );
        let groups = second.fingerprints(None, 10);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].count, 2);
        assert_eq!(groups[0].first_release.as_deref(), Some("2026.04.15-2"));
        // The history goes on: a third occurrence is the third, first in the old release.
        let third = second
            .record(failing(3, "2026.04.16-1", "legacy", 14, 3_000))
            .remove(0);
        let evidence = third.evidence.join(" ");
        assert!(evidence.contains("seen 3 times"), "{evidence}");
        assert!(
            evidence.contains("first in release 2026.04.15-2"),
            "{evidence}"
        );
        let listed = second.list(&VerdictQuery {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(listed.len(), 3, "memory's one and the file's two");
        assert_eq!(listed[0].trace_id, third.trace_id, "newest first");
        assert_eq!(second.close(Duration::from_secs(10)), 0);
    }

    #[test]
    fn a_trace_seen_again_keeps_its_first_verdict_and_is_not_counted_twice() {
        let store = VerdictStore::new(100);
        assert_eq!(store.record(failing(1, "r1", "a", 10, 1)).len(), 1);
        assert!(store.record(failing(1, "r1", "a", 10, 2)).is_empty());
        let groups = store.fingerprints(None, 10);
        assert_eq!(groups[0].count, 1);
        assert_eq!(groups[0].example_trace_ids.len(), 1);
        assert_eq!(
            store
                .list(&VerdictQuery {
                    limit: 10,
                    ..Default::default()
                })
                .len(),
            1
        );
    }
}
