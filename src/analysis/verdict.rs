//! The verdict as the API serialises it (docs/contract.md §4), and its assembly from the other
//! analysis stages.
//!
//! Serialised field names are the contract; fields that only later stages need (entry
//! start, the exception to fingerprint, the chain of nested entries, retry counts) are
//! kept with `#[serde(skip)]`. Depends on the sibling analysis modules and
//! [`crate::model`] only.

use serde::{Deserialize, Serialize};

use crate::model::{Span, SpanKind};

use super::classify::{
    call_reason, dependency_failure, exception_event, exception_parts, grpc_dependency_failure,
    is_failing, rejected_query, score, Classification, ScoreInputs,
};
use super::cohort::{cohort, Cohort};
use super::critical_path::{
    choose_blame, critical_path, BlameChoice, CriticalPath, CLOCK_TOLERANCE_NANOS,
};
use super::entry::{entry_status, grpc_status, http_status, route, FailingRequest};
use super::fingerprint::stack::parse as parse_stack;
use super::fingerprint::{fingerprint_at, ExceptionInfo, Site};
use super::graph::{label, SpanGraph};
use super::origin::{find_origin, Link, OriginSearch};
use super::AnalysisConfig;

/// The entry that answered the failing request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Span id, 16 lowercase hex.
    pub span_id: String,
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// `http.route`, else derived from the span name.
    pub route: String,
    /// The HTTP status (or gRPC code for gRPC entries) that made it an entry.
    pub status_code: i64,
    /// Entry start, Unix nanoseconds (for stores and time filters).
    #[serde(skip)]
    pub start_unix_nano: u64,
}

/// The span that burned the budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlameInfo {
    /// Span id.
    pub span_id: String,
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Span kind (`server`, `client`, ...).
    pub kind: String,
    /// Exclusive critical-path time of the operation (all retry attempts) / budget, 0..1.
    pub share: f64,
    /// The blamed span's own exclusive critical-path time, ms.
    pub self_ms: f64,
    /// Whether the blamed span is a dependency span.
    pub is_dependency: bool,
    /// Attempts of the blamed operation under one parent (1 when not retried).
    #[serde(skip)]
    pub attempts: usize,
}

/// Where the failure started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginInfo {
    /// Span id.
    pub span_id: String,
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Span kind (`server`, `client`, ...).
    pub kind: String,
    /// Readable error: `Type: message`, `HTTP 503`, a status message, ...
    pub error: String,
}

/// The exception a fingerprinter runs on, copied out of the trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExceptionRecord {
    /// Span that recorded it.
    pub span_id: String,
    /// That span's name.
    pub span_name: String,
    /// `exception.type`.
    pub exception_type: String,
    /// `exception.message`.
    pub message: String,
    /// `exception.stacktrace`.
    pub stacktrace: String,
    /// The stack of the wrapper the calling code raised, when this exception's own stack
    /// shows no code path (see [`super::fingerprint::Site`]); empty otherwise.
    pub call_site_stack: String,
    /// The handler that served the request in the recording span's service
    /// (`GET /products/:sku`), empty when unknown.
    pub handler: String,
}

/// One nested entry of the chain, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Span id.
    pub span_id: String,
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Route.
    pub route: String,
    /// Status that made it an entry.
    pub status_code: i64,
}

