//! The gRPC verdict API, `faultline.v1.Verdicts` (proto/faultline/v1/verdicts.proto),
//! served on the OTLP/gRPC port: the HTTP API's verdict reads ([`super::verdicts`]) with
//! the same parsing rules and errors, plus the live `WatchVerdicts` stream fed by
//! [`super::feed`].
//!
//! Protobuf types stop here: [`convert`] turns the crate's [`Verdict`] into the wire
//! message, and [`ApiError`] becomes a gRPC status in one place.
//!
//! [`Verdict`]: crate::analysis::Verdict

pub mod convert;

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::feed::{FeedEvent, Subscription, VerdictFeed, WatchFilter};
use super::verdicts::{parse_time, ApiError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::model::TraceId;
use crate::store::{VerdictQuery, VerdictStore};
use convert::{classification_filter, ProtoVerdictError};

/// The code generated from `proto/faultline/v1/verdicts.proto` at build time: messages,
/// the `verdicts_server` the service implements and the `verdicts_client` tests and
/// other Rust programs can call it with.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("faultline.v1");
}

use proto::verdicts_server::{Verdicts, VerdictsServer};

impl From<ApiError> for Status {
    /// The HTTP API's 400 and 404 as INVALID_ARGUMENT and NOT_FOUND, with the same text.
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
        }
    }
}

