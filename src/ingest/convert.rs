//! Wire ↔ internal forms, in one place: OTLP/JSON into protobuf ([`json_to_protobuf`]),
//! lite OTLP requests into buffered spans
//! (validated, each span stored as the bytes it was sent as) and buffered spans back into
//! the plain [`crate::model`] the analysis reads.
//!
//! Ingest reads, of each span, only its ids and kind ([`LiteSpanHead`]), and the
//! attributes of SERVER spans (for the entry rule); the rest of a span is copied
//! verbatim and decoded in full only by [`materialize`], for traces that hold a failing
//! entry. See [`lite`](super::lite) for what that leaves unvalidated at ingest.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message;

use super::lite::{
    LiteExportRequest, LiteKeyValue, LiteSpanAttributes, LiteSpanHead, LiteSpanName,
};
use crate::assembly::{BufferedSpan, SpanOrigin};
use crate::model::{self, Attributes, SpanId, SpanKind, StatusCode, TraceId, Value};

/// Reads one OTLP/JSON `ExportTraceServiceRequest` (hex ids, 64-bit integers as strings
/// or numbers, unknown fields ignored) and encodes it as protobuf: the one place JSON is
/// read, shared by the OTLP/HTTP receiver and `faultline analyze`.
///
/// # Errors
/// The payload is not JSON, or not a trace request; the error has line and column.
pub fn json_to_protobuf(payload: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    Ok(serde_json::from_slice::<ExportTraceServiceRequest>(payload)?.encode_to_vec())
}

/// Which SERVER spans mark a failing request at ingest (so healthy traces are never
/// materialised). Mirrors the entry rule of docs/contract.md §3.
#[derive(Debug, Clone)]
pub struct EntryRule {
    /// HTTP statuses that make a SERVER span an entry (`--error-status`).
    pub error_statuses: Vec<i64>,
}

impl Default for EntryRule {
    fn default() -> Self {
        EntryRule {
            error_statuses: vec![500],
        }
    }
}

/// HTTP status attribute keys, new semantic conventions first.
pub const HTTP_STATUS_KEYS: [&str; 2] = ["http.response.status_code", "http.status_code"];
/// gRPC status codes (UNKNOWN, INTERNAL) that make a gRPC SERVER span an entry.
pub const GRPC_ENTRY_CODES: [i64; 2] = [2, 13];
/// The gRPC status attribute key.
pub const GRPC_STATUS_KEY: &str = "rpc.grpc.status_code";

impl EntryRule {
    /// True when a SERVER span with these attributes answered an error status: an HTTP
    /// status in `error_statuses` or a gRPC status in [`GRPC_ENTRY_CODES`], given as an
    /// int or as a string holding an integer.
    fn matches(&self, attributes: &[LiteKeyValue]) -> bool {
        attributes.iter().any(|kv| {
            let Some(code) = kv.value.as_ref().and_then(|v| v.as_i64()) else {
                return false;
            };
            let key = &kv.key[..];
            (HTTP_STATUS_KEYS.iter().any(|k| k.as_bytes() == key)
                && self.error_statuses.contains(&code))
                || (key == GRPC_STATUS_KEY.as_bytes() && GRPC_ENTRY_CODES.contains(&code))
        })
    }
}

/// The spans of one request, split into usable and rejected.
#[derive(Debug, Default)]
pub struct Converted {
    /// Usable spans with their trace id.
    pub spans: Vec<(TraceId, BufferedSpan)>,
    /// Spans rejected (bad ids).
    pub rejected: usize,
    /// A message naming the first problem, for `partial_success.error_message`.
    pub first_problem: Option<String>,
}

/// Part of a request that does not decode: the request is refused whole.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    /// A `resource` or `scope` message.
    #[error("resource_spans[{resource}]: {what} does not decode: {error}")]
    Origin {
        /// Index of the `ResourceSpans`.
        resource: usize,
        /// `resource` or `scope`.
        what: &'static str,
        /// The decoder's complaint.
        error: prost::DecodeError,
    },
    /// A span's framing, ids or kind, or the attributes of a SERVER span.
    #[error("resource_spans[{resource}]: span {span} does not decode: {error}")]
    Span {
        /// Index of the `ResourceSpans`.
        resource: usize,
        /// Index of the span within its `ResourceSpans`, counted across scopes.
        span: usize,
        /// The decoder's complaint.
        error: prost::DecodeError,
    },
}

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let arr: [u8; N] = bytes.try_into().ok()?;
    (arr != [0; N]).then_some(arr)
}

