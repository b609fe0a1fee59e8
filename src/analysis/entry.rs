//! Entries: the SERVER spans that answered a failing request (docs/contract.md §3), their nesting
//! and their route.
//!
//! An entry is a SERVER span whose HTTP status is one of the configured error statuses,
//! or a gRPC SERVER span that answered UNKNOWN (2) or INTERNAL (13). Gateways answering
//! 502/503/504 are not entries; a backend 500 below them is. The verdict belongs to the
//! outermost entry, the entries nested below it form the reported chain. Depends only on
//! [`crate::model`] and the [`super::graph`].

use crate::model::{Span, SpanKind};

use super::graph::SpanGraph;
use super::AnalysisConfig;

/// HTTP status attribute keys, current semantic conventions first.
pub const HTTP_STATUS_KEYS: [&str; 2] = ["http.response.status_code", "http.status_code"];

/// gRPC status codes that make a gRPC SERVER span an entry: UNKNOWN and INTERNAL.
pub const GRPC_ENTRY_CODES: [i64; 2] = [2, 13];

/// The HTTP status code a span carries, if any (int or string values).
pub fn http_status(span: &Span) -> Option<i64> {
    HTTP_STATUS_KEYS
        .iter()
        .find_map(|k| span.attributes.get_i64(k))
}

/// The gRPC status code a span carries, if any.
pub fn grpc_status(span: &Span) -> Option<i64> {
    if let Some(code) = span.attributes.get_i64("rpc.grpc.status_code") {
        return Some(code);
    }
    // Newer RPC conventions put the status name in `rpc.response.status_code`.
    let name = span.attributes.get_str("rpc.response.status_code")?;
    Some(match name {
        "OK" => 0,
        "UNKNOWN" => 2,
        "DEADLINE_EXCEEDED" => 4,
        "INTERNAL" => 13,
        "UNAVAILABLE" => 14,
        other => other.trim().parse().ok()?,
    })
}

/// The status that makes `span` an entry (HTTP status or gRPC code), or `None`.
pub fn entry_status(span: &Span, cfg: &AnalysisConfig) -> Option<i64> {
    if span.kind != SpanKind::Server {
        return None;
    }
    if let Some(code) = http_status(span) {
        if cfg.error_statuses.contains(&code) {
            return Some(code);
        }
    }
    grpc_status(span).filter(|c| GRPC_ENTRY_CODES.contains(c))
}

/// True when `span` is the entry of a failing request (docs/contract.md §3).
pub fn is_entry(span: &Span, cfg: &AnalysisConfig) -> bool {
    entry_status(span, cfg).is_some()
}

/// The route of an entry: `http.route`, else the path part of a `METHOD /path` span name
/// (`GET /users/:id` gives `/users/:id`), else the span name itself.
pub fn route(span: &Span) -> String {
    if let Some(r) = span
        .attributes
        .get_str("http.route")
        .filter(|r| !r.is_empty())
    {
        return r.to_string();
    }
    // HTTP server span names are `{method} {route}`; anything else (gRPC `pkg.Svc/Method`,
    // a bare method) is its own route.
    let name = span.name.trim();
    match name.split_once(' ') {
        Some((_, rest)) if rest.trim_start().starts_with('/') => rest.trim_start().to_string(),
        _ => name.to_string(),
    }
}

/// One failing request: its outermost entry and the entries nested below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingRequest {
    /// Node of the outermost entry.
    pub entry: usize,
    /// Nested entries below it, outermost first (depth-first order).
    pub nested: Vec<usize>,
}

