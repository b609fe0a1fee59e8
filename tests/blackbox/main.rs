//! Black-box tests: the real `faultline` binary on ephemeral loopback ports, driven by
//! real OTLP clients (Rust opentelemetry-otlp, the Python SDK, rotel-agent) and by raw
//! protocol requests for the edge cases. One test binary (ripgrep's layout).

mod downstream;
mod lb_front;
mod pg;
mod support;

mod analyze;
mod app_run;
mod check_config;
mod config_cli;
mod docs;
mod fleet;
mod forward;
mod fuzz_regressions;
mod grafana_api;
mod grpc_verdicts;
mod helm;
mod ingest_clients;
mod ingest_protocol;
mod metrics_export;
mod otlp_metrics;
mod pushback;
mod scenarios;
mod security;
mod shutdown;
mod state;
mod state_postgres;
mod zoo;
