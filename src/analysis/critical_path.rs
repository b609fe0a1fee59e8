//! The entry's critical path and the blame span (docs/contract.md §3).
//!
//! # What this follows, and where it departs
//! The walk is Uber's CRISP ("Critical path analysis for microservice architectures",
//! 2021) as Jaeger UI also implements it (`TracePage/CriticalPath`): start at the end of
//! the entry span, descend into the last-finishing child, and when that child's own path
//! is done, continue in the parent from the child's start with the child that finished
//! last *before* that start; time not covered by a child belongs to the parent.
//!
//! Kept from both: last-finishing-child walk; children clipped to their parent's window
//! (async children outliving the parent only count inside it, as Jaeger's
//! `sanitizeOverFlowingChildren` does); overlapping children that end after the walk's
//! cursor are not on the path.
//!
//! Changed versus both: a span that outlives its parent *on the same clock* (same
//! service) is first re-attached to the nearest ancestor of that service still open when
//! it ended (a hook's or middleware's span that ended at once, with the route handler
//! running in its context), and clipped only there ([`lifted`]).
//!
//! Changed versus Jaeger, following CRISP: a child that ends exactly where the next one
//! starts (touching at a boundary) is on the path — CRISP's happens-before is `<=`,
//! Jaeger's `findLastFinishingChildSpan` uses `<` and skips it (jaeger#9148). The walk is
//! iterative (no recursion depth limit) and runs on the entry's subtree only: the budget
//! is the entry's window, not the whole trace.
//!
//! Changed versus both, for real clocks (docs/contract.md §3):
//! - **Tolerance**: a child ending up to [`CLOCK_TOLERANCE_NANOS`] (1 ms) after the cursor
//!   still counts as finishing before it and is clipped at the cursor. The Node SDK
//!   records starts in whole milliseconds, so a successor seems to overlap its
//!   predecessor by up to 1 ms; strict CRISP would drop the predecessor from the path.
//!   A child starting up to 1 ms before its parent is simply clipped.
//! - **Skew policy**: a child of a *different service* (another host's clock) that sticks
//!   out of its parent's window is shifted, not clipped, by the smallest amount that puts
//!   it inside, provided it is no longer than the window; the same shift applies to its
//!   descendants of that service. Jaeger drops a child wholly outside its parent; we only
//!   do that for children of the *same* service (same clock: genuinely asynchronous work)
//!   and for CONSUMER spans (asynchronous by nature). Longer children are clipped. Shifts
//!   over 1 ms are reported in the evidence.
//!
//! Depends only on [`super::graph`] and [`super::classify`].

use std::collections::{HashMap, HashSet};

use crate::model::SpanKind;

use super::classify::is_dependency;
use super::graph::{label, SpanGraph};

/// Clock misalignment tolerated without changing the path: one millisecond, the Node
/// SDK's start-time resolution (opentelemetry-js#5019).
pub const CLOCK_TOLERANCE_NANOS: i128 = 1_000_000;

/// A piece of the critical path: `node` itself (not its children) was what the request
/// waited on between `start` and `end` (Unix nanoseconds in the entry's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Graph node.
    pub node: usize,
    /// Start, within the entry window.
    pub start: u64,
    /// End, within the entry window.
    pub end: u64,
}

/// The critical path of one entry.
#[derive(Debug, Clone, Default)]
pub struct CriticalPath {
    /// Segments, latest first; disjoint and inside the entry window.
    pub segments: Vec<Segment>,
    /// Exclusive critical-path time per node, nanoseconds.
    pub exclusive: HashMap<usize, u64>,
    /// Nodes the walk descended into (on the path, even with zero exclusive time).
    pub visited: Vec<usize>,
    /// The entry's window length, nanoseconds.
    pub budget_nanos: u64,
    /// The entry window `(start, end)`, Unix nanoseconds.
    pub window: (u64, u64),
    /// Clock-skew corrections made, as evidence sentences.
    pub notes: Vec<String>,
}