fn span_name(span: &Bytes) -> String {
    // The head decoded, so the framing is sound; a name that is not UTF-8 is shown lossily.
    let name = LiteSpanName::decode(span.clone()).unwrap_or_default().name;
    String::from_utf8_lossy(&name).into_owned()
}

/// Validates and converts one lite OTLP request. Spans with an all-zero or wrongly sized
/// trace id or span id, or a wrongly sized parent span id, are rejected (OTLP spec:
/// such spans are invalid); the rest is kept, each as a copy of the bytes it was sent as.
///
/// Resource and scope are decoded in full here (once per group, so cheap) and refused
/// when they do not decode, so a span's origin always materialises later.
///
/// # Errors
/// [`Undecodable`] when a resource, a scope, a span's head, or a SERVER span's
/// attributes do not decode; nothing of the request is kept.
pub fn convert_request(req: LiteExportRequest, rule: &EntryRule) -> Result<Converted, Undecodable> {
    let mut out = Converted::default();
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    out.spans.reserve(total);
    for (r, rs) in req.resource_spans.into_iter().enumerate() {
        ProtoResource::decode(rs.resource.clone()).map_err(|error| Undecodable::Origin {
            resource: r,
            what: "resource",
            error,
        })?;
        let resource_schema_url: Box<str> = rs.schema_url.into_boxed_str();
        let mut index = 0usize;
        for ss in rs.scope_spans {
            InstrumentationScope::decode(ss.scope.clone()).map_err(|error| {
                Undecodable::Origin {
                    resource: r,
                    what: "scope",
                    error,
                }
            })?;
            let origin = Arc::new(SpanOrigin {
                resource: Box::from(&rs.resource[..]),
                resource_schema_url: resource_schema_url.clone(),
                scope: Box::from(&ss.scope[..]),
                scope_schema_url: ss.schema_url.into_boxed_str(),
            });
            for span in ss.spans {
                let this = index;
                index += 1;
                let undecodable = |error| Undecodable::Span {
                    resource: r,
                    span: this,
                    error,
                };
                let head = LiteSpanHead::decode(span.clone()).map_err(undecodable)?;
                let (Some(trace_id), Some(span_id)) =
                    (id::<16>(&head.trace_id), id::<8>(&head.span_id))
                else {
                    out.rejected += 1;
                    out.first_problem.get_or_insert_with(|| {
                        format!(
                            "span {:?}: trace id must be 16 and span id 8 non-zero bytes (got {} and {})",
                            span_name(&span),
                            head.trace_id.len(),
                            head.span_id.len()
                        )
                    });
                    continue;
                };
                if !(head.parent_span_id.is_empty() || head.parent_span_id.len() == 8) {
                    out.rejected += 1;
                    out.first_problem.get_or_insert_with(|| {
                        format!(
                            "span {:?}: parent span id must be empty or 8 bytes",
                            span_name(&span)
                        )
                    });
                    continue;
                }
                let entry_candidate = SpanKind::from_otlp(head.kind) == SpanKind::Server
                    && rule.matches(
                        &LiteSpanAttributes::decode(span.clone())
                            .map_err(undecodable)?
                            .attributes,
                    );
                out.spans.push((
                    TraceId(trace_id),
                    BufferedSpan {
                        span_id: SpanId(span_id),
                        entry_candidate,
                        // A copy, not a slice: a slice would pin the whole request buffer
                        // for as long as the span is buffered.
                        encoded: Box::from(&span[..]),
                        origin: Arc::clone(&origin),
                    },
                ));
            }
        }
    }
    Ok(out)
}

/// A buffered span that does not decode. Ingest validates only a span's head (and a
/// SERVER span's attributes), so the rest of a span can turn out corrupt here.
#[derive(Debug, thiserror::Error)]
#[error("buffered span {span_id} does not decode: {error}")]
pub struct CorruptSpan {
    /// The span's id.
    pub span_id: SpanId,
    /// The decoder's complaint (about the span, or about its resource or scope).
    pub error: prost::DecodeError,
}

