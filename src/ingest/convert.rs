//! Protobuf ↔ internal forms, in one place: OTLP requests into buffered spans (validated,
//! one encoding per span) and buffered spans back into the plain [`model`](crate::model)
//! the analysis reads.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message;

use crate::assembly::{BufferedSpan, SpanOrigin};
use crate::model::{self, Attributes, SpanId, SpanKind, StatusCode, TraceId, Value};

/// Which SERVER spans mark a failing request at ingest (so healthy traces are never
/// materialised). Mirrors the entry rule of DESIGN §3.
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

impl EntryRule {
    fn matches(&self, span: &ProtoSpan) -> bool {
        if SpanKind::from_otlp(span.kind) != SpanKind::Server {
            return false;
        }
        span.attributes.iter().any(|kv| {
            let Some(code) = kv.value.as_ref().and_then(proto_as_i64) else {
                return false;
            };
            (HTTP_STATUS_KEYS.contains(&kv.key.as_str()) && self.error_statuses.contains(&code))
                || (kv.key == "rpc.grpc.status_code" && GRPC_ENTRY_CODES.contains(&code))
        })
    }
}

fn proto_as_i64(v: &AnyValue) -> Option<i64> {
    match v.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
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

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let arr: [u8; N] = bytes.try_into().ok()?;
    (arr != [0; N]).then_some(arr)
}

/// Validates and converts one OTLP request. Spans with an all-zero or wrongly sized
/// trace id or span id, or a wrongly sized parent span id, are rejected (OTLP spec:
/// such spans are invalid); the rest is kept.
pub fn convert_request(req: ExportTraceServiceRequest, rule: &EntryRule) -> Converted {
    let mut out = Converted::default();
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    out.spans.reserve(total);
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
                let entry_candidate = rule.matches(&span);
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

/// A buffered span that no longer decodes (cannot happen for bytes we encoded; kept as
/// an error rather than a panic because the bytes may one day come from disk).
#[derive(Debug, thiserror::Error)]
#[error("buffered span does not decode: {0}")]
pub struct CorruptSpan(#[from] prost::DecodeError);

/// Turns a completed trace's buffered spans into the plain model for analysis.
///
/// # Errors
/// A buffered span's bytes do not decode.
pub fn materialize(trace_id: TraceId, spans: &[BufferedSpan]) -> Result<model::Trace, CorruptSpan> {
    // Spans of one request share their origin: decode each resource once.
    let mut resources: HashMap<*const SpanOrigin, (Arc<model::Resource>, String)> = HashMap::new();
    let mut out = Vec::with_capacity(spans.len());
    for b in spans {
        let (resource, scope_name) = match resources.entry(Arc::as_ptr(&b.origin)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let resource = ProtoResource::decode(&*b.origin.resource)?;
                let scope = InstrumentationScope::decode(&*b.origin.scope)?;
                v.insert((
                    Arc::new(model::Resource {
                        attributes: attributes(resource.attributes),
                    }),
                    scope.name,
                ))
            }
        };
        let p = ProtoSpan::decode(&*b.encoded)?;
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
    Ok(model::Trace {
        trace_id,
        spans: out,
    })
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
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Status};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
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
        let c = convert_request(
            request(vec![
                zero_trace,
                short_trace,
                zero_span,
                bad_parent,
                good(5),
            ]),
            &EntryRule::default(),
        );
        assert_eq!(c.rejected, 4);
        assert_eq!(c.spans.len(), 1);
        assert!(c.first_problem.unwrap().contains("16"));
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
            any_value::Value::StringValue("500".into()),
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
        let c = convert_request(
            request(vec![
                http500,
                legacy_as_string,
                grpc_internal,
                http503,
                client500,
            ]),
            &EntryRule::default(),
        );
        let flags: Vec<bool> = c.spans.iter().map(|(_, s)| s.entry_candidate).collect();
        assert_eq!(flags, vec![true, true, true, false, false]);
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
        let c = convert_request(request(vec![s, good(2)]), &EntryRule::default());
        let spans: Vec<BufferedSpan> = c.spans.into_iter().map(|(_, s)| s).collect();
        let t = materialize(TraceId([7; 16]), &spans).unwrap();
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
}
