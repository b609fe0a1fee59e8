//! The live verdict feed behind `WatchVerdicts`: a [`VerdictObserver`] that publishes
//! each stored verdict on a bounded `tokio::sync::broadcast` channel, and the filtered
//! [`Subscription`] each watcher reads from.
//!
//! Why broadcast: publishing is one non-blocking `send` on the analysis thread whatever
//! the number or speed of subscribers, and the channel keeps the newest `--watch-buffer`
//! verdicts for everyone at once (an `Arc` each, shared with the store). A subscriber that
//! falls further behind loses its oldest unread verdicts, never slows analysis: the loss
//! is reported to it as [`FeedEvent::Lagged`] and counted in
//! `faultline_watch_lagged_verdicts_total`, and its subscription goes on with the oldest
//! verdict still held. Transport-neutral: the gRPC stream lives in [`super::grpc`].

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::analysis::{Classification, Verdict};
use crate::store::VerdictObserver;
use crate::telemetry::metrics::Metrics;

/// Publishes every stored verdict to the current subscribers.
pub struct VerdictFeed {
    tx: broadcast::Sender<Arc<Verdict>>,
    metrics: Metrics,
}

impl VerdictFeed {
    /// A feed holding up to `capacity` unread verdicts per subscriber (at least 1).
    pub fn new(capacity: usize, metrics: Metrics) -> Self {
        // `broadcast::channel` panics on 0; config refuses 0 already, this keeps `new` total.
        let (tx, _) = broadcast::channel(capacity.max(1));
        VerdictFeed { tx, metrics }
    }

    /// A subscription to every verdict published from now on that matches `filter`.
    pub fn subscribe(&self, filter: WatchFilter) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            filter,
            metrics: self.metrics.clone(),
        }
    }

    /// Subscriptions currently open.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl VerdictObserver for VerdictFeed {
    fn on_verdict(&self, verdict: &Arc<Verdict>) {
        // Never blocks: a full channel overwrites the oldest slot and lagging receivers
        // find out on their next read. `Err` only means nobody is subscribed.
        let _ = self.tx.send(Arc::clone(verdict));
    }
}

/// What a watcher wants to see; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Entry service.
    pub service: Option<String>,
    /// Classification.
    pub classification: Option<Classification>,
}

impl WatchFilter {
    /// Whether `v` passes the filter.
    pub fn matches(&self, v: &Verdict) -> bool {
        self.service.as_deref().is_none_or(|s| v.entry.service == s)
            && self.classification.is_none_or(|c| v.classification == c)
    }
}

/// One item of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A new verdict matching the filter.
    Verdict(Arc<Verdict>),
    /// The subscriber fell behind and this many verdicts (before filtering) were skipped.
    Lagged(u64),
}

/// One watcher's view of the feed.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Verdict>>,
    filter: WatchFilter,
    metrics: Metrics,
}

impl Subscription {
    /// The next matching verdict, or the news that some were missed; `None` once the feed
    /// is gone (the service stopped analysing). Cancel-safe (it only awaits
    /// `broadcast::Receiver::recv`, which is).
    pub async fn next(&mut self) -> Option<FeedEvent> {
        loop {
            match self.rx.recv().await {
                Ok(v) if self.filter.matches(&v) => return Some(FeedEvent::Verdict(v)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.metrics.watch_lagged_verdicts.inc_by(n);
                    return Some(FeedEvent::Lagged(n));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::verdict::{EntryInfo, Verdict};

    fn verdict(trace: u8, service: &str, classification: Classification) -> Arc<Verdict> {
        Arc::new(Verdict {
            trace_id: format!("{trace:032x}"),
            classification,
            confidence: 0.5,
            budget_ms: 1.0,
            entry: EntryInfo {
                span_id: "0000000000000001".into(),
                service: service.into(),
                name: "GET /".into(),
                route: "/".into(),
                status_code: 500,
                start_unix_nano: 0,
            },
            blame: None,
            origin: None,
            fingerprint: None,
            fingerprint_id: None,
            cohort: Default::default(),
            evidence: vec![],
            analyzed_at: String::new(),
            analyzed_at_unix_nano: 0,
            exception: None,
            chain: vec![],
        })
    }

    fn trace_of(e: FeedEvent) -> String {
        match e {
            FeedEvent::Verdict(v) => v.trace_id.clone(),
            other => panic!("expected a verdict, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscribers_see_matching_verdicts_in_order() {
        let feed = VerdictFeed::new(16, Metrics::default());
        let mut all = feed.subscribe(WatchFilter::default());
        let mut orders = feed.subscribe(WatchFilter {
            service: Some("orders".into()),
            classification: Some(Classification::LateDependencyFailure),
        });
        feed.on_verdict(&verdict(1, "orders", Classification::LateDependencyFailure));
        feed.on_verdict(&verdict(
            2,
            "billing",
            Classification::LateDependencyFailure,
        ));
        feed.on_verdict(&verdict(3, "orders", Classification::Inconclusive));
        feed.on_verdict(&verdict(4, "orders", Classification::LateDependencyFailure));
        for t in 1..=4u8 {
            assert_eq!(trace_of(all.next().await.unwrap()), format!("{t:032x}"));
        }
        assert_eq!(
            trace_of(orders.next().await.unwrap()),
            format!("{:032x}", 1)
        );
        assert_eq!(
            trace_of(orders.next().await.unwrap()),
            format!("{:032x}", 4)
        );
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed_and_goes_on() {
        let metrics = Metrics::default();
        let feed = VerdictFeed::new(2, metrics.clone());
        let mut slow = feed.subscribe(WatchFilter::default());
        for t in 1..=5u8 {
            // Publishing never waits for the subscriber.
            feed.on_verdict(&verdict(t, "orders", Classification::Inconclusive));
        }
        assert_eq!(slow.next().await, Some(FeedEvent::Lagged(3)));
        assert_eq!(metrics.watch_lagged_verdicts.get(), 3);
        assert_eq!(trace_of(slow.next().await.unwrap()), format!("{:032x}", 4));
        assert_eq!(trace_of(slow.next().await.unwrap()), format!("{:032x}", 5));
    }

    #[tokio::test]
    async fn the_subscription_ends_with_the_feed() {
        let feed = VerdictFeed::new(4, Metrics::default());
        let mut sub = feed.subscribe(WatchFilter::default());
        assert_eq!(feed.subscribers(), 1);
        drop(feed);
        assert_eq!(sub.next().await, None);
    }
}
