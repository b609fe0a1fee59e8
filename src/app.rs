//! Wiring: listeners, receivers, the trace buffer and its sweeper, the analysis stage,
//! the API; and the ordered shutdown of docs/contract.md §1.
//!
//! Shutdown order: receivers stop accepting and finish in-flight requests → the sweeper
//! stops → every buffered trace is handed to analysis (trigger `shutdown`) → the hand-off
//! closes and the analysis thread drains the channel → the final OTLP metrics push (when
//! `--otlp-metrics-endpoint` is set), so it carries every verdict → the API listener stops
//! last, so `/metrics` stays scrapeable while the service drains. All of it under
//! `--shutdown-timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::feed::VerdictFeed;
use crate::api::grpc::VerdictGrpcService;
use crate::api::{self, ApiState};
use crate::assembly::{Assembler, Completion};
use crate::auth::{self, GrpcAuthLayer, TokenFile};
use crate::config::{Config, ForwardMode, TlsFiles};
use crate::config::{ConfigError, StateLocation};
use crate::forward::{Forwarder, ForwarderTasks};
use crate::ingest::convert::EntryRule;
use crate::ingest::grpc::{OtlpGrpcReceiver, OtlpStatusLayer};
use crate::ingest::{self, Clock, Ingest};
use crate::pipeline::{self, AnalysisStage, TraceSink};
use crate::store::backend::Backend;
use crate::store::postgres::PostgresBackend;
use crate::store::sqlite::SqliteBackend;
use crate::store::writer::{StateObserver, Writer, WriterConfig};
use crate::store::{VerdictObserver, VerdictStore};
use crate::telemetry::metrics::ListenerName;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::otlp_metrics::PushIdentity;
use crate::telemetry::otlp_push::{self, OtlpMetricsPusher};
use crate::tls;

/// A running service.
pub struct Service {
    /// Bound OTLP/gRPC address.
    pub otlp_grpc_addr: SocketAddr,
    /// Bound OTLP/HTTP address.
    pub otlp_http_addr: SocketAddr,
    /// Bound API address.
    pub http_addr: SocketAddr,
    receivers_stop: CancellationToken,
    receivers: Vec<JoinHandle<anyhow::Result<()>>>,
    api_stop: CancellationToken,
    api: JoinHandle<anyhow::Result<()>>,
    sweeper: std::thread::JoinHandle<()>,
    sweeper_stop: std::sync::mpsc::Sender<()>,
    assembler: Arc<Assembler>,
    stage: std::thread::JoinHandle<()>,
    /// The OTLP metrics push: its stop signal (which triggers the final push) and task.
    otlp_push: Option<(CancellationToken, JoinHandle<()>)>,
    /// The forwarder and its senders, flushed after analysis.
    forward: Option<Arc<Forwarder>>,
    forward_tasks: Option<ForwarderTasks>,
    /// The verdict store: its state writer is flushed after analysis.
    store: Arc<VerdictStore>,
    metrics: Metrics,
    clock: Clock,
    shutdown_timeout: Duration,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSummary {
    /// Traces handed to analysis by the final flush.
    pub traces_flushed: usize,
    /// Traces the analysis stage processed over the service's life.
    pub traces_analyzed: u64,
    /// Spans the analysis stage processed over the service's life.
    pub spans_analyzed: u64,
    /// Spans still buffered at exit (0 unless the deadline passed).
    pub spans_left: usize,
    /// Spans the forwarder had not delivered at exit (0 unless the deadline passed; kept
    /// on disk with `--forward-queue-dir`).
    pub forward_spans_left: usize,
    /// Verdicts the state writer had not committed at exit (0 unless the deadline passed
    /// or the database was down; they were in memory only).
    pub state_verdicts_left: usize,
}

/// The three bound listeners the service serves on: the caller binds them (from the
/// configured addresses with [`Listeners::bind`], or `127.0.0.1:0` in tests) and hands
/// them to [`run`] or [`start`], as mini-redis' `server::run(listener, shutdown)` takes
/// its listener.
pub struct Listeners {
    /// OTLP/gRPC (and the `faultline.v1` verdict API).
    pub otlp_grpc: TcpListener,
    /// OTLP/HTTP (`POST /v1/traces`).
    pub otlp_http: TcpListener,
    /// `/metrics`, `/api/v1/…`, `/healthz`, `/readyz`.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds `--otlp-grpc-listen`, `--otlp-http-listen` and `--http-listen`.
    ///
    /// # Errors
    /// An address cannot be bound (the message names what it was for).
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            otlp_grpc: bind(config.otlp_grpc_listen, "OTLP/gRPC").await?,
            otlp_http: bind(config.otlp_http_listen, "OTLP/HTTP").await?,
            http: bind(config.http_listen, "the HTTP API").await?,
        })
    }

    /// Binds three ephemeral loopback ports (`127.0.0.1:0`): for tests and benches,
    /// which read the addresses back from the [`Service`].
    ///
    /// # Errors
    /// Loopback cannot be bound.
    pub async fn ephemeral() -> anyhow::Result<Listeners> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Listeners {
            otlp_grpc: bind(any, "OTLP/gRPC").await?,
            otlp_http: bind(any, "OTLP/HTTP").await?,
            http: bind(any, "the HTTP API").await?,
        })
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// Starts every stage on `listeners`.
///
/// # Errors
/// A TLS or token file cannot be used, the forwarder cannot start, or the analysis
/// thread cannot start.
pub async fn start(
    config: &Config,
    metrics: Metrics,
    listeners: Listeners,
) -> anyhow::Result<Service> {
    let mut metrics = metrics;
    metrics.forwarding = config.forward.is_some();
    let store = open_state(config, &mut metrics).await?;
    let forwarder = start_forwarder(config, &metrics)?;
    metrics
        .verdict_metrics
        .set_max_series(config.metrics.max_series);
    let feed = Arc::new(VerdictFeed::new(config.watch_buffer, metrics.clone()));
    let stage = AnalysisStage::new(config.analysis.clone(), Arc::clone(&store), metrics.clone())
        .observe(Arc::new(metrics.verdict_metrics.clone()))
        .observe(Arc::clone(&feed) as Arc<dyn VerdictObserver>);
    let stage = match &forwarder {
        Some((f, _)) if f.mode() == ForwardMode::Annotate => stage.forward_to(Arc::clone(f)),
        _ => stage,
    };
    let parts = Parts {
        metrics,
        store,
        feed,
        sink: Box::new(stage),
        forwarder,
    };
    start_with_forwarder(config, listeners, parts).await
}

