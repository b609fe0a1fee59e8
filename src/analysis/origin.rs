//! Following the error down from an entry to its cause, the origin (docs/contract.md §3, "Origin").
//!
//! Real frameworks record an exception away from where it was thrown, and an upper
//! service's exception is often a wrapper of a call that failed below it. So the walk
//! reasons per *service segment* (the spans one service made while serving one request:
//! its SERVER span, its internal spans and its outgoing calls, down to where another
//! service answers), not per parent link:
//!
//! 1. **What the segment threw.** The exception events on its own (non-call) spans,
//!    grouped as one exception when type and message agree (one error recorded by the
//!    handler, the router and the error middleware). The one thrown *last* is what ended
//!    the request: an error responder that crashes while handling a benign error
//!    replaces that error. Its *site* is the first span that recorded it.
//! 2. **What explains it.** A failed call of the same segment that started before the
//!    exception explains it when the exception points at the call: the same exception
//!    recorded on the call, the call's error in the exception's cause chain, its HTTP or
//!    gRPC status, its target (`host:port`, URL path, peer service) in the message, or the
//!    same kind of dependency failure (timeout, refused, pool). Failing that, *timing*
//!    alone links them when the call was the last thing the segment did before throwing
//!    (no successful call in between) and the exception is not a programming error of
//!    the language (`TypeError`, `KeyError`, ...), which a failed call does not explain.
//!    A failed call followed by successful work was recovered from: it does not explain
//!    what fails after it.
//! 3. **Through the call.** An explained exception is a wrapper: the walk goes through the
//!    call into the service that answered it and repeats from step 1 there. A call whose
//!    callee did not fail (a client-side timeout) or left no spans is the origin itself;
//!    a callee that failed without saying why ends the walk with no origin: the trace
//!    does not tell what failed there (the verdict is inconclusive and names it).
//! 4. **Nothing thrown.** A segment that threw nothing is explained by its last failed
//!    call that was not recovered from, else by an own span with status ERROR; spans that
//!    only carry the response's status (ASGI `http send`) report the error and are never
//!    origins. A segment with none of that has no origin of its own.
//!
//! Every hop records how it was linked, so the verdict can say so and lower its
//! confidence where a link is an inference. Depends on [`super::graph`],
//! [`super::classify`] and [`super::fingerprint::stack`].

use crate::model::{Event, Span, SpanKind, StatusCode};

use super::classify::{
    call_reason, dependency_failure, exception_parts, grpc_dependency_failure, is_failing,
};
use super::critical_path::CLOCK_TOLERANCE_NANOS;
use super::entry::{grpc_status, http_status};
use super::fingerprint::stack::parse as parse_stack;
use super::graph::SpanGraph;

/// How one hop of the walk was linked, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    /// The call recorded the same exception (type and message) as the segment threw.
    SameException,
    /// The call's error appears in the exception's cause chain (stack trace).
    CauseChain,
    /// The exception's message names the call: its status, target or peer service.
    Message,
    /// The exception is the same kind of dependency failure the call had.
    FailureKind,
    /// Only timing: the failed call was the last thing done before the exception.
    Timing,
    /// Nothing was thrown; the segment's last failed call (not recovered from).
    LastFailedCall,
}

impl Link {
    /// True for links that rest on inference rather than on what the spans say. A
    /// segment that threw nothing and whose only failure is one call is not an inference.
    pub fn is_inferred(self) -> bool {
        matches!(self, Link::Timing)
    }

    /// Readable description for evidence.
    pub fn describe(self) -> &'static str {
        match self {
            Link::SameException => "the call recorded the same exception",
            Link::CauseChain => "the call's error is in the exception's cause chain",
            Link::Message => "the exception's message names the call",
            Link::FailureKind => "the exception is the same kind of dependency failure",
            Link::Timing => {
                "by timing only: the failed call was the last thing done before the exception"
            }
            Link::LastFailedCall => "nothing was thrown; it was the last failed call",
        }
    }
}

/// One hop of the wrapper chain: a segment's exception (or silent failure) explained by a
/// failed call it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The node that recorded the segment's exception, if it threw one.
    pub thrown_at: Option<usize>,
    /// The failed call that explains it.
    pub call: usize,
    /// How they were linked.
    pub link: Link,
}

