//! The OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` or
//! `application/json` bodies, optionally gzip-encoded.
//!
//! Sizes are bounded twice: the body as sent is read through a length limit, and gzip is
//! inflated through `Read::take(limit + 1)`, so a decompression bomb costs at most the
//! limit in memory before it is refused with 413. Errors carry a `google.rpc.Status` body
//! in the request's content type (OTLP/HTTP "Failures").
//!
//! Protobuf bodies are decoded zero-copy from the body's `Bytes` (see
//! [`lite`](super::lite)); JSON bodies are parsed into the full prost types, encoded once
//! and decoded the same way, so everything after [`decode`] is one code path.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use http_body_util::{BodyExt, Limited};
use prost::Message;

use super::convert::json_to_protobuf;
use super::lite::LiteExportRequest;
use super::{Ingest, IngestError};
use crate::auth::Unauthenticated;
use crate::telemetry::metrics::Transport;

/// Payload encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (the OTLP/JSON mapping).
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The router of the OTLP/HTTP listener.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .with_state(ingest)
}

async fn export(
    State(ingest): State<Arc<Ingest>>,
    unauthenticated: Option<Extension<Unauthenticated>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if unauthenticated.is_some() {
        // Refused whatever the payload; decoded (bounded) only to count its spans.
        let format = media_type(&headers).ok();
        let decoded = match format {
            Some(format) => read_request(&ingest, &headers, body, format).await.ok(),
            None => None,
        };
        let err = ingest.refuse_unauthenticated(decoded.as_ref(), Transport::Http);
        return error_response(&err, format.unwrap_or(Format::Protobuf));
    }
    // Without a recognised content type we cannot even pick the error body's format.
    let format = match media_type(&headers) {
        Ok(f) => f,
        Err(err) => {
            ingest.refused(Transport::Http, &err);
            return error_response(&err, Format::Protobuf);
        }
    };
    let result = match read_request(&ingest, &headers, body, format).await {
        Ok(req) => ingest.export(req, Transport::Http),
        Err(err) => {
            ingest.refused(Transport::Http, &err);
            Err(err)
        }
    };
    match result {
        Ok(outcome) => {
            let resp = outcome.response();
            let body = match format {
                Format::Protobuf => resp.encode_to_vec(),
                // OTLP/JSON omits unset fields: full success is `{}`.
                Format::Json => match &resp.partial_success {
                    None => b"{}".to_vec(),
                    // Serialising a plain struct of two scalars cannot fail.
                    Some(_) => serde_json::to_vec(&resp).unwrap_or_default(),
                },
            };
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
        Err(err) => error_response(&err, format),
    }
}

fn media_type(headers: &HeaderMap) -> Result<Format, IngestError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(IngestError::UnsupportedMediaType(format!(
            "content type {raw:?}; use application/x-protobuf or application/json"
        ))),
    }
}

async fn read_request(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
    format: Format,
) -> Result<LiteExportRequest, IngestError> {
    let limit = ingest.max_request_size();
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let gzip = match encoding.as_str() {
        "gzip" => true,
        "identity" | "" => false,
        other => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "content encoding {other:?}; use gzip or none"
            )))
        }
    };
    let raw: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(IngestError::TooLarge { limit })
        }
        Err(e) => return Err(IngestError::Malformed(format!("reading body: {e}"))),
    };
    let payload = if gzip { gunzip(&raw, limit)? } else { raw };
    decode(payload, format)
}

/// Inflates at most `limit` bytes; more is [`IngestError::TooLarge`].
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::with_capacity((compressed.len() * 4).min(limit));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge { limit });
    }
    Ok(out.into())
}

/// Decodes a request body in either OTLP/HTTP format into the lite request, slicing the
/// spans out of `payload` (protobuf) or out of a one-off re-encoding (JSON).
///
/// # Errors
/// [`IngestError::Malformed`] naming the decoder's complaint.
pub fn decode(payload: Bytes, format: Format) -> Result<LiteExportRequest, IngestError> {
    let protobuf = match format {
        Format::Protobuf => payload,
        Format::Json => json_to_protobuf(&payload)
            .map_err(|e| IngestError::Malformed(format!("OTLP/JSON: {e}")))?
            .into(),
    };
    LiteExportRequest::decode(protobuf)
        .map_err(|e| IngestError::Malformed(format!("protobuf: {e}")))
}

fn error_response(err: &IngestError, format: Format) -> Response {
    let status = tonic_types::Status {
        code: err.rpc_code(),
        message: err.to_string(),
        details: vec![],
    };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::json!({"code": status.code, "message": status.message})
            .to_string()
            .into_bytes(),
    };
    let mut resp = (
        err.http_status(),
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if matches!(err, IngestError::Unauthenticated) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::auth::CHALLENGE),
        );
    }
    if let Some(after) = err.retry_after() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_is_refused_after_at_most_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap(); // 64 MiB of zeros, ~64 KiB compressed
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            gunzip(&bomb, 4 << 20),
            Err(IngestError::TooLarge { .. })
        ));
    }

    #[test]
    fn content_types_follow_otlp_http() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(media_type(&h).unwrap(), Format::Json);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(matches!(
            media_type(&h),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert_eq!(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media_type(&h).unwrap_err().http_status()
        );
    }
}
