//! The OTLP boundary: the gRPC and HTTP receivers, protobuf conversion, and the one
//! mapping from ingest errors to wire statuses.
//!
//! Both transports decode into a [`lite::LiteExportRequest`] and call
//! [`Ingest::export`]: one handler path, so both answer alike (OTLP specification,
//! "OTLP/gRPC" and "OTLP/HTTP" response sections). Protobuf bodies (gRPC and HTTP) are
//! decoded zero-copy: each span is sliced out of the request buffer and stored as a copy
//! of the bytes it was sent as, never decoded into a full prost tree nor re-encoded.
//! OTLP/JSON is parsed into the full prost types, encoded once, and takes the same path.

pub mod convert;
pub mod grpc;
pub mod http;
pub mod lite;

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

use crate::assembly::{Assembler, Overloaded};
use crate::config::ForwardMode;
use crate::forward::Forwarder;
use crate::telemetry::metrics::{Metrics, RefuseReason, Transport, TransportLabels};
use crate::telemetry::LogThrottle;
use convert::EntryRule;
use lite::LiteExportRequest;

/// How long senders are asked to wait before retrying when we are overloaded.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a whole export request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload does not decode.
    #[error("malformed OTLP payload: {0}")]
    Malformed(String),
    /// Larger than `--max-request-size` once decompressed.
    #[error("request exceeds the {limit}-byte limit (after decompression)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Content type or encoding we do not speak.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// No room: retry later.
    #[error("overloaded, retry later: {0}")]
    Overloaded(#[from] Overloaded),
    /// The forward queue is full (the downstream is slow or down): retry later.
    #[error("forward queue full ({depth} of {capacity} spans undelivered), retry later")]
    ForwardQueueFull {
        /// Spans queued or in flight.
        depth: usize,
        /// `--forward-queue-size`.
        capacity: usize,
    },
    /// No valid bearer token (`--auth-token-file`); the same for a missing, a malformed
    /// and a wrong token.
    #[error("{}", crate::auth::UNAUTHENTICATED_MESSAGE)]
    Unauthenticated,
}

impl IngestError {
    /// The refusal reason for metrics.
    pub fn reason(&self) -> RefuseReason {
        match self {
            IngestError::Malformed(_) => RefuseReason::Malformed,
            IngestError::TooLarge { .. } => RefuseReason::TooLarge,
            IngestError::UnsupportedMediaType(_) => RefuseReason::UnsupportedMediaType,
            IngestError::Overloaded(_) => RefuseReason::Overloaded,
            IngestError::ForwardQueueFull { .. } => RefuseReason::ForwardQueueFull,
            IngestError::Unauthenticated => RefuseReason::Unauthenticated,
        }
    }

    /// The gRPC status (OTLP/gRPC: InvalidArgument is not retryable; Unavailable with
    /// RetryInfo is, and carries our back-off hint).
    pub fn to_grpc_status(&self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        match self {
            IngestError::Malformed(_) => tonic::Status::invalid_argument(self.to_string()),
            IngestError::TooLarge { .. } => tonic::Status::resource_exhausted(self.to_string()),
            IngestError::UnsupportedMediaType(_) => tonic::Status::unimplemented(self.to_string()),
            IngestError::Overloaded(_) | IngestError::ForwardQueueFull { .. } => {
                tonic::Status::with_error_details(
                    tonic::Code::Unavailable,
                    self.to_string(),
                    ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
                )
            }
            IngestError::Unauthenticated => tonic::Status::unauthenticated(self.to_string()),
        }
    }

    /// The HTTP status (OTLP/HTTP: 400 not retryable; 503 with Retry-After retryable).
    pub fn http_status(&self) -> ::http::StatusCode {
        use ::http::StatusCode;
        match self {
            IngestError::Malformed(_) => StatusCode::BAD_REQUEST,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Overloaded(_) | IngestError::ForwardQueueFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IngestError::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `google.rpc.Code` number, for the `Status` body of OTLP/HTTP errors.
    pub fn rpc_code(&self) -> i32 {
        self.to_grpc_status().code() as i32
    }

    /// Retry hint, for retryable errors only.
    pub fn retry_after(&self) -> Option<Duration> {
        matches!(
            self,
            IngestError::Overloaded(_) | IngestError::ForwardQueueFull { .. }
        )
        .then_some(RETRY_AFTER)
    }
}

/// What an accepted request yields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    /// Spans rejected as unusable.
    pub rejected: usize,
    /// Why, when some were.
    pub message: Option<String>,
}

impl ExportOutcome {
    /// The OTLP response: `partial_success` only when something was rejected.
    pub fn response(&self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: self.rejected as i64,
                error_message: self.message.clone().unwrap_or_default(),
            }),
        }
    }
}

/// The service's monotonic clock in milliseconds, shared by ingest and the sweeper.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock(Instant::now())
    }
    /// Milliseconds since start.
    pub fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// The shared ingest path behind both receivers.