/// A failed call passed over because the request went on successfully after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// The failed call.
    pub call: usize,
    /// The successful call that ran after it.
    pub then: usize,
}

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginSearch {
    /// The origin node, if anything below the entry (or the entry's own exception)
    /// carries evidence.
    pub origin: Option<usize>,
    /// Nodes from the entry down to the origin along parent links (or just the entry).
    pub path: Vec<usize>,
    /// The wrapper chain, outermost first.
    pub hops: Vec<Hop>,
    /// The node whose exception event is the cause to fingerprint, if any.
    pub exception: Option<usize>,
    /// Where the fingerprinted exception shows no code path of its own (an instrumented
    /// client's copy: library frames only) and the code that made the call raised a
    /// *different* exception (a wrapper): that node, whose stack locates the call site.
    /// The fingerprint takes the cause's type and message and the call site's frames.
    pub call_site: Option<usize>,
    /// Where the walk ended without a cause: a downstream server that answered an error
    /// without recording an exception, an own span with status ERROR or a failed call.
    /// The trace does not say what failed there, so there is no origin.
    pub silent_downstream: Option<usize>,
    /// When the origin is a span that threw while an earlier, different exception of the
    /// same segment was being handled (an error responder failing): that earlier one.
    pub handling: Option<usize>,
    /// Failed calls passed over because the request recovered from them.
    pub recovered: Vec<Recovered>,
    /// Own spans that only carry the response status (response-phase spans), passed over.
    pub reporters_passed: usize,
}

impl OriginSearch {
    /// The weakest link of the chain, if any hop was made.
    pub fn weakest_link(&self) -> Option<Link> {
        self.hops.iter().map(|h| h.link).max()
    }
}

/// One thrown exception of a segment: every span that recorded it.
#[derive(Debug, Clone)]
struct Thrown<'a> {
    ty: &'a str,
    message: &'a str,
    /// The first span that recorded it (earliest; the deepest on ties).
    site: usize,
    /// When it was first recorded.
    first: u64,
    /// Every node that recorded it.
    sites: Vec<usize>,
}

/// The spans one service made while serving one request.
struct Segment {
    /// Own spans that are not calls (the root included), depth-first.
    own: Vec<usize>,
    /// Outgoing calls of the segment, by start.
    calls: Vec<usize>,
}

/// True when `child` is where another service (or another request of the same one)
/// begins below `parent`.
fn crosses_service(graph: &SpanGraph<'_>, parent: usize, child: usize) -> bool {
    let p = graph.span(parent);
    let c = graph.span(child);
    c.service_name() != p.service_name()
        || (matches!(c.kind, SpanKind::Server | SpanKind::Consumer)
            && matches!(p.kind, SpanKind::Client | SpanKind::Producer))
}

fn is_call(span: &Span) -> bool {
    call_reason(span).is_some() && span.kind != SpanKind::Server
}

fn segment(graph: &SpanGraph<'_>, root: usize) -> Segment {
    let mut own = Vec::new();
    let mut calls = Vec::new();
    let mut stack = vec![root];
    let mut seen = 0usize;
    while let Some(n) = stack.pop() {
        seen += 1;
        if seen > graph.len() {
            break;
        }
        let call = n != root && is_call(graph.span(n));
        if call {
            calls.push(n);
        } else {
            own.push(n);
        }
        for &c in graph.children(n).iter().rev() {
            if !crosses_service(graph, n, c) {
                stack.push(c);
            } else if !call {
                // Another service answering right below our own span: its client call
                // was not recorded (or the link was inferred). The callee stands in.
                calls.push(c);
            }
        }
    }
    calls.sort_by_key(|&c| (graph.start(c), c));
    Segment { own, calls }
}

/// The spans of other services directly below a call (the callee's SERVER spans).
fn callees(graph: &SpanGraph<'_>, call: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack: Vec<usize> = graph.children(call).to_vec();
    let mut seen = 0usize;
    while let Some(n) = stack.pop() {
        seen += 1;
        if seen > graph.len() {
            break;
        }
        if crosses_service(graph, call, n)
            || graph.span(n).service_name() != graph.span(call).service_name()
        {
            out.push(n);
        } else {
            stack.extend(graph.children(n).iter().copied());
        }
    }
    out.sort_by_key(|&n| (graph.start(n), n));
    out
}

fn event_time(graph: &SpanGraph<'_>, node: usize, e: &Event) -> u64 {
    if e.time_unix_nano > 0 {
        e.time_unix_nano
    } else {
        graph.end(node)
    }
}