/// Step: the verdict store, with its state database (`--state`) opened, migrated and
/// read back, and its writer started. Opening may block (a file, a server to reach), so
/// it runs on a blocking thread.
async fn open_state(config: &Config, metrics: &mut Metrics) -> anyhow::Result<Arc<VerdictStore>> {
    let state = config.state.clone();
    let retention = config.verdict_retention;
    let location = match state.location.clone() {
        StateLocation::UrlFile(path) => {
            let raw = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::Error::new(ConfigError::Invalid {
                    option: "state-url-file",
                    value: path.display().to_string(),
                    reason: format!("cannot be read: {e}"),
                })
            })?;
            crate::config::parse_state("state-url-file", &raw)?
        }
        other => other,
    };
    if location == StateLocation::Memory {
        tracing::info!("state: memory only (--state memory): verdicts and fingerprint history end with the process");
        return Ok(Arc::new(VerdictStore::new(retention)));
    }
    metrics.stateful = true;
    let observer: Arc<dyn StateObserver> = Arc::new(metrics.state.clone());
    let store = tokio::task::spawn_blocking(move || -> anyhow::Result<VerdictStore> {
        let backend: Arc<dyn Backend> = match &location {
            StateLocation::Sqlite(path) => Arc::new(SqliteBackend::open(path)?),
            StateLocation::Postgres(url) => Arc::new(PostgresBackend::connect(
                &url.0,
                state.tls_ca_file.as_deref(),
            )?),
            StateLocation::Memory | StateLocation::UrlFile(_) => {
                unreachable!("resolved above")
            }
        };
        let writer = Writer::start(
            Arc::clone(&backend),
            WriterConfig {
                queue: state.queue,
                max_age: state.retention_age,
                max_verdicts: retention as u64,
                ..WriterConfig::default()
            },
            observer,
        )?;
        let store = VerdictStore::with_state(retention, Arc::clone(&backend), writer)?;
        tracing::info!(
            state = backend.kind(),
            location = %backend.location(),
            fingerprint_groups = store.fingerprints(None, usize::MAX).len(),
            "state database open"
        );
        Ok(store)
    })
    .await??;
    Ok(Arc::new(store))
}