/// A materialised trace and the spans that could not be part of it.
#[derive(Debug)]
pub struct Materialized {
    /// The trace, without its corrupt spans.
    pub trace: model::Trace,
    /// Spans skipped because their bytes do not decode.
    pub corrupt: Vec<CorruptSpan>,
}

/// Turns a completed trace's buffered spans into the plain model for analysis. A span
/// whose bytes (or whose resource's or scope's bytes) do not decode is skipped and
/// reported in [`Materialized::corrupt`]; the rest of the trace is kept.
pub fn materialize(trace_id: TraceId, spans: &[BufferedSpan]) -> Materialized {
    type Origin = Result<(Arc<model::Resource>, String), prost::DecodeError>;
    // Spans of one request share their origin: decode each resource once.
    let mut origins: HashMap<*const SpanOrigin, Origin> = HashMap::new();
    let mut out = Vec::with_capacity(spans.len());
    let mut corrupt = Vec::new();
    for b in spans {
        let origin = origins.entry(Arc::as_ptr(&b.origin)).or_insert_with(|| {
            let resource = ProtoResource::decode(&*b.origin.resource)?;
            let scope = InstrumentationScope::decode(&*b.origin.scope)?;
            Ok((
                Arc::new(model::Resource {
                    attributes: attributes(resource.attributes),
                }),
                scope.name,
            ))
        });
        let decoded = match origin {
            Ok((resource, scope_name)) => ProtoSpan::decode(&*b.encoded)
                .map(|p| (p, resource, scope_name))
                .map_err(|error| CorruptSpan {
                    span_id: b.span_id,
                    error,
                }),
            Err(error) => Err(CorruptSpan {
                span_id: b.span_id,
                error: error.clone(),
            }),
        };
        let (p, resource, scope_name) = match decoded {
            Ok(d) => d,
            Err(c) => {
                corrupt.push(c);
                continue;
            }
        };
        let status = p.status.unwrap_or_default();
        out.push(model::Span {
            trace_id,
            span_id: b.span_id,
            parent_span_id: id::<8>(&p.parent_span_id).map(SpanId),
            name: p.name,
            kind: SpanKind::from_otlp(p.kind),
            start_unix_nano: p.start_time_unix_nano,
            end_unix_nano: p.end_time_unix_nano,
            status_code: StatusCode::from_otlp(status.code),
            status_message: status.message,
            attributes: attributes(p.attributes),
            events: p
                .events
                .into_iter()
                .map(|e| model::Event {
                    name: e.name,
                    time_unix_nano: e.time_unix_nano,
                    attributes: attributes(e.attributes),
                })
                .collect(),
            resource: Arc::clone(resource),
            scope_name: scope_name.clone(),
        });
    }
    Materialized {
        trace: model::Trace {
            trace_id,
            spans: out,
        },
        corrupt,
    }
}

fn attributes(kvs: Vec<KeyValue>) -> Attributes {
    Attributes(
        kvs.into_iter()
            .map(|kv| (kv.key, value(kv.value)))
            .collect(),
    )
}