/// The verdict on one failing request (docs/contract.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// 32 lowercase hex.
    pub trace_id: String,
    /// The class of failure.
    pub classification: Classification,
    /// Confidence in the classification, 0..1 (see [`super::classify::score`]).
    pub confidence: f64,
    /// The entry's window, ms.
    pub budget_ms: f64,
    /// The outermost entry.
    pub entry: EntryInfo,
    /// The blame span; `None` when the entry has no usable window.
    pub blame: Option<BlameInfo>,
    /// The origin; `None` when nothing carries error evidence.
    pub origin: Option<OriginInfo>,
    /// Fingerprint text, `None` without an exception.
    pub fingerprint: Option<String>,
    /// Fingerprint id.
    pub fingerprint_id: Option<String>,
    /// Cohort.
    pub cohort: Cohort,
    /// Human-readable sentences.
    pub evidence: Vec<String>,
    /// RFC 3339, UTC.
    pub analyzed_at: String,
    /// The analysis time, Unix nanoseconds.
    #[serde(skip)]
    pub analyzed_at_unix_nano: u64,
    /// The exception that was (or can be) fingerprinted.
    #[serde(skip)]
    pub exception: Option<ExceptionRecord>,
    /// Nested entries below the outermost, outermost first.
    #[serde(skip)]
    pub chain: Vec<ChainLink>,
}

