//! The verdict as the API serialises it (DESIGN §4), and its assembly from the other
//! analysis stages.
//!
//! Serialised field names are the contract; fields that only later stages need (entry
//! start, the exception to fingerprint, the chain of nested entries, retry counts) are
//! kept with `#[serde(skip)]`. Depends on the sibling analysis modules and
//! [`crate::model`] only.

use serde::Serialize;

use crate::model::Span;

use super::classify::{
    call_reason, dependency_failure, exception_event, exception_parts, grpc_dependency_failure,
    is_failing, rejected_query, score, Classification, ScoreInputs,
};
use super::cohort::{cohort, Cohort};
use super::critical_path::{choose_blame, critical_path, CLOCK_TOLERANCE_NANOS};
use super::entry::{entry_status, grpc_status, http_status, route, FailingRequest};
use super::fingerprint::{fingerprint, ExceptionInfo};
use super::graph::{label, SpanGraph};
use super::origin::{exception_node, find_origin};
use super::AnalysisConfig;

/// The entry that answered the failing request.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OriginInfo {
    /// Span id.
    pub span_id: String,
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
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

/// The verdict on one failing request (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        return match (ty.is_empty(), msg.is_empty()) {
            (false, false) => format!("{ty}: {}", truncate(msg, 200)),
            (false, true) => ty.to_string(),
            _ => truncate(msg, 200),
        };
    }
    if let Some(code) = http_status(span).filter(|c| *c >= 500) {
        return format!("HTTP {code}");
    }
    if let Some(code) = grpc_status(span).filter(|c| *c != 0) {
        return status_text(span, code);
    }
    if !span.status_message.is_empty() {
        return truncate(&span.status_message, 200);
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

/// Builds the verdict of one failing request.
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
    evidence.extend(graph.notes().iter().cloned());

    // Critical path and blame.
    let cp = critical_path(graph, entry);
    evidence.extend(cp.notes.iter().cloned());
    let blame_choice = choose_blame(graph, &cp, entry);
    let blame = blame_choice.as_ref().map(|b| {
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
        BlameInfo {
            span_id: s.span_id.to_string(),
            service: s.service_name().to_string(),
            name: s.name.clone(),
            kind: s.kind.as_str().to_string(),
            share: round(share, 4),
            self_ms: round(ms(b.self_nanos), 3),
            is_dependency: b.is_dependency,
            attempts: b.attempts,
        }
    });
    if blame.is_none() {
        evidence.push("The entry span has no duration (it ends at or before its start): no critical path, no blame.".into());
    }

    // Origin, exception, classification.
    let search = find_origin(graph, entry);
    let exc_node = exception_node(graph, &search.path);
    let exception = exc_node.and_then(|n| {
        let s = graph.span(n);
        exception_event(s).map(|e| {
            let (ty, msg, stack) = exception_parts(e);
            ExceptionRecord {
                span_id: s.span_id.to_string(),
                span_name: s.name.clone(),
                exception_type: ty.to_string(),
                message: msg.to_string(),
                stacktrace: stack.to_string(),
            }
        })
    });
    let mut inputs = ScoreInputs::default();
    let origin = match search.origin {
        None => {
            let below = graph.children(entry).len();
            evidence.push(if below == 0 {
                format!(
                    "Inconclusive: the entry has no child spans and recorded no exception event; only its {} says it failed. Missing evidence: an exception event on the handler or spans for the calls it made.",
                    status_text(es, status)
                )
            } else {
                format!(
                    "Inconclusive: none of the {} span(s) below the entry carries error evidence (no exception event, no ERROR status, no 5xx answer) and the entry recorded no exception. Missing evidence: the handler's exception or a failing call.",
                    graph.subtree(entry).len().saturating_sub(1)
                )
            });
            None
        }
        Some(o) => {
            let os = graph.span(o);
            inputs.has_origin = true;
            evidence.push(format!(
                "Origin: {} failed with {}.",
                label(os),
                error_text(os)
            ));
            if search.passed_through > 0 {
                evidence.push(format!(
                    "{} span(s) without error marks (framework middleware) between failing spans were passed through.",
                    search.passed_through
                ));
            }
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
            // The origin's own exception says how it failed; the fingerprinted one (which
            // may sit higher, with the handler's stack) stands in when it recorded none.
            let exc_parts = exception_event(os).map(exception_parts).or_else(|| {
                exception.as_ref().map(|e| {
                    (
                        e.exception_type.as_str(),
                        e.message.as_str(),
                        e.stacktrace.as_str(),
                    )
                })
            });
            let typed = exc_parts
                .and_then(|(t, m, _)| dependency_failure(t, m))
                .or_else(|| grpc_dependency_failure(os));
            let call = call_reason(os);
            let answered_5xx = http_status(os).filter(|c| *c >= 500);
            let unexplained_downstream = call.is_none()
                && typed.is_none()
                && o != entry
                && os.kind == crate::model::SpanKind::Server
                && exception_event(os).is_none();
            let rejected = exc_parts
                .and_then(|(t, m, _)| rejected_query(os, t, m))
                .or_else(|| rejected_query(os, "", &os.status_message));
            let call = if rejected.is_some() { None } else { call };
            inputs.dependency_failed = typed.is_some() || call.is_some() || unexplained_downstream;
            inputs.typed_failure = typed.is_some() || answered_5xx.is_some();
            inputs.unexplained_downstream = unexplained_downstream;
            inputs.on_critical_path = cp.contains(o);
            inputs.has_exception = exc_parts.is_some();
            inputs.has_stack = exc_parts.is_some_and(|(_, _, st)| !st.trim().is_empty());
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
                    status_text(es, status)
                ));
            } else if let Some(t) = typed {
                evidence.push(format!(
                    "The exception {} is {} raised inside {}'s own code: a dependency failure even though no span for the dependency call was recorded.",
                    exc_parts.map(|p| p.0).unwrap_or(""),
                    t.describe(),
                    os.service_name()
                ));
            } else if unexplained_downstream {
                evidence.push(format!(
                    "{} answered {} without recording an exception or a failing call: the failure lies in that dependency but its cause is not visible.",
                    label(os),
                    status_text(os, http_status(os).or(grpc_status(os)).unwrap_or(0))
                ));
            } else {
                evidence.push(format!(
                    "The error was raised in the own code of service {} and no dependency call on the failing path failed.",
                    os.service_name()
                ));
                let exception_at = exc_node
                    .and_then(|n| exception_event(graph.span(n)))
                    .map(|e| e.time_unix_nano)
                    .filter(|t| *t > 0)
                    .unwrap_or_else(|| graph.end(o));
                if let Some(d) = preceding_answer(graph, o, &search.path, exception_at) {
                    let ds = graph.span(d);
                    let answered = http_status(ds)
                        .map(|c| format!("HTTP {c}"))
                        .unwrap_or_else(|| "successfully".into());
                    let parse_error = exception
                        .as_ref()
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
                if let Some(b) = blame_choice
                    .as_ref()
                    .filter(|b| b.is_dependency && !is_failing(graph.span(b.node)))
                {
                    evidence.push(format!(
                        "{} was slow ({:.1} ms on the critical path) but succeeded: it burned the budget, it did not cause the error.",
                        label(graph.span(b.node)),
                        ms(b.group_nanos)
                    ));
                }
            }
            if exception.is_none() {
                evidence.push("No exception event was recorded on the failing path, so there is no fingerprint.".into());
            }
            Some(OriginInfo {
                span_id: os.span_id.to_string(),
                service: os.service_name().to_string(),
                name: os.name.clone(),
                error: error_text(os),
            })
        }
    };
    let (classification, confidence) = score(&inputs);

    let fp = exception.as_ref().and_then(|e| {
        let info = ExceptionInfo {
            exception_type: &e.exception_type,
            message: &e.message,
            stacktrace: &e.stacktrace,
        };
        fingerprint(&info, &e.span_name)
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
