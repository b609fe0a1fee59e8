//! The analysis stage: a dedicated OS thread draining the bounded hand-off channel, so
//! CPU-heavy analysis never runs on the async workers that serve ingest.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::analysis::{analyze_trace, AnalysisConfig, Verdict};
use crate::assembly::CompletedTrace;
use crate::ingest::convert;
use crate::store::VerdictStore;
use crate::telemetry::metrics::Metrics;

/// What the analysis stage does with each completed trace.
pub trait TraceSink: Send + 'static {
    /// Handles one trace. Runs on the stage's own thread; may block.
    fn handle(&mut self, trace: CompletedTrace);
}

/// Something that reacts to each verdict once it is stored (metrics, live subscribers).
/// Called on the analysis thread: implementations must not block.
pub trait VerdictObserver: Send + Sync + 'static {
    /// One new verdict, with cross-trace evidence already added.
    fn on_verdict(&self, verdict: &Arc<Verdict>);
}

/// The shipped stage: traces holding a failing entry are materialised into the plain
/// model and analysed; their verdicts go to the store. Healthy traces are only counted
/// (the ingest-time entry pre-check spares them any decoding).
pub struct AnalysisStage {
    cfg: AnalysisConfig,
    store: Arc<VerdictStore>,
    metrics: Metrics,
    observers: Vec<Arc<dyn VerdictObserver>>,
}

impl AnalysisStage {
    /// A stage analysing with `cfg` into `store`.
    pub fn new(cfg: AnalysisConfig, store: Arc<VerdictStore>, metrics: Metrics) -> Self {
        AnalysisStage {
            cfg,
            store,
            metrics,
            observers: Vec::new(),
        }
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
        self.metrics.traces_analyzed.inc();
        self.metrics.spans_analyzed.inc_by(trace.spans.len() as u64);
        if !trace.has_entry_candidate {
            return;
        }
        let model = match convert::materialize(trace.trace_id, &trace.spans) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(trace_id = %trace.trace_id, "cannot materialise trace: {e}");
                return;
            }
        };
        let verdicts = analyze_trace(&model, &self.cfg, now_unix_nano());
        if verdicts.is_empty() {
            return;
        }
        self.metrics.verdicts.inc_by(verdicts.len() as u64);
        for v in self.store.record(verdicts) {
            for o in &self.observers {
                o.on_verdict(&v);
            }
            tracing::debug!(
                trace_id = %v.trace_id,
                classification = v.classification.as_str(),
                service = %v.entry.service,
                "verdict"
            );
        }
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
            while let Some(trace) = rx.blocking_recv() {
                sink.handle(trace);
            }
        })
}
