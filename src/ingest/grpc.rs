//! The OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! tonic's generated `TraceServiceServer` decodes into the full prost tree; this receiver
//! is the same unary method served by hand (as the generated code does it: a
//! [`NamedService`], a `Service<http::Request<B>>` routing on the path, and
//! [`tonic::server::Grpc::unary`]) with [`LiteCodec`], whose decoder slices the
//! [`LiteExportRequest`] out of the received message without copying.
//!
//! tonic receives (and gunzips, bounded by `--max-request-size`) before our handler runs,
//! and reports its own refusals with statuses OTLP does not use for them: OUT_OF_RANGE for
//! an over-limit message and INTERNAL for a broken gzip stream or a missing message.
//! [`OtlpStatusLayer`] maps those to RESOURCE_EXHAUSTED and INVALID_ARGUMENT (OTLP/gRPC
//! "Failures") and counts them. Undecodable protobuf is not one of them: [`LiteCodec`]
//! hands the decode result to the handler, which refuses it as
//! [`IngestError::Malformed`] like every other refusal of its own.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::{NamedService, UnaryService};

use super::lite::LiteExportRequest;
use super::{Ingest, IngestError};
use crate::auth::Unauthenticated;
use crate::telemetry::metrics::{Metrics, RefuseReason, Transport};

/// The gRPC service name (opentelemetry-proto `collector/trace/v1/trace_service.proto`).
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The gRPC path of the Export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP/gRPC trace receiver: a tonic service answering `Export`, accepting gzip and
/// bounded by the ingest's request size limit (tonic applies the limit to the
/// decompressed message too).
#[derive(Clone)]
pub struct OtlpGrpcReceiver {
    ingest: Arc<Ingest>,
    accept_compression: EnabledCompressionEncodings,
    send_compression: EnabledCompressionEncodings,
}

impl OtlpGrpcReceiver {
    /// The tonic service for `ingest`, to pass to `Server::add_service`.
    pub fn service(ingest: Arc<Ingest>) -> OtlpGrpcReceiver {
        let mut accept_compression = EnabledCompressionEncodings::default();
        accept_compression.enable(CompressionEncoding::Gzip);
        OtlpGrpcReceiver {
            ingest,
            accept_compression,
            send_compression: accept_compression,
        }
    }
}

impl NamedService for OtlpGrpcReceiver {
    const NAME: &'static str = SERVICE_NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for OtlpGrpcReceiver
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync + 'static>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            // Another method of the service: UNIMPLEMENTED, as generated servers answer.
            return Box::pin(async {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    tonic::Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let method = ExportMethod(Arc::clone(&self.ingest));
        let mut grpc = tonic::server::Grpc::new(LiteCodec)
            .apply_compression_config(self.accept_compression, self.send_compression)
            .apply_max_message_size_config(Some(self.ingest.max_request_size()), None);
        Box::pin(async move { Ok(grpc.unary(method, req).await) })
    }
}

/// The Export handler: the shared [`Ingest::export`], its outcome mapped to a status by
/// [`IngestError::to_grpc_status`].
struct ExportMethod(Arc<Ingest>);

impl UnaryService<Result<LiteExportRequest, prost::DecodeError>> for ExportMethod {
    type Response = ExportTraceServiceResponse;
    type Future = Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(
        &mut self,
        request: tonic::Request<Result<LiteExportRequest, prost::DecodeError>>,
    ) -> Self::Future {
        if request.extensions().get::<Unauthenticated>().is_some() {
            let err = self
                .0
                .refuse_unauthenticated(request.get_ref().as_ref().ok(), Transport::Grpc);
            return ready(Err(err.to_grpc_status()));
        }
        let result = match request.into_inner() {
            Ok(req) => self.0.export(req, Transport::Grpc),
            Err(e) => {
                let err = IngestError::Malformed(format!("protobuf: {e}"));
                self.0.refused(Transport::Grpc, &err);
                Err(err)
            }
        };
        ready(
            result
                .map(|outcome| tonic::Response::new(outcome.response()))
                .map_err(|err| err.to_grpc_status()),
        )
    }
}

/// The codec of [`OtlpGrpcReceiver`]: decodes requests into [`LiteExportRequest`] and
/// encodes `ExportTraceServiceResponse`.
///
/// The decoder never fails: it yields the decode result as the message, so that an
/// undecodable request reaches the handler and is refused and counted there, in the one
/// place that maps ingest errors to statuses (tonic would answer INTERNAL).
#[derive(Debug, Clone, Copy, Default)]
pub struct LiteCodec;

impl Codec for LiteCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Result<LiteExportRequest, prost::DecodeError>;
    type Encoder = LiteCodec;
    type Decoder = LiteCodec;

    fn encoder(&mut self) -> Self::Encoder {
        LiteCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        LiteCodec
    }
}

impl Encoder for LiteCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        // `EncodeBuf` grows on demand, so prost's only error (no room) cannot occur.
        item.encode(buf)
            .map_err(|e| tonic::Status::internal(format!("encoding the response: {e}")))
    }
}

impl Decoder for LiteCodec {
    type Item = Result<LiteExportRequest, prost::DecodeError>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        // tonic hands over exactly one message; on its `BytesMut` this is a split, not a copy.
        let message = buf.copy_to_bytes(buf.remaining());
        Ok(Some(LiteExportRequest::decode(message)))
    }
}

/// Tower layer that rewrites tonic's own refusals of Export requests into OTLP's
/// statuses and counts them (see the module doc).
#[derive(Clone)]
pub struct OtlpStatusLayer {
    metrics: Metrics,
}

