//! The "lite" OTLP trace messages: wire-compatible views of `ExportTraceServiceRequest`
//! that decode only what ingest reads, slicing everything else out of the request buffer
//! without copying.
//!
//! Field tags follow opentelemetry-proto's `collector/trace/v1/trace_service.proto`,
//! `trace/v1/trace.proto`, `common/v1/common.proto` and `resource/v1/resource.proto`.
//! Nested messages that ingest only stores (resource, scope, each span) are declared as
//! `bytes`: decoded from a [`Bytes`] buffer, prost hands out slices of it
//! (`Buf::copy_to_bytes` on `Bytes` is a reference-count increment), so a request costs
//! a handful of allocations instead of one per string, attribute and event. Fields a lite
//! message does not declare are skipped by prost as unknown fields: their framing (tags,
//! lengths) is checked, their content is not.
//!
//! The trade-off, stated once: the content of what is only sliced (attributes, events,
//! links, names of spans that are not SERVER spans; see `convert`) is not validated at
//! ingest. A span whose stored bytes later fail to decode is skipped and counted by the
//! analysis stage (`faultline_corrupt_spans_total`) instead of failing its request here.
//! A message field sent twice is merged by a full decoder but replaced here (the last
//! occurrence wins); OTLP exporters never split a message that way.
//!
//! Nothing here knows tonic or axum; both transports decode with [`LiteExportRequest::decode`].

use bytes::Bytes;
use prost::Message;

/// `ExportTraceServiceRequest`, its `ResourceSpans` decoded, the rest sliced.
#[derive(Clone, PartialEq, Message)]
pub struct LiteExportRequest {
    /// `resource_spans = 1`.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<LiteResourceSpans>,
}

/// `opentelemetry.proto.trace.v1.ResourceSpans`.
#[derive(Clone, PartialEq, Message)]
pub struct LiteResourceSpans {
    /// `resource = 1`: the encoded `Resource`, empty when absent.
    #[prost(bytes = "bytes", tag = "1")]
    pub resource: Bytes,
    /// `scope_spans = 2`.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<LiteScopeSpans>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.trace.v1.ScopeSpans`.
#[derive(Clone, PartialEq, Message)]
pub struct LiteScopeSpans {
    /// `scope = 1`: the encoded `InstrumentationScope`, empty when absent.
    #[prost(bytes = "bytes", tag = "1")]
    pub scope: Bytes,
    /// `spans = 2`: each span's own encoding, exactly as sent.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub spans: Vec<Bytes>,
    /// `schema_url = 3`.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The fields of `opentelemetry.proto.trace.v1.Span` that ingest validates and routes by.
#[derive(Clone, PartialEq, Message)]
pub struct LiteSpanHead {
    /// `trace_id = 1`.
    #[prost(bytes = "bytes", tag = "1")]
    pub trace_id: Bytes,
    /// `span_id = 2`.
    #[prost(bytes = "bytes", tag = "2")]
    pub span_id: Bytes,
    /// `parent_span_id = 4`.
    #[prost(bytes = "bytes", tag = "4")]
    pub parent_span_id: Bytes,
    /// `kind = 6` (`Span.SpanKind`, kept as the wire integer).
    #[prost(int32, tag = "6")]
    pub kind: i32,
}

/// `Span.name = 5` alone, read only to name a rejected span in `partial_success`.
#[derive(Clone, PartialEq, Message)]
pub struct LiteSpanName {
    /// `name = 5`, as raw bytes (lossily shown when not UTF-8).
    #[prost(bytes = "bytes", tag = "5")]
    pub name: Bytes,
}

/// `Span.attributes = 9` alone, read for SERVER spans to evaluate the entry rule.
#[derive(Clone, PartialEq, Message)]
pub struct LiteSpanAttributes {
    /// `attributes = 9`.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<LiteKeyValue>,
}

/// `opentelemetry.proto.common.v1.KeyValue` with a raw key.
#[derive(Clone, PartialEq, Message)]
pub struct LiteKeyValue {
    /// `key = 1`, as raw bytes.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// `value = 2`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<LiteAnyValue>,
}

/// `opentelemetry.proto.common.v1.AnyValue`. Every member of the `value` oneof is
/// declared (composite ones as raw bytes) so that "the last member on the wire wins"
/// resolves exactly as in a full decode.
#[derive(Clone, PartialEq, Message)]
pub struct LiteAnyValue {
    /// The oneof `value`.
    #[prost(oneof = "LiteValue", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<LiteValue>,
}

/// Members of `AnyValue.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum LiteValue {
    /// `string_value = 1`, as raw bytes.
    #[prost(bytes = "bytes", tag = "1")]
    StringValue(Bytes),
    /// `bool_value = 2`.
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    /// `int_value = 3`.
    #[prost(int64, tag = "3")]
    IntValue(i64),
    /// `double_value = 4`.
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    /// `array_value = 5`, encoded.
    #[prost(bytes = "bytes", tag = "5")]
    ArrayValue(Bytes),
    /// `kvlist_value = 6`, encoded.
    #[prost(bytes = "bytes", tag = "6")]
    KvlistValue(Bytes),
    /// `bytes_value = 7`.
    #[prost(bytes = "bytes", tag = "7")]
    BytesValue(Bytes),
    /// `string_value_strindex = 8`.
    #[prost(int32, tag = "8")]
    StringValueStrindex(i32),
}

impl LiteAnyValue {
    /// The value as an integer: an `int_value`, or a `string_value` holding a (trimmed)
    /// decimal integer, the same reading as the entry rule applies to a full `AnyValue`.
    pub fn as_i64(&self) -> Option<i64> {
        match self.value.as_ref()? {
            LiteValue::IntValue(i) => Some(*i),
            LiteValue::StringValue(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};

    #[test]
    fn spans_are_sliced_out_of_the_request_buffer_not_copied() {
        let req = crate::synth::Generator::new(Default::default()).next_request();
        let buf = Bytes::from(req.encode_to_vec());
        let range = buf.as_ptr_range();
        let lite = LiteExportRequest::decode(buf.clone()).unwrap();
        let mut n = 0;
        for rs in &lite.resource_spans {
            assert!(range.contains(&rs.resource.as_ptr()));
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    assert!(range.contains(&span.as_ptr()));
                    n += 1;
                }
            }
        }
        assert_eq!(n, 100);
    }

