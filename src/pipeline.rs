//! The analysis stage: a dedicated OS thread draining the bounded hand-off channel, so
//! CPU-heavy analysis never runs on the async workers that serve ingest.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::analysis::{analyze_trace, AnalysisConfig, Verdict};
use crate::assembly::CompletedTrace;
use crate::forward::Forwarder;
use crate::ingest::convert;
use crate::store::{VerdictObserver, VerdictStore};
use crate::telemetry::metrics::Metrics;

/// What the analysis stage does with each completed trace.
pub trait TraceSink: Send + 'static {
    /// Handles one trace. Runs on the stage's own thread; may block.
    fn handle(&mut self, trace: CompletedTrace);
}

/// The shipped stage: traces holding a failing entry are materialised into the plain
/// model and analysed; their verdicts go to the store. Healthy traces are only counted
/// (the ingest-time entry pre-check spares them any decoding).
pub struct AnalysisStage {
    cfg: AnalysisConfig,
    store: Arc<VerdictStore>,
    metrics: Metrics,
    observers: Vec<Arc<dyn VerdictObserver>>,
    /// The forwarder in annotate mode: each analysed trace is queued with its verdicts.
    forward: Option<Arc<Forwarder>>,
}

impl AnalysisStage {
    /// A stage analysing with `cfg` into `store`.
    pub fn new(cfg: AnalysisConfig, store: Arc<VerdictStore>, metrics: Metrics) -> Self {
        AnalysisStage {
            cfg,
            store,
            metrics,
            observers: Vec::new(),
            forward: None,
        }
    }

    /// Queues every analysed trace to `forwarder`, annotated (annotate mode).
    pub fn forward_to(mut self, forwarder: Arc<Forwarder>) -> Self {
        self.forward = Some(forwarder);
        self
    }

