//! Self-observability: metric names, the registry behind `/metrics`, logging set-up.
//!
//! Depends on nothing else in the crate except [`verdict_metrics`], which reads verdicts
//! (and is a [`crate::store::VerdictObserver`]), and [`otlp_push`], which reads its part
//! of the config; every stage records into [`metrics::Metrics`], and [`otlp_metrics`]
//! turns the same registry into OTLP metrics.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod metrics;
pub mod names;
pub mod otlp_metrics;
pub mod otlp_push;
pub mod series_cap;
pub mod verdict_metrics;

/// Lets a log line through at most once a second: where every request of a burst is
/// refused (overload, a missing token), one line a second says enough, and the counters
/// have every refusal. Lock-free; the caller passes its own monotonic clock in.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// When a line was last let through (`now_ms` + 1, so 0 means never).
    last_ms: AtomicU64,
}

impl LogThrottle {
    /// A throttle that lets the first line through.
    pub const fn new() -> Self {
        LogThrottle {
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether to log now, `now_ms` milliseconds into the caller's monotonic clock: true
    /// for the first call, then at most once a second (one of racing callers wins).
    pub fn allow(&self, now_ms: u64) -> bool {
        let now = now_ms + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        !(last != 0 && now < last + 1_000
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err())
    }
}

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

#[cfg(test)]
mod tests {
    use super::LogThrottle;

    #[test]
    fn the_throttle_lets_one_line_a_second_through() {
        let t = LogThrottle::new();
        assert!(t.allow(0), "the first line");
        assert!(!t.allow(1));
        assert!(!t.allow(998));
        assert!(t.allow(1_000), "a second later");
        assert!(!t.allow(1_500));
        assert!(t.allow(5_000));
    }
}
