//! When a trace is complete: pure functions of a trace's age and `now` (milliseconds on
//! the service's monotonic clock), so the policy is tested without sleeping.

/// Why a trace left the buffer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Trigger {
    /// No new span for `--trace-idle`.
    Idle,
    /// Older than `--trace-max-age`.
    MaxAge,
    /// Analysed early to stay inside `--max-buffered-spans`.
    Eviction,
    /// Flushed at shutdown.
    Shutdown,
}

impl Trigger {
    /// Its label value on `faultline_traces_completed_total{trigger}`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Idle => "idle",
            Trigger::MaxAge => "max_age",
            Trigger::Eviction => "eviction",
            Trigger::Shutdown => "shutdown",
        }
    }
}

/// Arrival times of a buffered trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceAge {
    /// When its first span arrived.
    pub first_seen_ms: u64,
    /// When its latest span arrived.
    pub last_seen_ms: u64,
}

impl TraceAge {
    /// A trace first seen at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        TraceAge {
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        }
    }
    /// Records another arrival.
    pub fn touch(&mut self, now_ms: u64) {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }
}

/// The completion policy (`--trace-idle`, `--trace-max-age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Idle time after which a trace is complete.
    pub idle_ms: u64,
    /// Age after which a trace is complete regardless of new spans.
    pub max_age_ms: u64,
}

impl Completion {
    /// Why the trace is complete at `now_ms`, or `None` while it should keep waiting.
    /// Max-age wins when both hold, so the metric says a trace was cut short.
    pub fn due(&self, age: &TraceAge, now_ms: u64) -> Option<Trigger> {
        if now_ms.saturating_sub(age.first_seen_ms) >= self.max_age_ms {
            Some(Trigger::MaxAge)
        } else if now_ms.saturating_sub(age.last_seen_ms) >= self.idle_ms {
            Some(Trigger::Idle)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_max_age_complete_a_trace() {
        let p = Completion {
            idle_ms: 10_000,
            max_age_ms: 60_000,
        };
        let mut age = TraceAge::new(1_000);
        assert_eq!(p.due(&age, 10_999), None);
        assert_eq!(p.due(&age, 11_000), Some(Trigger::Idle));
        age.touch(9_000);
        assert_eq!(p.due(&age, 11_000), None);
        for t in (9_000..61_000).step_by(5_000) {
            age.touch(t);
        }
        assert_eq!(p.due(&age, 61_000), Some(Trigger::MaxAge));
    }

    #[test]
    fn an_arrival_stamped_in_the_past_does_not_rewind_the_idle_clock() {
        let mut age = TraceAge::new(5_000);
        age.touch(4_000);
        assert_eq!(age.last_seen_ms, 5_000);
    }
}