pub struct Ingest {
    assembler: Arc<Assembler>,
    rule: EntryRule,
    metrics: Metrics,
    clock: Clock,
    max_request_size: usize,
    /// The forwarder, when `--forward-endpoint` is set.
    forward: Option<Arc<Forwarder>>,
    /// Under overload every request is refused: refusals are logged at most once a
    /// second, and the counters have every one.
    refusal_log: LogThrottle,
}

impl Ingest {
    /// Ingest into `assembler`.
    pub fn new(
        assembler: Arc<Assembler>,
        rule: EntryRule,
        metrics: Metrics,
        clock: Clock,
        max_request_size: usize,
    ) -> Self {
        Ingest {
            assembler,
            rule,
            metrics,
            clock,
            max_request_size,
            forward: None,
            refusal_log: LogThrottle::new(),
        }
    }

    /// Forwards accepted spans through `forwarder` (docs/contract.md §6).
    pub fn with_forwarder(mut self, forwarder: Option<Arc<Forwarder>>) -> Self {
        self.forward = forwarder;
        self
    }

    /// Largest accepted request, decompressed.
    pub fn max_request_size(&self) -> usize {
        self.max_request_size
    }

    /// Validates, converts and buffers one decoded request. Refusals are counted here.
    ///
    /// # Errors
    /// [`IngestError::Malformed`] when a span's head (or a SERVER span's attributes, a
    /// resource or a scope) does not decode, and [`IngestError::Overloaded`] when the
    /// buffer cannot take the spans: either way nothing of the request was kept; only
    /// after `Overloaded` should the sender retry.
    pub fn export(
        &self,
        req: LiteExportRequest,
        transport: Transport,
    ) -> Result<ExportOutcome, IngestError> {
        let converted = match convert::convert_request(req, &self.rule) {
            Ok(c) => c,
            Err(e) => {
                let err = IngestError::Malformed(format!("protobuf: {e}"));
                self.refused(transport, &err);
                return Err(err);
            }
        };
        let usable = converted.spans.len() as u64;
        self.metrics.refuse_spans(
            transport,
            RefuseReason::InvalidId,
            converted.rejected as u64,
        );
        // Room in the forward queue first (all or nothing, like the buffer): in passthrough
        // the spans are queued once they are buffered; in annotate they are queued after
        // analysis, and a full queue refuses new ones until the downstream catches up.
        let mut passthrough = None;
        if let (Some(f), true) = (&self.forward, usable > 0) {
            let room = match f.mode() {
                ForwardMode::Passthrough => f.reserve(usable as usize).map(|r| {
                    passthrough = Some((r, f.encode(&converted.spans)));
                }),
                ForwardMode::Annotate => f.has_room().then_some(()),
            };
            if room.is_none() {
                let queue = f.queue();
                let err = IngestError::ForwardQueueFull {
                    depth: queue.depth(),
                    capacity: queue.capacity(),
                };
                self.metrics
                    .refuse_spans(transport, RefuseReason::ForwardQueueFull, usable);
                self.refused(transport, &err);
                return Err(err);
            }
        }
        match self.assembler.insert(converted.spans, self.clock.now_ms()) {
            Ok(outcome) => {
                if let Some(f) = &self.forward {
                    match passthrough {
                        Some((reservation, body)) => f.commit(reservation, body),
                        None => f.forward_late(&outcome.late_spans),
                    }
                }
                self.metrics
                    .accepted_spans
                    .get_or_create(&TransportLabels { transport })
                    .inc_by(usable);
                Ok(ExportOutcome {
                    rejected: converted.rejected,
                    message: converted.first_problem,
                })
            }
            Err(overloaded) => {
                self.metrics
                    .refuse_spans(transport, RefuseReason::Overloaded, usable);
                let err = IngestError::from(overloaded);
                self.refused(transport, &err);
                Err(err)
            }
        }
    }

    /// Refuses an export that carried no valid bearer token ([`crate::auth`]): counts the
    /// request and, when it decoded, its spans, with reason `unauthenticated`. Nothing
    /// of it is converted or buffered.
    pub fn refuse_unauthenticated(
        &self,
        decoded: Option<&LiteExportRequest>,
        transport: Transport,
    ) -> IngestError {
        if let Some(req) = decoded {
            let spans: usize = req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.metrics
                .refuse_spans(transport, RefuseReason::Unauthenticated, spans as u64);
        }
        let err = IngestError::Unauthenticated;
        self.refused(transport, &err);
        err
    }

    /// Counts and logs a request refused whole.
    pub fn refused(&self, transport: Transport, err: &IngestError) {
        self.metrics.refuse_request(transport, err.reason());
        if !self.refusal_log.allow(self.clock.now_ms()) {
            return;
        }
        match err {
            IngestError::Overloaded(_) | IngestError::ForwardQueueFull { .. } => {
                tracing::warn!(
                    ?transport,
                    error = %err,
                    "pushing back (logged at most once a second)"
                )
            }
            _ => tracing::info!(
                ?transport,
                error = %err,
                "refused export request (logged at most once a second)"
            ),
        }
    }
}