impl CriticalPath {
    /// Exclusive critical-path time of `node`, nanoseconds.
    pub fn exclusive_of(&self, node: usize) -> u64 {
        self.exclusive.get(&node).copied().unwrap_or(0)
    }
    /// True when the walk passed through `node`.
    pub fn contains(&self, node: usize) -> bool {
        self.visited.contains(&node)
    }
}

#[derive(Clone, Copy)]
struct Kid {
    node: usize,
    offset: i128,
    start: i128,
    end: i128,
}

struct Frame {
    node: usize,
    start: i128,
    cursor: i128,
    kids: Vec<Kid>,
    next: usize,
}

/// Spans that outlive their parent on the same clock, re-attached for the walk to the
/// nearest ancestor of the same service that outlasts them (below the entry):
/// the moved spans, and by new parent the spans it adopts.
///
/// Context managers that end early leave the work done after them as their children: a
/// Fastify hook's or an Express middleware's span ends at once while the route handler
/// that ran inside its context goes on for a second. Clipped to that parent, the handler
/// and everything below it would vanish from the path and the server span would seem to
/// have burned the whole budget. The request did wait for that work, so it belongs to the
/// ancestor that was still open.
#[derive(Default)]
struct Lifted {
    moved: HashSet<usize>,
    adopted: HashMap<usize, Vec<usize>>,
}

fn lifted(graph: &SpanGraph<'_>, entry: usize) -> Lifted {
    let mut out = Lifted::default();
    for c in graph.subtree(entry) {
        let Some(p) = graph.parent(c).filter(|_| c != entry) else {
            continue;
        };
        let child = graph.span(c);
        if child.kind == SpanKind::Consumer || child.service_name() != graph.span(p).service_name()
        {
            continue;
        }
        let end = graph.end(c) as i128;
        if end <= graph.end(p) as i128 + CLOCK_TOLERANCE_NANOS {
            continue;
        }
        let mut to = p;
        let mut steps = 0usize;
        while to != entry && end > graph.end(to) as i128 + CLOCK_TOLERANCE_NANOS {
            match graph.parent(to) {
                Some(a) if graph.span(a).service_name() == child.service_name() => to = a,
                _ => break,
            }
            steps += 1;
            if steps > graph.len() {
                break;
            }
        }
        if to != p {
            out.moved.insert(c);
            out.adopted.entry(to).or_default().push(c);
        }
    }
    out
}

/// Children of `node` placed in its (already corrected and clipped) window `[s, e]`,
/// ordered for the walk: latest end first.
fn placed_children(
    graph: &SpanGraph<'_>,
    lifted: &Lifted,
    node: usize,
    offset: i128,
    s: i128,
    e: i128,
    notes: &mut Vec<String>,
) -> Vec<Kid> {
    let parent = graph.span(node);
    let mut kids = Vec::new();
    let adopted = lifted.adopted.get(&node).into_iter().flatten().copied();
    let own = graph
        .children(node)
        .iter()
        .copied()
        .filter(|c| !lifted.moved.contains(c));
    let mut children: Vec<usize> = own.chain(adopted).collect();
    children.sort_unstable();
    for c in children {
        let child = graph.span(c);
        let (raw_s, raw_e) = (graph.start(c) as i128, graph.end(c) as i128);
        let mut child_offset = offset;
        let other_clock =
            child.service_name() != parent.service_name() && child.kind != SpanKind::Consumer;
        if other_clock {
            let (a, b) = (raw_s + offset, raw_e + offset);
            let delta = if b - a > e - s {
                0
            } else if a < s {
                s - a
            } else if b > e {
                e - b
            } else {
                0
            };
            child_offset = offset + delta;
            if delta.abs() > CLOCK_TOLERANCE_NANOS && notes.len() < 10 {
                notes.push(format!(
                    "{} lay {:.1} ms {} its caller {} (clock skew between hosts); it was shifted into the caller's window.",
                    label(child),
                    delta.abs() as f64 / 1e6,
                    if delta > 0 { "before" } else { "after" },
                    label(parent)
                ));
            }
        }
        let start = (raw_s + child_offset).max(s);
        let end = (raw_e + child_offset).min(e);
        if end > start {
            kids.push(Kid {
                node: c,
                offset: child_offset,
                start,
                end,
            });
        }
    }
    kids.sort_by(|x, y| {
        y.end
            .cmp(&x.end)
            .then(y.start.cmp(&x.start))
            .then(y.node.cmp(&x.node))
    });
    kids
}

