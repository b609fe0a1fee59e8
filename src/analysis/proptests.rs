//! Properties of the analysis on random span trees (proptest): the critical path stays
//! inside the entry's window, blame shares stay in 0..=1 and within the budget, and
//! nothing panics whatever the parents, clocks and services. The fuzz target
//! `analysis_core` checks the same invariants on arbitrary bytes; these run in every
//! `cargo test`, with a modest case count so the suite stays fast.

use proptest::prelude::*;

use super::critical_path::{choose_blame, critical_path};
use super::entry::failing_requests;
use super::graph::SpanGraph;
use super::testing::{sp, trace, SpanExt, CLIENT, INTERNAL, SERVER};
use super::{analyze_trace, AnalysisConfig};
use crate::model::{SpanKind, Trace};

/// One generated span: parent by index (possibly later, possibly itself, possibly missing),
/// times in ms relative to the base, which may lie outside the parent or run backwards.
#[derive(Debug, Clone)]
struct Gen {
    parent: Option<u64>,
    service: u8,
    kind: u8,
    start_ms: u64,
    len_ms: u64,
    backwards: bool,
    error: bool,
    status: Option<i64>,
}

fn gen_span() -> impl Strategy<Value = Gen> {
    (
        proptest::option::weighted(0.9, 0u64..40),
        0u8..4,
        0u8..5,
        0u64..2_000,
        0u64..1_500,
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.2, prop_oneof![Just(500i64), Just(503), Just(200)]),
    )
        .prop_map(
            |(parent, service, kind, start_ms, len_ms, backwards, error, status)| Gen {
                parent,
                service,
                kind,
                start_ms,
                len_ms,
                backwards,
                error,
                status,
            },
        )
}

/// A random trace whose first span is a failing SERVER entry; the rest are random.
fn random_trace() -> impl Strategy<Value = Trace> {
    proptest::collection::vec(gen_span(), 1..30).prop_map(|gens| {
        let services = ["edge", "orders", "db", "payments"];
        let spans = gens
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let kind = match g.kind {
                    0 => SERVER,
                    1 => CLIENT,
                    2 => INTERNAL,
                    3 => SpanKind::Consumer,
                    _ => SpanKind::Producer,
                };
                let (start, end) = if g.backwards {
                    (g.start_ms + g.len_ms, g.start_ms)
                } else {
                    (g.start_ms, g.start_ms + g.len_ms)
                };
                let parent = if i == 0 { None } else { g.parent };
                let mut s = sp(
                    i as u64,
                    parent,
                    services[usize::from(g.service)],
                    if i == 0 { SERVER } else { kind },
                    &format!("op{i}"),
                    start,
                    end,
                );
                if i == 0 {
                    s = s.http(500);
                } else if let Some(code) = g.status {
                    s = s.http(code);
                }
                if g.error {
                    s = s
                        .error()
                        .exception("TimeoutError", "timed out after 1000 ms", "");
                }
                s
            })
            .collect();
        trace(spans)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_critical_path_stays_inside_the_entry_window(t in random_trace()) {
        let cfg = AnalysisConfig::default();
        let g = SpanGraph::build(&t);
        for req in failing_requests(&g, &cfg) {
            let cp = critical_path(&g, req.entry);
            let (ws, we) = cp.window;
            prop_assert_eq!((ws, we), (g.start(req.entry), g.end(req.entry)));
            prop_assert_eq!(cp.budget_nanos, we - ws);
            let mut segments = cp.segments.clone();
            segments.sort_by_key(|s| s.start);
            for s in &segments {
                prop_assert!(ws <= s.start && s.start < s.end && s.end <= we, "{:?} outside {:?}", s, cp.window);
            }
            for pair in segments.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start, "segments overlap: {:?}", pair);
            }
            let total: u64 = cp.exclusive.values().sum();
            prop_assert!(total <= cp.budget_nanos, "exclusive {} > budget {}", total, cp.budget_nanos);
            if let Some(b) = choose_blame(&g, &cp, req.entry) {
                prop_assert!(b.self_nanos <= cp.budget_nanos);
                prop_assert!(b.group_nanos <= cp.budget_nanos);
                prop_assert!(b.attempts >= 1);
            }
        }
    }

    #[test]
    fn blame_shares_are_fractions_of_the_budget(t in random_trace()) {
        let verdicts = analyze_trace(&t, &AnalysisConfig::default(), 0);
        prop_assert!(!verdicts.is_empty(), "the first span is a failing entry");
        for v in &verdicts {
            prop_assert!((0.0..=1.0).contains(&v.confidence));
            prop_assert!(v.budget_ms >= 0.0);
            if let Some(b) = &v.blame {
                prop_assert!((0.0..=1.0).contains(&b.share), "share {}", b.share);
                prop_assert!(b.self_ms >= 0.0 && b.self_ms <= v.budget_ms, "self {} ms, budget {} ms", b.self_ms, v.budget_ms);
            }
        }
    }

    #[test]
    fn the_analysis_never_panics_on_random_trees(t in random_trace(), dup in 0usize..30, cycle in 0usize..30) {
        // Duplicate a span and close a parent cycle on top of the random tree.
        let mut t = t;
        let n = t.spans.len();
        let copy = t.spans[dup % n].clone();
        t.spans.push(copy);
        let first = t.spans[0].span_id;
        t.spans[0].parent_span_id = Some(t.spans[cycle % n].span_id);
        if cycle % n == 0 {
            t.spans[0].parent_span_id = Some(first);
        }
        let cfg = AnalysisConfig::default();
        let once = analyze_trace(&t, &cfg, 0);
        prop_assert_eq!(once, analyze_trace(&t, &cfg, 0), "deterministic");
    }
}
