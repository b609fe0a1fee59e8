//! What a span's marks mean: error evidence, dependency calls, dependency failure types,
//! and the classification with its confidence score (docs/contract.md §3).
//!
//! Pure functions over [`crate::model::Span`]; no graph walking happens here except what
//! the caller hands in. The confidence scoring is documented on [`score`].

use serde::{Deserialize, Serialize};

use crate::model::{Event, Span, SpanKind, StatusCode};

use super::entry::{grpc_status, http_status};

/// The three verdict classes of docs/contract.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Classification {
    /// The origin is the service's own code and no dependency on the failing path failed.
    #[serde(rename = "deterministic_handler_defect")]
    DeterministicHandlerDefect,
    /// The origin is a dependency that failed, timed out, refused or answered 5xx.
    #[serde(rename = "late_dependency_failure")]
    LateDependencyFailure,
    /// The trace holds no evidence either way.
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Classification {
    /// The wire name (`deterministic_handler_defect`, ...), also usable as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Classification::DeterministicHandlerDefect => "deterministic_handler_defect",
            Classification::LateDependencyFailure => "late_dependency_failure",
            Classification::Inconclusive => "inconclusive",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Classification::DeterministicHandlerDefect,
            Classification::LateDependencyFailure,
            Classification::Inconclusive,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }
}

/// gRPC codes that mark a span as failing: UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE.
const GRPC_FAILURE_CODES: [i64; 4] = [2, 4, 13, 14];

/// The last `exception` event of a span, if it recorded one.
pub fn exception_event(span: &Span) -> Option<&Event> {
    span.events.iter().rev().find(|e| e.name == "exception")
}

/// The exception's `(type, message, stacktrace)`, empty strings where absent.
pub fn exception_parts(event: &Event) -> (&str, &str, &str) {
    let a = &event.attributes;
    (
        a.get_str("exception.type").unwrap_or(""),
        a.get_str("exception.message").unwrap_or(""),
        a.get_str("exception.stacktrace").unwrap_or(""),
    )
}

/// True when the span carries error evidence: an exception event, an HTTP 5xx, a failing
/// gRPC code, the legacy `error=true`, or status ERROR. Status ERROR alone does not count
/// when the span also records an HTTP 4xx answer (HTTP client conventions mark 4xx as
/// errors, but the call was answered: a cache miss is not a failure).
pub fn is_failing(span: &Span) -> bool {
    if exception_event(span).is_some() {
        return true;
    }
    let http = http_status(span);
    if http.is_some_and(|c| c >= 500) {
        return true;
    }
    if grpc_status(span).is_some_and(|c| GRPC_FAILURE_CODES.contains(&c)) {
        return true;
    }
    if span
        .attributes
        .get("error")
        .is_some_and(|v| matches!(v, crate::model::Value::Bool(true)))
    {
        return true;
    }
    span.status_code == StatusCode::Error && !http.is_some_and(|c| (400..500).contains(&c))
}

/// True when the span says it succeeded: status OK, or an HTTP status below 400 or a gRPC
/// OK. Such spans are not passed through while following error evidence down.
pub fn is_explicit_success(span: &Span) -> bool {
    span.status_code == StatusCode::Ok
        || http_status(span).is_some_and(|c| c < 400)
        || grpc_status(span) == Some(0)
}

/// Why a span counts as a call to a dependency, or `None` for in-process work of the
/// entry's service. `entry_service` is the service that answered the failing request.
pub fn dependency_reason(span: &Span, entry_service: &str) -> Option<&'static str> {
    if let Some(r) = call_reason(span) {
        return Some(r);
    }
    (span.service_name() != entry_service).then_some("a downstream service")
}

/// Why a span is an outgoing call (CLIENT/PRODUCER kind or call attributes), regardless
/// of its service.
pub fn call_reason(span: &Span) -> Option<&'static str> {
    let a = &span.attributes;
    match span.kind {
        SpanKind::Client => return Some("a client call"),
        SpanKind::Producer => return Some("a message producer"),
        _ => {}
    }
    if a.get("db.system").is_some() || a.get("db.system.name").is_some() {
        return Some("a database call");
    }
    if a.get("rpc.system").is_some() && span.kind != SpanKind::Server {
        return Some("an RPC call");
    }
    if a.get("messaging.system").is_some() && span.kind != SpanKind::Consumer {
        return Some("a messaging call");
    }
    // A route names the handler of the *serving* side: framework spans inside a server
    // (NestJS's controller spans carry `http.route`, `http.url` and `http.method`) are
    // not calls, whatever else they copy from the request.
    let http_client = (a.get("http.request.method").is_some()
        && (a.get("server.address").is_some() || a.get("url.full").is_some()))
        || a.get("http.url").is_some()
        || a.get("net.peer.name").is_some();
    let serving = a.get("http.route").is_some();
    (http_client && !serving && span.kind != SpanKind::Server).then_some("an HTTP client call")
}

