//! The HTTP API listener (`--http-listen`): `/healthz`, `/readyz`, `/metrics` and the
//! verdict API of docs/contract.md §4 ([`verdicts`]); the same verdicts over gRPC ([`grpc`],
//! served on the OTLP/gRPC port) with their live feed ([`feed`]); and the Grafana
//! (Infinity) endpoints of docs/contract.md §5b ([`grafana`]).
//!
//! `router(state)` is a plain axum `Router`, so tests drive it with `oneshot` as well as
//! over a socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

pub mod feed;
pub mod grafana;
pub mod grpc;
pub mod verdicts;

use crate::assembly::Assembler;
use crate::store::VerdictStore;
use crate::telemetry::metrics::Metrics;

/// Runs a store read on a blocking thread when it may wait on the state database
/// ([`VerdictStore::reads_block`]), inline otherwise: the runtime's workers never wait
/// on a database.
pub(crate) async fn read_store<T: Send + 'static>(
    store: &Arc<VerdictStore>,
    f: impl FnOnce(&VerdictStore) -> T + Send + 'static,
) -> T {
    if !store.reads_block() {
        return f(store);
    }
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What the API handlers read.
pub struct ApiState {
    /// The metric registry.
    pub registry: Registry,
    /// Metric handles (gauges are refreshed at scrape time).
    pub metrics: Metrics,
    /// The trace buffer, for gauges and readiness.
    pub assembler: Arc<Assembler>,
    /// Verdicts and fingerprint groups.
    pub store: Arc<VerdictStore>,
    /// Set once every listener is bound and serving.
    pub listeners_up: AtomicBool,
    /// The forwarder's queue, when forwarding: a full queue refuses data, so not ready.
    pub forward_queue: Option<Arc<crate::forward::queue::ForwardQueue>>,
}

/// The API router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&state))
        .merge(verdicts::router(Arc::clone(&state.store)))
        .merge(grafana::router(Arc::clone(&state.store)))
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if !s.listeners_up.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "listeners starting\n").into_response()
    } else if s.assembler.is_refusing() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "refusing data: span buffer full\n",
        )
            .into_response()
    } else if s.forward_queue.as_ref().is_some_and(|q| !q.has_room()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "refusing data: forward queue full\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    s.metrics
        .traces_buffered
        .set(s.assembler.buffered_traces() as i64);
    s.metrics
        .spans_buffered
        .set(s.assembler.buffered_spans() as i64);
    s.metrics
        .analysis_queue_depth
        .set(s.assembler.queue_depth() as i64);
    s.metrics
        .verdicts_retained
        .set(s.store.retained_traces() as i64);
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if wants_openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut body, &s.registry),
            OPENMETRICS,
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, &s.registry),
            PROMETHEUS_TEXT,
        )
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n",
            )
                .into_response()
        }
    }
}