/// Finds every outermost entry of the graph (an entry with no entry above it), ordered by
/// start time, each with the entries nested below it.
pub fn failing_requests(graph: &SpanGraph<'_>, cfg: &AnalysisConfig) -> Vec<FailingRequest> {
    let is_entry_node: Vec<bool> = (0..graph.len())
        .map(|i| is_entry(graph.span(i), cfg))
        .collect();
    let mut out = Vec::new();
    // One pass down from the roots: an entry met with no entry above it is outermost.
    // (The graph is a forest, so every node is reached exactly once.)
    let mut stack: Vec<usize> = (0..graph.len())
        .filter(|&i| graph.parent(i).is_none())
        .collect();
    while let Some(i) = stack.pop() {
        if is_entry_node[i] {
            let nested = graph
                .subtree(i)
                .into_iter()
                .skip(1)
                .filter(|&n| is_entry_node[n])
                .collect();
            out.push(FailingRequest { entry: i, nested });
        } else {
            stack.extend(graph.children(i).iter().copied());
        }
    }
    out.sort_by_key(|r| (graph.start(r.entry), r.entry));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::*;

    #[test]
    fn server_span_with_500_is_an_entry_int_or_string_or_legacy() {
        let cfg = AnalysisConfig::default();
        assert!(is_entry(
            &sp(1, None, "a", SERVER, "GET /", 0, 1).http(500),
            &cfg
        ));
        assert!(is_entry(
            &sp(1, None, "a", SERVER, "GET /", 0, 1).attr("http.status_code", "500"),
            &cfg
        ));
        assert!(!is_entry(
            &sp(1, None, "a", CLIENT, "GET", 0, 1).http(500),
            &cfg
        ));
        assert!(!is_entry(
            &sp(1, None, "a", SERVER, "GET /", 0, 1).http(502),
            &cfg
        ));
        assert!(!is_entry(
            &sp(1, None, "a", SERVER, "GET /", 0, 1).http(200),
            &cfg
        ));
    }

    #[test]
    fn configured_error_statuses_are_honoured() {
        let cfg = AnalysisConfig {
            error_statuses: vec![500, 503],
            ..AnalysisConfig::default()
        };
        assert!(is_entry(
            &sp(1, None, "a", SERVER, "GET /", 0, 1).http(503),
            &cfg
        ));
    }

    #[test]
    fn grpc_unknown_and_internal_are_entries() {
        let cfg = AnalysisConfig::default();
        let g =
            |c: i64| sp(1, None, "a", SERVER, "pkg.Svc/Get", 0, 1).attr("rpc.grpc.status_code", c);
        assert!(is_entry(&g(13), &cfg));
        assert!(is_entry(&g(2), &cfg));
        assert!(!is_entry(&g(14), &cfg));
        assert!(!is_entry(&g(0), &cfg));
    }

    #[test]
    fn route_prefers_http_route_then_the_span_name() {
        assert_eq!(
            route(&sp(1, None, "a", SERVER, "GET", 0, 1).attr("http.route", "/users/:id")),
            "/users/:id"
        );
        assert_eq!(
            route(&sp(1, None, "a", SERVER, "GET /users/:id", 0, 1)),
            "/users/:id"
        );
        assert_eq!(
            route(&sp(1, None, "a", SERVER, "Checkout", 0, 1)),
            "Checkout"
        );
        assert_eq!(
            route(&sp(1, None, "a", SERVER, "pkg.Svc/Get", 0, 1)),
            "pkg.Svc/Get"
        );
    }

    #[test]
    fn gateway_502_over_backend_500_makes_the_backend_the_outermost_entry() {
        let cfg = AnalysisConfig::default();
        let t = trace(vec![
            sp(1, None, "gateway", SERVER, "GET /a", 0, 100).http(502),
            sp(2, Some(1), "gateway", CLIENT, "GET", 5, 95).http(500),
            sp(3, Some(2), "backend", SERVER, "GET /a", 10, 90).http(500),
            sp(4, Some(3), "backend", CLIENT, "GET", 20, 80).http(500),
            sp(5, Some(4), "deep", SERVER, "GET /b", 25, 75).http(500),
        ]);
        let g = SpanGraph::build(&t);
        let reqs = failing_requests(&g, &cfg);
        assert_eq!(
            reqs,
            vec![FailingRequest {
                entry: 2,
                nested: vec![4]
            }]
        );
    }
}
