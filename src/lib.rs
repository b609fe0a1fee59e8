//! faultline: OpenTelemetry trace analysis that explains HTTP 500s.
//!
//! Spans arrive over OTLP ([`ingest`]), are grouped into traces ([`assembly`]), and each
//! completed trace is handed to the analysis stage ([`pipeline`]). [`app`] wires the
//! stages and owns the ordered shutdown; [`config`] turns flags, environment and file into
//! one validated configuration.
//!
//! # Layout
//!
//! One line a module, in the order the data goes through them (a span from the wire to a
//! verdict on `/metrics`); docs/architecture.md draws the layers and which module may
//! import which.
//!
//! - [`config`]: flags + `FAULTLINE_*` environment + TOML file → one validated
//!   [`config::Config`]; `cli` holds every clap struct, `resolve` the validation.
//! - [`app`]: the wiring: every stage started in named steps on listeners the caller
//!   bound ([`app::Listeners`]), and the ordered shutdown; `main` calls [`app::run`].
//! - [`tls`], [`auth`]: each listener's TLS (one accept loop) and bearer tokens.
//! - [`ingest`]: the OTLP/gRPC and OTLP/HTTP receivers; `convert` turns OTLP/JSON into
//!   protobuf and protobuf into buffered spans and the plain model, once, at the edge.
//! - [`assembly`]: the trace buffer: spans grouped by trace id, the completion
//!   `policy` (idle, max age, eviction, shutdown: the [`assembly::Trigger`]), the
//!   hand-off to analysis.
//! - [`forward`]: the forwarder: every accepted span onward over OTLP (annotated with the
//!   verdict in annotate mode), through a bounded, optionally on-disk queue.
//! - [`pipeline`]: the analysis stage on its own thread: completed traces through the
//!   analysis into the store, its observers and the forwarder.
//! - [`analysis`]: THE PURE CORE: one trace to verdicts (entry, critical path, blame,
//!   origin, classification, fingerprint, cohort); imports only [`model`].
//! - [`model`]: the plain span and trace data the analysis reads.
//! - [`store`]: the retained verdicts and fingerprint groups, and the
//!   [`store::VerdictObserver`] hook the stage feeds beside it.
//! - [`telemetry`]: metric names ([`telemetry::names`]) and families, the verdict metrics,
//!   the OTLP metrics push, logging and its [`telemetry::LogThrottle`].
//! - [`api`]: `/metrics`, `/healthz`, `/readyz`, `/api/v1`, the Grafana endpoints and the
//!   `faultline.v1` gRPC verdict API with its live feed.
//! - [`offline`]: `faultline analyze`: captures read (`read`), analysed as the service
//!   does, printed (`print`).
//! - [`eval`]: the scenario zoo's scorer (verdicts against labelled captures).
//! - [`fixture`]: the capture format of recorded SDK traces and the zoo, read into
//!   [`model`].
//! - [`synth`]: synthetic OTLP traffic (and the key-value builders) for benches, the load
//!   generator and tests.
//! - [`file_watch`]: change detection for the files re-read while running (TLS, tokens).
#![deny(missing_docs)]

pub mod analysis;
pub mod api;
pub mod app;
pub mod assembly;
pub mod auth;
pub mod config;
pub mod eval;
pub mod file_watch;
pub mod fixture;
pub mod forward;
pub mod ingest;
pub mod model;
pub mod offline;
pub mod pipeline;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod tls;
