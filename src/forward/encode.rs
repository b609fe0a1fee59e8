//! Pure encoding of forwarded spans: buffered spans back into an OTLP
//! `ExportTraceServiceRequest`, and the `faultline.*` annotations appended to a span.
//!
//! Spans are kept as the bytes they were sent in (see `assembly`), so nothing here decodes
//! them. A request is written field by field (`opentelemetry/proto/collector/trace/v1`):
//! spans regrouped into `ScopeSpans` under their original scope and into `ResourceSpans`
//! under their original resource, each as the sender encoded it, so no attribute the
//! sender sent is lost or reordered.
//!
//! Annotating relies on the protobuf rule that repeated fields may appear anywhere in a
//! message and are concatenated by the parser ("Protocol Buffers encoding: repeated
//! elements ... may be interleaved"): appending `KeyValue`s as more field-9 entries to a
//! span's bytes adds attributes after the sender's own, without touching them.
//!
//! Two encoded requests concatenated are one valid request (the only field is the
//! repeated `resource_spans`), which is how the sender batches queue items.

use std::sync::Arc;

use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, WireType,
};

use crate::assembly::SpanOrigin;

/// `ExportTraceServiceRequest.resource_spans`.
const REQUEST_RESOURCE_SPANS: u32 = 1;
/// `ResourceSpans.resource`, `.scope_spans`, `.schema_url`.
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;
/// `ScopeSpans.scope`, `.spans`, `.schema_url`.
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SCOPE_SPANS_SCHEMA_URL: u32 = 3;
/// `Span.attributes`.
const SPAN_ATTRIBUTES: u32 = 9;
/// `KeyValue.key`, `.value`.
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
/// `AnyValue.string_value`, `.bool_value`, `.double_value`.
const ANY_VALUE_STRING: u32 = 1;
const ANY_VALUE_BOOL: u32 = 2;
const ANY_VALUE_DOUBLE: u32 = 4;

/// One span to forward: where it came from, its bytes, and bytes to append (annotations;
/// empty for most spans).
#[derive(Debug, Clone, Copy)]
pub struct OutgoingSpan<'a> {
    /// Resource and scope it was sent under.
    pub origin: &'a Arc<SpanOrigin>,
    /// The span's encoding as received.
    pub encoded: &'a [u8],
    /// Encoded `KeyValue` attribute fields appended to the span (see [`Annotation`]).
    pub extra: &'a [u8],
}

impl OutgoingSpan<'_> {
    fn len(&self) -> usize {
        self.encoded.len() + self.extra.len()
    }
}

fn field_len(tag: u32, len: usize) -> usize {
    encoded_len_varint(u64::from(tag << 3)) + encoded_len_varint(len as u64) + len
}

fn put_len_prefix(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_len_prefix(buf, tag, bytes.len());
        buf.extend_from_slice(bytes);
    }
}

fn opt_field_len(tag: u32, bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        0
    } else {
        field_len(tag, bytes.len())
    }
}

struct ScopeGroup<'a> {
    origin: &'a Arc<SpanOrigin>,
    spans: Vec<OutgoingSpan<'a>>,
}

impl ScopeGroup<'_> {
    fn encoded_len(&self) -> usize {
        opt_field_len(SCOPE_SPANS_SCOPE, &self.origin.scope)
            + self
                .spans
                .iter()
                .map(|s| field_len(SCOPE_SPANS_SPANS, s.len()))
                .sum::<usize>()
            + opt_field_len(
                SCOPE_SPANS_SCHEMA_URL,
                self.origin.scope_schema_url.as_bytes(),
            )
    }
}

struct ResourceGroup<'a> {
    origin: &'a Arc<SpanOrigin>,
    scopes: Vec<ScopeGroup<'a>>,
}

impl ResourceGroup<'_> {
    fn encoded_len(&self) -> usize {
        opt_field_len(RESOURCE_SPANS_RESOURCE, &self.origin.resource)
            + self
                .scopes
                .iter()
                .map(|s| field_len(RESOURCE_SPANS_SCOPE_SPANS, s.encoded_len()))
                .sum::<usize>()
            + opt_field_len(
                RESOURCE_SPANS_SCHEMA_URL,
                self.origin.resource_schema_url.as_bytes(),
            )
    }
}

fn same_resource(a: &SpanOrigin, b: &SpanOrigin) -> bool {
    a.resource == b.resource && a.resource_schema_url == b.resource_schema_url
}

