//! Following error evidence down from an entry to the origin of the failure (DESIGN §3).
//!
//! From the entry, the walk looks for the *failing frontier*: the nearest failing spans
//! below, reached through spans that carry no mark at all (framework middleware is passed
//! through) but never through a span that says it succeeded (status OK, HTTP < 400): an
//! error recovered inside a successful call is not why the request failed. It then
//! descends into the chosen frontier span and repeats; the origin is the deepest failing
//! span that its own children do not explain. When the entry has no failing frontier,
//! the origin is the entry itself if it recorded an exception (Flask, FastAPI and
//! express often record it on the SERVER span), otherwise there is none.
//!
//! Depends on [`super::graph`] and [`super::classify`].

use super::classify::{
    call_reason, dependency_failure, exception_event, exception_parts, grpc_dependency_failure,
    is_explicit_success, is_failing,
};
use super::fingerprint::stack::parse as parse_stack;
use super::graph::SpanGraph;

/// The result of following the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSearch {
    /// The origin node, if any span carries evidence.
    pub origin: Option<usize>,
    /// Nodes from the entry down to the origin (or just the entry), inclusive.
    pub path: Vec<usize>,
    /// Spans without error marks passed through on the way.
    pub passed_through: usize,
}

/// True when a failing span's failure is a dependency failure in its own right: a
/// failing call span, a typed exception (timeout, refused, pool) or gRPC 4/14.
pub fn fails_as_dependency(graph: &SpanGraph<'_>, node: usize) -> bool {
    let span = graph.span(node);
    if call_reason(span).is_some() || grpc_dependency_failure(span).is_some() {
        return true;
    }
    exception_event(span).is_some_and(|e| {
        let (ty, msg, _) = exception_parts(e);
        dependency_failure(ty, msg).is_some()
    })
}

/// The failing spans nearest below `node`, reached through unmarked spans, with the count
/// of unmarked spans passed through to reach each.
fn failing_frontier(graph: &SpanGraph<'_>, node: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, usize)> = graph.children(node).iter().map(|&c| (c, 0)).collect();
    while let Some((c, through)) = stack.pop() {
        let span = graph.span(c);
        if is_failing(span) {
            out.push((c, through));
        } else if !is_explicit_success(span) {
            stack.extend(graph.children(c).iter().map(|&k| (k, through + 1)));
        }
    }
    out
}

/// Follows the error evidence from `entry` to the origin.
///
/// Among several failing spans at one level, dependency failures are preferred (a handler
/// that throws after a failed call is explained by the call), then the one that ended
/// last (the failure that reached the caller; for retries, the final attempt).
pub fn find_origin(graph: &SpanGraph<'_>, entry: usize) -> OriginSearch {
    let mut cur = entry;
    let mut passed_through = 0usize;
    let mut steps = 0usize;
    loop {
        steps += 1;
        if steps > graph.len() {
            break;
        }
        let frontier = failing_frontier(graph, cur);
        let best = frontier.iter().copied().max_by_key(|&(n, _)| {
            (
                fails_as_dependency(graph, n),
                graph.end(n),
                graph.start(n),
                n,
            )
        });
        match best {
            Some((n, through)) => {
                passed_through += through;
                cur = n;
            }
            None => break,
        }
    }
    let path = graph.path_between(entry, cur);
    let origin = if cur != entry || exception_event(graph.span(entry)).is_some() {
        Some(cur)
    } else {
        None
    };
    OriginSearch {
        origin,
        path,
        passed_through,
    }
}

/// The exception to fingerprint: the deepest one on the path from the entry to the origin
/// whose stack has in-app frames, else the deepest one at all. Returns the node that
/// recorded it.
pub fn exception_node(graph: &SpanGraph<'_>, path: &[usize]) -> Option<usize> {
    // An instrumented client often records the same exception with a stack made only of
    // library frames (Python `requests`), while the handler's copy shows the code path
    // that made the call: prefer the deepest exception whose stack has in-app frames.
    let mut deepest = None;
    for n in path.iter().rev().copied() {
        let Some(event) = exception_event(graph.span(n)) else {
            continue;
        };
        deepest.get_or_insert(n);
        let (_, _, stack) = exception_parts(event);
        if parse_stack(stack).is_some_and(|p| p.frames.iter().any(|f| f.in_app)) {
            return Some(n);
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::*;

    #[test]
    fn middleware_without_marks_is_passed_through() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /x", 0, 100).http(500).error(),
            sp(2, Some(1), "a", INTERNAL, "middleware - auth", 1, 99),
            sp(3, Some(2), "a", INTERNAL, "request handler", 2, 98)
                .exception("KeyError", "'id'", ""),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, Some(2));
        assert_eq!(o.path, vec![0, 1, 2]);
        assert_eq!(o.passed_through, 1);
    }

    #[test]
    fn error_recovered_inside_a_successful_call_is_not_followed() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /x", 0, 100).http(500).error(),
            sp(2, Some(1), "a", CLIENT, "GET", 1, 50).http(200),
            sp(3, Some(2), "b", SERVER, "GET /y", 2, 49).http(200),
            sp(4, Some(3), "b", CLIENT, "SELECT", 3, 10).error(),
        ]);
        let g = SpanGraph::build(&t);
        assert_eq!(find_origin(&g, 0).origin, None);
    }

    #[test]
    fn exception_on_the_server_span_itself_makes_it_the_origin() {
        let t = trace(vec![sp(1, None, "a", SERVER, "GET /x", 0, 100)
            .http(500)
            .exception("ValueError", "bad", "")]);
        let g = SpanGraph::build(&t);
        assert_eq!(find_origin(&g, 0).origin, Some(0));
    }

    #[test]
    fn fingerprint_exception_comes_from_the_deepest_span_that_recorded_one() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /x", 0, 100)
                .http(500)
                .exception("RuntimeError", "outer", ""),
            sp(2, Some(1), "a", INTERNAL, "handler", 1, 99).exception("ReadTimeout", "inner", ""),
            sp(3, Some(2), "a", CLIENT, "GET", 2, 98).error(),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, Some(2));
        assert_eq!(exception_node(&g, &o.path), Some(1));
    }
}
