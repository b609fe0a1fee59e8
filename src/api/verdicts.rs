//! `/api/v1/verdicts/{trace_id}`, `/api/v1/verdicts` and `/api/v1/fingerprints`
//! (docs/contract.md §4). Field names come from the analysis types' serde derives, which follow §4.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::analysis::Classification;
use crate::model::TraceId;
use crate::store::{VerdictQuery, VerdictStore};

/// Default `limit` (also of the gRPC API).
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` (also of the gRPC API).
pub(crate) const MAX_LIMIT: usize = 10_000;

/// An API error: status and a JSON `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// The verdict routes.
pub fn router(store: Arc<VerdictStore>) -> Router {
    Router::new()
        .route("/api/v1/verdicts/{trace_id}", get(by_trace))
        .route("/api/v1/verdicts", get(list))
        .route("/api/v1/fingerprints", get(fingerprints))
        .with_state(store)
}

async fn by_trace(
    State(store): State<Arc<VerdictStore>>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    if TraceId::from_hex(&trace_id).is_none() {
        return Err(ApiError::BadRequest(format!(
            "trace id {trace_id:?} is not 32 lowercase hex characters"
        )));
    }
    let found = {
        let id = trace_id.clone();
        super::read_store(&store, move |s| s.get(&id)).await
    };
    match found {
        Some(v) => Ok(Json(&*v).into_response()),
        None => Err(ApiError::NotFound(format!(
            "no verdict for trace {trace_id} (healthy, not analysed yet, or unknown)"
        ))),
    }
}

/// Raw query parameters of the list endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    service: Option<String>,
    route: Option<String>,
    origin_service: Option<String>,
    classification: Option<String>,
    fingerprint: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

pub(crate) fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_LIMIT)),
            _ => Err(ApiError::BadRequest(format!(
                "limit {s:?} must be a positive integer"
            ))),
        },
    }
}

/// `since` as RFC 3339 (`2026-11-25T10:00:00Z`), epoch milliseconds, or a look-back
/// duration (`15m`), into Unix nanoseconds.
pub(crate) fn parse_time(name: &str, raw: &str, now: SystemTime) -> Result<u64, ApiError> {
    let to_nanos = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    };
    if let Ok(ms) = raw.parse::<u64>() {
        return Ok(ms.saturating_mul(1_000_000));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(raw) {
        return Ok(to_nanos(t));
    }
    if let Ok(d) = humantime::parse_duration(raw) {
        return Ok(to_nanos(now.checked_sub(d).unwrap_or(UNIX_EPOCH)));
    }
    Err(ApiError::BadRequest(format!(
        "{name} {raw:?}: use RFC 3339, epoch milliseconds, or a duration like 15m"
    )))
}

/// A query string that does not decode (a repeated parameter, bad escapes) is a 400 with
/// the same JSON body as any other bad parameter, not axum's plain-text rejection.
pub(crate) fn query<T>(raw: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    raw.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("query string: {}", e.body_text())))
}

async fn list(
    State(store): State<Arc<VerdictStore>>,
    raw: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(raw)?;
    let classification = match nonempty(p.classification) {
        None => None,
        Some(c) => Some(Classification::parse(&c).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "classification {c:?}: use deterministic_handler_defect, late_dependency_failure or inconclusive"
            ))
        })?),
    };
    let since = match nonempty(p.since) {
        None => None,
        Some(s) => Some(parse_time("since", &s, SystemTime::now())?),
    };
    let q = VerdictQuery {
        service: nonempty(p.service),
        route: nonempty(p.route),
        origin_service: nonempty(p.origin_service),
        classification,
        fingerprint: nonempty(p.fingerprint),
        since_unix_nano: since,
        until_unix_nano: None,
        limit: parse_limit(p.limit.as_deref())?,
    };
    let verdicts = super::read_store(&store, move |s| s.list(&q)).await;
    let body: Vec<&crate::analysis::Verdict> = verdicts.iter().map(|v| &**v).collect();
    Ok(Json(serde_json::json!({ "verdicts": body })).into_response())
}

async fn fingerprints(
    State(store): State<Arc<VerdictStore>>,
    raw: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(raw)?;
    let limit = parse_limit(p.limit.as_deref())?;
    let service = nonempty(p.service);
    let groups =
        super::read_store(&store, move |s| s.fingerprints(service.as_deref(), limit)).await;
    Ok(Json(serde_json::json!({ "fingerprints": groups })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_accepts_rfc3339_epoch_ms_and_lookback() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(parse_time("since", "1500", now).unwrap(), 1_500_000_000);
        assert_eq!(
            parse_time("since", "1970-01-01T00:00:10Z", now).unwrap(),
            10_000_000_000
        );
        assert_eq!(parse_time("since", "15m", now).unwrap(), 100_000_000_000);
        assert!(parse_time("since", "yesterday-ish", now).is_err());
    }

    #[test]
    fn limits_are_positive_and_capped() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("5")).unwrap(), 5);
        assert_eq!(parse_limit(Some("99999999")).unwrap(), MAX_LIMIT);
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("ten")).is_err());
    }
}
