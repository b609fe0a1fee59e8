//! The OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! tonic decodes (and gunzips, bounded by `--max-request-size`) before our handler runs,
//! and reports its own refusals with statuses OTLP does not use for them: OUT_OF_RANGE for
//! an over-limit message and INTERNAL for an undecodable one. [`OtlpStatusLayer`] maps
//! those to RESOURCE_EXHAUSTED and INVALID_ARGUMENT (OTLP/gRPC "Failures") and counts them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;

use super::Ingest;
use crate::telemetry::metrics::{Metrics, RefuseReason, Transport};

/// The gRPC path of the Export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP/gRPC trace receiver.
pub struct OtlpGrpcReceiver {
    ingest: Arc<Ingest>,
}

impl OtlpGrpcReceiver {
    /// The tonic service, accepting gzip and bounded by the ingest's request size limit
    /// (tonic applies the limit to the decompressed message too).
    pub fn service(ingest: Arc<Ingest>) -> TraceServiceServer<OtlpGrpcReceiver> {
        let limit = ingest.max_request_size();
        TraceServiceServer::new(OtlpGrpcReceiver { ingest })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match self.ingest.export(request.into_inner(), Transport::Grpc) {
            Ok(outcome) => Ok(tonic::Response::new(outcome.response())),
            Err(err) => Err(err.to_grpc_status()),
        }
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
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if is_export {
                remap_tonic_refusal(resp.headers_mut(), &metrics);
            }
            Ok(resp)
        })
    }
}

/// Our handler only ever answers OK or UNAVAILABLE; any other status on a trailers-only
/// Export response was produced by tonic while receiving the message.
fn remap_tonic_refusal(headers: &mut http::HeaderMap, metrics: &Metrics) {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let (err, reason) = match tonic::Code::from_i32(code) {
        // Over the limit as sent, or while gunzipping.
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            (Some(tonic::Code::ResourceExhausted), RefuseReason::TooLarge)
        }
        // Undecodable protobuf or a broken gzip stream.
        tonic::Code::Internal => (Some(tonic::Code::InvalidArgument), RefuseReason::Malformed),
        // A grpc-encoding we do not accept.
        tonic::Code::Unimplemented => (None, RefuseReason::UnsupportedMediaType),
        _ => return,
    };
    metrics.refuse_request(Transport::Grpc, reason);
    tracing::info!(
        transport = "grpc",
        ?reason,
        "refused export request (status {code})"
    );
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
        remap_tonic_refusal(&mut h, &m);
        assert_eq!(h["grpc-status"], "8");
        h.insert("grpc-status", http::HeaderValue::from(13));
        remap_tonic_refusal(&mut h, &m);
        assert_eq!(h["grpc-status"], "3");
        h.insert("grpc-status", http::HeaderValue::from(14));
        remap_tonic_refusal(&mut h, &m);
        assert_eq!(h["grpc-status"], "14", "our own push-back is left alone");
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