fn same_scope(a: &SpanOrigin, b: &SpanOrigin) -> bool {
    a.scope == b.scope && a.scope_schema_url == b.scope_schema_url
}

/// Encodes `spans` as one `ExportTraceServiceRequest`, appended to `buf`. Spans keep
/// their relative order within each scope; scopes and resources appear in the order
/// they are first met. Spans sent under equal resources (or scopes) in different
/// requests share one `ResourceSpans` (or `ScopeSpans`).
pub fn encode_request<'a>(spans: impl IntoIterator<Item = OutgoingSpan<'a>>, buf: &mut Vec<u8>) {
    let mut groups: Vec<ResourceGroup<'a>> = Vec::new();
    // Most batches hold spans of one request (one origin): remember the last group hit.
    let mut last: Option<(*const SpanOrigin, usize, usize)> = None;
    for span in spans {
        let ptr = Arc::as_ptr(span.origin);
        if let Some((p, r, s)) = last {
            if p == ptr {
                groups[r].scopes[s].spans.push(span);
                continue;
            }
        }
        let r = match groups
            .iter()
            .position(|g| same_resource(g.origin, span.origin))
        {
            Some(r) => r,
            None => {
                groups.push(ResourceGroup {
                    origin: span.origin,
                    scopes: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let scopes = &mut groups[r].scopes;
        let s = match scopes
            .iter()
            .position(|g| same_scope(g.origin, span.origin))
        {
            Some(s) => s,
            None => {
                scopes.push(ScopeGroup {
                    origin: span.origin,
                    spans: Vec::new(),
                });
                scopes.len() - 1
            }
        };
        scopes[s].spans.push(span);
        last = Some((ptr, r, s));
    }
    let total: usize = groups
        .iter()
        .map(|g| field_len(REQUEST_RESOURCE_SPANS, g.encoded_len()))
        .sum();
    buf.reserve(total);
    for g in &groups {
        put_len_prefix(buf, REQUEST_RESOURCE_SPANS, g.encoded_len());
        put_bytes_field(buf, RESOURCE_SPANS_RESOURCE, &g.origin.resource);
        for scope in &g.scopes {
            put_len_prefix(buf, RESOURCE_SPANS_SCOPE_SPANS, scope.encoded_len());
            put_bytes_field(buf, SCOPE_SPANS_SCOPE, &scope.origin.scope);
            for span in &scope.spans {
                put_len_prefix(buf, SCOPE_SPANS_SPANS, span.len());
                buf.extend_from_slice(span.encoded);
                buf.extend_from_slice(span.extra);
            }
            put_bytes_field(
                buf,
                SCOPE_SPANS_SCHEMA_URL,
                scope.origin.scope_schema_url.as_bytes(),
            );
        }
        put_bytes_field(
            buf,
            RESOURCE_SPANS_SCHEMA_URL,
            g.origin.resource_schema_url.as_bytes(),
        );
    }
}

/// A value of an annotation attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AnnotationValue {
    /// `string_value`.
    Str(String),
    /// `bool_value`.
    Bool(bool),
    /// `double_value`.
    Double(f64),
}

/// Attributes to append to one span, already encoded as `Span.attributes` fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotation {
    bytes: Vec<u8>,
    /// Keys pushed so far: OpenTelemetry attribute keys are unique within a span.
    keys: Vec<&'static str>,
}

impl Annotation {
    /// Appends one attribute, unless `key` was pushed already (the first value stays: two
    /// verdicts of one trace can blame the same span).
    pub fn push(&mut self, key: &'static str, value: &AnnotationValue) {
        if self.keys.contains(&key) {
            return;
        }
        self.keys.push(key);
        let mut any = Vec::new();
        match value {
            AnnotationValue::Str(s) => {
                put_len_prefix_with(&mut any, ANY_VALUE_STRING, s.as_bytes())
            }
            AnnotationValue::Bool(b) => {
                encode_key(ANY_VALUE_BOOL, WireType::Varint, &mut any);
                encode_varint(u64::from(*b), &mut any);
            }
            AnnotationValue::Double(d) => {
                encode_key(ANY_VALUE_DOUBLE, WireType::SixtyFourBit, &mut any);
                any.extend_from_slice(&d.to_le_bytes());
            }
        }
        let kv_len = field_len(KEY_VALUE_KEY, key.len()) + field_len(KEY_VALUE_VALUE, any.len());
        put_len_prefix(&mut self.bytes, SPAN_ATTRIBUTES, kv_len);
        put_len_prefix_with(&mut self.bytes, KEY_VALUE_KEY, key.as_bytes());
        put_len_prefix_with(&mut self.bytes, KEY_VALUE_VALUE, &any);
    }

    /// The encoded fields to append to the span's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// `span` without its `Span.attributes` entries whose key starts with `prefix`, or `None`
/// when it has none, so the common case copies nothing.
///
/// Used in annotate mode so that a trace already annotated by a faultline upstream (two
/// faultlines in one pipeline) carries this one's verdict once, not two sets of
/// `faultline.*` keys: attribute keys must be unique within a span. Only the span's own
/// top-level fields and each attribute's key are read; everything kept is copied byte for
/// byte. Framing that does not parse (ingest checked it already) gives `None`, so the span
/// is forwarded as sent.
pub fn strip_attributes(span: &[u8], prefix: &str) -> Option<Vec<u8>> {
    // A key is stored as is, so a span without the prefix anywhere in its bytes has none:
    // one substring search instead of a parse for almost every span.
    memchr::memmem::find(span, prefix.as_bytes())?;
    let mut rest = span;
    let mut kept: Option<Vec<u8>> = None;
    while !rest.is_empty() {
        let start = span.len() - rest.len();
        let (tag, wire) = decode_key(&mut rest).ok()?;
        let body = skip_value(&mut rest, wire)?;
        let field = &span[start..span.len() - rest.len()];
        let dropped = tag == SPAN_ATTRIBUTES
            && wire == WireType::LengthDelimited
            && key_of(body).is_some_and(|k| k.starts_with(prefix.as_bytes()));
        match (&mut kept, dropped) {
            (None, true) => kept = Some(span[..start].to_vec()),
            (Some(out), false) => out.extend_from_slice(field),
            _ => {}
        }
    }
    kept
}

/// Moves `rest` past one field's value; the value's bytes when length-delimited.
fn skip_value<'a>(rest: &mut &'a [u8], wire: WireType) -> Option<&'a [u8]> {
    let len = match wire {
        WireType::Varint => {
            decode_varint(rest).ok()?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => usize::try_from(decode_varint(rest).ok()?).ok()?,
        // Groups are deprecated and never in OTLP.
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    if len > rest.len() {
        return None;
    }
    let (value, after) = rest.split_at(len);
    *rest = after;
    Some(value)
}

/// A `KeyValue`'s `key` (the last one on the wire, as a full decode reads it).
fn key_of(mut kv: &[u8]) -> Option<&[u8]> {
    let mut key = None;
    while !kv.is_empty() {
        let (tag, wire) = decode_key(&mut kv).ok()?;
        let value = skip_value(&mut kv, wire)?;
        if tag == KEY_VALUE_KEY && wire == WireType::LengthDelimited {
            key = Some(value);
        }
    }
    key
}

/// A length-delimited field, written even when empty (a `KeyValue` key may be "").
fn put_len_prefix_with(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_len_prefix(buf, tag, bytes.len());
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    use super::*;
    use crate::synth::str_kv;

    fn origin(service: &str, scope: &str) -> Arc<SpanOrigin> {
        Arc::new(SpanOrigin {
            resource: Resource {
                attributes: vec![str_kv("service.name", service)],
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            resource_schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            scope: InstrumentationScope {
                name: scope.into(),
                version: "1.0".into(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            scope_schema_url: "".into(),
        })
    }

    fn span(n: u8) -> Vec<u8> {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![n; 8],
            name: format!("span {n}"),
            attributes: vec![str_kv("a", "1"), str_kv("b", "2")],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn spans_are_regrouped_under_their_resource_and_scope() {
        let a = origin("orders", "flask");
        let a_again = origin("orders", "flask"); // same content, another request
        let b = origin("orders", "requests");
        let c = origin("inventory", "express");
        let spans: Vec<(Arc<SpanOrigin>, Vec<u8>)> = vec![
            (a.clone(), span(1)),
            (c.clone(), span(2)),
            (b.clone(), span(3)),
            (a_again.clone(), span(4)),
        ];
        let mut buf = Vec::new();
        encode_request(
            spans.iter().map(|(o, s)| OutgoingSpan {
                origin: o,
                encoded: s,
                extra: &[],
            }),
            &mut buf,
        );
        let req = ExportTraceServiceRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(req.resource_spans.len(), 2);
        let orders = &req.resource_spans[0];
        assert_eq!(
            orders.resource.as_ref().unwrap().attributes,
            vec![str_kv("service.name", "orders")]
        );
        assert_eq!(orders.schema_url, "https://opentelemetry.io/schemas/1.26.0");
        assert_eq!(orders.scope_spans.len(), 2);
        let flask = &orders.scope_spans[0];
        assert_eq!(flask.scope.as_ref().unwrap().name, "flask");
        assert_eq!(flask.scope.as_ref().unwrap().version, "1.0");
        let names: Vec<_> = flask.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["span 1", "span 4"]);
        assert_eq!(orders.scope_spans[1].spans[0].name, "span 3");
        assert_eq!(req.resource_spans[1].scope_spans[0].spans[0].name, "span 2");
        // Every span is exactly as sent.
        assert_eq!(flask.spans[0].encode_to_vec(), span(1));
    }

    #[test]
    fn an_annotation_adds_attributes_after_the_senders_own() {
        let o = origin("orders", "flask");
        let mut note = Annotation::default();
        note.push(
            "faultline.classification",
            &AnnotationValue::Str("late_dependency_failure".into()),
        );
        note.push("faultline.budget_share", &AnnotationValue::Double(0.75));
        note.push("faultline.blame", &AnnotationValue::Bool(true));
        let s = span(1);
        let mut buf = Vec::new();
        encode_request(
            [OutgoingSpan {
                origin: &o,
                encoded: &s,
                extra: note.as_bytes(),
            }],
            &mut buf,
        );
        let req = ExportTraceServiceRequest::decode(buf.as_slice()).unwrap();
        let got = &req.resource_spans[0].scope_spans[0].spans[0];
        let keys: Vec<_> = got.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "a",
                "b",
                "faultline.classification",
                "faultline.budget_share",
                "faultline.blame"
            ]
        );
        assert_eq!(
            got.attributes[3].value.as_ref().unwrap().value,
            Some(Value::DoubleValue(0.75))
        );
        assert_eq!(
            got.attributes[4].value.as_ref().unwrap().value,
            Some(Value::BoolValue(true))
        );
        assert_eq!(got.name, "span 1");
    }

    #[test]
    fn a_key_pushed_twice_is_written_once() {
        let mut note = Annotation::default();
        note.push("faultline.blame", &AnnotationValue::Bool(true));
        note.push("faultline.blame", &AnnotationValue::Bool(true));
        let mut once = Annotation::default();
        once.push("faultline.blame", &AnnotationValue::Bool(true));
        assert_eq!(note.as_bytes(), once.as_bytes());
    }

    #[test]
    fn stripping_removes_only_the_prefixed_attributes_and_keeps_the_rest_byte_for_byte() {
        let sent = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /orders".into(),
            attributes: vec![
                str_kv("http.route", "/orders"),
                str_kv("faultline.classification", "handler_defect"),
                str_kv("faultlines", "not ours"),
                str_kv("faultline.blame", "x"),
            ],
            end_time_unix_nano: 42,
            ..Default::default()
        };
        let stripped = strip_attributes(&sent.encode_to_vec(), "faultline.").unwrap();
        let got = Span::decode(stripped.as_slice()).unwrap();
        let want = Span {
            attributes: vec![
                str_kv("http.route", "/orders"),
                str_kv("faultlines", "not ours"),
            ],
            ..sent
        };
        assert_eq!(got, want);
        assert_eq!(stripped, want.encode_to_vec());
    }

    #[test]
    fn a_span_without_prefixed_attributes_is_not_copied() {
        assert_eq!(strip_attributes(&span(1), "faultline."), None);
        // Broken framing: forwarded as sent rather than guessed at.
        let mut torn = span(1);
        torn.truncate(torn.len() - 1);
        assert_eq!(strip_attributes(&torn, ""), None);
    }

    #[test]
    fn concatenated_requests_are_one_request() {
        let o = origin("orders", "flask");
        let (s1, s2) = (span(1), span(2));
        let mut buf = Vec::new();
        for s in [&s1, &s2] {
            encode_request(
                [OutgoingSpan {
                    origin: &o,
                    encoded: s,
                    extra: &[],
                }],
                &mut buf,
            );
        }
        let req = ExportTraceServiceRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(req.resource_spans.len(), 2);
    }

    #[test]
    fn no_spans_encode_to_an_empty_request() {
        let mut buf = Vec::new();
        encode_request(std::iter::empty(), &mut buf);
        assert!(buf.is_empty());
    }
}
