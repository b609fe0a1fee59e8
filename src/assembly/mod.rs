//! The trace buffer: spans grouped by trace id in a sharded [`DashMap`], completed on
//! idle/max-age, bounded by a span budget, handed to analysis over a bounded channel.
//!
//! Spans are held compactly: a few fixed fields the buffer itself needs, plus the span's
//! own protobuf encoding as an opaque byte slice (what the analysis materialises and the
//! forwarder re-sends, without keeping whole protobuf trees alive). This module knows no
//! protobuf types; `ingest::convert` produces and decodes the bytes.
//!
//! Concurrency: the hot path (`insert`) touches one DashMap shard per trace and two atomics.
//! Eviction and sweeping take `hand_off`, a `std::sync::Mutex` held without any `.await`,
//! so only one thread scans the map at a time while ingest continues on the other shards.

pub mod policy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::model::{SpanId, TraceId};
use crate::telemetry::metrics::{Metrics, TriggerLabels};

pub use policy::{Completion, TraceAge, Trigger};

/// Resource and scope a group of spans was sent under, encoded as the sender sent them.
/// Shared (`Arc`) by every span of one `ScopeSpans`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SpanOrigin {
    /// Encoded `opentelemetry.proto.resource.v1.Resource` (empty when absent).
    pub resource: Box<[u8]>,
    /// `ResourceSpans.schema_url`.
    pub resource_schema_url: Box<str>,
    /// Encoded `opentelemetry.proto.common.v1.InstrumentationScope` (empty when absent).
    pub scope: Box<[u8]>,
    /// `ScopeSpans.schema_url`.
    pub scope_schema_url: Box<str>,
}

/// One buffered span.
#[derive(Debug, Clone)]
pub struct BufferedSpan {
    /// The span's id (kept unencoded for cheap look-ups).
    pub span_id: SpanId,
    /// True when the span could be the entry of a failing request (SERVER span answering
    /// an error status), so healthy traces skip materialisation entirely.
    pub entry_candidate: bool,
    /// The span's `opentelemetry.proto.trace.v1.Span` encoding.
    pub encoded: Box<[u8]>,
    /// Where it came from.
    pub origin: Arc<SpanOrigin>,
}

/// A trace leaving the buffer for analysis.
#[derive(Debug)]
pub struct CompletedTrace {
    /// The trace id.
    pub trace_id: TraceId,
    /// Its spans in arrival order.
    pub spans: Vec<BufferedSpan>,
    /// What completed it.
    pub trigger: Trigger,
    /// True when some span is an entry candidate.
    pub has_entry_candidate: bool,
}

struct TraceBuf {
    age: TraceAge,
    spans: Vec<BufferedSpan>,
    has_entry_candidate: bool,
}

/// The outcome of inserting one request's spans.
#[derive(Debug, Default, Clone)]
pub struct InsertOutcome {
    /// Spans buffered.
    pub buffered: usize,
    /// Spans of traces already analysed (counted, not re-analysed).
    pub late: usize,
    /// Those late spans, handed back for forwarding (docs/contract.md §2: late spans are forwarded).
    pub late_spans: Vec<(TraceId, BufferedSpan)>,
}

/// The buffer is full and nothing could be evicted (the analysis stage is not keeping up):
/// the sender must retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("span buffer full ({buffered} of {limit} spans) and the analysis queue is full")]
pub struct Overloaded {
    /// Spans buffered now.
    pub buffered: usize,
    /// The budget.
    pub limit: usize,
}

/// The trace assembler.
pub struct Assembler {
    traces: DashMap<TraceId, TraceBuf>,
    /// Recently analysed trace ids → when (ms), to recognise late spans.
    analysed: DashMap<TraceId, u64>,
    buffered_spans: AtomicUsize,
    completion: Completion,
    max_buffered_spans: usize,
    late_window_ms: u64,
    /// The hand-off to analysis, behind the lock that serialises scans of the map (held
    /// without `.await`); `None` once [`Assembler::close`] ran.
    hand_off: Mutex<Option<mpsc::Sender<CompletedTrace>>>,
    refusing: AtomicBool,
    metrics: Metrics,
}

/// Most analysed trace ids remembered for late-span detection, whatever the window.
const MAX_REMEMBERED_ANALYSED: usize = 1_000_000;

impl Assembler {
    /// A new assembler sending completed traces to `tx`.
    pub fn new(
        completion: Completion,
        max_buffered_spans: usize,
        late_window_ms: u64,
        tx: mpsc::Sender<CompletedTrace>,
        metrics: Metrics,
    ) -> Self {
        Assembler {
            traces: DashMap::new(),
            analysed: DashMap::new(),
            buffered_spans: AtomicUsize::new(0),
            completion,
            max_buffered_spans,
            late_window_ms,
            hand_off: Mutex::new(Some(tx)),
            refusing: AtomicBool::new(false),
            metrics,
        }
    }

