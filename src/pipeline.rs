//! The analysis stage: a dedicated OS thread draining the bounded hand-off channel, so
//! CPU-heavy analysis never runs on the async workers that serve ingest.

use tokio::sync::mpsc;

use crate::assembly::CompletedTrace;
use crate::ingest::convert;
use crate::telemetry::metrics::Metrics;

/// What the analysis stage does with each completed trace.
pub trait TraceSink: Send + 'static {
    /// Handles one trace. Runs on the stage's own thread; may block.
    fn handle(&mut self, trace: CompletedTrace);
}

/// The stage as shipped before the analysis core: counts every trace and span, and
/// materialises traces that hold a failing entry so conversion runs on real data.
pub struct CountingStage {
    metrics: Metrics,
}

impl CountingStage {
    /// A stage counting into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        CountingStage { metrics }
    }
}

impl TraceSink for CountingStage {
    fn handle(&mut self, trace: CompletedTrace) {
        if trace.has_entry_candidate {
            if let Err(e) = convert::materialize(trace.trace_id, &trace.spans) {
                tracing::error!(trace_id = %trace.trace_id, "cannot materialise trace: {e}");
            }
        }
        self.metrics.traces_analyzed.inc();
        self.metrics.spans_analyzed.inc_by(trace.spans.len() as u64);
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
