//! The capture format of the labelled scenario zoo and of the recorded SDK traces
//! (`tests/fixtures/traces/*.json`, `tests/zoo/captures/*.json`), read into the model.
//!
//! `{"spans":[{"trace_id","span_id","parent_span_id","name","kind","start_unix_nano",
//! "end_unix_nano","status":{"code","message"},"attributes":{..},"events":[..],
//! "resource":{..},"scope"}], "labels":[..], "healthy_trace_ids":[..]}`; nanosecond
//! integers may also be strings, kinds and status codes OTLP enum numbers or names.
//! Other top-level keys are ignored here (the labels are read by [`crate::eval`]). Depends only on [`crate::model`], so
//! the analysis's tests and the scorer both read captures without importing each other.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::model::{
    Attributes, Event, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
};

/// Loads a trace from the JSON fixture format (see the module docs).
///
/// # Errors
/// A message naming the first field that is missing or malformed.
pub fn load_fixture(json: &str) -> Result<Trace, String> {
    let doc: Json = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let spans = load_spans(&doc)?;
    let trace_id = spans.first().map(|s| s.trace_id).unwrap_or_default();
    Ok(Trace { trace_id, spans })
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

/// Reads every span of a capture document, in arrival order (all traces mixed).
///
/// # Errors
/// A message naming the first field that is missing or malformed.
pub fn load_spans(doc: &Json) -> Result<Vec<Span>, String> {
    let spans = doc
        .get("spans")
        .and_then(Json::as_array)
        .ok_or("missing \"spans\" array")?;
    spans
        .iter()
        .enumerate()
        .map(|(i, s)| span_from_json(s).map_err(|e| format!("span {i}: {e}")))
        .collect()
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
