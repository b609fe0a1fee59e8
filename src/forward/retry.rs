//! Pure delivery rules: which answers of the downstream are retryable, how long to wait
//! before the next attempt, and when to give up.
//!
//! The rules are the OTLP specification's ("OTLP/gRPC Failures", "OTLP/HTTP Failures"),
//! and the back-off is the OpenTelemetry Collector exporter helper's (exponential with
//! a multiplier and ± randomisation, capped per wait, abandoned after a total elapsed
//! time), except that a server's own hint (`google.rpc.RetryInfo`, `Retry-After`) replaces
//! the computed wait, as the specification asks of clients.

use std::time::{Duration, SystemTime};

/// Why a batch could not be delivered yet, or at all (also the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The endpoint could not be reached (refused, reset, DNS, TLS handshake).
    Unreachable,
    /// The request did not complete within `--forward-timeout`.
    Timeout,
    /// The endpoint asked us to back off (gRPC UNAVAILABLE / RESOURCE_EXHAUSTED with
    /// RetryInfo, HTTP 429/502/503/504).
    Throttled,
    /// The endpoint refused the data as bad (gRPC INVALID_ARGUMENT and other
    /// non-retryable codes, HTTP 400 and other 4xx): never retried.
    Rejected,
    /// The endpoint accepted the request but rejected some spans (`partial_success`).
    PartiallyRejected,
    /// Retried for `--forward-max-elapsed` without success.
    RetriesExhausted,
    /// The shutdown deadline passed while the batch was still queued (memory queue only;
    /// the disk queue keeps it for the next start).
    Shutdown,
    /// The on-disk queue could not be written.
    QueueWrite,
}

impl FailureReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Unreachable => "unreachable",
            FailureReason::Timeout => "timeout",
            FailureReason::Throttled => "throttled",
            FailureReason::Rejected => "rejected",
            FailureReason::PartiallyRejected => "partially_rejected",
            FailureReason::RetriesExhausted => "retries_exhausted",
            FailureReason::Shutdown => "shutdown",
            FailureReason::QueueWrite => "queue_write",
        }
    }
}

/// What one attempt to send a batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted; `rejected` spans were refused in `partial_success` (not retried, as the
    /// specification says).
    Delivered {
        /// Spans the endpoint rejected.
        rejected: u64,
        /// Its message about them.
        message: String,
    },
    /// Try again, after `hint` when the endpoint gave one.
    Retry {
        /// Why.
        reason: FailureReason,
        /// The endpoint's `RetryInfo` / `Retry-After`.
        hint: Option<Duration>,
        /// What happened, for the log.
        detail: String,
    },
    /// Do not try again.
    Permanent {
        /// What happened, for the log.
        detail: String,
    },
}

/// gRPC status codes (`google.rpc.Code`).
pub mod grpc_code {
    /// CANCELLED
    pub const CANCELLED: i32 = 1;
    /// DEADLINE_EXCEEDED
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// RESOURCE_EXHAUSTED
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// ABORTED
    pub const ABORTED: i32 = 10;
    /// OUT_OF_RANGE
    pub const OUT_OF_RANGE: i32 = 11;
    /// UNAVAILABLE
    pub const UNAVAILABLE: i32 = 14;
    /// DATA_LOSS
    pub const DATA_LOSS: i32 = 15;
}

/// Classifies a gRPC failure (OTLP/gRPC: the retryable codes; RESOURCE_EXHAUSTED only
/// when the server says when to retry).
pub fn grpc_failure(code: i32, retry_info: Option<Duration>, message: &str) -> Attempt {
    use grpc_code::*;
    let detail = format!("gRPC status {code}: {message}");
    let retryable = matches!(
        code,
        CANCELLED | DEADLINE_EXCEEDED | ABORTED | OUT_OF_RANGE | UNAVAILABLE | DATA_LOSS
    ) || (code == RESOURCE_EXHAUSTED && retry_info.is_some());
    if !retryable {
        return Attempt::Permanent { detail };
    }
    let reason = match code {
        DEADLINE_EXCEEDED => FailureReason::Timeout,
        UNAVAILABLE if retry_info.is_none() => FailureReason::Unreachable,
        _ => FailureReason::Throttled,
    };
    Attempt::Retry {
        reason,
        hint: retry_info,
        detail,
    }
}