impl OtlpStatusLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        OtlpStatusLayer { metrics }
    }
}

impl<S> tower::Layer<S> for OtlpStatusLayer {
    type Service = OtlpStatusService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OtlpStatusService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`OtlpStatusLayer`].
#[derive(Clone)]
pub struct OtlpStatusService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for OtlpStatusService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let is_export = req.uri().path() == EXPORT_PATH;
        let unauthenticated = req.extensions().get::<Unauthenticated>().is_some();
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if is_export {
                remap_tonic_refusal(resp.headers_mut(), &metrics, unauthenticated);
            }
            Ok(resp)
        })
    }
}

/// Our handler answers OK, INVALID_ARGUMENT, UNAVAILABLE or UNAUTHENTICATED, and counts
/// its own refusals; any other status on a trailers-only Export response was produced by
/// tonic while receiving the message. For a request without a valid bearer token
/// (`unauthenticated`) that refusal becomes UNAUTHENTICATED too: a sender without a token
/// learns nothing else, not even that its message was too large.
fn remap_tonic_refusal(headers: &mut http::HeaderMap, metrics: &Metrics, unauthenticated: bool) {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let ours = tonic::Code::Unauthenticated as i32;
    if unauthenticated && code != ours && code != tonic::Code::Ok as i32 {
        metrics.refuse_request(Transport::Grpc, RefuseReason::Unauthenticated);
        headers.insert("grpc-status", http::HeaderValue::from(ours));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("missing%20or%20invalid%20bearer%20token"),
        );
        return;
    }
    let (err, reason) = match tonic::Code::from_i32(code) {
        // Over the limit as sent, or while gunzipping.
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            (Some(tonic::Code::ResourceExhausted), RefuseReason::TooLarge)
        }
        // A broken gzip stream, a truncated frame, no message at all.
        tonic::Code::Internal => (Some(tonic::Code::InvalidArgument), RefuseReason::Malformed),
        // A grpc-encoding we do not accept.
        tonic::Code::Unimplemented => (None, RefuseReason::UnsupportedMediaType),
        _ => return,
    };
    metrics.refuse_request(Transport::Grpc, reason);
    tracing::info!(transport = "grpc", ?reason, ?code, "refused export request");
    if let Some(new) = err {
        headers.insert("grpc-status", http::HeaderValue::from(new as i32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_limit_and_decode_refusals_become_otlp_statuses() {
        let m = Metrics::default();
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from(11));
        remap_tonic_refusal(&mut h, &m, false);
        assert_eq!(h["grpc-status"], "8");
        h.insert("grpc-status", http::HeaderValue::from(13));
        remap_tonic_refusal(&mut h, &m, false);
        assert_eq!(h["grpc-status"], "3");
        h.insert("grpc-status", http::HeaderValue::from(14));
        remap_tonic_refusal(&mut h, &m, false);
        assert_eq!(h["grpc-status"], "14", "our own push-back is left alone");
        h.insert("grpc-status", http::HeaderValue::from(3));
        remap_tonic_refusal(&mut h, &m, false);
        assert_eq!(
            h["grpc-status"], "3",
            "our own INVALID_ARGUMENT is left alone"
        );
        let refused = |reason| {
            m.refused_requests
                .get_or_create(&crate::telemetry::metrics::RefusedLabels {
                    transport: Transport::Grpc,
                    reason,
                })
                .get()
        };
        assert_eq!(refused(RefuseReason::TooLarge), 1);
        assert_eq!(
            refused(RefuseReason::Malformed),
            1,
            "only tonic's INTERNAL is counted here; the handler counts its own"
        );
    }

    #[test]
    fn tonic_refusals_of_an_unauthenticated_export_become_unauthenticated() {
        let m = Metrics::default();
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from(11));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("message length too large: 9999999"),
        );
        remap_tonic_refusal(&mut h, &m, true);
        assert_eq!(h["grpc-status"], "16");
        assert_eq!(h["grpc-message"], "missing%20or%20invalid%20bearer%20token");
        let refused = |reason| {
            m.refused_requests
                .get_or_create(&crate::telemetry::metrics::RefusedLabels {
                    transport: Transport::Grpc,
                    reason,
                })
                .get()
        };
        assert_eq!(refused(RefuseReason::Unauthenticated), 1);
        assert_eq!(refused(RefuseReason::TooLarge), 0);
        // The handler's own UNAUTHENTICATED was counted by the handler.
        remap_tonic_refusal(&mut h, &m, true);
        assert_eq!(refused(RefuseReason::Unauthenticated), 1);
    }

    #[test]
    fn undecodable_protobuf_reaches_the_handler_as_a_decode_error() {
        use bytes::BufMut;
        use tonic::codec::{Codec, Streaming};
        // One gRPC frame holding garbage, as the black-box test sends it.
        let mut frame = bytes::BytesMut::new();
        frame.put_u8(0);
        frame.put_u32(12);
        frame.put_slice(b"\xff\xff\xffgarbage!!");
        let body = http_body_util::Full::new(frame.freeze());
        let mut stream = Streaming::new_request(LiteCodec.decoder(), body, None, None);
        let message = futures::executor::block_on(stream.message())
            .expect("the codec itself does not fail")
            .expect("one message");
        assert!(message.is_err());
    }

    #[test]
    fn overload_carries_retry_info() {
        use tonic_types::StatusExt;
        let s = super::super::IngestError::Overloaded(crate::assembly::Overloaded {
            buffered: 1,
            limit: 1,
        })
        .to_grpc_status();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(
            s.get_details_retry_info().unwrap().retry_delay,
            Some(super::super::RETRY_AFTER)
        );
    }
}