    /// Spans buffered now.
    pub fn buffered_spans(&self) -> usize {
        self.buffered_spans.load(Ordering::Relaxed)
    }

    /// Traces buffered now.
    pub fn buffered_traces(&self) -> usize {
        self.traces.len()
    }

    /// True while the last insert was refused for lack of room (for `/readyz`).
    pub fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Buffers the spans of one request. All or nothing: when the budget is full and
    /// early analysis of the oldest traces cannot make room, nothing is buffered and the
    /// caller answers retryably.
    ///
    /// # Errors
    /// [`Overloaded`] when the spans do not fit.
    pub fn insert(
        &self,
        spans: Vec<(TraceId, BufferedSpan)>,
        now_ms: u64,
    ) -> Result<InsertOutcome, Overloaded> {
        // Group by trace first: one shard operation per trace, not per span.
        let mut by_trace: HashMap<TraceId, Vec<BufferedSpan>> = HashMap::new();
        for (trace_id, span) in spans {
            by_trace.entry(trace_id).or_default().push(span);
        }
        let mut late_spans = Vec::new();
        by_trace.retain(|trace_id, spans| {
            if self.analysed.contains_key(trace_id) && !self.traces.contains_key(trace_id) {
                late_spans.extend(spans.drain(..).map(|s| (*trace_id, s)));
                false
            } else {
                true
            }
        });
        let late = late_spans.len();
        let incoming: usize = by_trace.values().map(Vec::len).sum();
        if late > 0 {
            self.metrics.late_spans.inc_by(late as u64);
        }
        if incoming == 0 {
            return Ok(InsertOutcome {
                buffered: 0,
                late,
                late_spans,
            });
        }
        self.make_room(incoming, now_ms)?;
        for (trace_id, spans) in by_trace {
            let candidate = spans.iter().any(|s| s.entry_candidate);
            let mut entry = self.traces.entry(trace_id).or_insert_with(|| TraceBuf {
                age: TraceAge::new(now_ms),
                spans: Vec::new(),
                has_entry_candidate: false,
            });
            entry.age.touch(now_ms);
            entry.has_entry_candidate |= candidate;
            entry.spans.extend(spans);
        }
        self.buffered_spans.fetch_add(incoming, Ordering::Relaxed);
        self.refusing.store(false, Ordering::Relaxed);
        Ok(InsertOutcome {
            buffered: incoming,
            late,
            late_spans,
        })
    }