/// Computes the critical path of the entry node (see the module docs for the rules).
pub fn critical_path(graph: &SpanGraph<'_>, entry: usize) -> CriticalPath {
    let (ws, we) = (graph.start(entry), graph.end(entry));
    let mut cp = CriticalPath {
        budget_nanos: we - ws,
        window: (ws, we),
        ..CriticalPath::default()
    };
    if we == ws {
        return cp;
    }
    let (s, e) = (ws as i128, we as i128);
    let lifted = lifted(graph, entry);
    let kids = placed_children(graph, &lifted, entry, 0, s, e, &mut cp.notes);
    let mut stack = vec![Frame {
        node: entry,
        start: s,
        cursor: e,
        kids,
        next: 0,
    }];
    cp.visited.push(entry);
    let mut raw_segments: Vec<(usize, i128, i128)> = Vec::new();
    while let Some(top) = stack.last_mut() {
        let mut chosen = None;
        while top.next < top.kids.len() {
            let kid = top.kids[top.next];
            top.next += 1;
            // CRISP happens-before (`<=`), widened by the clock tolerance.
            if kid.end <= top.cursor + CLOCK_TOLERANCE_NANOS {
                let end = kid.end.min(top.cursor);
                if end > kid.start {
                    chosen = Some(Kid { end, ..kid });
                    break;
                }
            }
        }
        match chosen {
            Some(kid) => {
                if kid.end < top.cursor {
                    raw_segments.push((top.node, kid.end, top.cursor));
                }
                top.cursor = kid.start;
                let kids = placed_children(
                    graph,
                    &lifted,
                    kid.node,
                    kid.offset,
                    kid.start,
                    kid.end,
                    &mut cp.notes,
                );
                cp.visited.push(kid.node);
                stack.push(Frame {
                    node: kid.node,
                    start: kid.start,
                    cursor: kid.end,
                    kids,
                    next: 0,
                });
            }
            None => {
                if top.start < top.cursor {
                    raw_segments.push((top.node, top.start, top.cursor));
                }
                stack.pop();
            }
        }
    }
    for (node, a, b) in raw_segments {
        // All segments lie inside [ws, we] by construction; the clamp keeps that a fact.
        let start = a.clamp(s, e) as u64;
        let end = b.clamp(s, e) as u64;
        if end > start {
            cp.segments.push(Segment { node, start, end });
            let slot = cp.exclusive.entry(node).or_insert(0);
            *slot = slot.saturating_add(end - start);
        }
    }
    cp
}

/// The span that burned the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BlameChoice {
    /// The blamed node (for retries: the attempt with the most exclusive time, the last
    /// one on ties).
    pub node: usize,
    /// The blamed node's own exclusive critical-path time, nanoseconds.
    pub self_nanos: u64,
    /// Exclusive time of the whole operation (all retry attempts), nanoseconds.
    pub group_nanos: u64,
    /// Number of attempts of the operation under the same parent (1 when not retried).
    pub attempts: usize,
    /// Whether the blamed span is a dependency span.
    pub is_dependency: bool,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum GroupKey<'a> {
    Single(usize),
    Retry(usize, &'a str, &'a str, &'static str, String),
}

