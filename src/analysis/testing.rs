//! Test support: a small span builder and the JSON fixture loader.
//!
//! Compiled only for tests (it uses `serde_json`, a dev-dependency). The fixture format
//! is the one real SDK traces are captured in under `tests/fixtures/traces/*.json`:
//! `{"spans":[{"trace_id","span_id","parent_span_id","name","kind","start_unix_nano",
//! "end_unix_nano","status":{"code","message"},"attributes":{..},"events":[..],
//! "resource":{..},"scope"}]}`; nanosecond integers may also be strings.

use std::sync::Arc;

use serde_json::Value as Json;

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

/// Loads a trace from the JSON fixture format (see the module docs).
///
/// # Errors
/// A message naming the first field that is missing or malformed.
pub fn load_fixture(json: &str) -> Result<Trace, String> {
    let doc: Json = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let spans = doc
        .get("spans")
        .and_then(Json::as_array)
        .ok_or("missing \"spans\" array")?;
    let mut out = Vec::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        out.push(span_from_json(s).map_err(|e| format!("span {i}: {e}"))?);
    }
    let trace_id = out.first().map(|s| s.trace_id).unwrap_or_default();
    Ok(Trace {
        trace_id,
        spans: out,
    })
}

fn span_from_json(s: &Json) -> Result<Span, String> {
    let text = |k: &str| s.get(k).and_then(Json::as_str);
    let trace_id = text("trace_id")
        .and_then(|h| TraceId::from_hex(&h.to_ascii_lowercase()))
        .ok_or("bad trace_id")?;
    let span_id = text("span_id")
        .and_then(|h| SpanId::from_hex(&h.to_ascii_lowercase()))
        .ok_or("bad span_id")?;
    let parent_span_id = match s.get("parent_span_id") {
        None | Some(Json::Null) => None,
        Some(Json::String(h)) if h.is_empty() => None,
        Some(Json::String(h)) => {
            Some(SpanId::from_hex(&h.to_ascii_lowercase()).ok_or("bad parent_span_id")?)
        }
        Some(_) => return Err("bad parent_span_id".into()),
    };
    let kind = match s.get("kind") {
        Some(Json::Number(n)) => SpanKind::from_otlp(n.as_i64().unwrap_or(0) as i32),
        Some(Json::String(k)) => match k
            .trim_start_matches("SPAN_KIND_")
            .to_ascii_lowercase()
            .as_str()
        {
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        },
        _ => SpanKind::Unspecified,
    };
    let (status_code, status_message) = match s.get("status") {
        Some(st) => {
            let code = match st.get("code") {
                Some(Json::Number(n)) => StatusCode::from_otlp(n.as_i64().unwrap_or(0) as i32),
                Some(Json::String(c)) => match c.as_str() {
                    "STATUS_CODE_OK" | "OK" | "Ok" | "1" => StatusCode::Ok,
                    "STATUS_CODE_ERROR" | "ERROR" | "Error" | "2" => StatusCode::Error,
                    _ => StatusCode::Unset,
                },
                _ => StatusCode::Unset,
            };
            (
                code,
                st.get("message")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        }
        None => (StatusCode::Unset, String::new()),
    };
    let mut events = Vec::new();
    for e in s
        .get("events")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        events.push(Event {
            name: e
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
            time_unix_nano: nanos(e.get("time_unix_nano")).unwrap_or(0),
            attributes: attributes(e.get("attributes")),
        });
    }
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        name: text("name").unwrap_or("").to_string(),
        kind,
        start_unix_nano: nanos(s.get("start_unix_nano")).ok_or("bad start_unix_nano")?,
        end_unix_nano: nanos(s.get("end_unix_nano")).ok_or("bad end_unix_nano")?,
        status_code,
        status_message,
        attributes: attributes(s.get("attributes")),
        events,
        resource: Arc::new(Resource {
            attributes: attributes(s.get("resource")),
        }),
        scope_name: text("scope").unwrap_or("").to_string(),
    })
}

fn nanos(v: Option<&Json>) -> Option<u64> {
    match v? {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn attributes(v: Option<&Json>) -> Attributes {
    match v {
        Some(Json::Object(map)) => {
            Attributes(map.iter().map(|(k, v)| (k.clone(), value(v))).collect())
        }
        _ => Attributes::default(),
    }
}

fn value(v: &Json) -> Value {
    match v {
        Json::String(s) => Value::Str(s.clone()),
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        Json::Array(a) => Value::Array(a.iter().map(value).collect()),
        Json::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), value(v))).collect()),
        Json::Null => Value::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_loader_reads_strings_and_integers_for_nanos() {
        let json = r#"{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",
          "parent_span_id":null,"name":"GET /x","kind":2,"start_unix_nano":"100","end_unix_nano":200,
          "status":{"code":2,"message":"boom"},"attributes":{"http.response.status_code":500,"f":1.5,"b":true,"a":["x"]},
          "events":[{"name":"exception","time_unix_nano":150,"attributes":{"exception.type":"KeyError"}}],
          "resource":{"service.name":"svc"},"scope":"s"}]}"#;
        let t = load_fixture(json).expect("fixture loads");
        let s = &t.spans[0];
        assert_eq!(s.start_unix_nano, 100);
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.status_code, StatusCode::Error);
        assert_eq!(s.attributes.get_i64("http.response.status_code"), Some(500));
        assert_eq!(s.service_name(), "svc");
        assert_eq!(
            s.events[0].attributes.get_str("exception.type"),
            Some("KeyError")
        );
        assert!(load_fixture("{}").is_err());
        assert!(load_fixture(r#"{"spans":[{"trace_id":"zz"}]}"#).is_err());
    }
}