/// True for dependency spans (docs/contract.md §3).
pub fn is_dependency(span: &Span, entry_service: &str) -> bool {
    dependency_reason(span, entry_service).is_some()
}

/// The kind of dependency failure an exception shows, across languages and clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyFailure {
    /// A call or read timed out (or its deadline passed).
    Timeout,
    /// The connection was refused, reset or could not be made.
    Connection,
    /// A connection pool was exhausted or a lock could not be had in time.
    PoolOrLock,
}

impl DependencyFailure {
    /// Readable description for evidence.
    pub fn describe(&self) -> &'static str {
        match self {
            DependencyFailure::Timeout => "a timeout",
            DependencyFailure::Connection => "a connection failure",
            DependencyFailure::PoolOrLock => "a connection-pool or lock timeout",
        }
    }
}

const POOL_OR_LOCK_MARKERS: [&str; 13] = [
    "database is locked",
    "deadlock detected",
    "queuepool limit",
    "connection is not available",
    "locknotavailable",
    "lock wait timeout",
    "timeout exceeded when trying to connect",
    "could not obtain lock",
    "pool timeout",
    "pool exhausted",
    "too many connections",
    // psycopg_pool: "couldn't get a connection after 0.30 sec" (PoolTimeout).
    "couldn't get a connection",
    "pooltimeout",
];

const CONNECTION_MARKERS: [&str; 14] = [
    "econnrefused",
    "econnreset",
    "ehostunreach",
    "enotfound",
    "epipe",
    "connection refused",
    "connection reset",
    "connectionerror",
    "connecterror",
    "newconnectionerror",
    "maxretryerror",
    "connectexception",
    "und_err_socket",
    "no such host",
];

const TIMEOUT_MARKERS: [&str; 10] = [
    "timeout",
    "timed out",
    "etimedout",
    "deadline exceeded",
    "deadline_exceeded",
    "aborterror",
    "und_err_connect_timeout",
    "und_err_headers_timeout",
    "und_err_body_timeout",
    "socket.timeout",
];

/// Classifies an exception by type and message as a dependency failure, if it is one.
///
/// Types are matched as substrings (`requests.exceptions.ReadTimeout`,
/// `java.net.SocketTimeoutException`, `sqlalchemy.exc.TimeoutError`); messages only on
/// phrases that name a failure (`connection refused`, `context deadline exceeded`,
/// `QueuePool limit`), never on a bare word, so `KeyError: 'timeout'` stays a handler
/// defect.
pub fn dependency_failure(exception_type: &str, message: &str) -> Option<DependencyFailure> {
    let ty = exception_type.to_ascii_lowercase();
    let msg = message.to_ascii_lowercase();
    let both = |markers: &[&str]| markers.iter().any(|m| ty.contains(m) || msg.contains(m));
    if both(&POOL_OR_LOCK_MARKERS) {
        return Some(DependencyFailure::PoolOrLock);
    }
    if both(&CONNECTION_MARKERS)
        || ty.contains("und_err_")
        || ty.ends_with("connectionrefusederror")
    {
        return Some(DependencyFailure::Connection);
    }
    let type_timeout = TIMEOUT_MARKERS.iter().any(|m| ty.contains(m));
    let msg_timeout = [
        "timed out",
        "etimedout",
        "deadline exceeded",
        "read timeout",
        "connect timeout",
        "statement timeout",
    ]
    .iter()
    .any(|m| msg.contains(m));
    (type_timeout || msg_timeout).then_some(DependencyFailure::Timeout)
}

/// A gRPC status that shows a dependency failure: DEADLINE_EXCEEDED or UNAVAILABLE.
pub fn grpc_dependency_failure(span: &Span) -> Option<DependencyFailure> {
    match grpc_status(span) {
        Some(4) => Some(DependencyFailure::Timeout),
        Some(14) => Some(DependencyFailure::Connection),
        _ => None,
    }
}