/// Starts the forwarder when `--forward-endpoint` is set, recovering the on-disk queue.
fn start_forwarder(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<Option<(Arc<Forwarder>, ForwarderTasks)>> {
    let Some(cfg) = &config.forward else {
        return Ok(None);
    };
    let journal = match &cfg.queue_dir {
        None => None,
        Some(dir) => Some(crate::forward::journal::open(dir)?),
    };
    let started = Forwarder::start(cfg, metrics.clone(), journal).map_err(|e| match e {
        // A TLS file that cannot be used is a bad option (exit 2 in `main`).
        crate::forward::ForwardError::Client(c) => anyhow::Error::new(c),
        other => anyhow::Error::new(other),
    })?;
    Ok(Some(started))
}

/// Like [`start`], with another analysis stage (tests hold or observe the hand-off).
///
/// # Errors
/// As [`start`].
pub async fn start_with_stage(
    config: &Config,
    metrics: Metrics,
    listeners: Listeners,
    store: Arc<VerdictStore>,
    sink: Box<dyn TraceSink>,
) -> anyhow::Result<Service> {
    // `WatchVerdicts` shows what `sink` publishes to this feed: nothing, unless it is given
    // one (use `start_with_feed`).
    let feed = Arc::new(VerdictFeed::new(config.watch_buffer, metrics.clone()));
    start_with_feed(config, metrics, listeners, store, feed, sink).await
}

/// Like [`start_with_stage`], with the feed `WatchVerdicts` subscribes to (the stage is
/// expected to publish its verdicts there, as [`start`]'s does).
///
/// # Errors
/// As [`start`].
pub async fn start_with_feed(
    config: &Config,
    metrics: Metrics,
    listeners: Listeners,
    store: Arc<VerdictStore>,
    feed: Arc<VerdictFeed>,
    sink: Box<dyn TraceSink>,
) -> anyhow::Result<Service> {
    let parts = Parts {
        metrics,
        store,
        feed,
        sink,
        forwarder: None,
    };
    start_with_forwarder(config, listeners, parts).await
}

/// What the start-up is given besides the configuration and the listeners.
struct Parts {
    metrics: Metrics,
    store: Arc<VerdictStore>,
    feed: Arc<VerdictFeed>,
    sink: Box<dyn TraceSink>,
    forwarder: Option<(Arc<Forwarder>, ForwarderTasks)>,
}

/// The server side of each listener's TLS, when it has TLS.
struct ListenerTls {
    otlp_grpc: Option<Arc<tls::ServerTls>>,
    otlp_http: Option<Arc<tls::ServerTls>>,
    http: Option<Arc<tls::ServerTls>>,
}

/// The bearer-token files of the OTLP listeners and of the API.
struct Tokens {
    otlp: Option<Arc<TokenFile>>,
    api: Option<Arc<TokenFile>>,
}

/// The trace buffer, the analysis thread it hands off to, and the ingest both receivers
/// share.
struct Buffer {
    assembler: Arc<Assembler>,
    stage: std::thread::JoinHandle<()>,
    ingest: Arc<Ingest>,
}

/// The start-up, in named steps: TLS, tokens, the buffer and analysis stage, the three
/// servers, the sweeper and the OTLP metrics push; then the listening lines.
async fn start_with_forwarder(
    config: &Config,
    listeners: Listeners,
    parts: Parts,
) -> anyhow::Result<Service> {
    let Parts {
        metrics,
        store,
        feed,
        sink,
        forwarder,
    } = parts;
    let (forward, forward_tasks) = match forwarder {
        Some((f, t)) => (Some(f), Some(t)),
        None => (None, None),
    };
    // TLS material and token files are read before anything is served: a file that
    // cannot be used stops start-up as a configuration error, naming its option.
    let tls = load_tls(config, &metrics)?;
    let tokens = load_tokens(config)?;
    let otlp_grpc_addr = listeners.otlp_grpc.local_addr()?;
    let otlp_http_addr = listeners.otlp_http.local_addr()?;
    let http_addr = listeners.http.local_addr()?;

    let clock = Clock::start();
    // Every counter is zero now: the start of the cumulative OTLP points.
    let started = std::time::SystemTime::now();
    let buffer = start_buffer(config, &metrics, clock, sink, forward.clone())?;
    let receivers_stop = CancellationToken::new();
    let grpc = serve_otlp_grpc(
        listeners.otlp_grpc,
        tls.otlp_grpc,
        tokens.otlp.clone(),
        &buffer.ingest,
        (&store, &feed),
        &metrics,
        receivers_stop.clone(),
    );
    let otlp_http = serve_otlp_http(
        listeners.otlp_http,
        tls.otlp_http,
        tokens.otlp,
        &buffer.ingest,
        &metrics,
        receivers_stop.clone(),
    );
    let state = Arc::new(ApiState {
        registry: metrics.registry(),
        metrics: metrics.clone(),
        assembler: Arc::clone(&buffer.assembler),
        store: Arc::clone(&store),
        listeners_up: false.into(),
        forward_queue: forward.as_ref().map(|f| Arc::clone(f.queue())),
    });
    let api_stop = CancellationToken::new();
    let api = serve_api(
        listeners.http,
        tls.http,
        tokens.api,
        &state,
        &metrics,
        api_stop.clone(),
    );
    let (sweeper, sweeper_stop) = start_sweeper(
        Arc::clone(&buffer.assembler),
        config.assembly.trace_idle,
        clock,
    )?;
    let otlp_push = start_otlp_push(config, &metrics, started);
    state.listeners_up.store(true, Ordering::Relaxed);
    log_listening(config, otlp_grpc_addr, otlp_http_addr, http_addr);
    Ok(Service {
        otlp_grpc_addr,
        otlp_http_addr,
        http_addr,
        receivers_stop,
        receivers: vec![grpc, otlp_http],
        api_stop,
        api,
        sweeper,
        sweeper_stop,
        assembler: buffer.assembler,
        stage: buffer.stage,
        otlp_push,
        forward,
        forward_tasks,
        store,
        metrics,
        clock,
        shutdown_timeout: config.shutdown_timeout,
    })
}

/// Step: each listener's TLS files, read and checked.
fn load_tls(config: &Config, metrics: &Metrics) -> anyhow::Result<ListenerTls> {
    let sec = &config.security;
    let load = |files: Option<&TlsFiles>, alpn, listener| {
        tls::ServerTls::load_optional(files, alpn, listener, metrics)
    };
    Ok(ListenerTls {
        otlp_grpc: load(
            sec.otlp_grpc_tls.as_ref(),
            tls::ALPN_GRPC,
            ListenerName::OtlpGrpc,
        )?,
        otlp_http: load(
            sec.otlp_http_tls.as_ref(),
            tls::ALPN_HTTP,
            ListenerName::OtlpHttp,
        )?,
        http: load(sec.http_tls.as_ref(), tls::ALPN_HTTP, ListenerName::Http)?,
    })
}

/// Step: the token files, read and checked.
fn load_tokens(config: &Config) -> anyhow::Result<Tokens> {
    let sec = &config.security;
    Ok(Tokens {
        otlp: TokenFile::open_optional("auth-token-file", sec.auth_token_file.as_deref())?,
        api: TokenFile::open_optional("api-auth-token-file", sec.api_auth_token_file.as_deref())?,
    })
}

/// Step: the trace buffer, the analysis thread draining its hand-off into `sink`, and
/// the ingest in front of the buffer (and of the forwarder, when there is one).
fn start_buffer(
    config: &Config,
    metrics: &Metrics,
    clock: Clock,
    sink: Box<dyn TraceSink>,
    forward: Option<Arc<Forwarder>>,
) -> anyhow::Result<Buffer> {
    let a = &config.assembly;
    let (tx, rx) = tokio::sync::mpsc::channel(a.analysis_queue_size);
    let completion = Completion {
        idle_ms: a.trace_idle.as_millis() as u64,
        max_age_ms: a.trace_max_age.as_millis() as u64,
    };
    let assembler = Arc::new(Assembler::new(
        completion,
        a.max_buffered_spans,
        a.late_span_window.as_millis() as u64,
        tx,
        metrics.clone(),
    ));
    let stage = pipeline::spawn(rx, sink).context("cannot start the analysis thread")?;
    let ingest = Arc::new(
        Ingest::new(
            Arc::clone(&assembler),
            EntryRule {
                error_statuses: config.analysis.error_statuses.clone(),
            },
            metrics.clone(),
            clock,
            config.ingest.max_request_size,
        )
        .with_forwarder(forward),
    );
    Ok(Buffer {
        assembler,
        stage,
        ingest,
    })
}

/// Step: the OTLP/gRPC server, with the `faultline.v1` verdict API on the same port.
fn serve_otlp_grpc(
    listener: TcpListener,
    tls: Option<Arc<tls::ServerTls>>,
    tokens: Option<Arc<TokenFile>>,
    ingest: &Arc<Ingest>,
    (store, feed): (&Arc<VerdictStore>, &Arc<VerdictFeed>),
    metrics: &Metrics,
    stop: CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let service = OtlpGrpcReceiver::service(Arc::clone(ingest));
    let layer = OtlpStatusLayer::new(metrics.clone());
    // The gRPC verdict API shares the OTLP/gRPC port (docs/contract.md §4); its watch streams end
    // when the receivers stop, so they never hold the graceful shutdown open.
    let verdicts = VerdictGrpcService::service(Arc::clone(store), Arc::clone(feed), stop.clone());
    let incoming = tls::Incoming::new(listener, tls, ListenerName::OtlpGrpc, metrics).into_stream();
    // Outermost, so the status layer sees the `Unauthenticated` mark.
    let auth = GrpcAuthLayer::new(tokens, crate::ingest::grpc::EXPORT_PATH);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(auth)
            .layer(layer)
            .add_service(service)
            .add_service(verdicts)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .context("OTLP/gRPC server")
    })
}