fn value(v: Option<AnyValue>) -> Value {
    match v.and_then(|v| v.value) {
        None => Value::Empty,
        Some(any_value::Value::StringValue(s)) => Value::Str(s),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::Int(i),
        Some(any_value::Value::DoubleValue(d)) => Value::Double(d),
        Some(any_value::Value::BytesValue(b)) => Value::Bytes(b),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(|v| value(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(l)) => Value::Map(
            l.values
                .into_iter()
                .map(|kv| (kv.key, value(kv.value)))
                .collect(),
        ),
        // An index into a profiles dictionary; meaningless in a trace request.
        Some(any_value::Value::StringValueStrindex(_)) => Value::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::kv;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Status};

    /// The conversion as it was before the lite path (full decode, re-encode per span),
    /// kept verbatim as the reference the lite path must agree with.
    mod reference {
        use super::super::{id, BufferedSpan, SpanOrigin};
        use super::*;

        fn proto_as_i64(v: &AnyValue) -> Option<i64> {
            match v.value.as_ref()? {
                any_value::Value::IntValue(i) => Some(*i),
                any_value::Value::StringValue(s) => s.trim().parse().ok(),
                _ => None,
            }
        }

        fn matches(rule: &EntryRule, span: &ProtoSpan) -> bool {
            if SpanKind::from_otlp(span.kind) != SpanKind::Server {
                return false;
            }
            span.attributes.iter().any(|kv| {
                let Some(code) = kv.value.as_ref().and_then(proto_as_i64) else {
                    return false;
                };
                (HTTP_STATUS_KEYS.contains(&kv.key.as_str()) && rule.error_statuses.contains(&code))
                    || (kv.key == "rpc.grpc.status_code" && GRPC_ENTRY_CODES.contains(&code))
            })
        }

        pub fn convert_request(req: ExportTraceServiceRequest, rule: &EntryRule) -> Converted {
            let mut out = Converted::default();
            for rs in req.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| r.encode_to_vec().into_boxed_slice())
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    let origin = Arc::new(SpanOrigin {
                        resource: resource.clone(),
                        resource_schema_url: rs.schema_url.as_str().into(),
                        scope: ss
                            .scope
                            .map(|s| s.encode_to_vec().into_boxed_slice())
                            .unwrap_or_default(),
                        scope_schema_url: ss.schema_url.into_boxed_str(),
                    });
                    for span in ss.spans {
                        let (Some(trace_id), Some(span_id)) =
                            (id::<16>(&span.trace_id), id::<8>(&span.span_id))
                        else {
                            out.rejected += 1;
                            out.first_problem.get_or_insert_with(|| {
                                format!(
                                    "span {:?}: trace id must be 16 and span id 8 non-zero bytes (got {} and {})",
                                    span.name,
                                    span.trace_id.len(),
                                    span.span_id.len()
                                )
                            });
                            continue;
                        };
                        if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) {
                            out.rejected += 1;
                            out.first_problem.get_or_insert_with(|| {
                                format!(
                                    "span {:?}: parent span id must be empty or 8 bytes",
                                    span.name
                                )
                            });
                            continue;
                        }
                        let entry_candidate = matches(rule, &span);
                        out.spans.push((
                            TraceId(trace_id),
                            BufferedSpan {
                                span_id: SpanId(span_id),
                                entry_candidate,
                                encoded: span.encode_to_vec().into_boxed_slice(),
                                origin: Arc::clone(&origin),
                            },
                        ));
                    }
                }
            }
            out
        }
    }

    fn lite(req: &ExportTraceServiceRequest) -> LiteExportRequest {
        LiteExportRequest::decode(Bytes::from(req.encode_to_vec())).unwrap()
    }

    fn convert(req: &ExportTraceServiceRequest, rule: &EntryRule) -> Converted {
        convert_request(lite(req), rule).unwrap()
    }

    /// Converts `req` both ways and checks that everything downstream sees is identical:
    /// the usable spans, their trace ids, entry flags and origins, the rejections, and the
    /// materialised model of every trace.
    fn assert_same_as_reference(req: &ExportTraceServiceRequest, rule: &EntryRule) {
        let old = reference::convert_request(req.clone(), rule);
        let new = convert(req, rule);
        assert_eq!(old.rejected, new.rejected);
        assert_eq!(old.first_problem, new.first_problem);
        assert_eq!(old.spans.len(), new.spans.len());
        let mut traces: HashMap<TraceId, (Vec<BufferedSpan>, Vec<BufferedSpan>)> = HashMap::new();
        for ((old_t, old_s), (new_t, new_s)) in old.spans.into_iter().zip(new.spans) {
            assert_eq!(old_t, new_t);
            assert_eq!(old_s.span_id, new_s.span_id);
            assert_eq!(old_s.entry_candidate, new_s.entry_candidate);
            assert_eq!(
                old_s.origin.resource_schema_url,
                new_s.origin.resource_schema_url
            );
            assert_eq!(old_s.origin.scope_schema_url, new_s.origin.scope_schema_url);
            let entry = traces.entry(new_t).or_default();
            entry.0.push(old_s);
            entry.1.push(new_s);
        }
        for (trace_id, (old_spans, new_spans)) in traces {
            let old_m = materialize(trace_id, &old_spans);
            let new_m = materialize(trace_id, &new_spans);
            assert!(old_m.corrupt.is_empty() && new_m.corrupt.is_empty());
            assert_eq!(old_m.trace, new_m.trace);
        }
    }

    fn request(spans: Vec<ProtoSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(ProtoResource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("checkout".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "flask".into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn good(span_id: u8) -> ProtoSpan {
        ProtoSpan {
            trace_id: vec![7; 16],
            span_id: vec![span_id; 8],
            name: "GET /pay".into(),
            kind: 2,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Default::default()
        }
    }

    #[test]
    fn zero_and_wrongly_sized_ids_are_rejected_and_the_rest_kept() {
        let mut zero_trace = good(1);
        zero_trace.trace_id = vec![0; 16];
        let mut short_trace = good(2);
        short_trace.trace_id = vec![7; 15];
        let mut zero_span = good(3);
        zero_span.span_id = vec![0; 8];
        let mut bad_parent = good(4);
        bad_parent.parent_span_id = vec![1; 4];
        let req = request(vec![
            zero_trace,
            short_trace,
            zero_span,
            bad_parent,
            good(5),
        ]);
        let c = convert(&req, &EntryRule::default());
        assert_eq!(c.rejected, 4);
        assert_eq!(c.spans.len(), 1);
        assert_eq!(
            c.first_problem.as_deref(),
            Some(
                "span \"GET /pay\": trace id must be 16 and span id 8 non-zero bytes (got 16 and 8)"
            )
        );
        assert_same_as_reference(&req, &EntryRule::default());
    }

    #[test]
    fn server_spans_answering_an_error_status_are_entry_candidates() {
        let mut http500 = good(1);
        http500.attributes.push(kv(
            "http.response.status_code",
            any_value::Value::IntValue(500),
        ));
        let mut legacy_as_string = good(2);
        legacy_as_string.attributes.push(kv(
            "http.status_code",
            any_value::Value::StringValue(" 500 ".into()),
        ));
        let mut grpc_internal = good(3);
        grpc_internal
            .attributes
            .push(kv("rpc.grpc.status_code", any_value::Value::IntValue(13)));
        let mut http503 = good(4);
        http503.attributes.push(kv(
            "http.response.status_code",
            any_value::Value::IntValue(503),
        ));
        let mut client500 = good(5);
        client500.kind = 3;
        client500.attributes.push(kv(
            "http.response.status_code",
            any_value::Value::IntValue(500),
        ));
        let mut grpc_as_double = good(6);
        grpc_as_double.attributes.push(kv(
            "rpc.grpc.status_code",
            any_value::Value::DoubleValue(13.0),
        ));
        let req = request(vec![
            http500,
            legacy_as_string,
            grpc_internal,
            http503,
            client500,
            grpc_as_double,
        ]);
        let c = convert(&req, &EntryRule::default());
        let flags: Vec<bool> = c.spans.iter().map(|(_, s)| s.entry_candidate).collect();
        assert_eq!(flags, vec![true, true, true, false, false, false]);
        assert_same_as_reference(&req, &EntryRule::default());
        assert_same_as_reference(
            &req,
            &EntryRule {
                error_statuses: vec![500, 503],
            },
        );
    }

    #[test]
    fn stored_bytes_are_the_span_as_sent_and_do_not_pin_the_request() {
        let req = request(vec![good(1)]);
        let body = Bytes::from(req.encode_to_vec());
        let range = body.as_ptr_range();
        let c = convert_request(
            LiteExportRequest::decode(body.clone()).unwrap(),
            &EntryRule::default(),
        )
        .unwrap();
        let span = &c.spans[0].1;
        assert_eq!(&span.encoded[..], &good(1).encode_to_vec()[..]);
        assert!(
            !range.contains(&span.encoded.as_ptr()),
            "a copy, not a slice"
        );
        assert!(!range.contains(&span.origin.resource.as_ptr()));
    }

    #[test]
    fn synthetic_traffic_converts_exactly_as_the_full_decode_did() {
        let mut g = crate::synth::Generator::new(crate::synth::SynthConfig {
            error_ratio: 0.3,
            ..Default::default()
        });
        let mut candidates = 0;
        for _ in 0..20 {
            let req = g.next_request();
            candidates += convert(&req, &EntryRule::default())
                .spans
                .iter()
                .filter(|(_, s)| s.entry_candidate)
                .count();
            assert_same_as_reference(&req, &EntryRule::default());
        }
        assert!(candidates > 0, "the comparison covered entry candidates");
    }

    /// A span with every field of trace.proto set (and values of every AnyValue kind).
    fn every_field_set() -> ExportTraceServiceRequest {
        let values = vec![
            kv("s", any_value::Value::StringValue("x".into())),
            kv("b", any_value::Value::BoolValue(true)),
            kv("i", any_value::Value::IntValue(-3)),
            kv("d", any_value::Value::DoubleValue(1.5)),
            kv("by", any_value::Value::BytesValue(vec![0, 1, 2])),
            kv(
                "a",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    }],
                }),
            ),
            kv(
                "m",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", any_value::Value::StringValue("v".into()))],
                }),
            ),
            kv("http.response.status_code", any_value::Value::IntValue(500)),
        ];
        let span = ProtoSpan {
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            trace_state: "congo=t61rcWkgMzE".into(),
            parent_span_id: vec![2; 8],
            flags: 0x301,
            name: "POST /pay".into(),
            kind: 2,
            start_time_unix_nano: 1_764_000_000_000_000_000,
            end_time_unix_nano: 1_764_000_000_500_000_000,
            attributes: values.clone(),
            dropped_attributes_count: 4,
            events: vec![span::Event {
                time_unix_nano: 1_764_000_000_400_000_000,
                name: "exception".into(),
                attributes: values.clone(),
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 2,
            links: vec![span::Link {
                trace_id: vec![8; 16],
                span_id: vec![3; 8],
                trace_state: "a=b".into(),
                attributes: values.clone(),
                dropped_attributes_count: 1,
                flags: 0x100,
            }],
            dropped_links_count: 3,
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(ProtoResource {
                    attributes: values.clone(),
                    dropped_attributes_count: 1,
                    entity_refs: vec![],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "flask".into(),
                        version: "3.1".into(),
                        attributes: values,
                        dropped_attributes_count: 1,
                    }),
                    spans: vec![span],
                    schema_url: "https://opentelemetry.io/schemas/1.27.0".into(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
        }
    }

    #[test]
    fn a_span_with_every_field_set_converts_exactly_as_the_full_decode_did() {
        let req = every_field_set();
        assert_same_as_reference(&req, &EntryRule::default());
        let c = convert(&req, &EntryRule::default());
        assert!(c.spans[0].1.entry_candidate);
        assert_eq!(
            &c.spans[0].1.encoded[..],
            &req.resource_spans[0].scope_spans[0].spans[0].encode_to_vec()[..]
        );
    }

    #[test]
    fn materialize_restores_every_field_the_analysis_reads() {
        let mut s = good(1);
        s.parent_span_id = vec![9; 8];
        s.status = Some(Status {
            code: 2,
            message: "boom".into(),
        });
        s.attributes.push(kv(
            "http.route",
            any_value::Value::StringValue("/pay".into()),
        ));
        s.events.push(span::Event {
            name: "exception".into(),
            time_unix_nano: 2,
            attributes: vec![kv(
                "exception.type",
                any_value::Value::StringValue("KeyError".into()),
            )],
            dropped_attributes_count: 0,
        });
        let c = convert(&request(vec![s, good(2)]), &EntryRule::default());
        let spans: Vec<BufferedSpan> = c.spans.into_iter().map(|(_, s)| s).collect();
        let m = materialize(TraceId([7; 16]), &spans);
        assert!(m.corrupt.is_empty());
        let t = m.trace;
        let m = &t.spans[0];
        assert_eq!(m.parent_span_id, Some(SpanId([9; 8])));
        assert_eq!(m.kind, SpanKind::Server);
        assert_eq!(m.status_code, StatusCode::Error);
        assert_eq!(m.status_message, "boom");
        assert_eq!(m.attributes.get_str("http.route"), Some("/pay"));
        assert_eq!(
            m.events[0].attributes.get_str("exception.type"),
            Some("KeyError")
        );
        assert_eq!(m.service_name(), "checkout");
        assert_eq!(m.scope_name, "flask");
        assert!(
            Arc::ptr_eq(&t.spans[0].resource, &t.spans[1].resource),
            "resource decoded once"
        );
        assert_eq!(t.spans[1].parent_span_id, None);
    }

    /// `span` encoded, plus an `events` entry (field 11) that is framed correctly but whose
    /// content is a truncated message.
    fn with_corrupt_event(span: &ProtoSpan) -> Vec<u8> {
        let mut bytes = span.encode_to_vec();
        // Field 11, wire type 2 (length-delimited), length 2: a tag announcing a 5-byte
        // string (`name = 2`) with nothing after it.
        bytes.extend_from_slice(&[(11 << 3) | 2, 2, (2 << 3) | 2, 5]);
        bytes
    }

    /// A request whose only span is `span_bytes`, framed by hand.
    fn request_with_raw_span(span_bytes: &[u8]) -> Bytes {
        // ResourceSpans(1){ resource(1), ScopeSpans(2){ scope(1), span(2) } }.
        let rs = request(vec![]).resource_spans.remove(0);
        let resource = rs.resource.unwrap().encode_to_vec();
        let scope = rs.scope_spans[0].scope.clone().unwrap().encode_to_vec();
        let mut scope_spans = Vec::new();
        prost::encoding::bytes::encode(1, &scope, &mut scope_spans);
        prost::encoding::bytes::encode(2, &span_bytes.to_vec(), &mut scope_spans);
        let mut resource_spans = Vec::new();
        prost::encoding::bytes::encode(1, &resource, &mut resource_spans);
        prost::encoding::bytes::encode(2, &scope_spans, &mut resource_spans);
        let mut out = Vec::new();
        prost::encoding::bytes::encode(1, &resource_spans, &mut out);
        Bytes::from(out)
    }

    #[test]
    fn a_corrupt_event_in_a_client_span_is_accepted_then_skipped_and_reported() {
        let mut client = good(1);
        client.kind = 3;
        let body = request_with_raw_span(&with_corrupt_event(&client));
        assert!(
            ExportTraceServiceRequest::decode(body.clone()).is_err(),
            "a full decode refuses the request"
        );
        let c = convert_request(
            LiteExportRequest::decode(body).unwrap(),
            &EntryRule::default(),
        )
        .expect("ingest does not look inside a CLIENT span's events");
        assert_eq!(c.spans.len(), 1);
        let mut spans: Vec<BufferedSpan> = c.spans.into_iter().map(|(_, s)| s).collect();
        spans.extend(
            convert(&request(vec![good(2)]), &EntryRule::default())
                .spans
                .into_iter()
                .map(|(_, s)| s),
        );
        let m = materialize(TraceId([7; 16]), &spans);
        assert_eq!(m.corrupt.len(), 1);
        assert_eq!(m.corrupt[0].span_id, SpanId([1; 8]));
        assert_eq!(m.trace.spans.len(), 1, "only the corrupt span is skipped");
        assert_eq!(m.trace.spans[0].span_id, SpanId([2; 8]));
    }

    #[test]
    fn a_corrupt_server_span_or_broken_framing_refuses_the_request() {
        let server = good(1);
        let body = request_with_raw_span(&with_corrupt_event(&server));
        // A SERVER span's events are not read either; only its attributes are.
        assert!(convert_request(
            LiteExportRequest::decode(body).unwrap(),
            &EntryRule::default()
        )
        .is_ok());
        let mut attrs = server.encode_to_vec();
        attrs.extend_from_slice(&[(9 << 3) | 2, 2, (1 << 3) | 2, 5]);
        let err = convert_request(
            LiteExportRequest::decode(request_with_raw_span(&attrs)).unwrap(),
            &EntryRule::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Undecodable::Span { span: 0, .. }));
        // A span whose own framing is cut short.
        let mut cut = server.encode_to_vec();
        cut.extend_from_slice(&[(5 << 3) | 2, 9]);
        assert!(convert_request(
            LiteExportRequest::decode(request_with_raw_span(&cut)).unwrap(),
            &EntryRule::default()
        )
        .is_err());
        // The request's own framing.
        assert!(LiteExportRequest::decode(&b"\xff\xff\xffnot protobuf"[..]).is_err());
    }
}
