//! THE PURE CORE: from one assembled trace to one verdict per failing request
//! (docs/contract.md §3).
//!
//! Synchronous and deterministic: time comes in as an argument, nothing here names an
//! async runtime, a wire crate or a concurrent map. Untrusted input yields evidence or an
//! `inconclusive` verdict, never a panic.
//!
//! - [`graph`]: the span forest, repaired (duplicates, cycles, missing parents).
//! - [`entry`]: which SERVER spans are entries, nesting, routes.
//! - [`critical_path`]: CRISP critical path of an entry and the blame span.
//! - [`origin`]: following error evidence down to the origin.
//! - [`classify`]: error marks, dependency spans, failure types, classification, score.
//! - [`cohort`]: release, environment, region, tenant, feature flags.
//! - [`verdict`]: the verdict as the API serialises it, and its assembly.
//! - [`fingerprint`]: exception grouping (its own author; called from [`verdict`]).

pub mod classify;
pub mod cohort;
pub mod critical_path;
pub mod entry;
pub mod fingerprint;
pub mod graph;
pub mod origin;
#[cfg(test)]
pub mod testing;
pub mod verdict;

#[cfg(test)]
mod proptests;

pub use classify::Classification;
pub use entry::is_entry;
pub use verdict::Verdict;

use crate::model::Trace;

/// What the analysis is told by the configuration (`--error-status`, `--tenant-attribute`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisConfig {
    /// HTTP statuses that make a SERVER span an entry. Default `[500]`.
    pub error_statuses: Vec<i64>,
    /// Attribute keys naming the tenant, in order of preference.
    /// Default `["app.tenant", "tenant.id", "tenant"]`.
    pub tenant_attributes: Vec<String>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            error_statuses: vec![500],
            tenant_attributes: vec!["app.tenant".into(), "tenant.id".into(), "tenant".into()],
        }
    }
}

/// Every failing entry of the trace -> one verdict each, ordered by entry start.
///
/// Only outermost entries get a verdict; nested 500s become chain evidence. A trace
/// without entries gives an empty vector. `analyzed_at_unix_nano` is the clock reading
/// the caller took (the core reads no clock).
pub fn analyze_trace(
    trace: &Trace,
    cfg: &AnalysisConfig,
    analyzed_at_unix_nano: u64,
) -> Vec<Verdict> {
    if !trace.spans.iter().any(|s| is_entry(s, cfg)) {
        return Vec::new();
    }
    let graph = graph::SpanGraph::build(trace);
    let trace_id = trace.trace_id.to_string();
    entry::failing_requests(&graph, cfg)
        .iter()
        .map(|req| verdict::assemble(&trace_id, &graph, req, cfg, analyzed_at_unix_nano))
        .collect()
}

#[cfg(test)]
mod tests;