fn depth(graph: &SpanGraph<'_>, node: usize) -> usize {
    let mut d = 0usize;
    let mut cur = node;
    while let Some(p) = graph.parent(cur) {
        d += 1;
        if d > graph.len() {
            break;
        }
        cur = p;
    }
    d
}

/// The exceptions the segment's own spans recorded, one entry per distinct exception.
fn thrown<'a>(graph: &SpanGraph<'a>, seg: &Segment) -> Vec<Thrown<'a>> {
    let mut out: Vec<Thrown<'a>> = Vec::new();
    for &n in &seg.own {
        let span = graph.span(n);
        for e in span.events.iter().filter(|e| e.name == "exception") {
            let (ty, message, _) = exception_parts(e);
            let t = event_time(graph, n, e);
            match out.iter_mut().find(|x| x.ty == ty && x.message == message) {
                Some(x) => {
                    if !x.sites.contains(&n) {
                        x.sites.push(n);
                    }
                    let earlier =
                        t < x.first || (t == x.first && depth(graph, n) > depth(graph, x.site));
                    if earlier {
                        x.first = t.min(x.first);
                        x.site = n;
                    }
                }
                None => out.push(Thrown {
                    ty,
                    message,
                    site: n,
                    first: t,
                    sites: vec![n],
                }),
            }
        }
    }
    out
}

/// Exception types that are the language telling the code it is wrong (a bug in the code
/// path itself), across the languages the fingerprinter reads. A failed call does not
/// explain them by timing alone.
const PROGRAMMING_ERRORS: [&str; 16] = [
    "typeerror",
    "referenceerror",
    "rangeerror",
    "keyerror",
    "attributeerror",
    "nameerror",
    "indexerror",
    "zerodivisionerror",
    "unboundlocalerror",
    "assertionerror",
    "nullpointerexception",
    "classcastexception",
    "arrayindexoutofboundsexception",
    "nullreferenceexception",
    "nomethoderror",
    "invalidcastexception",
];

fn is_programming_error(ty: &str) -> bool {
    let last = ty
        .rsplit(['.', ':', '\\', '/'])
        .next()
        .unwrap_or(ty)
        .to_ascii_lowercase();
    PROGRAMMING_ERRORS.contains(&last.as_str()) || ty.starts_with("runtime error")
}

/// True when `needle` occurs in `hay` as a whole token (not inside a longer word or number).
fn has_token(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0usize;
    while let Some(i) = hay.get(from..).and_then(|h| h.find(needle)) {
        let at = from + i;
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        if !before.is_some_and(word) && !after.is_some_and(word) {
            return true;
        }
        from = at + needle.len().max(1);
    }
    false
}

