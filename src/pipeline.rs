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
            let materialized = convert::materialize(trace.trace_id, &trace.spans);
            if let Some(first) = materialized.corrupt.first() {
                // Ingest validates only a span's head; the rest is checked here, per span.
                self.metrics
                    .corrupt_spans
                    .inc_by(materialized.corrupt.len() as u64);
                tracing::warn!(
                    trace_id = %trace.trace_id,
                    corrupt = materialized.corrupt.len(),
                    "skipped spans that do not decode; first: {first}"
                );
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
    use prost::Message;

    use super::*;
    use crate::assembly::{BufferedSpan, SpanOrigin};
    use crate::model::{SpanId, TraceId};
    use crate::telemetry::metrics::Trigger;

    fn span(n: u8, encoded: Vec<u8>) -> BufferedSpan {
        BufferedSpan {
            span_id: SpanId([n; 8]),
            entry_candidate: n == 1,
            encoded: encoded.into_boxed_slice(),
            origin: Arc::new(SpanOrigin::default()),
        }
    }

    #[test]
    fn a_span_that_does_not_materialise_is_counted_and_the_trace_still_analysed() {
        let metrics = Metrics::default();
        let mut stage = CountingStage::new(metrics.clone());
        let good = ProtoSpan {
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            ..Default::default()
        }
        .encode_to_vec();
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
    }
}