/// Exception types of database drivers and ORMs for a query the database refused as
/// wrong (bad SQL, unknown table or column, bad data, a violated constraint).
const REJECTED_QUERY_TYPES: [&str; 13] = [
    "programmingerror",
    "integrityerror",
    "dataerror",
    "undefinedcolumn",
    "undefinedtable",
    "undefinedfunction",
    "uniqueviolation",
    "foreignkeyviolation",
    "notnullviolation",
    "checkviolation",
    "invalidtextrepresentation",
    "sqlsyntaxerrorexception",
    "sqlintegrityconstraintviolationexception",
];

/// Messages of the same, across PostgreSQL, MySQL and SQLite drivers, and Redis's
/// replies to a command that is wrong for the data (`WRONGTYPE Operation against a key
/// holding the wrong kind of value`, an unknown command or script).
const REJECTED_QUERY_MESSAGES: [&str; 16] = [
    "syntax error",
    "no such table",
    "no such column",
    "does not exist",
    "violates",
    "duplicate key",
    "unique constraint failed",
    "not null constraint failed",
    "unknown column",
    "doesn't exist",
    "er_parse_error",
    "er_dup_entry",
    "wrongtype",
    "unknown command",
    "wrong number of arguments",
    "noscript",
];

/// Why a failing database span is the database refusing a wrong query rather than the
/// database failing, or `None`. Like an HTTP 4xx, the call was answered: the request the
/// handler built is what is wrong (a code or data defect), and the same request shape
/// fails the same way. SQLSTATE classes 22 (data), 23 (integrity) and 42 (syntax or
/// access rule) in `db.response.status_code` count too. Timeouts, connection, pool and
/// lock failures never do.
pub fn rejected_query(span: &Span, exception_type: &str, message: &str) -> Option<String> {
    let a = &span.attributes;
    if a.get("db.system").is_none() && a.get("db.system.name").is_none() {
        return None;
    }
    if dependency_failure(exception_type, message).is_some() {
        return None;
    }
    if let Some(state) = a.get("db.response.status_code").map(|v| v.to_display()) {
        if ["22", "23", "42"].iter().any(|c| state.starts_with(c)) && state.len() == 5 {
            return Some(format!("SQLSTATE {state}"));
        }
    }
    let ty = exception_type.to_ascii_lowercase();
    let msg = message.to_ascii_lowercase();
    if REJECTED_QUERY_TYPES.iter().any(|t| ty.contains(t))
        || REJECTED_QUERY_MESSAGES.iter().any(|m| msg.contains(m))
    {
        let shown = if exception_type.is_empty() {
            "the error"
        } else {
            exception_type
        };
        return Some(shown.to_string());
    }
    None
}

/// The facts about the origin that the score is made from.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreInputs {
    /// A dependency failure was seen (typed exception, failing call span, downstream 5xx).
    pub dependency_failed: bool,
    /// The failure has a recognisable type (timeout, refused, pool, gRPC 4/14, HTTP 5xx).
    pub typed_failure: bool,
    /// The failing dependency is a recorded call span on the entry's critical path.
    pub on_critical_path: bool,
    /// The origin recorded an exception event.
    pub has_exception: bool,
    /// That exception carries a stack trace.
    pub has_stack: bool,
    /// An inferred (repaired) parent link lies between the entry and the origin.
    pub inferred_link: bool,
    /// The weakest hop of the wrapper chain rests on inference (timing only, or the last
    /// failed call of a segment that threw nothing).
    pub hop_by_inference: bool,
    /// The weakest hop was matched by the exception's message (status, target, peer) or
    /// failure kind, not by the same exception or its cause chain.
    pub hop_by_message: bool,
    /// The fingerprinted exception's stack has in-app frames.
    pub in_app_stack: bool,
    /// Span clocks had to be shifted into their caller's window.
    pub clock_shifted: bool,
    /// An origin was found at all.
    pub has_origin: bool,
}

