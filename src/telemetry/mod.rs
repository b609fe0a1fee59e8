//! Self-observability: metric names, the registry behind `/metrics`, logging set-up.
//!
//! Depends on nothing else in the crate except [`verdict_metrics`], which reads verdicts,
//! and [`otlp_push`], which reads its part of the config; every stage records into
//! [`metrics::Metrics`], and [`otlp_metrics`] turns the same registry into OTLP metrics.

pub mod metrics;
pub mod otlp_metrics;
pub mod otlp_push;
pub mod series_cap;
pub mod verdict_metrics;

/// Installs the global `tracing` subscriber writing to stderr with the given filter.
///
/// # Errors
/// The filter does not parse (already validated by config) or a subscriber is installed.
pub fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging: {e}"))
}