/// gRPC status names, by code, as clients spell them in messages.
const GRPC_NAMES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// The targets a call names: `host:port`, the port, the URL path, the peer service.
fn call_targets(graph: &SpanGraph<'_>, call: usize) -> Vec<String> {
    let a = &graph.span(call).attributes;
    let mut out = Vec::new();
    let host = a
        .get_str("server.address")
        .or_else(|| a.get_str("net.peer.name"))
        .or_else(|| a.get_str("net.peer.ip"));
    let port = a
        .get_i64("server.port")
        .or_else(|| a.get_i64("net.peer.port"))
        .or_else(|| a.get_str("server.port").and_then(|p| p.parse().ok()));
    let url = a.get_str("url.full").or_else(|| a.get_str("http.url"));
    let (url_authority, url_path) = url.map(split_url).unwrap_or_default();
    if let Some(auth) = url_authority.filter(|s| !s.is_empty()) {
        out.push(auth.to_ascii_lowercase());
        if let Some((_, p)) = auth.rsplit_once(':') {
            if p.len() >= 4 {
                out.push(p.to_string());
            }
        }
    }
    if let (Some(h), Some(p)) = (host, port) {
        out.push(format!("{}:{p}", h.to_ascii_lowercase()));
    }
    if let Some(p) = port.filter(|p| *p >= 1024) {
        out.push(p.to_string());
    }
    if let Some(h) =
        host.filter(|h| h.chars().any(|c| c.is_ascii_alphabetic()) && *h != "localhost")
    {
        out.push(h.to_ascii_lowercase());
    }
    if let Some(path) = url_path.filter(|p| p.len() > 1) {
        out.push(path.to_ascii_lowercase());
    }
    if let Some(peer) = a.get_str("peer.service") {
        out.push(peer.to_ascii_lowercase());
    }
    if !is_call(graph.span(call)) {
        out.push(graph.span(call).service_name().to_ascii_lowercase());
    }
    for callee in callees(graph, call) {
        let name = graph.span(callee).service_name();
        if !name.is_empty() && name != "unknown_service" {
            out.push(name.to_ascii_lowercase());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `scheme://authority/path?query` -> (authority, path without the query).
fn split_url(url: &str) -> (Option<&str>, Option<&str>) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    (Some(authority), Some(path))
}

/// The last exception a call recorded, if any.
fn call_exception(span: &Span) -> Option<(&str, &str)> {
    span.events
        .iter()
        .rev()
        .find(|e| e.name == "exception")
        .map(|e| {
            let (t, m, _) = exception_parts(e);
            (t, m)
        })
}

/// How (and whether) the exception `t` points at the failed call `call`, by what it says.
fn textual_link(graph: &SpanGraph<'_>, t: &Thrown<'_>, stack: &str, call: usize) -> Option<Link> {
    let span = graph.span(call);
    if let Some((ty, msg)) = call_exception(span) {
        if ty == t.ty && msg == t.message {
            return Some(Link::SameException);
        }
        if msg.len() >= 8 && (stack.contains(msg) || t.message.contains(msg)) {
            return Some(Link::CauseChain);
        }
    }
    let status = span.status_message.trim();
    if status.len() >= 8 && (stack.contains(status) || t.message.contains(status)) {
        return Some(Link::CauseChain);
    }
    let msg = t.message.to_ascii_lowercase();
    let text = format!("{msg}\n{}", t.ty.to_ascii_lowercase());
    if let Some(code) = http_status(span).filter(|c| *c >= 400) {
        if has_token(&text, &code.to_string()) {
            return Some(Link::Message);
        }
    }
    if let Some(code) = grpc_status(span).filter(|c| *c > 0) {
        if let Some(name) = usize::try_from(code).ok().and_then(|c| GRPC_NAMES.get(c)) {
            let spelled = [
                format!("statuscode.{name}"),
                format!("code = {}", name.replace('_', "")),
                format!("{code} {name}"),
            ];
            let squashed = text.replace('_', "");
            if spelled
                .iter()
                .any(|s| text.contains(s) || squashed.contains(&s.replace('_', "")))
            {
                return Some(Link::Message);
            }
        }
    }
    if call_targets(graph, call)
        .iter()
        .any(|target| has_token(&text, target))
    {
        return Some(Link::Message);
    }
    let call_kind = call_exception(span)
        .and_then(|(ty, m)| dependency_failure(ty, m))
        .or_else(|| dependency_failure("", &span.status_message))
        .or_else(|| grpc_dependency_failure(span));
    let thrown_kind = dependency_failure(t.ty, t.message);
    if thrown_kind.is_some() && (call_kind.is_none() || call_kind == thrown_kind) {
        return Some(Link::FailureKind);
    }
    None
}

/// A successful call of the segment that ran after `call` ended and before `until`: the
/// request went on, so `call`'s failure was recovered from.
fn recovered_by(graph: &SpanGraph<'_>, seg: &Segment, call: usize, until: u64) -> Option<usize> {
    let after = i128::from(graph.end(call)) - CLOCK_TOLERANCE_NANOS;
    let until = i128::from(until) + CLOCK_TOLERANCE_NANOS;
    seg.calls.iter().copied().find(|&c| {
        c != call
            && !is_failing(graph.span(c))
            && i128::from(graph.start(c)) >= after
            && i128::from(graph.end(c)) <= until
    })
}

/// The failed call that explains the thrown exception `t`, and how.
fn explaining_call(
    graph: &SpanGraph<'_>,
    seg: &Segment,
    t: &Thrown<'_>,
    recovered: &mut Vec<Recovered>,
) -> Option<(usize, Link)> {
    let stack = graph
        .span(t.site)
        .events
        .iter()
        .filter(|e| e.name == "exception")
        .map(exception_parts)
        .find(|(ty, m, _)| *ty == t.ty && *m == t.message)
        .map(|(_, _, s)| s)
        .unwrap_or("");
    let latest = i128::from(t.first) + CLOCK_TOLERANCE_NANOS;
    let failed: Vec<usize> = seg
        .calls
        .iter()
        .copied()
        .filter(|&c| is_failing(graph.span(c)) && i128::from(graph.start(c)) <= latest)
        .collect();
    // The strongest textual link wins; among equals, the call that started last (the
    // final attempt of a retried call).
    let best = failed
        .iter()
        .filter_map(|&c| textual_link(graph, t, stack, c).map(|l| (c, l)))
        .min_by_key(|&(c, l)| (l, std::cmp::Reverse((graph.start(c), c))));
    if best.is_some() {
        return best;
    }
    let last = *failed.last()?;
    if let Some(then) = recovered_by(graph, seg, last, t.first) {
        recovered.push(Recovered { call: last, then });
        return None;
    }
    if is_programming_error(t.ty) {
        return None;
    }
    Some((last, Link::Timing))
}

/// A segment's own verdict: an origin inside it, a call to go through, or nothing.
enum Step {
    /// The origin is this node of the segment.
    Here(usize),
    /// The segment's failure is explained by this call.
    Through(Hop),
    /// The segment shows no failure of its own.
    Nothing,
}

/// True when `a` is a proper ancestor of `b`.
fn is_ancestor(graph: &SpanGraph<'_>, a: usize, b: usize) -> bool {
    let mut cur = graph.parent(b);
    let mut steps = 0usize;
    while let Some(p) = cur {
        if p == a {
            return true;
        }
        steps += 1;
        if steps > graph.len() {
            break;
        }
        cur = graph.parent(p);
    }
    false
}

/// True when `x` was thrown after `y`. In order of trust:
/// 1. **Nesting**: an exception recorded on an ancestor of the other's site was raised
///    on the way out, after it (a filter or wrapper replacing the handler's error).
/// 2. **Time**, where the events lie further apart than the clock tolerance.
/// 3. **How far it travelled**, for ties in time between unrelated branches (the Node
///    SDK's millisecond span starts make cross-span event times uncertain by 1 ms): the
///    error the handler raised bubbles up through every layer and is recorded by each,
///    then reaches the error-handling middleware, a sibling branch; an exception that
///    middleware raises itself is recorded once. The one recorded by fewer spans is
///    the later.
fn thrown_after(graph: &SpanGraph<'_>, x: &Thrown<'_>, y: &Thrown<'_>) -> bool {
    let encloses = |a: &Thrown<'_>, b: &Thrown<'_>| {
        a.sites
            .iter()
            .any(|&s| b.sites.iter().any(|&t| is_ancestor(graph, s, t)))
    };
    match (encloses(x, y), encloses(y, x)) {
        (true, false) => return true,
        (false, true) => return false,
        _ => {}
    }
    let (fx, fy) = (i128::from(x.first), i128::from(y.first));
    if (fx - fy).abs() > CLOCK_TOLERANCE_NANOS {
        return fx > fy;
    }
    if x.sites.len() != y.sites.len() {
        return x.sites.len() < y.sites.len();
    }
    (x.first, x.site) > (y.first, y.site)
}

/// Orders the segment's exceptions, the one thrown last at the end (see [`thrown_after`]).
fn order_thrown(graph: &SpanGraph<'_>, thrown: &mut [Thrown<'_>]) {
    thrown.sort_by_key(|t| (t.first, t.site));
    // Insertion sort with the pairwise rule: a handful of exceptions per segment.
    for i in 1..thrown.len() {
        let mut j = i;
        while j > 0 && thrown_after(graph, &thrown[j - 1], &thrown[j]) {
            thrown.swap(j - 1, j);
            j -= 1;
        }
    }
}

fn step(graph: &SpanGraph<'_>, root: usize, search: &mut OriginSearch) -> Step {
    let seg = segment(graph, root);
    let mut thrown = thrown(graph, &seg);
    order_thrown(graph, &mut thrown);
    if let Some(last) = thrown.last() {
        if let Some((call, link)) = explaining_call(graph, &seg, last, &mut search.recovered) {
            return Step::Through(Hop {
                thrown_at: Some(last.site),
                call,
                link,
            });
        }
        // An exception thrown while an earlier, different one was being handled replaces
        // it; say what was being handled.
        if thrown.len() > 1 {
            let earlier = &thrown[thrown.len() - 2];
            if earlier.site != last.site || earlier.first < last.first {
                search.handling = Some(earlier.site);
            }
        }
        return Step::Here(last.site);
    }
    let until = graph.end(root);
    let last_failed = seg
        .calls
        .iter()
        .rev()
        .copied()
        .find(|&c| is_failing(graph.span(c)));
    if let Some(call) = last_failed {
        match recovered_by(graph, &seg, call, until) {
            Some(then) => search.recovered.push(Recovered { call, then }),
            None => {
                return Step::Through(Hop {
                    thrown_at: None,
                    call,
                    link: Link::LastFailedCall,
                })
            }
        }
    }
    // Own spans with status ERROR; those that only carry the response's 5xx report it.
    let mut errored = None;
    for &n in &seg.own {
        let span = graph.span(n);
        if n == root {
            continue;
        }
        let only_reports_status = http_status(span).is_some_and(|c| c >= 500)
            && !span.events.iter().any(|e| e.name == "exception")
            && span.status_message.trim().is_empty();
        if span.status_code == StatusCode::Error && only_reports_status {
            // ASGI `http send`: ERROR because the status it sent is a 5xx, nothing more.
            search.reporters_passed += 1;
        } else if span.status_code == StatusCode::Error {
            errored = Some(match errored {
                Some(e) if graph.end(e) >= graph.end(n) => e,
                _ => n,
            });
        } else if http_status(span).is_some_and(|c| c >= 500) {
            search.reporters_passed += 1;
        }
    }
    match errored {
        Some(n) => Step::Here(n),
        None => Step::Nothing,
    }
}

/// The callee of a failed call that failed too, if any: the last one to start.
fn failing_callee(graph: &SpanGraph<'_>, call: usize) -> Option<usize> {
    callees(graph, call)
        .into_iter()
        .rev()
        .find(|&c| is_failing(graph.span(c)))
}

/// Follows the error from `entry` to its cause.
pub fn find_origin(graph: &SpanGraph<'_>, entry: usize) -> OriginSearch {
    let mut search = OriginSearch::default();
    let mut root = entry;
    let mut origin = None;
    for _ in 0..graph.len().max(1) {
        match step(graph, root, &mut search) {
            Step::Here(n) => {
                origin = Some(n);
                break;
            }
            Step::Nothing => {
                if root != entry {
                    // A downstream server that failed without saying why: the trail
                    // ends there, with no cause to name.
                    search.silent_downstream = Some(root);
                }
                break;
            }
            Step::Through(hop) => {
                let call = hop.call;
                search.hops.push(hop);
                let next = if is_call(graph.span(call)) {
                    failing_callee(graph, call)
                } else {
                    Some(call)
                };
                match next {
                    Some(callee) => root = callee,
                    None => {
                        origin = Some(call);
                        break;
                    }
                }
            }
        }
    }
    search.origin = origin;
    search.path = match origin {
        Some(o) => graph.path_between(entry, o),
        None => vec![entry],
    };
    search.exception = origin.and_then(|o| cause_exception(graph, &search, o));
    search.call_site = origin.and_then(|o| call_site(graph, &search, o));
    search
}

fn has_in_app_stack(event: &Event) -> bool {
    let (_, _, stack) = exception_parts(event);
    parse_stack(stack).is_some_and(|p| p.frames.iter().any(|f| f.in_app))
}

/// The exception to fingerprint: the origin's own; where its stack has no in-app frame,
/// the same exception recorded with one by another span of the origin's service (an
/// instrumented client's copy holds only library frames, the handler's shows the code
/// path); where the origin recorded none (a call with only an ERROR status), the
/// exception of the same service that the call explains.
fn cause_exception(graph: &SpanGraph<'_>, search: &OriginSearch, origin: usize) -> Option<usize> {
    let own = graph
        .span(origin)
        .events
        .iter()
        .rev()
        .find(|e| e.name == "exception");
    let service = graph.span(origin).service_name();
    let same_service: Vec<usize> = search
        .path
        .iter()
        .copied()
        .filter(|&n| graph.span(n).service_name() == service)
        .collect();
    let roots: Vec<usize> = same_service.first().copied().into_iter().collect();
    let candidates: Vec<usize> = roots
        .iter()
        .flat_map(|&r| segment(graph, r).own)
        .chain(same_service.iter().copied())
        .collect();
    // The same failure as the code that made the call saw it (the handler's copy, or the
    // driver error it raised), when the origin is that call and its own copy shows no
    // code path.
    let caller_copy = search
        .hops
        .last()
        .filter(|h| h.call == origin)
        .and_then(|h| h.thrown_at)
        .filter(|&n| graph.span(n).service_name() == service);
    let caller_in_app = caller_copy.filter(|&n| {
        graph
            .span(n)
            .events
            .iter()
            .any(|x| x.name == "exception" && has_in_app_stack(x))
    });
    let same_as_own = |n: usize| {
        own.is_some_and(|e| {
            let (ty, msg, _) = exception_parts(e);
            graph.span(n).events.iter().any(|x| {
                x.name == "exception" && {
                    let (t, m, _) = exception_parts(x);
                    t == ty && m == msg
                }
            })
        })
    };
    match own {
        Some(e) if has_in_app_stack(e) => Some(origin),
        // The caller recorded the very same exception with its code path: that copy.
        // A different exception there is a wrapper: the cause stays the origin's own
        // (the wrapper's frames locate the call site, see [`call_site`]).
        Some(_) if caller_in_app.is_some_and(same_as_own) => caller_in_app,
        Some(e) => {
            let (ty, msg, _) = exception_parts(e);
            candidates
                .iter()
                .copied()
                .find(|&n| {
                    graph.span(n).events.iter().any(|x| {
                        x.name == "exception" && {
                            let (t, m, _) = exception_parts(x);
                            t == ty && m == msg && has_in_app_stack(x)
                        }
                    })
                })
                .or(Some(origin))
        }
        None => caller_copy,
    }
}

/// The call site of a cause that shows no code path: the caller's wrapper exception with
/// in-app frames, when the fingerprinted exception is the origin's own copy without any.
fn call_site(graph: &SpanGraph<'_>, search: &OriginSearch, origin: usize) -> Option<usize> {
    let chosen = search.exception?;
    let event = chosen_exception(graph, chosen)?;
    if has_in_app_stack(event) {
        return None;
    }
    let service = graph.span(origin).service_name();
    search
        .hops
        .last()
        .filter(|h| h.call == origin)
        .and_then(|h| h.thrown_at)
        .filter(|&n| n != chosen && graph.span(n).service_name() == service)
        .filter(|&n| chosen_exception(graph, n).is_some_and(has_in_app_stack))
}

/// The exception event of `node` that the search chose: the last one, or the one that
/// matches the origin's type when the node recorded several.
pub fn chosen_exception<'a>(graph: &SpanGraph<'a>, node: usize) -> Option<&'a Event> {
    graph
        .span(node)
        .events
        .iter()
        .rev()
        .find(|e| e.name == "exception")
}