    /// Adds an observer told of every stored verdict, in the order they are made.
    pub fn observe(mut self, observer: Arc<dyn VerdictObserver>) -> Self {
        self.observers.push(observer);
        self
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl TraceSink for AnalysisStage {
    fn handle(&mut self, trace: CompletedTrace) {
        let verdicts = self.analyse(&trace);
        if let Some(f) = &self.forward {
            f.forward_trace(&trace, &verdicts);
        }
    }
}

impl AnalysisStage {
    /// Analyses one trace; returns its stored verdicts (none for a healthy trace).
    fn analyse(&mut self, trace: &CompletedTrace) -> Vec<Arc<Verdict>> {
        self.metrics.traces_analyzed.inc();
        self.metrics.spans_analyzed.inc_by(trace.spans.len() as u64);
        if !trace.has_entry_candidate {
            return Vec::new();
        }
        let materialized = convert::materialize(trace.trace_id, &trace.spans);
        if let Some(first) = materialized.corrupt.first() {
            // Ingest validates only a span's head; the rest is checked here, per span.
            self.metrics
                .corrupt_spans
                .inc_by(materialized.corrupt.len() as u64);
            tracing::warn!(
                trace_id = %trace.trace_id,
                corrupt = materialized.corrupt.len(),
                first = %first,
                "skipped spans that do not decode"
            );
        }
        let model = materialized.trace;
        let verdicts = analyze_trace(&model, &self.cfg, now_unix_nano());
        if verdicts.is_empty() {
            return Vec::new();
        }
        let stored = self.store.record(verdicts);
        if stored.is_empty() {
            // The trace's spans came again after its verdict (an exporter's retry of a
            // batch it had already delivered): its first verdict stands.
            self.metrics.resent_traces.inc();
            tracing::debug!(trace_id = %trace.trace_id, "trace arrived again after its verdict; not counted twice");
            return Vec::new();
        }
        for v in &stored {
            for o in &self.observers {
                o.on_verdict(v);
            }
            tracing::debug!(
                trace_id = %v.trace_id,
                classification = v.classification.as_str(),
                service = %v.entry.service,
                "verdict"
            );
        }
        // Counted last: once the counter says N, the N verdicts are in the store and were
        // published to watchers, so nothing that reads the counter races with them.
        self.metrics.verdicts.inc_by(stored.len() as u64);
        stored
    }
}

/// Lowers the calling thread's scheduling priority (nice 5 on Linux, where nice values
/// are per thread), so that on a busy core the receivers answering senders win over
/// background work (analysis, sweeping) whose latency nobody waits on. Mild on purpose:
/// at nice 10 (a tenth of the CPU share) analysis fell behind a saturated receiver on one
/// core and the service pushed back; at 5 it keeps about a quarter.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments. A
    // failure leaves the priority unchanged, which is harmless.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
}

/// Starts the stage thread. It ends when every sender of `rx` is dropped and the channel
/// is drained, so joining it after closing the assembler means nothing was left behind.
///
/// # Errors
/// The OS refused to start a thread.
pub fn spawn(
    mut rx: mpsc::Receiver<CompletedTrace>,
    mut sink: Box<dyn TraceSink>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("faultline-analysis".into())
        .spawn(move || {
            lower_thread_priority();
            while let Some(trace) = rx.blocking_recv() {
                sink.handle(trace);
            }
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
    use prost::Message;

    use super::*;
    use crate::assembly::policy::Trigger;
    use crate::assembly::{BufferedSpan, SpanOrigin};
    use crate::model::{SpanId, TraceId};

    fn span(n: u8, encoded: Vec<u8>) -> BufferedSpan {
        BufferedSpan {
            span_id: SpanId([n; 8]),
            entry_candidate: n == 1,
            encoded: encoded.into_boxed_slice(),
            origin: Arc::new(SpanOrigin::default()),
        }
    }

    /// The encoding of a SERVER span `GET /x` of trace `[t; 16]` answering HTTP 500.
    fn failing_server_span(t: u8) -> Vec<u8> {
        ProtoSpan {
            trace_id: vec![t; 16],
            span_id: vec![1; 8],
            kind: 2,
            name: "GET /x".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes: vec![crate::synth::int_kv("http.response.status_code", 500)],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_span_that_does_not_materialise_is_counted_and_the_trace_still_analysed() {
        let metrics = Metrics::default();
        let store = Arc::new(VerdictStore::new(10));
        let mut stage = AnalysisStage::new(
            AnalysisConfig::default(),
            Arc::clone(&store),
            metrics.clone(),
        );
        let good = failing_server_span(7);
        // A well-framed `events` entry (field 11) whose content is cut short.
        let mut corrupt = good.clone();
        corrupt.extend_from_slice(&[(11 << 3) | 2, 2, (2 << 3) | 2, 5]);
        stage.handle(CompletedTrace {
            trace_id: TraceId([7; 16]),
            spans: vec![span(1, good), span(2, corrupt), span(3, Vec::new())],
            trigger: Trigger::Idle,
            has_entry_candidate: true,
        });
        assert_eq!(metrics.corrupt_spans.get(), 1);
        assert_eq!(metrics.traces_analyzed.get(), 1);
        assert_eq!(metrics.spans_analyzed.get(), 3);
        assert!(
            store.get(&TraceId([7; 16]).to_string()).is_some(),
            "the rest of the trace is still analysed"
        );
    }

    /// Reads the verdict counter and the store at the moment a verdict is published.
    struct Witness {
        metrics: Metrics,
        store: Arc<VerdictStore>,
        seen: std::sync::Mutex<Vec<(u64, bool)>>,
    }

    impl VerdictObserver for Witness {
        fn on_verdict(&self, v: &Arc<Verdict>) {
            let stored = self.store.get(&v.trace_id).is_some();
            let counted = self.metrics.verdicts.get();
            self.seen.lock().unwrap().push((counted, stored));
        }
    }

    #[test]
    fn a_verdict_is_stored_and_published_before_it_is_counted() {
        // Whoever waits for `faultline_verdicts_total` to reach N (a dashboard, a test, a
        // watcher subscribing after it) must find the N verdicts in the store and must
        // not be sent one of them again as new.
        let metrics = Metrics::default();
        let store = Arc::new(VerdictStore::new(10));
        let witness = Arc::new(Witness {
            metrics: metrics.clone(),
            store: Arc::clone(&store),
            seen: Default::default(),
        });
        let mut stage = AnalysisStage::new(
            AnalysisConfig::default(),
            Arc::clone(&store),
            metrics.clone(),
        )
        .observe(witness.clone());
        for t in [7u8, 8] {
            let failing = failing_server_span(t);
            stage.handle(CompletedTrace {
                trace_id: TraceId([t; 16]),
                spans: vec![span(1, failing)],
                trigger: Trigger::Idle,
                has_entry_candidate: true,
            });
        }
        assert_eq!(*witness.seen.lock().unwrap(), [(0, true), (1, true)]);
        assert_eq!(metrics.verdicts.get(), 2);
    }
}
