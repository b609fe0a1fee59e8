//! faultline: OpenTelemetry trace analysis that explains HTTP 500s.
//!
//! Spans arrive over OTLP ([`ingest`]), are grouped into traces ([`assembly`]), and each
//! completed trace is handed to the analysis stage ([`pipeline`]). [`app`] wires the
//! stages and owns the ordered shutdown; [`config`] turns flags, environment and file into
//! one validated configuration.
#![deny(missing_docs)]

pub mod analysis;
pub mod api;
pub mod app;
pub mod assembly;
pub mod auth;
pub mod config;
pub mod eval;
pub mod file_watch;
pub mod forward;
pub mod ingest;
pub mod model;
pub mod offline;
pub mod pipeline;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod tls;