    #[test]
    fn lite_messages_read_what_the_full_ones_read() {
        let req: ExportTraceServiceRequest =
            crate::synth::Generator::new(Default::default()).next_request();
        let lite = LiteExportRequest::decode(Bytes::from(req.encode_to_vec())).unwrap();
        for (full_rs, rs) in req.resource_spans.iter().zip(&lite.resource_spans) {
            assert_eq!(
                full_rs.resource.as_ref().unwrap().encode_to_vec(),
                rs.resource
            );
            assert_eq!(full_rs.schema_url, rs.schema_url);
            for (full_ss, ss) in full_rs.scope_spans.iter().zip(&rs.scope_spans) {
                for (full, raw) in full_ss.spans.iter().zip(&ss.spans) {
                    assert_eq!(&full.encode_to_vec()[..], &raw[..]);
                    let head = LiteSpanHead::decode(raw.clone()).unwrap();
                    assert_eq!(head.trace_id, full.trace_id);
                    assert_eq!(head.span_id, full.span_id);
                    assert_eq!(head.parent_span_id, full.parent_span_id);
                    assert_eq!(head.kind, full.kind);
                }
            }
        }
    }

    #[test]
    fn the_last_oneof_member_on_the_wire_wins_as_in_a_full_decode() {
        let string = AnyValue {
            value: Some(any_value::Value::StringValue("500".into())),
        }
        .encode_to_vec();
        let boolean = AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }
        .encode_to_vec();
        let both = [string.clone(), boolean].concat();
        assert_eq!(AnyValue::decode(&both[..]).unwrap().value.unwrap(), {
            any_value::Value::BoolValue(true)
        });
        assert_eq!(
            LiteAnyValue::decode(Bytes::from(both)).unwrap().as_i64(),
            None
        );
        assert_eq!(
            LiteAnyValue::decode(Bytes::from(string)).unwrap().as_i64(),
            Some(500)
        );
    }
}
