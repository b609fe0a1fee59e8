//! Bearer-token authentication, as the OpenTelemetry Collector's `bearertokenauth`
//! extension does it: `Authorization: Bearer <token>` (the gRPC metadata key
//! `authorization`), tokens from a file, one a line, re-read when the file changes.
//!
//! - [`TokenFile`]: the tokens. Only SHA-256 digests are held, and a presented token is
//!   compared with every one of them in constant time (`subtle`), so neither the
//!   comparison nor its length gives away how much of a token was right. A missing, a
//!   malformed and a wrong token get the same answer: gRPC `UNAUTHENTICATED` / HTTP 401
//!   with `WWW-Authenticate: Bearer` and [`UNAUTHENTICATED_MESSAGE`].
//! - [`GrpcAuthLayer`]: the OTLP/gRPC port (OTLP `Export` and `faultline.v1.Verdicts`).
//! - [`protect_otlp_http`] and [`protect_api`]: the axum listeners; `/healthz` and
//!   `/readyz` stay open for probes.
//!
//! An OTLP `Export` without a valid token is not answered here: the request is marked
//! [`Unauthenticated`] and goes on to the receiver, which refuses it after its bounded
//! decode, because only there is the span count known, and refused spans are counted by
//! reason (`faultline_receiver_refused_spans_total{reason="unauthenticated"}`, docs/contract.md §5).
//! That costs an unauthenticated sender what any export costs up to the decode (bounded
//! by `--max-request-size`), never the conversion or the trace buffer. Every other
//! request is refused before its handler runs.
//!
//! The file is checked for changes (inode, size, modification time) at most once every
//! [`CHECK_EVERY`], by the request that finds the check due: a `stat`, and a read of a
//! small file when it changed, so there is no background task to stop. A file that has
//! become unreadable, empty or invalid is logged and the last good tokens stay in force:
//! a half-written Secret must not lock every sender out, nor open the door.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::config::ConfigError;
use crate::file_watch::{DueCheck, FileStamp};
use crate::telemetry::LogThrottle;

/// The message of every authentication refusal, whatever was wrong with the token.
pub const UNAUTHENTICATED_MESSAGE: &str = "missing or invalid bearer token";

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
pub const CHALLENGE: &str = "Bearer realm=\"faultline\"";

/// How often the token file is checked for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Largest token file read (a list of tokens, not a database).
const MAX_FILE_SIZE: u64 = 1 << 20;

/// A request extension: the request carried no valid token. Set on OTLP `Export`
/// requests, which the receivers refuse themselves (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthenticated;

/// Why a token file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    /// No token in the file.
    #[error("no token in the file (one a line; blank lines and # comments are ignored)")]
    Empty,
    /// A line holds something that cannot be a bearer token (the token itself is never
    /// repeated in a message).
    #[error("line {line}: not a bearer token (tokens are printable ASCII without spaces)")]
    BadToken {
        /// 1-based line number.
        line: usize,
    },
    /// Larger than any token list.
    #[error("larger than {} bytes", MAX_FILE_SIZE)]
    TooLarge,
    /// Not readable (or not UTF-8).
    #[error("cannot read: {0}")]
    Read(String),
}

/// The tokens of a file's text: one a line, surrounding whitespace trimmed, blank lines
/// and lines starting with `#` ignored.
///
/// # Errors
/// [`TokenFileError::Empty`] without any token, [`TokenFileError::BadToken`] for a line
/// with inner whitespace or characters outside printable ASCII.
pub fn parse_tokens(text: &str) -> Result<Vec<&str>, TokenFileError> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() || token.starts_with('#') {
            continue;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenFileError::BadToken { line: i + 1 });
        }
        tokens.push(token);
    }
    if tokens.is_empty() {
        return Err(TokenFileError::Empty);
    }
    Ok(tokens)
}

type Digest = [u8; 32];