/// Classifies and scores a failing request.
///
/// Scoring (confidence in 0..1):
/// - `inconclusive`: 0.0 — there is nothing to be confident about.
/// - `deterministic_handler_defect`: 0.8 with an exception carrying a stack trace,
///   0.6 with an exception but no stack, 0.5 with only an ERROR status.
/// - `late_dependency_failure`: 0.6 for a failing call with no recognisable type,
///   0.75 when typed (timeout, refused, pool/lock, gRPC 4/14, HTTP 5xx), +0.15 when the
///   failing call lies on the entry's critical path (so 0.9 for a timed-out call that
///   burned the budget). A downstream server that answered 5xx without saying why is no
///   origin: the verdict is `inconclusive`.
/// - -0.1 when an inferred parent link lies between the entry and the origin; -0.15 when
///   a hop of the wrapper chain rests on timing alone, -0.05 when matched by message;
///   -0.05 when clocks were shifted; -0.1 for a handler defect whose stack has no in-app
///   frame.
/// - Clamped to 0.05..=0.97; [`with_recurrence`] raises it when the same fingerprint
///   recurs on the same route.
pub fn score(inputs: &ScoreInputs) -> (Classification, f64) {
    if !inputs.has_origin {
        return (Classification::Inconclusive, 0.0);
    }
    let (class, mut confidence): (Classification, f64) = if inputs.dependency_failed {
        let base = if inputs.typed_failure { 0.75 } else { 0.6 };
        let path_bonus = if inputs.on_critical_path { 0.15 } else { 0.0 };
        (Classification::LateDependencyFailure, base + path_bonus)
    } else {
        let base = match (inputs.has_exception, inputs.has_stack) {
            (true, true) => 0.8,
            (true, false) => 0.6,
            _ => 0.5,
        };
        (Classification::DeterministicHandlerDefect, base)
    };
    if inputs.inferred_link {
        confidence -= 0.1;
    }
    if inputs.hop_by_inference {
        confidence -= 0.15;
    } else if inputs.hop_by_message {
        confidence -= 0.05;
    }
    if inputs.clock_shifted {
        confidence -= 0.05;
    }
    if class == Classification::DeterministicHandlerDefect
        && inputs.has_stack
        && !inputs.in_app_stack
    {
        confidence -= 0.1;
    }
    (class, round2(confidence.clamp(0.05, 0.97)))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Raises a confidence for a verdict whose fingerprint has been seen `occurrences` times
/// (this one included) on the same route: +0.05 per earlier occurrence for handler defects
/// (recurrence with the same stack is what makes a defect deterministic), +0.03 for
/// dependency failures, at most three occurrences counted, capped at 0.97. Inconclusive
/// verdicts are left as they are.
pub fn with_recurrence(class: Classification, confidence: f64, occurrences: u64) -> f64 {
    let earlier = occurrences.saturating_sub(1).min(3) as f64;
    let step = match class {
        Classification::DeterministicHandlerDefect => 0.05,
        Classification::LateDependencyFailure => 0.03,
        Classification::Inconclusive => return confidence,
    };
    round2((confidence + step * earlier).min(0.97)).max(confidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testing::*;

    #[test]
    fn timeout_and_connection_types_are_recognised_across_languages() {
        use DependencyFailure::*;
        let cases = [
            ("requests.exceptions.ReadTimeout", "", Timeout),
            ("requests.exceptions.ConnectTimeout", "", Timeout),
            ("requests.exceptions.ConnectionError", "", Connection),
            ("httpx.ReadTimeout", "", Timeout),
            ("httpx.ConnectError", "", Connection),
            ("urllib3.exceptions.ReadTimeoutError", "", Timeout),
            ("urllib3.exceptions.MaxRetryError", "", Connection),
            ("urllib3.exceptions.NewConnectionError", "", Connection),
            ("socket.timeout", "timed out", Timeout),
            ("TimeoutError", "", Timeout),
            ("Error", "connect ECONNREFUSED 127.0.0.1:5432", Connection),
            ("Error", "read ETIMEDOUT", Timeout),
            ("Error", "socket hang up ECONNRESET", Connection),
            ("AbortError", "This operation was aborted", Timeout),
            ("UND_ERR_CONNECT_TIMEOUT", "", Connection),
            ("java.net.SocketTimeoutException", "Read timed out", Timeout),
            (
                "java.net.ConnectException",
                "Connection refused",
                Connection,
            ),
            (
                "*url.Error",
                "Get \"http://x\": context deadline exceeded",
                Timeout,
            ),
            (
                "*net.OpError",
                "dial tcp: connect: connection refused",
                Connection,
            ),
            (
                "sqlalchemy.exc.TimeoutError",
                "QueuePool limit of size 5 overflow 10 reached",
                PoolOrLock,
            ),
            (
                "java.sql.SQLTransientConnectionException",
                "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                PoolOrLock,
            ),
            ("psycopg2.errors.LockNotAvailable", "", PoolOrLock),
            (
                "OperationalError",
                "(1205, 'Lock wait timeout exceeded')",
                PoolOrLock,
            ),
            (
                "Error",
                "timeout exceeded when trying to connect",
                PoolOrLock,
            ),
        ];
        for (ty, msg, want) in cases {
            assert_eq!(dependency_failure(ty, msg), Some(want), "{ty}: {msg}");
        }
    }

    #[test]
    fn handler_errors_are_not_dependency_failures() {
        for (ty, msg) in [
            ("KeyError", "'timeout'"),
            ("TypeError", "Cannot read properties of null (reading 'id')"),
            ("java.lang.NullPointerException", ""),
            (
                "json.decoder.JSONDecodeError",
                "Expecting value: line 1 column 1 (char 0)",
            ),
            ("ZeroDivisionError", "division by zero"),
        ] {
            assert_eq!(dependency_failure(ty, msg), None, "{ty}");
        }
    }

    #[test]
    fn client_4xx_with_error_status_is_not_failing_but_5xx_is() {
        assert!(!is_failing(
            &sp(1, None, "a", CLIENT, "GET", 0, 1).http(404).error()
        ));
        assert!(is_failing(&sp(1, None, "a", CLIENT, "GET", 0, 1).http(503)));
        assert!(is_failing(&sp(1, None, "a", INTERNAL, "x", 0, 1).error()));
        assert!(!is_failing(&sp(1, None, "a", INTERNAL, "x", 0, 1)));
        assert!(is_failing(
            &sp(1, None, "a", CLIENT, "x", 0, 1).attr("rpc.grpc.status_code", 14i64)
        ));
    }

    #[test]
    fn dependency_spans_by_kind_attributes_or_service() {
        let e = "orders";
        assert!(is_dependency(&sp(1, None, e, CLIENT, "GET", 0, 1), e));
        assert!(is_dependency(&sp(1, None, e, PRODUCER, "send", 0, 1), e));
        assert!(is_dependency(
            &sp(1, None, e, INTERNAL, "SELECT", 0, 1).attr("db.system", "postgresql"),
            e
        ));
        assert!(is_dependency(
            &sp(1, None, e, INTERNAL, "q", 0, 1).attr("db.system.name", "postgresql"),
            e
        ));
        assert!(is_dependency(
            &sp(1, None, e, INTERNAL, "GET", 0, 1).attr("http.url", "http://x"),
            e
        ));
        assert!(is_dependency(
            &sp(1, None, "inventory", SERVER, "GET /s", 0, 1),
            e
        ));
        assert!(!is_dependency(
            &sp(1, None, e, INTERNAL, "handler", 0, 1),
            e
        ));
    }

    #[test]
    fn scores_follow_the_documented_table() {
        let dep = ScoreInputs {
            has_origin: true,
            dependency_failed: true,
            typed_failure: true,
            on_critical_path: true,
            ..Default::default()
        };
        assert_eq!(score(&dep), (Classification::LateDependencyFailure, 0.9));
        let h = ScoreInputs {
            has_origin: true,
            has_exception: true,
            has_stack: true,
            in_app_stack: true,
            ..Default::default()
        };
        assert_eq!(score(&h), (Classification::DeterministicHandlerDefect, 0.8));
        let library_only = ScoreInputs {
            in_app_stack: false,
            ..h
        };
        assert_eq!(
            score(&library_only),
            (Classification::DeterministicHandlerDefect, 0.7),
            "a stack without in-app frames lowers the confidence"
        );
        let by_timing = ScoreInputs {
            hop_by_inference: true,
            ..dep
        };
        assert_eq!(score(&by_timing).1, 0.75, "a hop linked by timing only");
        assert_eq!(
            score(&ScoreInputs::default()).0,
            Classification::Inconclusive
        );
        let raised = with_recurrence(Classification::DeterministicHandlerDefect, 0.8, 3);
        assert!((raised - 0.9).abs() < 1e-9);
        assert_eq!(
            with_recurrence(Classification::DeterministicHandlerDefect, 0.8, 100),
            0.95
        );
        assert_eq!(with_recurrence(Classification::Inconclusive, 0.0, 10), 0.0);
    }
}
