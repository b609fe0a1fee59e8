//! Test support: a small span builder and the JSON fixture loader.
//!
//! Compiled only for tests (it uses `serde_json`, a dev-dependency). The fixture format
//! is the one real SDK traces are captured in under `tests/fixtures/traces/*.json`:
//! `{"spans":[{"trace_id","span_id","parent_span_id","name","kind","start_unix_nano",
//! "end_unix_nano","status":{"code","message"},"attributes":{..},"events":[..],
//! "resource":{..},"scope"}]}`; nanosecond integers may also be strings.

use std::sync::Arc;

use crate::model::{
    Attributes, Event, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
};

/// `SpanKind::Server`, short for tests.
pub const SERVER: SpanKind = SpanKind::Server;
/// `SpanKind::Client`, short for tests.
pub const CLIENT: SpanKind = SpanKind::Client;
/// `SpanKind::Internal`, short for tests.
pub const INTERNAL: SpanKind = SpanKind::Internal;
/// `SpanKind::Producer`, short for tests.
pub const PRODUCER: SpanKind = SpanKind::Producer;

/// Base time of test traces (ms since the epoch), so times are realistic.
pub const BASE_MS: u64 = 1_700_000_000_000;

/// The trace id every built span carries.
pub fn test_trace_id() -> TraceId {
    TraceId([0x4b; 16])
}

/// A span id from a small number.
pub fn sid(n: u64) -> SpanId {
    SpanId(n.wrapping_add(0x1000).to_be_bytes())
}

/// Builds a span; times are milliseconds after [`BASE_MS`].
pub fn sp(
    id: u64,
    parent: Option<u64>,
    service: &str,
    kind: SpanKind,
    name: &str,
    start_ms: u64,
    end_ms: u64,
) -> Span {
    Span {
        trace_id: test_trace_id(),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        name: name.to_string(),
        kind,
        start_unix_nano: (BASE_MS + start_ms) * 1_000_000,
        end_unix_nano: (BASE_MS + end_ms) * 1_000_000,
        status_code: StatusCode::Unset,
        status_message: String::new(),
        attributes: Attributes::default(),
        events: Vec::new(),
        resource: Arc::new(Resource {
            attributes: [("service.name", service)].into_iter().collect(),
        }),
        scope_name: String::new(),
    }
}

/// Chainable edits on a built span.
pub trait SpanExt: Sized {
    /// Adds a span attribute.
    fn attr(self, key: &str, value: impl Into<Value>) -> Self;
    /// Adds a resource attribute.
    fn res(self, key: &str, value: &str) -> Self;
    /// Sets `http.response.status_code`.
    fn http(self, code: i64) -> Self;
    /// Sets status ERROR.
    fn error(self) -> Self;
    /// Adds an `exception` event.
    fn exception(self, ty: &str, message: &str, stack: &str) -> Self;
    /// Adds any event.
    fn event(self, name: &str, attrs: &[(&str, &str)]) -> Self;
    /// Moves start and end by nanoseconds (may be negative).
    fn shift_ns(self, start: i64, end: i64) -> Self;
}

impl SpanExt for Span {
    fn attr(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.attributes.0.push((key.to_string(), value.into()));
        self
    }
    fn res(mut self, key: &str, value: &str) -> Self {
        let mut r = (*self.resource).clone();
        r.attributes.0.push((key.to_string(), Value::from(value)));
        self.resource = Arc::new(r);
        self
    }
    fn http(self, code: i64) -> Self {
        self.attr("http.response.status_code", code)
    }
    fn error(mut self) -> Self {
        self.status_code = StatusCode::Error;
        self
    }
    fn exception(mut self, ty: &str, message: &str, stack: &str) -> Self {
        let mut attributes: Attributes = [("exception.type", ty), ("exception.message", message)]
            .into_iter()
            .collect();
        if !stack.is_empty() {
            attributes
                .0
                .push(("exception.stacktrace".into(), Value::from(stack)));
        }
        self.events.push(Event {
            name: "exception".into(),
            time_unix_nano: self.end_unix_nano,
            attributes,
        });
        self
    }
    fn event(mut self, name: &str, attrs: &[(&str, &str)]) -> Self {
        let attributes: Attributes = attrs.iter().map(|(k, v)| (*k, *v)).collect();
        self.events.push(Event {
            name: name.into(),
            time_unix_nano: self.start_unix_nano,
            attributes,
        });
        self
    }
    fn shift_ns(mut self, start: i64, end: i64) -> Self {
        self.start_unix_nano = self.start_unix_nano.saturating_add_signed(start);
        self.end_unix_nano = self.end_unix_nano.saturating_add_signed(end);
        self
    }
}

/// Wraps spans into a trace.
pub fn trace(spans: Vec<Span>) -> Trace {
    Trace {
        trace_id: test_trace_id(),
        spans,
    }
}

pub use crate::fixture::load_fixture;