fn digest(token: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `presented` is one of `digests`, in time independent of which (if any)
/// matched and of how much of it matched.
fn matches_any(digests: &[Digest], presented: &[u8]) -> bool {
    let presented = digest(presented);
    digests
        .iter()
        .fold(subtle::Choice::from(0), |found, d| {
            found | d.ct_eq(&presented)
        })
        .into()
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive,
/// RFC 7235 §2.1).
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn read_digests(path: &Path) -> Result<Vec<Digest>, TokenFileError> {
    let len = std::fs::metadata(path)
        .map_err(|e| TokenFileError::Read(e.to_string()))?
        .len();
    if len > MAX_FILE_SIZE {
        return Err(TokenFileError::TooLarge);
    }
    let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Read(e.to_string()))?;
    Ok(parse_tokens(&text)?
        .into_iter()
        .map(|t| digest(t.as_bytes()))
        .collect())
}

struct Loaded {
    digests: Vec<Digest>,
    /// The version last looked at (loaded or refused); `None` when it could not be
    /// stat'ed.
    stamp: Option<FileStamp>,
}

/// The tokens of one file, re-read when it changes (module doc).
pub struct TokenFile {
    option: &'static str,
    path: PathBuf,
    // A std lock: held only to swap or read a small vector, never across an await.
    loaded: RwLock<Loaded>,
    clock: Instant,
    check: DueCheck,
    /// Refusals are logged at most once a second.
    refusal_log: LogThrottle,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens, not even their digests.
        f.debug_struct("TokenFile")
            .field("option", &self.option)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenFile {
    /// Reads the tokens of `path`, named by `--option`.
    ///
    /// # Errors
    /// [`ConfigError::File`] naming the option and file when it cannot be read, holds no
    /// token or an invalid line: refusing to start beats running with no tokens (which
    /// would lock everyone out, or worse, be taken for "no authentication").
    pub fn open(option: &'static str, path: &Path) -> Result<TokenFile, ConfigError> {
        let before = FileStamp::of(path);
        let digests = read_digests(path).map_err(|e| ConfigError::File {
            option,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(TokenFile {
            option,
            path: path.to_owned(),
            loaded: RwLock::new(Loaded {
                digests,
                stamp: before,
            }),
            clock: Instant::now(),
            check: DueCheck::new(CHECK_EVERY),
            refusal_log: LogThrottle::new(),
        })
    }

    /// [`TokenFile::open`] for an optional option.
    ///
    /// # Errors
    /// See [`TokenFile::open`].
    pub fn open_optional(
        option: &'static str,
        path: Option<&Path>,
    ) -> Result<Option<Arc<TokenFile>>, ConfigError> {
        path.map(|p| TokenFile::open(option, p).map(Arc::new))
            .transpose()
    }

    /// Checks the file for changes every `every` instead of [`CHECK_EVERY`] (tests use
    /// zero: every request checks).
    pub fn check_every(mut self, every: Duration) -> TokenFile {
        self.check = DueCheck::new(every);
        self
    }

    /// The number of tokens in force.
    pub fn len(&self) -> usize {
        self.read_loaded().digests.len()
    }

    /// Never true: a token file without tokens is refused.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_loaded(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        // A panic while holding the lock cannot leave `Loaded` half-written (it is
        // replaced whole), so a poisoned lock is still good to read.
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the request's headers carry one of the tokens (re-reading the file first
    /// when a check is due).
    pub fn authorize(&self, headers: &HeaderMap) -> bool {
        self.refresh_if_due();
        let Some(token) = bearer_token(headers) else {
            return false;
        };
        matches_any(&self.read_loaded().digests, token)
    }

    fn refresh_if_due(&self) {
        // One request does the check; the others go on with the tokens in force.
        if self.check.take() {
            self.refresh();
        }
    }

    /// Re-reads the file if it changed since it was last looked at. Returns whether new
    /// tokens took effect.
    pub fn refresh(&self) -> bool {
        let now = FileStamp::of(&self.path);
        if now == self.read_loaded().stamp {
            return false;
        }
        let result = match now {
            None => Err(TokenFileError::Read("cannot stat the file".into())),
            Some(_) => read_digests(&self.path),
        };
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.stamp = now;
        match result {
            Ok(digests) => {
                tracing::info!(
                    option = self.option,
                    path = %self.path.display(),
                    "{} token(s) in force",
                    digests.len()
                );
                loaded.digests = digests;
                true
            }
            Err(e) => {
                tracing::warn!(
                    option = self.option,
                    path = %self.path.display(),
                    error = %e,
                    "token file unusable; keeping the {} token(s) read before",
                    loaded.digests.len()
                );
                false
            }
        }
    }

    /// Logs a refusal, at most once a second (the counters, where there are some, have
    /// every one).
    pub fn log_refusal(&self, what: &str) {
        if !self
            .refusal_log
            .allow(self.clock.elapsed().as_millis() as u64)
        {
            return;
        }
        tracing::info!(
            refused = what,
            "refused without a valid bearer token (logged at most once a second)"
        );
    }
}

/// Tower layer of the OTLP/gRPC server: every request needs a token when there is a
/// [`TokenFile`]; an `Export` without one is marked [`Unauthenticated`] and left to the
/// receiver (module doc), anything else is answered `UNAUTHENTICATED` here.
#[derive(Clone, Debug)]
pub struct GrpcAuthLayer {
    tokens: Option<Arc<TokenFile>>,
    export_path: &'static str,
}

impl GrpcAuthLayer {
    /// Checks against `tokens` (none: everything passes); requests to `export_path` are
    /// marked rather than refused.
    pub fn new(tokens: Option<Arc<TokenFile>>, export_path: &'static str) -> Self {
        GrpcAuthLayer {
            tokens,
            export_path,
        }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`GrpcAuthLayer`].
#[derive(Clone, Debug)]
pub struct GrpcAuth<S> {
    inner: S,
    layer: GrpcAuthLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(tokens) = &self.layer.tokens else {
            return Box::pin(self.inner.call(req));
        };
        if !tokens.authorize(req.headers()) {
            if req.uri().path() != self.layer.export_path {
                tokens.log_refusal(&format!("gRPC call {}", req.uri().path()));
                let refused = tonic::Status::unauthenticated(UNAUTHENTICATED_MESSAGE).into_http();
                return Box::pin(std::future::ready(Ok(refused)));
            }
            req.extensions_mut().insert(Unauthenticated);
        }
        Box::pin(self.inner.call(req))
    }
}

/// The 401 of the axum listeners (the OTLP/HTTP receiver writes its own, in OTLP's
/// format, for `POST /v1/traces`).
pub fn unauthorized() -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": UNAUTHENTICATED_MESSAGE })),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    resp
}

/// Requires a token on the OTLP/HTTP listener (when `tokens` is set); `POST export_path`
/// without one is marked [`Unauthenticated`] for the receiver to refuse and count.
pub fn protect_otlp_http(
    router: Router,
    tokens: Option<Arc<TokenFile>>,
    export_path: &'static str,
) -> Router {
    match tokens {
        None => router,
        Some(tokens) => router.layer(axum::middleware::from_fn_with_state(
            (tokens, export_path),
            otlp_http_auth,
        )),
    }
}

async fn otlp_http_auth(
    State((tokens, export_path)): State<(Arc<TokenFile>, &'static str)>,
    mut req: Request,
    next: Next,
) -> Response {
    if !tokens.authorize(req.headers()) {
        if req.method() != http::Method::POST || req.uri().path() != export_path {
            tokens.log_refusal("OTLP/HTTP request");
            return unauthorized();
        }
        req.extensions_mut().insert(Unauthenticated);
    }
    next.run(req).await
}

/// Paths of the API listener that answer without a token: the probes.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Requires a token for everything on the API listener but [`OPEN_PATHS`] (when
/// `tokens` is set).
pub fn protect_api(router: Router, tokens: Option<Arc<TokenFile>>) -> Router {
    match tokens {
        None => router,
        Some(tokens) => router.layer(axum::middleware::from_fn_with_state(tokens, api_auth)),
    }
}

async fn api_auth(State(tokens): State<Arc<TokenFile>>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) || tokens.authorize(req.headers()) {
        return next.run(req).await;
    }
    tokens.log_refusal("API request");
    unauthorized()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        h
    }

    fn token_file(dir: &Path, text: &str) -> (PathBuf, TokenFile) {
        let path = dir.join("tokens");
        std::fs::write(&path, text).unwrap();
        let f = TokenFile::open("auth-token-file", &path)
            .unwrap()
            .check_every(Duration::ZERO);
        (path, f)
    }

    /// Replaces the file the way a Secret volume or `mv` does (a new inode).
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn tokens_are_lines_without_blanks_and_comments() {
        let text = "# ingest tokens\n\n  alpha-1  \r\nbeta/2==\n   # indented comment\n";
        assert_eq!(parse_tokens(text).unwrap(), vec!["alpha-1", "beta/2=="]);
    }

    #[test]
    fn a_file_without_tokens_or_with_a_bad_line_is_refused() {
        assert_eq!(parse_tokens(""), Err(TokenFileError::Empty));
        assert_eq!(parse_tokens("# only\n\n \n"), Err(TokenFileError::Empty));
        assert_eq!(
            parse_tokens("good\ntwo words\n"),
            Err(TokenFileError::BadToken { line: 2 })
        );
        assert_eq!(
            parse_tokens("tök\n"),
            Err(TokenFileError::BadToken { line: 1 })
        );
        let e = TokenFileError::BadToken { line: 2 }.to_string();
        assert!(!e.contains("two"), "a message never repeats a token: {e}");
    }

    #[test]
    fn open_names_the_option_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        let e = TokenFile::open("api-auth-token-file", &path)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--api-auth-token-file "), "{e}");
        assert!(e.contains("tokens: no token"), "{e}");
        let e = TokenFile::open("auth-token-file", &dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent: cannot read"), "{e}");
    }

    #[test]
    fn only_a_listed_bearer_token_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (_, f) = token_file(dir.path(), "s3cret\nother-token\n");
        assert_eq!(f.len(), 2);
        assert!(f.authorize(&headers("Bearer s3cret")));
        assert!(f.authorize(&headers("bearer   other-token ")));
        for refused in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer ",
            "Basic czNjcmV0",
            "s3cret",
            "Bearers3cret",
        ] {
            assert!(!f.authorize(&headers(refused)), "{refused:?}");
        }
        assert!(!f.authorize(&HeaderMap::new()));
    }

    #[test]
    fn the_comparison_looks_at_every_token() {
        // `matches_any` folds over all digests (no early exit): a match in any position
        // is found, and nothing matches an empty list.
        let digests: Vec<Digest> = ["a", "b", "c"]
            .iter()
            .map(|t| digest(t.as_bytes()))
            .collect();
        for t in ["a", "b", "c"] {
            assert!(matches_any(&digests, t.as_bytes()));
        }
        assert!(!matches_any(&digests, b"d"));
        assert!(!matches_any(&[], b"a"));
    }

    #[test]
    fn a_changed_file_takes_effect_and_the_old_token_stops_working() {
        let dir = tempfile::tempdir().unwrap();
        let (path, f) = token_file(dir.path(), "old-token\n");
        assert!(f.authorize(&headers("Bearer old-token")));
        replace(&path, "new-token-longer\n");
        assert!(f.authorize(&headers("Bearer new-token-longer")));
        assert!(!f.authorize(&headers("Bearer old-token")));
        assert!(!f.refresh(), "unchanged: nothing re-read");
    }

    #[test]
    fn a_broken_or_vanished_file_keeps_the_last_good_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let (path, f) = token_file(dir.path(), "kept\n");
        replace(&path, "\n# emptied\n");
        assert!(!f.refresh());
        assert!(f.authorize(&headers("Bearer kept")));
        std::fs::remove_file(&path).unwrap();
        assert!(f.authorize(&headers("Bearer kept")));
        replace(&path, "back\n");
        assert!(f.authorize(&headers("Bearer back")));
        assert!(!f.authorize(&headers("Bearer kept")));
    }

    #[test]
    fn checks_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "first\n").unwrap();
        // With the default interval, a change right after start waits for the next check.
        let f = TokenFile::open("auth-token-file", &path)
            .unwrap()
            .check_every(Duration::from_secs(3600));
        replace(&path, "second\n");
        assert!(f.authorize(&headers("Bearer first")));
        assert!(!f.authorize(&headers("Bearer second")));
        assert!(f.refresh(), "an explicit refresh reads it");
        assert!(f.authorize(&headers("Bearer second")));
    }

    async fn status_of(router: Router, path: &str, authorization: Option<&str>) -> Response {
        let mut req = http::Request::get(path);
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        router
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_api_keeps_its_probes_open_and_answers_401_alike_for_every_bad_token() {
        let dir = tempfile::tempdir().unwrap();
        let (_, f) = token_file(dir.path(), "api-token\n");
        let router = protect_api(
            Router::new()
                .route("/healthz", axum::routing::get(|| async { "ok" }))
                .route("/readyz", axum::routing::get(|| async { "ready" }))
                .route("/metrics", axum::routing::get(|| async { "m" })),
            Some(Arc::new(f)),
        );
        for open in ["/healthz", "/readyz"] {
            assert_eq!(status_of(router.clone(), open, None).await.status(), 200);
        }
        let ok = status_of(router.clone(), "/metrics", Some("Bearer api-token")).await;
        assert_eq!(ok.status(), 200);
        let mut answers = Vec::new();
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Bearer"),
            Some("Token api-token"),
        ] {
            let resp = status_of(router.clone(), "/metrics", bad).await;
            let parts = (
                resp.status(),
                resp.headers().get(header::WWW_AUTHENTICATE).cloned(),
                axum::body::to_bytes(resp.into_body(), 1024).await.unwrap(),
            );
            answers.push(parts);
        }
        assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
        assert_eq!(answers[0].1.as_ref().unwrap(), CHALLENGE);
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
        let unknown = status_of(router, "/api/v1/nothing", None).await;
        assert_eq!(unknown.status(), 401, "no route probing without a token");
    }

    #[tokio::test]
    async fn grpc_calls_without_a_token_are_refused_and_exports_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        let (_, f) = token_file(dir.path(), "grpc-token\n");
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            let marked = req.extensions().get::<Unauthenticated>().is_some();
            Ok::<_, std::convert::Infallible>(http::Response::new(marked))
        });
        let svc = tower::Layer::layer(
            &GrpcAuthLayer::new(Some(Arc::new(f)), "/otlp/Export"),
            inner,
        );
        let call = |path: &str, token: Option<&str>| {
            let mut req = http::Request::post(path);
            if let Some(t) = token {
                req = req.header("authorization", t);
            }
            svc.clone().oneshot(req.body(()).unwrap())
        };
        let passed = call("/otlp/Export", Some("Bearer grpc-token"))
            .await
            .unwrap();
        assert!(!*passed.body() && passed.headers().get("grpc-status").is_none());
        let marked = call("/otlp/Export", Some("Bearer wrong")).await.unwrap();
        assert!(*marked.body(), "an unauthenticated export goes on, marked");
        let refused = call("/faultline.v1.Verdicts/ListVerdicts", None)
            .await
            .unwrap();
        assert_eq!(refused.headers()["grpc-status"], "16");
        assert!(!*refused.body(), "refused before the inner service");
    }
}