    /// Ensures `incoming` more spans fit, analysing the oldest traces early if needed.
    fn make_room(&self, incoming: usize, now_ms: u64) -> Result<(), Overloaded> {
        let limit = self.max_buffered_spans;
        if self.buffered_spans() + incoming <= limit {
            return Ok(());
        }
        // Free down to a low-water mark so eviction scans are rare, not one per request.
        let target = limit.saturating_sub(incoming).min(limit - limit / 10);
        {
            let hand_off = self.hand_off.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(tx), true) = (hand_off.as_ref(), self.buffered_spans() + incoming > limit)
            {
                self.evict_oldest(tx, target, now_ms);
            }
        }
        let buffered = self.buffered_spans();
        // A request larger than the whole budget is taken once the buffer is empty, so
        // it cannot be refused forever.
        if buffered + incoming <= limit || buffered == 0 {
            Ok(())
        } else {
            self.refusing.store(true, Ordering::Relaxed);
            Err(Overloaded { buffered, limit })
        }
    }

    /// Analyses the oldest traces early until at most `target` spans are buffered or the
    /// analysis channel is full. Caller holds `hand_off`.
    fn evict_oldest(&self, tx: &mpsc::Sender<CompletedTrace>, target: usize, now_ms: u64) {
        let mut oldest: Vec<(u64, TraceId)> = self
            .traces
            .iter()
            .map(|e| (e.value().age.first_seen_ms, *e.key()))
            .collect();
        oldest.sort_unstable();
        for (_, trace_id) in oldest {
            if self.buffered_spans() <= target {
                break;
            }
            if !self.complete(tx, trace_id, Trigger::Eviction, now_ms) {
                break; // analysis queue full: nothing more can leave
            }
        }
    }

    /// Moves one trace to the analysis channel if the channel has room.
    /// Returns false when the channel is full (the trace stays buffered).
    fn complete(
        &self,
        tx: &mpsc::Sender<CompletedTrace>,
        trace_id: TraceId,
        trigger: Trigger,
        now_ms: u64,
    ) -> bool {
        let permit = match tx.try_reserve() {
            Ok(p) => p,
            Err(_) => return false,
        };
        // Remember the id before removing it, so a span racing in is seen as late rather
        // than starting a second, partial trace.
        self.analysed.insert(trace_id, now_ms);
        let Some((_, buf)) = self.traces.remove(&trace_id) else {
            return true; // already completed by someone else; the permit is released
        };
        self.buffered_spans
            .fetch_sub(buf.spans.len(), Ordering::Relaxed);
        self.metrics
            .traces_completed
            .get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            })
            .inc();
        permit.send(CompletedTrace {
            trace_id,
            spans: buf.spans,
            trigger,
            has_entry_candidate: buf.has_entry_candidate,
        });
        true
    }

    /// Completes every trace that is idle or too old at `now_ms`, as far as the analysis
    /// channel has room; above 90% of the span budget also analyses the oldest traces
    /// early (down to 80%); forgets analysed ids older than the late-span window. Returns
    /// the number of traces completed for idleness or age.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let hand_off = self.hand_off.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = hand_off.as_ref() else {
            return 0;
        };
        let due: Vec<(TraceId, Trigger)> = self
            .traces
            .iter()
            .filter_map(|e| {
                self.completion
                    .due(&e.value().age, now_ms)
                    .map(|t| (*e.key(), t))
            })
            .collect();
        let mut done = 0;
        for (trace_id, trigger) in due {
            if !self.complete(tx, trace_id, trigger, now_ms) {
                break;
            }
            done += 1;
        }
        // Evict ahead of need, off the request path: above 90% of the budget, analyse the
        // oldest traces down to 80%, so an Export request rarely pays for an eviction scan.
        let limit = self.max_buffered_spans;
        if self.buffered_spans() > limit - limit / 10 {
            self.evict_oldest(tx, limit - limit / 5, now_ms);
        }
        let horizon = now_ms.saturating_sub(self.late_window_ms);
        self.analysed.retain(|_, at| *at >= horizon);
        if self.analysed.len() > MAX_REMEMBERED_ANALYSED {
            // Bounded whatever the window: keep the newer half.
            let mut ats: Vec<u64> = self.analysed.iter().map(|e| *e.value()).collect();
            let mid = ats.len() / 2;
            let (_, cut, _) = ats.select_nth_unstable(mid);
            let cut = *cut;
            self.analysed.retain(|_, at| *at > cut);
        }
        self.metrics.traces_buffered.set(self.traces.len() as i64);
        self.metrics
            .spans_buffered
            .set(self.buffered_spans() as i64);
        done
    }

    /// Shutdown: hands every buffered trace to analysis, waiting for room in the channel.
    /// Returns the number of traces flushed.
    pub async fn drain(&self, now_ms: u64) -> usize {
        let tx = match self
            .hand_off
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(tx) => tx.clone(),
            None => return 0,
        };
        let ids: Vec<TraceId> = self.traces.iter().map(|e| *e.key()).collect();
        let mut n = 0;
        for trace_id in ids {
            let Ok(permit) = tx.reserve().await else {
                break; // the analysis stage is gone; nothing can be handed over
            };
            let Some((_, buf)) = self.traces.remove(&trace_id) else {
                continue;
            };
            self.analysed.insert(trace_id, now_ms);
            self.buffered_spans
                .fetch_sub(buf.spans.len(), Ordering::Relaxed);
            self.metrics
                .traces_completed
                .get_or_create(&TriggerLabels {
                    trigger: Trigger::Shutdown.as_str(),
                })
                .inc();
            permit.send(CompletedTrace {
                trace_id,
                spans: buf.spans,
                trigger: Trigger::Shutdown,
                has_entry_candidate: buf.has_entry_candidate,
            });
            n += 1;
        }
        self.metrics.traces_buffered.set(self.traces.len() as i64);
        self.metrics
            .spans_buffered
            .set(self.buffered_spans() as i64);
        n
    }

    /// Drops the hand-off sender: once every trace was drained, the analysis stage sees
    /// the channel close and finishes. Spans arriving afterwards stay buffered (receivers
    /// are stopped before this is called).
    pub fn close(&self) {
        self.hand_off
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Completed traces waiting in the hand-off channel.
    pub fn queue_depth(&self) -> usize {
        match self
            .hand_off
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(tx) => tx.max_capacity() - tx.capacity(),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n: u8) -> BufferedSpan {
        BufferedSpan {
            span_id: SpanId([n; 8]),
            entry_candidate: false,
            encoded: Box::new([]),
            origin: Arc::new(SpanOrigin::default()),
        }
    }

    fn assembler(max: usize, queue: usize) -> (Assembler, mpsc::Receiver<CompletedTrace>) {
        let (tx, rx) = mpsc::channel(queue);
        let completion = Completion {
            idle_ms: 1_000,
            max_age_ms: 10_000,
        };
        (
            Assembler::new(completion, max, 60_000, tx, Metrics::default()),
            rx,
        )
    }

    #[test]
    fn spans_of_one_trace_from_several_requests_are_assembled_together() {
        let (a, mut rx) = assembler(100, 10);
        let t = TraceId([1; 16]);
        a.insert(vec![(t, span(2)), (TraceId([9; 16]), span(1))], 0)
            .unwrap();
        a.insert(vec![(t, span(1))], 500).unwrap();
        assert_eq!(a.buffered_spans(), 3);
        assert_eq!(a.sweep(1_200), 1, "only the other trace is idle at 1.2 s");
        assert_eq!(rx.try_recv().unwrap().trace_id, TraceId([9; 16]));
        assert_eq!(a.sweep(1_500), 1);
        let done = rx.try_recv().unwrap();
        assert_eq!(done.trace_id, t);
        assert_eq!(done.spans.len(), 2);
        assert_eq!(done.trigger, Trigger::Idle);
        assert_eq!(a.buffered_spans(), 0);
    }

    #[test]
    fn a_trace_that_never_goes_idle_completes_at_max_age() {
        let (a, mut rx) = assembler(1_000, 10);
        let t = TraceId([1; 16]);
        for ms in (0..=10_000).step_by(500) {
            a.insert(vec![(t, span((ms / 500) as u8))], ms).unwrap();
            a.sweep(ms);
        }
        let done = rx.try_recv().unwrap();
        assert_eq!(done.trigger, Trigger::MaxAge);
    }

    #[test]
    fn spans_after_analysis_are_late_and_not_reanalysed() {
        let (a, mut rx) = assembler(100, 10);
        let t = TraceId([1; 16]);
        a.insert(vec![(t, span(1))], 0).unwrap();
        a.sweep(2_000);
        rx.try_recv().unwrap();
        let out = a.insert(vec![(t, span(2)), (t, span(3))], 2_100).unwrap();
        assert_eq!((out.buffered, out.late), (0, 2));
        let ids: Vec<_> = out
            .late_spans
            .iter()
            .map(|(t, s)| (*t, s.span_id))
            .collect();
        assert_eq!(
            ids,
            [(t, SpanId([2; 8])), (t, SpanId([3; 8]))],
            "late spans are handed back, in order, for forwarding"
        );
        assert_eq!(a.buffered_spans(), 0);
        assert_eq!(a.metrics.late_spans.get(), 2);
    }

    #[test]
    fn a_full_budget_analyses_the_oldest_traces_early() {
        let (a, mut rx) = assembler(10, 100);
        for i in 0..10u8 {
            a.insert(vec![(TraceId([i + 1; 16]), span(1))], u64::from(i))
                .unwrap();
        }
        a.insert(
            vec![(TraceId([99; 16]), span(1)), (TraceId([99; 16]), span(2))],
            20,
        )
        .unwrap();
        assert!(a.buffered_spans() <= 10);
        let first = rx.try_recv().unwrap();
        assert_eq!(
            first.trace_id,
            TraceId([1; 16]),
            "the oldest trace goes first"
        );
        assert_eq!(first.trigger, Trigger::Eviction);
    }

    #[test]
    fn the_sweeper_evicts_ahead_of_need_above_the_high_water_mark() {
        let (a, mut rx) = assembler(10, 100);
        for i in 0..10u8 {
            a.insert(vec![(TraceId([i + 1; 16]), span(1))], u64::from(i))
                .unwrap();
        }
        assert_eq!(a.sweep(20), 0, "nothing is idle yet");
        assert_eq!(a.buffered_spans(), 8, "down to 80% of the budget");
        let first = rx.try_recv().unwrap();
        assert_eq!(
            (first.trace_id, first.trigger),
            (TraceId([1; 16]), Trigger::Eviction)
        );
    }

    #[test]
    fn a_full_budget_with_a_blocked_analysis_stage_pushes_back() {
        let (a, _rx) = assembler(4, 1);
        for i in 0..4u8 {
            a.insert(vec![(TraceId([i + 1; 16]), span(1))], 0).unwrap();
        }
        // One trace fits into the channel; after that nothing can leave.
        let err = a
            .insert(
                vec![(TraceId([50; 16]), span(1)), (TraceId([51; 16]), span(1))],
                1,
            )
            .unwrap_err();
        assert_eq!(err.limit, 4);
        assert!(a.is_refusing());
        assert_eq!(
            a.buffered_spans(),
            3,
            "nothing of the refused request was kept"
        );
    }

    #[tokio::test]
    async fn drain_hands_over_everything() {
        let (a, mut rx) = assembler(100, 1);
        for i in 0..5u8 {
            a.insert(vec![(TraceId([i + 1; 16]), span(1))], 0).unwrap();
        }
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(t) = rx.recv().await {
                assert_eq!(t.trigger, Trigger::Shutdown);
                n += 1;
            }
            n
        });
        assert_eq!(a.drain(0).await, 5);
        a.close();
        assert_eq!(reader.await.unwrap(), 5);
    }
}