impl From<ProtoVerdictError> for ApiError {
    fn from(e: ProtoVerdictError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// `faultline.v1.Verdicts` over the verdict store and the live feed.
pub struct VerdictGrpcService {
    store: Arc<VerdictStore>,
    feed: Arc<VerdictFeed>,
    shutdown: CancellationToken,
}

impl VerdictGrpcService {
    /// The tonic service. Open `WatchVerdicts` streams end with UNAVAILABLE when
    /// `shutdown` is cancelled, so that the server's graceful shutdown is not held open by
    /// subscribers (it waits for every call in flight).
    pub fn service(
        store: Arc<VerdictStore>,
        feed: Arc<VerdictFeed>,
        shutdown: CancellationToken,
    ) -> VerdictsServer<VerdictGrpcService> {
        VerdictsServer::new(VerdictGrpcService {
            store,
            feed,
            shutdown,
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
    }
}

fn nonempty(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// The HTTP API's `limit` rule for a proto3 integer: 0 (unset) is the default, larger
/// values are capped.
fn limit(raw: u32) -> usize {
    match raw {
        0 => DEFAULT_LIMIT,
        n => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
    }
}

/// The HTTP API's query from a ListVerdicts request.
fn list_query(r: proto::ListVerdictsRequest, now: SystemTime) -> Result<VerdictQuery, ApiError> {
    let since = match nonempty(r.since) {
        None => None,
        Some(s) => Some(parse_time("since", &s, now)?),
    };
    Ok(VerdictQuery {
        service: nonempty(r.service),
        route: nonempty(r.route),
        origin_service: nonempty(r.origin_service),
        classification: classification_filter(r.classification)?,
        fingerprint: nonempty(r.fingerprint),
        since_unix_nano: since,
        until_unix_nano: None,
        limit: limit(r.limit),
    })
}

/// The stream of one `WatchVerdicts` call.
type WatchStream =
    Pin<Box<dyn Stream<Item = Result<proto::WatchVerdictsResponse, Status>> + Send + 'static>>;

/// Turns a subscription into the response stream: verdicts and lag notices in order,
/// UNAVAILABLE once `shutdown` is cancelled, the end once the feed is gone.
fn watch_stream(subscription: Subscription, shutdown: CancellationToken) -> WatchStream {
    use proto::watch_verdicts_response::Event;
    let state = Some((subscription, shutdown));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (mut sub, shutdown) = state?;
        let event = tokio::select! {
            // Deliver what is already there before noticing shutdown.
            biased;
            e = sub.next() => e,
            () = shutdown.cancelled() => {
                let status = Status::unavailable("faultline is shutting down");
                return Some((Err(status), None));
            }
        };
        let message = match event? {
            FeedEvent::Verdict(v) => Event::Verdict(proto::Verdict::from(&*v)),
            FeedEvent::Lagged(missed) => Event::Lagged(proto::Lagged { missed }),
        };
        let response = proto::WatchVerdictsResponse {
            event: Some(message),
        };
        Some((Ok(response), Some((sub, shutdown))))
    }))
}

#[tonic::async_trait]
impl Verdicts for VerdictGrpcService {
    async fn get_verdict(
        &self,
        request: Request<proto::GetVerdictRequest>,
    ) -> Result<Response<proto::Verdict>, Status> {
        let trace_id = request.into_inner().trace_id;
        if TraceId::from_hex(&trace_id).is_none() {
            return Err(ApiError::BadRequest(format!(
                "trace id {trace_id:?} is not 32 lowercase hex characters"
            ))
            .into());
        }
        let found = {
            let id = trace_id.clone();
            crate::api::read_store(&self.store, move |s| s.get(&id)).await
        };
        match found {
            Some(v) => Ok(Response::new(proto::Verdict::from(&*v))),
            None => Err(ApiError::NotFound(format!(
                "no verdict for trace {trace_id} (healthy, not analysed yet, or unknown)"
            ))
            .into()),
        }
    }

    async fn list_verdicts(
        &self,
        request: Request<proto::ListVerdictsRequest>,
    ) -> Result<Response<proto::ListVerdictsResponse>, Status> {
        let q = list_query(request.into_inner(), SystemTime::now())?;
        let verdicts = crate::api::read_store(&self.store, move |s| s.list(&q))
            .await
            .iter()
            .map(|v| proto::Verdict::from(&**v))
            .collect();
        Ok(Response::new(proto::ListVerdictsResponse { verdicts }))
    }

    type WatchVerdictsStream = WatchStream;

    async fn watch_verdicts(
        &self,
        request: Request<proto::WatchVerdictsRequest>,
    ) -> Result<Response<Self::WatchVerdictsStream>, Status> {
        let r = request.into_inner();
        let filter = WatchFilter {
            service: nonempty(r.service),
            classification: classification_filter(r.classification).map_err(ApiError::from)?,
        };
        // Subscribed before the response headers go out: every verdict stored after the
        // client sees the call answered reaches it.
        let subscription = self.feed.subscribe(filter);
        Ok(Response::new(watch_stream(
            subscription,
            self.shutdown.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Classification;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn list_requests_follow_the_http_rules() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let q = list_query(
            proto::ListVerdictsRequest {
                service: "orders".into(),
                classification: proto::Classification::Inconclusive.into(),
                since: "15m".into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(q.service.as_deref(), Some("orders"));
        assert_eq!(q.route, None, "empty string means no filter");
        assert_eq!(q.classification, Some(Classification::Inconclusive));
        assert_eq!(q.since_unix_nano, Some(100_000_000_000));
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let capped = proto::ListVerdictsRequest {
            limit: u32::MAX,
            ..Default::default()
        };
        assert_eq!(list_query(capped, now).unwrap().limit, MAX_LIMIT);
    }

    #[test]
    fn bad_list_filters_are_invalid_arguments() {
        let now = SystemTime::now();
        let bad_since = proto::ListVerdictsRequest {
            since: "yesterday-ish".into(),
            ..Default::default()
        };
        let s = Status::from(list_query(bad_since, now).unwrap_err());
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("since"), "{}", s.message());
        let bad_class = proto::ListVerdictsRequest {
            classification: 9,
            ..Default::default()
        };
        let s = Status::from(list_query(bad_class, now).unwrap_err());
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn watch_streams_end_with_unavailable_at_shutdown() {
        use futures::StreamExt;
        let feed = VerdictFeed::new(4, Default::default());
        let shutdown = CancellationToken::new();
        let mut stream = watch_stream(feed.subscribe(WatchFilter::default()), shutdown.clone());
        shutdown.cancel();
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(stream.next().await.is_none());
    }
}