impl Verdict {
    /// Raises the confidence for a fingerprint seen `occurrences` times (this one
    /// included) on the same route, and says so in the evidence. For the cross-trace
    /// store, which this core does not own.
    pub fn with_recurrence(mut self, occurrences: u64) -> Self {
        let raised =
            super::classify::with_recurrence(self.classification, self.confidence, occurrences);
        if raised > self.confidence {
            self.confidence = round(raised, 2);
            self.evidence.push(format!(
                "The same fingerprint has failed {occurrences} times on route {}, which strengthens the verdict.",
                self.entry.route
            ));
        }
        self
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Longest error text a verdict keeps (`origin.error`), in bytes.
pub const ERROR_TEXT_MAX_BYTES: usize = 4096;

/// `s` bounded to `max` bytes on character boundaries. A cut keeps the head and the tail
/// (the end of a message often holds the cause: Python's `… [Errno 111] Connection
/// refused`) with a marker saying how much was left out between them.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(40) / 2;
    let mut head = keep.min(s.len());
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len().saturating_sub(keep);
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} …[{} bytes cut]… {}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

fn status_text(span: &Span, code: i64) -> String {
    if http_status(span) == Some(code) {
        format!("HTTP {code}")
    } else {
        let name = match code {
            2 => " (UNKNOWN)",
            4 => " (DEADLINE_EXCEEDED)",
            13 => " (INTERNAL)",
            14 => " (UNAVAILABLE)",
            _ => "",
        };
        format!("gRPC status {code}{name}")
    }
}

/// A dependency call named with its target: the downstream service whose server span
/// answered it when that service exports spans, else the peer address the client recorded.
fn call_label(graph: &SpanGraph<'_>, call: usize) -> String {
    let span = graph.span(call);
    let downstream = graph
        .children(call)
        .iter()
        .map(|&c| graph.span(c))
        .find(|c| c.service_name() != span.service_name());
    if let Some(d) = downstream {
        return format!("{} to {}", label(span), label(d));
    }
    const PEER_KEYS: [&str; 5] = [
        "server.address",
        "net.peer.name",
        "url.full",
        "http.url",
        "db.system",
    ];
    match span.attributes.get_any(&PEER_KEYS) {
        Some(peer) => format!("{} to {}", label(span), peer.to_display()),
        None => label(span),
    }
}

/// The readable error of a failing span.
fn error_text(span: &Span) -> String {
    if let Some(e) = exception_event(span) {
        let (ty, msg, _) = exception_parts(e);
        let mut text = match (ty.is_empty(), msg.is_empty()) {
            (false, false) => format!("{ty}: {msg}"),
            (false, true) => ty.to_string(),
            _ => msg.to_string(),
        };
        // Some instrumentations record a generic message on the event and the driver's
        // own words only in the span status (node-postgres: "PostgreSQL error of type
        // 'error' occurred (code: 57014)" vs "canceling statement due to statement
        // timeout"): keep both.
        let status = span.status_message.trim();
        if !status.is_empty() && !msg.contains(status) {
            text.push_str(&format!(" (status: {status})"));
        }
        return bounded(&text, ERROR_TEXT_MAX_BYTES);
    }
    if let Some(code) = http_status(span).filter(|c| *c >= 500) {
        return format!("HTTP {code}");
    }
    if let Some(code) = grpc_status(span).filter(|c| *c != 0) {
        return status_text(span, code);
    }
    if !span.status_message.is_empty() {
        return bounded(&span.status_message, ERROR_TEXT_MAX_BYTES);
    }
    "status ERROR".to_string()
}

/// Formats Unix nanoseconds as RFC 3339 UTC with millisecond precision
/// (`2023-11-14T22:13:20.000Z`), without a date crate.
pub fn rfc3339(unix_nano: u64) -> String {
    let secs = unix_nano / 1_000_000_000;
    let millis = (unix_nano % 1_000_000_000) / 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (H. Hinnant), for days since 1970-01-01; all values non-negative.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// True for exceptions that say a payload could not be parsed or decoded.
fn looks_like_parse_error(exception_type: &str, message: &str) -> bool {
    let ty = exception_type.to_ascii_lowercase();
    let msg = message.to_ascii_lowercase();
    [
        "decode",
        "parse",
        "json",
        "syntaxerror",
        "unmarshal",
        "deserializ",
        "xml",
        "protobuf",
    ]
    .iter()
    .any(|m| ty.contains(m))
        || [
            "unexpected token",
            "unexpected end of json",
            "expecting value",
            "invalid character",
            "cannot deserialize",
        ]
        .iter()
        .any(|m| msg.contains(m))
}

/// The last successful call of the origin's service that ended before the exception:
/// the dependency whose answer the handler may have failed to parse.
fn preceding_answer(
    graph: &SpanGraph<'_>,
    origin: usize,
    path: &[usize],
    exception_at: u64,
) -> Option<usize> {
    let service = graph.span(origin).service_name();
    let mut candidates = graph.subtree(origin);
    for &p in path {
        candidates.extend_from_slice(graph.children(p));
    }
    let limit = i128::from(exception_at) + CLOCK_TOLERANCE_NANOS;
    let on_path: std::collections::HashSet<usize> = path.iter().copied().collect();
    candidates
        .into_iter()
        .filter(|&c| c != origin && !on_path.contains(&c))
        .filter(|&c| {
            let s = graph.span(c);
            s.service_name() == service
                && call_reason(s).is_some()
                && !is_failing(s)
                && i128::from(graph.end(c)) <= limit
        })
        .max_by_key(|&c| (graph.end(c), c))
}

/// Builds the verdict of one failing request, in the order a reader follows it: the
/// entry and its chain, the critical path and blame, the origin, the label, the
/// fingerprint and the cohort.
pub fn assemble(
    trace_id: &str,
    graph: &SpanGraph<'_>,
    req: &FailingRequest,
    cfg: &AnalysisConfig,
    analyzed_at_unix_nano: u64,
) -> Verdict {
    let entry = req.entry;
    let es = graph.span(entry);
    let status = entry_status(es, cfg).unwrap_or(0);
    let budget = graph.duration(entry);
    let mut evidence = vec![format!(
        "{} answered {} after {:.1} ms.",
        label(es),
        status_text(es, status),
        ms(budget)
    )];
    let chain = entry_chain(graph, req, cfg, &mut evidence);
    evidence.extend(graph.notes().iter().cloned());

    let cp = critical_path(graph, entry);
    evidence.extend(cp.notes.iter().cloned());
    let blame_choice = choose_blame(graph, &cp, entry);
    let blame = blame_info(graph, blame_choice.as_ref(), budget, &mut evidence);

    let search = find_origin(graph, entry);
    let exception = search
        .exception
        .and_then(|n| exception_record(graph, n, search.call_site));
    let mut inputs = ScoreInputs {
        clock_shifted: !cp.notes.is_empty(),
        ..ScoreInputs::default()
    };
    let origin = match search.origin {
        None => {
            evidence.extend(hop_sentences(graph, &search));
            evidence.push(inconclusive_sentence(graph, entry, status, &search));
            None
        }
        Some(o) => Some(origin_step(
            graph,
            &OriginContext {
                entry,
                status,
                origin: o,
                search: &search,
                exception: exception.as_ref(),
                cp: &cp,
                blame: blame_choice.as_ref(),
            },
            &mut inputs,
            &mut evidence,
        )),
    };
    let (classification, confidence) = score(&inputs);

    let fp = exception.as_ref().and_then(|e| {
        let info = ExceptionInfo {
            exception_type: &e.exception_type,
            message: &e.message,
            stacktrace: &e.stacktrace,
        };
        let site = Site {
            call_site_stack: &e.call_site_stack,
            handler: &e.handler,
        };
        fingerprint_at(&info, &e.span_name, &site)
    });
    let request = graph.subtree(entry);
    let cohort = cohort(
        graph,
        entry,
        search.origin,
        &request,
        &cfg.tenant_attributes,
    );

    Verdict {
        trace_id: trace_id.to_string(),
        classification,
        confidence: round(confidence, 2),
        budget_ms: round(ms(budget), 3),
        entry: EntryInfo {
            span_id: es.span_id.to_string(),
            service: es.service_name().to_string(),
            name: es.name.clone(),
            route: route(es),
            status_code: status,
            start_unix_nano: es.start_unix_nano,
        },
        blame,
        origin,
        fingerprint: fp.as_ref().map(|f| f.text.clone()),
        fingerprint_id: fp.map(|f| f.id),
        cohort,
        evidence,
        analyzed_at: rfc3339(analyzed_at_unix_nano),
        analyzed_at_unix_nano,
        exception,
        chain,
    }
}

/// The nested failing entries below the outermost, and the sentence that lists them.
fn entry_chain(
    graph: &SpanGraph<'_>,
    req: &FailingRequest,
    cfg: &AnalysisConfig,
    evidence: &mut Vec<String>,
) -> Vec<ChainLink> {
    let es = graph.span(req.entry);
    let status = entry_status(es, cfg).unwrap_or(0);
    let chain: Vec<ChainLink> = req
        .nested
        .iter()
        .map(|&n| {
            let s = graph.span(n);
            ChainLink {
                span_id: s.span_id.to_string(),
                service: s.service_name().to_string(),
                name: s.name.clone(),
                route: route(s),
                status_code: entry_status(s, cfg).unwrap_or(0),
            }
        })
        .collect();
    if !chain.is_empty() {
        let links: Vec<String> = std::iter::once(format!("{} ({status})", label(es)))
            .chain(
                chain
                    .iter()
                    .map(|c| format!("{} `{}` ({})", c.service, c.name, c.status_code)),
            )
            .collect();
        evidence.push(format!(
            "The failure crossed {} nested failing entries: {}; the verdict is filed under the outermost.",
            chain.len(),
            links.join(" → ")
        ));
    }
    chain
}

/// The blame as the API shows it, and its sentence.
fn blame_info(
    graph: &SpanGraph<'_>,
    choice: Option<&BlameChoice>,
    budget: u64,
    evidence: &mut Vec<String>,
) -> Option<BlameInfo> {
    let Some(b) = choice else {
        evidence.push("The entry span has no duration (it ends at or before its start): no critical path, no blame.".into());
        return None;
    };
    let s = graph.span(b.node);
    let share = if budget == 0 {
        0.0
    } else {
        (b.group_nanos as f64 / budget as f64).clamp(0.0, 1.0)
    };
    let mut sentence = format!(
        "Critical path: {} held {:.1} ms of the {:.1} ms budget",
        label(s),
        ms(b.self_nanos),
        ms(budget)
    );
    if b.attempts > 1 {
        sentence.push_str(&format!(
            "; {} attempts of the same call under one parent held {:.1} ms together ({:.0}%).",
            b.attempts,
            ms(b.group_nanos),
            share * 100.0
        ));
    } else {
        sentence.push_str(&format!(" ({:.0}%).", share * 100.0));
    }
    evidence.push(sentence);
    Some(BlameInfo {
        span_id: s.span_id.to_string(),
        service: s.service_name().to_string(),
        name: s.name.clone(),
        kind: s.kind.as_str().to_string(),
        share: round(share, 4),
        self_ms: round(ms(b.self_nanos), 3),
        is_dependency: b.is_dependency,
        attempts: b.attempts,
    })
}

/// The exception event of `node`, copied out for the fingerprinter and the stores.
fn exception_record(
    graph: &SpanGraph<'_>,
    node: usize,
    call_site: Option<usize>,
) -> Option<ExceptionRecord> {
    let s = graph.span(node);
    let call_site_stack = call_site
        .and_then(|n| exception_event(graph.span(n)))
        .map(|e| exception_parts(e).2.to_string())
        .unwrap_or_default();
    exception_event(s).map(|e| {
        let (ty, msg, stack) = exception_parts(e);
        ExceptionRecord {
            span_id: s.span_id.to_string(),
            span_name: s.name.clone(),
            exception_type: ty.to_string(),
            message: msg.to_string(),
            stacktrace: stack.to_string(),
            call_site_stack,
            handler: handler_of(graph, node),
        }
    })
}

/// The handler serving the request where `node` ran: its service's nearest SERVER (or
/// CONSUMER) span at or above it, as `METHOD route` (`GET /products/:sku`), else that
/// span's name; empty when there is none.
fn handler_of(graph: &SpanGraph<'_>, node: usize) -> String {
    let service = graph.span(node).service_name();
    let mut cur = Some(node);
    let mut steps = 0usize;
    while let Some(n) = cur {
        let s = graph.span(n);
        if s.service_name() != service || steps > graph.len() {
            break;
        }
        if matches!(s.kind, SpanKind::Server | SpanKind::Consumer) {
            let a = &s.attributes;
            let method = a
                .get_str("http.request.method")
                .or_else(|| a.get_str("http.method"));
            return match (method, a.get_str("http.route")) {
                (Some(m), Some(r)) => format!("{m} {r}"),
                _ => s.name.clone(),
            };
        }
        cur = graph.parent(n);
        steps += 1;
    }
    String::new()
}

/// Why there is no origin: which evidence is missing.
fn inconclusive_sentence(
    graph: &SpanGraph<'_>,
    entry: usize,
    status: i64,
    search: &OriginSearch,
) -> String {
    let es = graph.span(entry);
    if let Some(n) = search.silent_downstream {
        let ns = graph.span(n);
        return format!(
            "Inconclusive: the failure leads down to {}, which answered {} without recording an exception, an ERROR status on its own spans or a failed call of its own: the trace does not say what failed there. Missing evidence: {}'s exception (does its error handler record it on the span?).",
            label(ns),
            status_text(ns, http_status(ns).or(grpc_status(ns)).unwrap_or(0)),
            ns.service_name()
        );
    }
    if graph.children(entry).is_empty() {
        return format!(
            "Inconclusive: the entry has no child spans and recorded no exception event; only its {} says it failed. Missing evidence: an exception event on the handler or spans for the calls it made.",
            status_text(es, status)
        );
    }
    let mut s = format!(
        "Inconclusive: none of the {} span(s) below the entry carries error evidence of its own (no exception event, no ERROR status, no failed call that the request did not recover from) and the entry recorded no exception.",
        graph.subtree(entry).len().saturating_sub(1)
    );
    if search.reporters_passed > 0 {
        s.push_str(&format!(
            " {} span(s) only carry the response's 5xx status: they report the error, they did not cause it.",
            search.reporters_passed
        ));
    }
    s.push_str(" Missing evidence: the handler's exception or a failing call.");
    s
}

/// What the origin step needs to know.
struct OriginContext<'a> {
    entry: usize,
    status: i64,
    origin: usize,
    search: &'a OriginSearch,
    exception: Option<&'a ExceptionRecord>,
    cp: &'a CriticalPath,
    blame: Option<&'a BlameChoice>,
}

/// The wrapper chain in words: each hop's exception and the call it wraps.
fn hop_sentences(graph: &SpanGraph<'_>, search: &OriginSearch) -> Vec<String> {
    search
        .hops
        .iter()
        .map(|h| {
            let call = graph.span(h.call);
            let service = call.service_name();
            let what = match h.thrown_at.and_then(|n| exception_event(graph.span(n))) {
                Some(e) => {
                    let (ty, msg, _) = exception_parts(e);
                    format!("{service}: {ty} (`{}`) wraps", truncate(msg, 120))
                }
                None => format!("{service}: the failure is"),
            };
            let answered = match (http_status(call), grpc_status(call)) {
                (Some(c), _) => format!(" (HTTP {c})"),
                (None, Some(c)) if c != 0 => format!(" (gRPC status {c})"),
                _ => String::new(),
            };
            format!(
                "Wrapper: {what} the failed call {}{answered}; linked because {}.",
                call_label(graph, h.call),
                h.link.describe()
            )
        })
        .collect()
}

/// Describes the origin, fills the score inputs and returns the origin as the API shows it.
fn origin_step(
    graph: &SpanGraph<'_>,
    ctx: &OriginContext<'_>,
    inputs: &mut ScoreInputs,
    evidence: &mut Vec<String>,
) -> OriginInfo {
    let (entry, o, search) = (ctx.entry, ctx.origin, ctx.search);
    let es = graph.span(entry);
    let os = graph.span(o);
    inputs.has_origin = true;
    evidence.extend(hop_sentences(graph, search));
    evidence.push(format!(
        "Origin: {} failed with {}.",
        label(os),
        error_text(os)
    ));
    if let Some(h) = search.handling {
        if let Some(e) = exception_event(graph.span(h)) {
            let (ty, msg, _) = exception_parts(e);
            evidence.push(format!(
                "{} threw while handling an earlier error ({ty}: {}) recorded by {}: the error handling itself is the defect.",
                label(os),
                truncate(msg, 120),
                label(graph.span(h))
            ));
        }
    }
    for r in &search.recovered {
        evidence.push(format!(
            "{} failed earlier, but {} succeeded after it: the request recovered from that failure, so it does not explain the error.",
            call_label(graph, r.call),
            call_label(graph, r.then)
        ));
    }
    let weakest = search.weakest_link();
    inputs.hop_by_inference = weakest.is_some_and(Link::is_inferred);
    inputs.hop_by_message = matches!(weakest, Some(Link::Message | Link::FailureKind));
    inputs.inferred_link = search
        .path
        .iter()
        .any(|&n| n != entry && graph.is_inferred(n));
    if inputs.inferred_link {
        evidence.push("The origin was reached through an inferred parent link.".into());
    }
    if os.service_name() != es.service_name() {
        evidence.push(format!(
            "The origin is in service {}, below the entry's service {}; the classification describes that deepest origin.",
            os.service_name(),
            es.service_name()
        ));
    }
    let exc_parts = exception_event(os).map(exception_parts).or_else(|| {
        ctx.exception.map(|e| {
            (
                e.exception_type.as_str(),
                e.message.as_str(),
                e.stacktrace.as_str(),
            )
        })
    });
    let typed = exc_parts
        .and_then(|(t, m, _)| dependency_failure(t, m))
        .or_else(|| dependency_failure("", &os.status_message))
        .or_else(|| grpc_dependency_failure(os));
    let is_call = call_reason(os).is_some() && os.kind != SpanKind::Server;
    let answered_5xx = http_status(os).filter(|c| *c >= 500);
    let rejected = exc_parts
        .and_then(|(t, m, _)| rejected_query(os, t, m))
        .or_else(|| rejected_query(os, "", &os.status_message));
    let call = if rejected.is_some() || !is_call {
        None
    } else {
        call_reason(os)
    };
    inputs.dependency_failed = typed.is_some() || call.is_some();
    inputs.typed_failure = typed.is_some() || answered_5xx.is_some();
    inputs.on_critical_path = ctx.cp.contains(o);
    inputs.has_exception = exc_parts.is_some();
    inputs.has_stack = exc_parts.is_some_and(|(_, _, st)| !st.trim().is_empty());
    inputs.in_app_stack = ctx.exception.is_some_and(|e| {
        parse_stack(&e.stacktrace).is_some_and(|p| p.frames.iter().any(|f| f.in_app))
    });
    let what = match (typed, answered_5xx) {
        (Some(t), _) => t.describe().to_string(),
        (None, Some(c)) => format!("an HTTP {c} answer"),
        (None, None) => "an error".to_string(),
    };
    if let Some(why) = &rejected {
        evidence.push(format!(
            "{} is a database call that the database answered by rejecting the query ({why}): the query or data the handler built is wrong, which is a defect in {}'s own code or data path, not a database failure.",
            label(os),
            os.service_name()
        ));
    } else if let Some(reason) = call {
        evidence.push(format!(
            "{} is {reason} and it failed with {what}{}; {} answered a generic {} instead of translating it to 502/503/504.",
            label(os),
            if inputs.on_critical_path { " on the critical path" } else { "" },
            es.service_name(),
            status_text(es, ctx.status)
        ));
    } else if let Some(t) = typed {
        evidence.push(format!(
            "The exception {} is {} raised inside {}'s own code: a dependency failure even though no span for the dependency call was recorded.",
            exc_parts.map(|p| p.0).unwrap_or(""),
            t.describe(),
            os.service_name()
        ));
    } else {
        own_code_evidence(graph, ctx, evidence);
    }
    if ctx.exception.is_none() {
        evidence.push(
            "No exception event was recorded at the origin, so there is no fingerprint.".into(),
        );
    }
    OriginInfo {
        span_id: os.span_id.to_string(),
        service: os.service_name().to_string(),
        name: os.name.clone(),
        kind: os.kind.as_str().to_string(),
        error: error_text(os),
    }
}

/// Evidence for an origin in the service's own code: the answer that preceded a parse
/// error, a slow dependency that succeeded.
fn own_code_evidence(graph: &SpanGraph<'_>, ctx: &OriginContext<'_>, evidence: &mut Vec<String>) {
    let o = ctx.origin;
    evidence.push(format!(
        "The error was raised in the own code of service {} and no dependency call on the failing path failed.",
        graph.span(o).service_name()
    ));
    let exception_at = ctx
        .search
        .exception
        .and_then(|n| exception_event(graph.span(n)))
        .map(|e| e.time_unix_nano)
        .filter(|t| *t > 0)
        .unwrap_or_else(|| graph.end(o));
    if let Some(d) = preceding_answer(graph, o, &ctx.search.path, exception_at) {
        let ds = graph.span(d);
        let answered = http_status(ds)
            .map(|c| format!("HTTP {c}"))
            .unwrap_or_else(|| "successfully".into());
        let parse_error = ctx
            .exception
            .is_some_and(|e| looks_like_parse_error(&e.exception_type, &e.message));
        evidence.push(if parse_error {
            format!(
                "{} answered {answered} just before the exception, which is a parse error: the handler failed on that answer (a malformed or unexpected payload), the call itself did not fail.",
                call_label(graph, d)
            )
        } else {
            format!(
                "{} answered {answered} just before the exception; if the handler was reading that answer, an unexpected payload may be the trigger.",
                call_label(graph, d)
            )
        });
    }
    if let Some(b) = ctx
        .blame
        .filter(|b| b.is_dependency && !is_failing(graph.span(b.node)))
    {
        evidence.push(format!(
            "{} was slow ({:.1} ms on the critical path) but succeeded: it burned the budget, it did not cause the error.",
            label(graph.span(b.node)),
            ms(b.group_nanos)
        ));
    }
}