/// Step: the OTLP/HTTP server (`POST /v1/traces`).
fn serve_otlp_http(
    listener: TcpListener,
    tls: Option<Arc<tls::ServerTls>>,
    tokens: Option<Arc<TokenFile>>,
    ingest: &Arc<Ingest>,
    metrics: &Metrics,
    stop: CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let router = auth::protect_otlp_http(
        ingest::http::router(Arc::clone(ingest)),
        tokens,
        "/v1/traces",
    );
    let listener = tls::Incoming::new(listener, tls, ListenerName::OtlpHttp, metrics);
    spawn_axum(listener, router, stop, "OTLP/HTTP server")
}

/// Step: the API server (`/metrics`, `/api/v1/…`, health, Grafana).
fn serve_api(
    listener: TcpListener,
    tls: Option<Arc<tls::ServerTls>>,
    tokens: Option<Arc<TokenFile>>,
    state: &Arc<ApiState>,
    metrics: &Metrics,
    stop: CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let router = auth::protect_api(api::router(Arc::clone(state)), tokens);
    let listener = tls::Incoming::new(listener, tls, ListenerName::Http, metrics);
    spawn_axum(listener, router, stop, "API server")
}

/// Serves `router` on `listener` until `stop`, then finishes the requests in flight.
fn spawn_axum(
    listener: tls::Incoming,
    router: axum::Router,
    stop: CancellationToken,
    what: &'static str,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context(what)
    })
}