/// What makes two calls the same operation: the statement, the target, the method and
/// the route, as the semantic conventions old and new name them. Spans that share only a
/// name (three different queries of an N+1 loop, all `SELECT`) are different operations.
const OPERATION_KEYS: [&str; 14] = [
    "db.query.text",
    "db.statement",
    "db.operation.name",
    "db.operation",
    "url.full",
    "http.url",
    "http.request.method",
    "http.method",
    "server.address",
    "server.port",
    "net.peer.name",
    "rpc.service",
    "rpc.method",
    "messaging.destination.name",
];

/// The operation identity of a call, from [`OPERATION_KEYS`].
pub fn operation_identity(span: &crate::model::Span) -> String {
    let mut out = String::new();
    for k in OPERATION_KEYS {
        if let Some(v) = span.attributes.get(k) {
            let shown = v.to_display();
            // A URL's query string carries per-attempt values (retry counters, nonces).
            let shown = if k.ends_with("url") || k == "url.full" {
                shown.split(['?', '#']).next().unwrap_or("").to_string()
            } else {
                shown
            };
            out.push_str(k);
            out.push('=');
            out.push_str(&shown);
            out.push('\n');
        }
    }
    out
}

/// Chooses the blame: the operation with the largest exclusive critical-path time, where
/// retried calls of one dependency operation under one parent count together. Calls are
/// attempts of one operation when they share parent, service, name, kind and
/// [`operation_identity`], and every attempt but the last failed: a retry follows a
/// failure, so repeated successful calls (an N+1 loop) are separate operations.
pub fn choose_blame(graph: &SpanGraph<'_>, cp: &CriticalPath, entry: usize) -> Option<BlameChoice> {
    if cp.budget_nanos == 0 {
        return None;
    }
    let entry_service = graph.span(entry).service_name();
    let raw_key = |n: usize| {
        let span = graph.span(n);
        match graph.parent(n) {
            Some(p) if n != entry && is_dependency(span, entry_service) => GroupKey::Retry(
                p,
                span.service_name(),
                span.name.as_str(),
                span.kind.as_str(),
                operation_identity(span),
            ),
            _ => GroupKey::Single(n),
        }
    };
    // Keys whose attempts are retries: every attempt but the last (by start) failed.
    let mut attempts_of: HashMap<GroupKey<'_>, Vec<usize>> = HashMap::new();
    for n in 0..graph.len() {
        if let k @ GroupKey::Retry(..) = raw_key(n) {
            attempts_of.entry(k).or_default().push(n);
        }
    }
    let retried: std::collections::HashSet<GroupKey<'_>> = attempts_of
        .into_iter()
        .filter(|(_, members)| {
            let mut m = members.clone();
            m.sort_by_key(|&n| (graph.start(n), n));
            m.len() > 1
                && m[..m.len() - 1]
                    .iter()
                    .all(|&n| super::classify::is_failing(graph.span(n)))
        })
        .map(|(k, _)| k)
        .collect();
    let key_of = |n: usize| {
        let k = raw_key(n);
        if matches!(k, GroupKey::Retry(..)) && !retried.contains(&k) {
            GroupKey::Single(n)
        } else {
            k
        }
    };
    let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
    let mut by_key: HashMap<GroupKey<'_>, usize> = HashMap::new();
    let mut nodes: Vec<usize> = cp.exclusive.keys().copied().collect();
    nodes.sort_unstable();
    for n in nodes {
        let ex = cp.exclusive_of(n);
        let slot = *by_key.entry(key_of(n)).or_insert_with(|| {
            groups.push((0, Vec::new()));
            groups.len() - 1
        });
        groups[slot].0 = groups[slot].0.saturating_add(ex);
        groups[slot].1.push(n);
    }
    let (group_nanos, members) = groups
        .into_iter()
        .reduce(|best, g| if g.0 > best.0 { g } else { best })?;
    let node = members
        .iter()
        .copied()
        .max_by_key(|&n| (cp.exclusive_of(n), graph.end(n), n))?;
    let attempts = match (key_of(node), graph.parent(node)) {
        (GroupKey::Retry(..), Some(p)) => {
            let key = key_of(node);
            graph
                .children(p)
                .iter()
                .filter(|&&c| key_of(c) == key)
                .count()
        }
        _ => 1,
    };
    Some(BlameChoice {
        node,
        self_nanos: cp.exclusive_of(node),
        group_nanos: group_nanos.min(cp.budget_nanos),
        attempts,
        is_dependency: node != entry && is_dependency(graph.span(node), entry_service),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::*;

    const MS: u64 = 1_000_000;

    fn path_of(t: &crate::model::Trace) -> (Vec<(String, u64)>, CriticalPath) {
        let g = SpanGraph::build(t);
        let cp = critical_path(&g, 0);
        let mut ex: Vec<(String, u64)> = cp
            .exclusive
            .iter()
            .map(|(&n, &ns)| (g.span(n).name.clone(), ns / 1000))
            .collect();
        ex.sort();
        (ex, cp)
    }

    fn us(v: &[(String, u64)], name: &str) -> u64 {
        v.iter().find(|(n, _)| n == name).map(|x| x.1).unwrap_or(0)
    }

    #[test]
    fn sequential_children_and_parent_gaps_share_the_budget() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", CLIENT, "first", 10, 40),
            sp(3, Some(1), "a", CLIENT, "second", 50, 90),
        ]);
        let (ex, cp) = path_of(&t);
        assert_eq!(us(&ex, "root"), 30_000);
        assert_eq!(us(&ex, "first"), 30_000);
        assert_eq!(us(&ex, "second"), 40_000);
        assert_eq!(cp.budget_nanos, 100 * MS);
    }

    #[test]
    fn overlapping_child_that_ends_after_the_cursor_is_off_the_path() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", CLIENT, "long", 10, 90),
            sp(3, Some(1), "a", CLIENT, "short", 20, 60),
        ]);
        let (ex, _) = path_of(&t);
        assert_eq!(us(&ex, "long"), 80_000);
        assert_eq!(us(&ex, "short"), 0);
    }

    #[test]
    fn children_touching_at_a_boundary_both_lie_on_the_path_as_in_crisp() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", CLIENT, "first", 0, 50),
            sp(3, Some(1), "a", CLIENT, "second", 50, 100),
        ]);
        let (ex, _) = path_of(&t);
        assert_eq!(us(&ex, "first"), 50_000);
        assert_eq!(us(&ex, "second"), 50_000);
        assert_eq!(us(&ex, "root"), 0);
    }

    #[test]
    fn async_child_outliving_the_parent_is_clipped() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", PRODUCER, "fire", 80, 300),
        ]);
        let (ex, cp) = path_of(&t);
        assert_eq!(us(&ex, "fire"), 20_000);
        assert!(cp.segments.iter().all(|s| s.end <= cp.window.1));
    }

    #[test]
    fn same_service_child_wholly_outside_the_window_is_not_on_the_path() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", INTERNAL, "after", 150, 200),
        ]);
        let (ex, _) = path_of(&t);
        assert_eq!(us(&ex, "root"), 100_000);
        assert_eq!(us(&ex, "after"), 0);
    }

    #[test]
    fn node_style_truncated_starts_keep_the_predecessor_on_the_path() {
        // The second call really started at 40.6 ms, after the first ended at 40.4 ms,
        // but the Node SDK truncated its start to 40 ms.
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", CLIENT, "first", 10, 40).shift_ns(0, 400_000),
            sp(3, Some(1), "a", CLIENT, "second", 40, 90),
            // and a child that seems to start before its parent
            sp(4, Some(3), "a", INTERNAL, "inner", 40, 89).shift_ns(-900_000, 0),
        ]);
        let (ex, _) = path_of(&t);
        assert_eq!(us(&ex, "first"), 30_000);
        assert_eq!(us(&ex, "second"), 1_000);
        assert_eq!(us(&ex, "inner"), 49_000);
    }

    #[test]
    fn skewed_downstream_server_is_shifted_into_its_client_window() {
        // backend's clock runs 30 ms behind: its server span appears before the call.
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "root", 0, 100),
            sp(2, Some(1), "edge", CLIENT, "call", 10, 90),
            sp(3, Some(2), "backend", SERVER, "GET /x", 0, 70).shift_ns(
                -30 * MS as i64 + 12 * MS as i64,
                -30 * MS as i64 + 12 * MS as i64,
            ),
            sp(4, Some(3), "backend", CLIENT, "SELECT", 2, 60)
                .shift_ns(-18 * MS as i64, -18 * MS as i64),
        ]);
        let (ex, cp) = path_of(&t);
        // Shifted by 28 ms to start at the call's start; the db call moves with it.
        assert_eq!(us(&ex, "SELECT"), 58_000);
        assert!(cp.notes.iter().any(|n| n.contains("clock skew")));
        let g = SpanGraph::build(&t);
        let b = choose_blame(&g, &cp, 0).expect("blame");
        assert_eq!(g.span(b.node).name, "SELECT");
    }

    #[test]
    fn retries_of_one_operation_are_summed_for_blame() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "root", 0, 100),
            sp(2, Some(1), "a", INTERNAL, "compute", 0, 35),
            // A retry follows a failure: the first two attempts failed.
            sp(3, Some(1), "a", CLIENT, "GET", 35, 55).http(503),
            sp(4, Some(1), "a", CLIENT, "GET", 55, 75).http(503),
            sp(5, Some(1), "a", CLIENT, "GET", 75, 100),
        ]);
        let g = SpanGraph::build(&t);
        let cp = critical_path(&g, 0);
        let b = choose_blame(&g, &cp, 0).expect("blame");
        assert_eq!(b.node, 4, "the longest attempt");
        assert_eq!(b.attempts, 3);
        assert_eq!(b.group_nanos, 65 * MS);
        assert_eq!(b.self_nanos, 25 * MS);
    }

    #[test]
    fn zero_length_entry_has_no_blame() {
        let t = trace(vec![sp(1, None, "a", SERVER, "root", 5, 5)]);
        let g = SpanGraph::build(&t);
        let cp = critical_path(&g, 0);
        assert!(choose_blame(&g, &cp, 0).is_none());
        assert!(cp.segments.is_empty());
    }

    #[test]
    fn an_n_plus_one_loop_of_different_queries_is_not_a_retry() {
        let q = |id, stmt: &str, s, e| {
            sp(id, Some(1), "a", CLIENT, "SELECT", s, e)
                .attr("db.system", "postgresql")
                .attr("db.statement", stmt)
        };
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /x", 0, 100).http(500),
            q(2, "SELECT * FROM users WHERE id = $1", 0, 30),
            q(3, "SELECT * FROM orders WHERE user_id = $1", 30, 60),
            q(4, "SELECT * FROM items WHERE order_id = $1", 60, 90),
        ]);
        let g = SpanGraph::build(&t);
        let cp = critical_path(&g, 0);
        let b = choose_blame(&g, &cp, 0).expect("blame");
        assert_eq!(b.attempts, 1);
        assert_eq!(b.group_nanos, b.self_nanos);
    }

    #[test]
    fn repeated_successful_calls_of_one_statement_are_not_retries_either() {
        let q = |id, s, e| {
            sp(id, Some(1), "a", CLIENT, "SELECT", s, e)
                .attr("db.system", "postgresql")
                .attr("db.statement", "SELECT * FROM items WHERE id = $1")
        };
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /x", 0, 100).http(500),
            q(2, 0, 30),
            q(3, 30, 60),
            q(4, 60, 90).error(),
        ]);
        let g = SpanGraph::build(&t);
        let cp = critical_path(&g, 0);
        assert_eq!(choose_blame(&g, &cp, 0).expect("blame").attempts, 1);
    }
}
