//! Plain data shared by every stage: ids, spans, traces.
//!
//! This is what the analysis core reads. It names no wire crate (no prost, tonic, axum,
//! tokio or dashmap): ingest converts OTLP protobuf into these types at the boundary, and
//! tests build them by hand.

use std::fmt;
use std::sync::Arc;

/// A 16-byte W3C trace id. Shown as 32 lowercase hex characters everywhere.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id. Shown as 16 lowercase hex characters.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

impl TraceId {
    /// Parses 32 lowercase hex characters; `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex::<16>(s).map(TraceId)
    }
    /// True for the all-zero id, which OTLP defines as invalid.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl SpanId {
    /// Parses 16 lowercase hex characters; `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex::<8>(s).map(SpanId)
    }
    /// True for the all-zero id, which OTLP defines as invalid.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// OTLP `Span.SpanKind`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    /// Kind not set by the instrumentation.
    #[default]
    Unspecified,
    /// In-process work.
    Internal,
    /// Handles an incoming request.
    Server,
    /// Makes an outgoing request.
    Client,
    /// Sends a message (queue, topic).
    Producer,
    /// Receives a message.
    Consumer,
}

impl SpanKind {
    /// Maps the OTLP enum number; unknown numbers become `Unspecified`.
    pub fn from_otlp(n: i32) -> Self {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
    /// Lowercase name as used in the API (`server`, `client`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// OTLP `Status.StatusCode`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    /// Not set (the default).
    #[default]
    Unset,
    /// Explicitly OK.
    Ok,
    /// The operation failed.
    Error,
}

impl StatusCode {
    /// Maps the OTLP enum number; unknown numbers become `Unset`.
    pub fn from_otlp(n: i32) -> Self {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

/// An attribute value (OTLP `AnyValue`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An array of values.
    Array(Vec<Value>),
    /// A nested key/value list.
    Map(Vec<(String, Value)>),
    /// An empty `AnyValue`.
    Empty,
}

impl Value {
    /// The string content, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The value as an integer: ints as they are, strings that parse as integers too
    /// (some SDKs and collectors turn status codes into strings).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse().ok(),
            Value::Double(d) if d.fract() == 0.0 => Some(*d as i64),
            _ => None,
        }
    }
    /// A readable rendering for evidence and labels.
    pub fn to_display(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            Value::Array(a) => {
                let parts: Vec<String> = a.iter().map(Value::to_display).collect();
                format!("[{}]", parts.join(","))
            }
            Value::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.to_display()))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Empty => String::new(),
        }
    }
}

/// An ordered list of attributes, as the sender sent them.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(pub Vec<(String, Value)>);

impl Attributes {
    /// The first value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// The first string value under `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    /// The first integer value under `key` (see [`Value::as_i64`]).
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }
    /// The value of the first key of `keys` that is present.
    pub fn get_any(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().find_map(|k| self.get(k))
    }
    /// Iterates over `(key, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Attributes(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}

/// A span event (for example an `exception` event with `exception.type`,
/// `exception.message` and `exception.stacktrace`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    /// Event name, e.g. `exception`.
    pub name: String,
    /// Event time, Unix nanoseconds.
    pub time_unix_nano: u64,
    /// Event attributes.
    pub attributes: Attributes,
}

/// The resource (process) that emitted spans, shared by all spans of one `ResourceSpans`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resource {
    /// Resource attributes (`service.name`, `service.version`, `cloud.region`, ...).
    pub attributes: Attributes,
}

impl Resource {
    /// `service.name`, or `unknown_service` as the SDKs default it.
    pub fn service_name(&self) -> &str {
        self.attributes
            .get_str("service.name")
            .unwrap_or("unknown_service")
    }
}

/// One span, converted from OTLP. Times are Unix nanoseconds as the sender's clock had them.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// Trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's id.
    pub span_id: SpanId,
    /// Parent span id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// Span name (e.g. `GET /users/:id`, `SELECT orders`).
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nano: u64,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message (may be empty).
    pub status_message: String,
    /// Span attributes.
    pub attributes: Attributes,
    /// Span events, in the order sent.
    pub events: Vec<Event>,
    /// The emitting resource, shared between spans.
    pub resource: Arc<Resource>,
    /// Instrumentation scope name (e.g. `opentelemetry.instrumentation.flask`).
    pub scope_name: String,
}

impl Span {
    /// The emitting service's `service.name`.
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }
    /// Duration in nanoseconds (0 when the end is before the start).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

/// All spans of one trace that arrived before it was analysed, in arrival order.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// The trace id.
    pub trace_id: TraceId,
    /// The spans. Nothing about them is trusted: duplicates, cycles, missing parents and
    /// skewed clocks all occur.
    pub spans: Vec<Span>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_lowercase_hex() {
        let t = TraceId([0xab; 16]);
        assert_eq!(TraceId::from_hex(&t.to_string()), Some(t));
        assert_eq!(TraceId::from_hex("ABABABABABABABABABABABABABABABAB"), None);
        assert_eq!(
            SpanId::from_hex("00f067aa0ba902b7"),
            Some(SpanId([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]))
        );
        assert_eq!(SpanId::from_hex("00f067aa0ba902b"), None);
    }

    #[test]
    fn status_codes_stored_as_strings_still_read_as_integers() {
        let a: Attributes = [("http.status_code", Value::from("500"))]
            .into_iter()
            .collect();
        assert_eq!(a.get_i64("http.status_code"), Some(500));
    }
}