/// True when a failing span's failure is a dependency failure in its own right: a
/// failing call span, a typed exception (timeout, refused, pool) or gRPC 4/14.
pub fn fails_as_dependency(graph: &SpanGraph<'_>, node: usize) -> bool {
    let span = graph.span(node);
    if is_call(span) || grpc_dependency_failure(span).is_some() {
        return true;
    }
    chosen_exception(graph, node).is_some_and(|e| {
        let (ty, msg, _) = exception_parts(e);
        dependency_failure(ty, msg).is_some()
    })
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
    fn error_middleware_sibling_wrapping_a_failed_call_is_passed_through_to_the_callee() {
        // edge: handler span made the call; the error responder, a sibling that ran
        // after it, recorded the wrapper exception. The callee threw its own TypeError.
        let t = trace(vec![
            sp(1, None, "edge", SERVER, "GET /api/p/:id", 0, 100)
                .http(500)
                .error(),
            sp(
                2,
                Some(1),
                "edge",
                INTERNAL,
                "request handler - /api/p/:id",
                1,
                3,
            ),
            sp(3, Some(2), "edge", CLIENT, "GET", 2, 80)
                .http(500)
                .attr("url.full", "http://127.0.0.1:4100/profiles/7")
                .error(),
            sp(4, Some(3), "catalog", SERVER, "GET /profiles/:id", 5, 75)
                .http(500)
                .error(),
            sp(
                5,
                Some(4),
                "catalog",
                INTERNAL,
                "request handler - /profiles/:id",
                6,
                70,
            )
            .exception(
                "TypeError",
                "Cannot read properties of null (reading 'name')",
                "",
            ),
            sp(
                6,
                Some(1),
                "edge",
                INTERNAL,
                "middleware - errorResponder",
                81,
                82,
            )
            .exception(
                "UpstreamError",
                "catalog responded 500 Internal Server Error",
                "",
            ),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, Some(4), "the callee's handler span");
        assert_eq!(o.hops.len(), 1);
        assert_eq!(o.hops[0].call, 2);
        assert_eq!(o.hops[0].link, Link::Message);
        assert_eq!(o.exception, Some(4));
    }

    #[test]
    fn a_recovered_cache_failure_does_not_explain_a_later_defect() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "GET /x", 0, 100).http(500),
            sp(2, Some(1), "a", CLIENT, "GET", 2, 5)
                .attr("db.system", "redis")
                .exception("Error", "connect ECONNREFUSED 127.0.0.1:6390", ""),
            sp(3, Some(1), "a", CLIENT, "SELECT", 6, 20).attr("db.system", "postgresql"),
            sp(4, Some(1), "a", INTERNAL, "handler", 1, 30).exception(
                "TypeError",
                "Cannot read properties of undefined (reading 'x')",
                "",
            ),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, Some(3));
        assert_eq!(o.recovered.len(), 1);
        assert!(o.hops.is_empty());
    }

    #[test]
    fn an_error_responder_that_throws_is_the_origin_and_says_what_it_handled() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "POST /x", 0, 100).http(500),
            sp(2, Some(1), "a", INTERNAL, "handler", 1, 10).exception(
                "ValidationError",
                "amount must be positive",
                "",
            ),
            sp(3, Some(1), "a", INTERNAL, "errorResponder", 11, 20).exception(
                "TypeError",
                "Converting circular structure to JSON",
                "",
            ),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, Some(2));
        assert_eq!(o.handling, Some(1));
    }

    #[test]
    fn response_phase_spans_that_only_carry_the_status_are_never_the_origin() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "POST /charges", 0, 100)
                .http(500)
                .error(),
            sp(2, Some(1), "a", INTERNAL, "POST /charges http send", 90, 91).http(500),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, None);
        assert_eq!(o.reporters_passed, 1);
    }

    #[test]
    fn retried_call_links_to_the_last_attempt_and_goes_down_into_it() {
        let mut spans = vec![sp(1, None, "a", SERVER, "GET /x", 0, 100).http(500)];
        for (i, start) in [(0u64, 2u64), (1, 30), (2, 60)] {
            let call = 10 + i * 10;
            spans.push(
                sp(call, Some(1), "a", CLIENT, "GET", start, start + 20)
                    .http(503)
                    .attr("url.full", "http://127.0.0.1:4200/stock/1")
                    .error(),
            );
            spans.push(
                sp(
                    call + 1,
                    Some(call),
                    "b",
                    SERVER,
                    "GET /stock/:id",
                    start + 1,
                    start + 19,
                )
                .http(503),
            );
            spans.push(
                sp(
                    call + 2,
                    Some(call + 1),
                    "b",
                    CLIENT,
                    "GET",
                    start + 2,
                    start + 5,
                )
                .attr("db.system", "redis")
                .exception("Error", "connect ECONNREFUSED 127.0.0.1:6390", "")
                .error(),
            );
        }
        spans.push(sp(2, Some(1), "a", INTERNAL, "handler", 1, 85).exception(
            "HTTPError",
            "503 Server Error: Service Unavailable for url: http://127.0.0.1:4200/stock/1",
            "",
        ));
        let t = trace(spans);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        let os = g.span(o.origin.expect("origin"));
        assert_eq!(os.service_name(), "b");
        assert_eq!(os.kind, SpanKind::Client);
        assert!(
            os.start_unix_nano >= (BASE_MS + 62) * 1_000_000,
            "last attempt"
        );
    }

    #[test]
    fn a_client_timeout_with_a_healthy_callee_is_the_origin() {
        let t = trace(vec![
            sp(1, None, "a", SERVER, "POST /r", 0, 330)
                .http(500)
                .exception("requests.exceptions.ReadTimeout", "HTTPConnectionPool(host='127.0.0.1', port=4300): Read timed out. (read timeout=0.3)", ""),
            sp(2, Some(1), "a", CLIENT, "POST", 5, 310)
                .exception("requests.exceptions.ReadTimeout", "HTTPConnectionPool(host='127.0.0.1', port=4300): Read timed out. (read timeout=0.3)", "")
                .error(),
            sp(3, Some(2), "b", SERVER, "POST /reserve", 6, 1000).http(200),
        ]);
        let g = SpanGraph::build(&t);
        let o = find_origin(&g, 0);
        assert_eq!(o.origin, Some(1));
        assert_eq!(o.hops[0].link, Link::SameException);
    }

    #[test]
    fn token_matching_respects_word_boundaries() {
        assert!(has_token("catalog responded 500 internal", "500"));
        assert!(!has_token("took 1500 ms", "500"));
        assert!(has_token("for url: http://x/a", "http"));
        assert!(!has_token("abc", ""));
    }
}