/// Step: the sweeper, which completes idle and old traces. It scans the whole buffer, so
/// it runs on its own low-priority thread, not on the async workers that answer Export
/// requests. Dropping the returned sender ends it.
fn start_sweeper(
    assembler: Arc<Assembler>,
    trace_idle: Duration,
    clock: Clock,
) -> anyhow::Result<(std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>)> {
    let (sweeper_stop, sweeper_stopped) = std::sync::mpsc::channel::<()>();
    // Sweep often enough that a trace completes within ~1/4 of its idle time late.
    let period = (trace_idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let sweeper = std::thread::Builder::new()
        .name("faultline-sweeper".into())
        .spawn(move || {
            pipeline::lower_thread_priority();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                sweeper_stopped.recv_timeout(period)
            {
                assembler.sweep(clock.now_ms());
            }
        })
        .context("cannot start the sweeper thread")?;
    Ok((sweeper, sweeper_stop))
}

/// Step: the OTLP metrics push (`--otlp-metrics-endpoint`): its stop signal and task.
fn start_otlp_push(
    config: &Config,
    metrics: &Metrics,
    started: std::time::SystemTime,
) -> Option<(CancellationToken, JoinHandle<()>)> {
    config.metrics.otlp.as_ref().map(|otlp| {
        let stop = CancellationToken::new();
        let pusher = OtlpMetricsPusher::new(
            otlp,
            metrics.clone(),
            PushIdentity::faultline(otlp_push::instance_id(started)),
            otlp_push::unix_nano(started),
        );
        (stop.clone(), pusher.spawn(otlp.interval, stop))
    })
}

/// Step: the listening lines (operators and the black-box tests read the addresses).
fn log_listening(
    config: &Config,
    otlp_grpc_addr: SocketAddr,
    otlp_http_addr: SocketAddr,
    http_addr: SocketAddr,
) {
    let sec = &config.security;
    tracing::info!(
        "listening for OTLP/gRPC on {otlp_grpc_addr}{}",
        tls_note(sec.otlp_grpc_tls.as_ref(), sec.auth_token_file.is_some())
    );
    tracing::info!(
        "listening for OTLP/HTTP on {otlp_http_addr}{}",
        tls_note(sec.otlp_http_tls.as_ref(), sec.auth_token_file.is_some())
    );
    tracing::info!(
        "listening for the HTTP API on {http_addr}{}",
        tls_note(sec.http_tls.as_ref(), sec.api_auth_token_file.is_some())
    );
}

/// What the start-up log line says about a listener's security, e.g. ` (TLS, client
/// certificates, bearer token)`; empty for plain text without a token.
fn tls_note(tls: Option<&TlsFiles>, token: bool) -> String {
    let mut parts = Vec::new();
    if let Some(t) = tls {
        parts.push("TLS");
        if t.client_ca.is_some() {
            parts.push("client certificates");
        }
    }
    if token {
        parts.push("bearer token");
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

impl Service {
    /// The assembler (tests and benches look at its counts).
    pub fn assembler(&self) -> &Arc<Assembler> {
        &self.assembler
    }

    /// Ordered shutdown (module doc). Returns what was flushed and analysed.
    ///
    /// # Errors
    /// The deadline passed before the buffer was analysed, or a server failed.
    pub async fn stop(self) -> anyhow::Result<ShutdownSummary> {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        self.receivers_stop.cancel();
        for r in self.receivers {
            match tokio::time::timeout_at(deadline, r).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!(error = %format!("{e:#}"), "receiver failed"),
                Ok(Err(e)) => tracing::error!(error = %e, "receiver task failed"),
                Err(_) => tracing::warn!(
                    "receivers still had requests in flight at the shutdown deadline"
                ),
            }
        }
        drop(self.sweeper_stop);
        let sweeper = self.sweeper;
        let _ = tokio::task::spawn_blocking(move || sweeper.join()).await;
        let flushed =
            tokio::time::timeout_at(deadline, self.assembler.drain(self.clock.now_ms())).await;
        self.assembler.close();
        let stage = self.stage;
        let joined =
            tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || stage.join()))
                .await;
        if let Some(f) = &self.forward {
            // In annotate mode the stage may be waiting for room in the forward queue:
            // closing it ends that wait (what is left is counted, or kept on disk).
            f.queue().close();
        }
        let forward_left = match self.forward_tasks {
            Some(tasks) => tasks.shutdown(deadline).await.spans_left,
            None => 0,
        };
        let state_left = {
            let store = Arc::clone(&self.store);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::task::spawn_blocking(move || store.close(left))
                .await
                .unwrap_or(0)
        };
        if state_left > 0 {
            tracing::warn!(
                verdicts = state_left,
                "the state database did not take every verdict by the shutdown deadline; those verdicts are lost with the process"
            );
        }
        if let Some((stop, task)) = self.otlp_push {
            stop.cancel();
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                tracing::warn!(
                    "the final OTLP metrics push did not finish by the shutdown deadline"
                );
            }
        }
        self.api_stop.cancel();
        let _ = self.api.await;
        let summary = ShutdownSummary {
            traces_flushed: flushed.as_ref().copied().unwrap_or(0),
            traces_analyzed: self.metrics.traces_analyzed.get(),
            spans_analyzed: self.metrics.spans_analyzed.get(),
            spans_left: self.assembler.buffered_spans(),
            forward_spans_left: forward_left,
            state_verdicts_left: state_left,
        };
        if flushed.is_err() || joined.is_err() {
            anyhow::bail!("shutdown deadline passed with analysis unfinished: {summary:?}");
        }
        Ok(summary)
    }
}

/// Runs the service on `listeners` until `shutdown` resolves, then stops it in order.
///
/// # Errors
/// Start-up failed, or shutdown missed its deadline.
pub async fn run(
    config: Config,
    metrics: Metrics,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ShutdownSummary> {
    let service = start(&config, metrics, listeners).await?;
    shutdown.await;
    tracing::info!(
        buffered_spans = service.assembler.buffered_spans(),
        "shutting down: analysing the buffered spans"
    );
    let summary = service.stop().await?;
    tracing::info!(
        "shutdown complete: traces_flushed={} traces_analyzed={} spans_analyzed={} spans_left={} forward_spans_left={} state_verdicts_left={}",
        summary.traces_flushed,
        summary.traces_analyzed,
        summary.spans_analyzed,
        summary.spans_left,
        summary.forward_spans_left,
        summary.state_verdicts_left
    );
    Ok(summary)
}