/// Classifies an HTTP answer other than 2xx (OTLP/HTTP: 429, 502, 503 and 504 are
/// retryable, honouring `Retry-After`; every other status is not).
pub fn http_failure(status: u16, retry_after: Option<Duration>, body: &str) -> Attempt {
    let detail = format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    if matches!(status, 429 | 502 | 503 | 504) {
        Attempt::Retry {
            reason: FailureReason::Throttled,
            hint: retry_after,
            detail,
        }
    } else {
        Attempt::Permanent { detail }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential back-off with randomisation, bounded by a total elapsed time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First wait.
    pub initial: Duration,
    /// Longest computed wait.
    pub max_interval: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// ± fraction applied to each computed wait (0.5 → between 50% and 150%).
    pub randomization: f64,
    /// Give up once this long has passed since the first attempt.
    pub max_elapsed: Duration,
}

/// Longest wait honoured from a server hint: a misbehaving endpoint cannot park a
/// batch for an hour.
pub const MAX_HINT: Duration = Duration::from_secs(60);

impl Backoff {
    /// The Collector's defaults with `max_elapsed` from `--forward-max-elapsed`, but a
    /// shorter first wait (a pipeline stage in front of a backend that restarts should
    /// resume in about a second, not five).
    pub fn new(max_elapsed: Duration) -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            multiplier: 1.5,
            randomization: 0.5,
            max_elapsed,
        }
    }

    /// The wait before attempt `retry + 1` (`retry` = retries so far, from 0), or `None`
    /// when the batch must be given up: waiting would end past `max_elapsed`. `hint` is
    /// the server's (used instead of the computed wait, capped at [`MAX_HINT`]); `unit` is
    /// a uniform random number in 0..1.
    pub fn next_wait(
        &self,
        retry: u32,
        hint: Option<Duration>,
        elapsed: Duration,
        unit: f64,
    ) -> Option<Duration> {
        let wait = match hint {
            Some(h) => h.min(MAX_HINT),
            None => {
                let base = self.initial.as_secs_f64() * self.multiplier.powi(retry.min(64) as i32);
                let base = base.min(self.max_interval.as_secs_f64());
                let unit = unit.clamp(0.0, 1.0);
                let factor = 1.0 - self.randomization + 2.0 * self.randomization * unit;
                Duration::from_secs_f64((base * factor).max(0.0))
            }
        };
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_otlp_grpc_retryable_codes_are_retried_and_the_rest_are_not() {
        for code in [1, 4, 10, 11, 14, 15] {
            assert!(
                matches!(grpc_failure(code, None, ""), Attempt::Retry { .. }),
                "{code}"
            );
        }
        for code in [2, 3, 5, 6, 7, 9, 12, 13, 16] {
            assert!(
                matches!(grpc_failure(code, None, ""), Attempt::Permanent { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn resource_exhausted_is_retried_only_with_retry_info() {
        assert!(matches!(
            grpc_failure(8, None, "quota"),
            Attempt::Permanent { .. }
        ));
        assert_eq!(
            grpc_failure(8, Some(Duration::from_secs(2)), "slow down"),
            Attempt::Retry {
                reason: FailureReason::Throttled,
                hint: Some(Duration::from_secs(2)),
                detail: "gRPC status 8: slow down".into()
            }
        );
    }

    #[test]
    fn http_retries_429_and_gateway_errors_only() {
        for status in [429, 502, 503, 504] {
            assert!(matches!(
                http_failure(status, None, ""),
                Attempt::Retry { .. }
            ));
        }
        for status in [400, 401, 403, 404, 413, 415, 500, 501] {
            assert!(matches!(
                http_failure(status, None, ""),
                Attempt::Permanent { .. }
            ));
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 12:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 12:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn waits_grow_are_capped_randomised_and_stop_at_max_elapsed() {
        let b = Backoff::new(Duration::from_secs(60));
        let mid = |retry| b.next_wait(retry, None, Duration::ZERO, 0.5).unwrap();
        assert_eq!(mid(0), Duration::from_millis(500));
        assert_eq!(mid(1), Duration::from_millis(750));
        assert!(mid(2) > mid(1));
        assert_eq!(mid(40), Duration::from_secs(30), "capped at max_interval");
        let low = b.next_wait(0, None, Duration::ZERO, 0.0).unwrap();
        let high = b.next_wait(0, None, Duration::ZERO, 1.0).unwrap();
        assert_eq!(low, Duration::from_millis(250));
        assert_eq!(high, Duration::from_millis(750));
        assert_eq!(b.next_wait(0, None, Duration::from_secs(60), 0.5), None);
        assert!(b.next_wait(0, None, Duration::from_secs(59), 0.5).is_some());
    }

    #[test]
    fn a_server_hint_replaces_the_computed_wait_within_bounds() {
        let b = Backoff::new(Duration::from_secs(300));
        let h = Some(Duration::from_secs(4));
        assert_eq!(
            b.next_wait(9, h, Duration::ZERO, 0.0),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            b.next_wait(0, Some(Duration::from_secs(3600)), Duration::ZERO, 0.5),
            Some(MAX_HINT)
        );
        assert_eq!(b.next_wait(0, h, Duration::from_secs(298), 0.5), None);
    }
}
