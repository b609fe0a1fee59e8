//! The forwarder: faultline as a stage of a collector pipeline (docs/contract.md §6). Every accepted
//! span is sent onward over OTLP, regrouped under its original resource and scope.
//!
//! - `passthrough`: the receivers queue each request's accepted spans as they take them
//!   (reserving queue room first, so a full queue pushes back on the sender, retryably,
//!   before anything is kept — docs/contract.md §2).
//! - `annotate`: spans wait in the trace buffer for their trace's verdict; the analysis
//!   stage then queues the whole trace, with `faultline.*` attributes appended to the
//!   entry and blame spans of each failing request. A full queue blocks the analysis
//!   thread, which fills the trace buffer, which pushes back on senders; the receivers
//!   also refuse as soon as the queue is full. Late spans are queued as they come.
//!
//! Delivery follows the Collector's exporter helper: a bounded queue (in spans),
//! `--forward-concurrency` senders, batches of queued requests concatenated, retries with
//! exponential back-off and jitter that honour `RetryInfo` / `Retry-After`
//! ([`retry`]), non-retryable answers counted and dropped, a give-up time. With
//! `--forward-queue-dir` the queue is written through a crash-safe journal on disk, and
//! what a previous process left undelivered is sent first.
//!
//! Protobuf types stop here and at `ingest/` (STYLE.md): the rest of the service hands
//! this module buffered spans and verdicts.

pub mod client;
pub mod encode;
pub mod journal;
pub mod queue;
pub mod retry;
pub mod wal;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::analysis::Verdict;
use crate::assembly::{BufferedSpan, CompletedTrace};
use crate::config::{ForwardConfig, ForwardMode};
use crate::model::{SpanId, TraceId};
use crate::telemetry::metrics::{ForwardReasonLabels, Metrics};
use encode::{Annotation, AnnotationValue, OutgoingSpan};
use queue::{ForwardQueue, Item, Journal, Queued, Reservation};
use retry::{Attempt, Backoff, FailureReason};

/// Largest request the senders build by concatenating queued ones: well under the 4 MiB
/// that gRPC servers (the Collector, tonic) accept by default.
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Time between syncs of the on-disk queue to stable storage.
const DISK_SYNC_PERIOD: Duration = Duration::from_secs(1);

/// Most spans in one forwarded request.
pub const MAX_BATCH_SPANS: usize = 8192;

/// The forwarder cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The client could not be built (TLS files).
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The on-disk queue could not be opened.
    #[error("--forward-queue-dir: {0}")]
    Journal(String),
}

/// The running forwarder (shared by the receivers and the analysis stage).
pub struct Forwarder {
    mode: ForwardMode,
    queue: Arc<ForwardQueue>,
    metrics: Metrics,
}

/// The sender tasks, for the ordered shutdown.
pub struct ForwarderTasks {
    /// Stops the periodic sync of the on-disk queue.
    syncing: CancellationToken,
    /// Each returns the spans it was delivering when `hard_stop` interrupted it.
    senders: Vec<JoinHandle<usize>>,
    /// Cancels in-flight deliveries and back-off waits at the shutdown deadline.
    hard_stop: CancellationToken,
    forwarder: Arc<Forwarder>,
}

/// What the shutdown flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushSummary {
    /// Spans still undelivered at the deadline (kept on disk with a disk queue, lost and
    /// counted without).
    pub spans_left: usize,
}

impl Forwarder {
    /// Opens the queue (recovering the on-disk one), builds the client and starts the
    /// senders. `journal` opens the on-disk queue when `--forward-queue-dir` is set: it
    /// returns the journal and the records it recovered.
    ///
    /// # Errors
    /// See [`ForwardError`].
    pub fn start(
        cfg: &ForwardConfig,
        metrics: Metrics,
        journal: Option<(Box<dyn Journal>, queue::Recovered)>,
    ) -> Result<(Arc<Forwarder>, ForwarderTasks), ForwardError> {
        // One connection per sender: each HTTP/2 connection is paced by the receiver's
        // flow-control windows, and several large requests on one connection wait for
        // each other's window updates (measured with faultline-loadgen on one core: 4
        // senders on one connection kept up with 217k–235k spans/s and pushed back beyond;
        // on their own connections, 285k–292k with no push-back).
        let clients = (0..cfg.concurrency)
            .map(|_| client::Client::new(cfg))
            .collect::<Result<Vec<_>, _>>()?;
        let (journal, recovered) = match journal {
            None => (None, Vec::new()),
            Some((j, records)) => (Some(j), recovered_items(records)),
        };
        let recovered_spans: usize = recovered.iter().map(|i| i.spans).sum();
        if recovered_spans > 0 {
            tracing::info!(
                spans = recovered_spans,
                requests = recovered.len(),
                "recovered undelivered spans from the on-disk forward queue"
            );
        }
        let fm = &metrics.forward;
        fm.recovered_spans.inc_by(recovered_spans as u64);
        fm.queue_capacity_spans.set(cfg.queue_size as i64);
        let queue = ForwardQueue::new(cfg.queue_size, journal, recovered);
        let forwarder = Arc::new(Forwarder {
            mode: cfg.mode,
            queue,
            metrics,
        });
        forwarder.update_gauges();
        forwarder.update_disk_gauge();
        let hard_stop = CancellationToken::new();
        let backoff = Backoff::new(cfg.max_elapsed);
        let senders = clients
            .into_iter()
            .map(|client| {
                let f = Arc::clone(&forwarder);
                let stop = hard_stop.clone();
                tokio::spawn(async move { f.run_sender(client, backoff, stop).await })
            })
            .collect();
        tracing::info!(
            endpoint = %cfg.endpoint,
            protocol = ?cfg.protocol,
            mode = ?cfg.mode,
            queue = cfg.queue_size,
            disk = cfg.queue_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "forwarding spans"
        );
        let syncing = CancellationToken::new();
        if forwarder.queue.is_durable() {
            spawn_disk_sync(Arc::clone(&forwarder), syncing.clone());
        }
        let tasks = ForwarderTasks {
            syncing,
            senders,
            hard_stop,
            forwarder: Arc::clone(&forwarder),
        };
        Ok((forwarder, tasks))
    }

    /// Passthrough or annotate.
    pub fn mode(&self) -> ForwardMode {
        self.mode
    }

    /// The queue (tests and the API look at it).
    pub fn queue(&self) -> &Arc<ForwardQueue> {
        &self.queue
    }

    /// Refreshes the queue depth gauge (on every change: one short lock).
    fn update_gauges(&self) {
        self.metrics
            .forward
            .queue_spans
            .set(self.queue.depth() as i64);
    }

    /// Refreshes the disk gauge. It takes the journal's lock, which appends hold while
    /// writing, so it runs with the periodic sync, not on every request.
    fn update_disk_gauge(&self) {
        if self.queue.is_durable() {
            self.metrics
                .forward
                .queue_disk_bytes
                .set(self.queue.disk_bytes() as i64);
        }
    }

    /// Reserves queue room for one request's spans (passthrough), or `None` when the
    /// queue is full and the sender must be pushed back.
    pub fn reserve(&self, spans: usize) -> Option<Reservation> {
        self.queue.try_reserve(spans)
    }

    /// True while the queue has room (annotate mode refuses new spans otherwise).
    pub fn has_room(&self) -> bool {
        self.queue.has_room()
    }

    /// Encodes one request's accepted spans for [`Forwarder::commit`] (passthrough).
    pub fn encode(&self, spans: &[(TraceId, BufferedSpan)]) -> Bytes {
        encode_spans(spans.iter().map(|(_, s)| s), &HashMap::new())
    }

    /// Queues an encoded request under its reservation (passthrough, once the spans are
    /// also buffered for analysis).
    pub fn commit(&self, reservation: Reservation, body: Bytes) {
        self.queued(reservation.commit(body));
    }

    /// Queues spans that arrived after their trace was analysed (annotate mode): they are
    /// forwarded as they come, unannotated.
    pub fn forward_late(&self, spans: &[(TraceId, BufferedSpan)]) {
        if spans.is_empty() {
            return;
        }
        let body = encode_spans(spans.iter().map(|(_, s)| s), &HashMap::new());
        self.queued(self.queue.push_over(spans.len(), body));
    }

    /// Queues an analysed trace (annotate mode), annotating the entry and blame span of
    /// each verdict. Called on the analysis thread; waits while the queue is full.
    pub fn forward_trace(&self, trace: &CompletedTrace, verdicts: &[Arc<Verdict>]) {
        if trace.spans.is_empty() {
            return;
        }
        let notes = annotations(verdicts);
        let body =
            if notes.is_empty() {
                // Healthy traces pass unchanged.
                encode_spans(trace.spans.iter(), &notes)
            } else {
                // This faultline's verdict replaces one made upstream, on every span.
                let stripped: Vec<Option<Vec<u8>>> = trace
                    .spans
                    .iter()
                    .map(|s| encode::strip_attributes(&s.encoded, attr::PREFIX))
                    .collect();
                encode_outgoing(trace.spans.iter().zip(&stripped).map(|(s, stripped)| {
                    OutgoingSpan {
                        origin: &s.origin,
                        encoded: stripped.as_deref().unwrap_or(&s.encoded),
                        extra: note_of(&notes, s),
                    }
                }))
            };
        self.queued(self.queue.push_waiting(trace.spans.len(), body));
    }

    fn queued(&self, outcome: Queued) {
        if let Queued::NotJournalled(e) = outcome {
            self.metrics.forward.queue_disk_errors.inc();
            tracing::error!(error = %e, "cannot write the on-disk forward queue (kept in memory)");
        }
        self.update_gauges();
    }

    fn fail(&self, reason: FailureReason, spans: u64) {
        if spans > 0 {
            self.metrics
                .forward
                .failed_spans
                .get_or_create(&ForwardReasonLabels {
                    reason: reason.as_str(),
                })
                .inc_by(spans);
        }
    }

    fn finish(&self, items: &[Item]) {
        if let Err(e) = self.queue.finish(items) {
            self.metrics.forward.queue_disk_errors.inc();
            tracing::error!(error = %e, "cannot acknowledge delivered spans in the on-disk queue (they will be sent again after a restart)");
        }
        self.update_gauges();
    }

    /// One sender: takes batches and delivers each until it is accepted, refused for good,
    /// or retried for too long; stops when the queue is closed and empty, or at once on
    /// `hard_stop`.
    async fn run_sender(
        self: Arc<Self>,
        client: client::Client,
        backoff: Backoff,
        hard_stop: CancellationToken,
    ) -> usize {
        loop {
            let batch = tokio::select! {
                b = self.queue.next_batch(MAX_BATCH_BYTES, MAX_BATCH_SPANS) => b,
                _ = hard_stop.cancelled() => None,
            };
            let Some(items) = batch else { return 0 };
            let spans: usize = items.iter().map(|i| i.spans).sum();
            for i in &items {
                self.metrics
                    .forward
                    .queue_wait
                    .observe(i.enqueued.elapsed().as_secs_f64());
            }
            let body = queue::concat(&items);
            match self
                .deliver(&client, &backoff, body, spans, &hard_stop)
                .await
            {
                Some(()) => self.finish(&items),
                None => {
                    // The shutdown deadline interrupted the delivery.
                    if self.queue.is_durable() {
                        self.queue.abandon(&items);
                    } else {
                        self.fail(FailureReason::Shutdown, spans as u64);
                        self.queue.abandon(&items);
                    }
                    self.update_gauges();
                    return spans;
                }
            }
        }
    }

    /// Delivers one batch; `None` when interrupted by `hard_stop`, `Some` when the batch
    /// is done with (delivered or given up, counted either way).
    async fn deliver(
        &self,
        client: &client::Client,
        backoff: &Backoff,
        body: Bytes,
        spans: usize,
        hard_stop: &CancellationToken,
    ) -> Option<()> {
        let started = std::time::Instant::now();
        let fm = &self.metrics.forward;
        for retry in 0u32.. {
            let attempt = tokio::select! {
                a = client.send(body.clone()) => a,
                _ = hard_stop.cancelled() => return None,
            };
            let (reason, hint, detail) = match attempt {
                Attempt::Delivered { rejected, message } => {
                    let rejected = rejected.min(spans as u64);
                    fm.sent_spans.inc_by(spans as u64 - rejected);
                    if rejected > 0 {
                        self.fail(FailureReason::PartiallyRejected, rejected);
                        tracing::warn!(rejected, %message, "the forward endpoint rejected spans");
                    }
                    return Some(());
                }
                Attempt::Permanent { detail } => {
                    self.fail(FailureReason::Rejected, spans as u64);
                    tracing::error!(
                        spans,
                        error = %detail,
                        "the forward endpoint refused a batch; dropped, not retried"
                    );
                    return Some(());
                }
                Attempt::Retry {
                    reason,
                    hint,
                    detail,
                } => (reason, hint, detail),
            };
            let Some(wait) = backoff.next_wait(retry, hint, started.elapsed(), fastrand::f64())
            else {
                self.fail(FailureReason::RetriesExhausted, spans as u64);
                tracing::error!(
                    spans,
                    retries = retry,
                    elapsed = ?started.elapsed(),
                    error = %detail,
                    "gave up forwarding a batch"
                );
                return Some(());
            };
            fm.retried_spans
                .get_or_create(&ForwardReasonLabels {
                    reason: reason.as_str(),
                })
                .inc_by(spans as u64);
            if retry == 0 {
                tracing::warn!(spans, ?wait, error = %detail, "forwarding failed, retrying");
            } else {
                tracing::debug!(spans, retry, ?wait, error = %detail, "forwarding failed again");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = hard_stop.cancelled() => return None,
            }
        }
        Some(())
    }
}

impl ForwarderTasks {
    /// Shutdown: nothing more is queued after this; the senders deliver what is queued
    /// until `deadline`, then in-flight deliveries are cancelled. Undelivered spans stay in
    /// the on-disk queue, or are counted as failed (`shutdown`) without one.
    pub async fn shutdown(self, deadline: tokio::time::Instant) -> FlushSummary {
        let f = &self.forwarder;
        self.syncing.cancel();
        f.queue.close();
        let mut senders: Vec<Option<JoinHandle<usize>>> =
            self.senders.into_iter().map(Some).collect();
        let all_done = async {
            for s in senders.iter_mut() {
                if let Some(handle) = s.as_mut() {
                    let _ = handle.await;
                    *s = None; // a finished JoinHandle must not be polled again
                }
            }
        };
        let mut interrupted = 0;
        if tokio::time::timeout_at(deadline, all_done).await.is_err() {
            self.hard_stop.cancel();
            for s in senders.into_iter().flatten() {
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s).await {
                    interrupted += n;
                }
            }
        }
        let left: usize = f.queue.take_all().iter().map(|i| i.spans).sum();
        let spans_left = left + interrupted;
        if spans_left > 0 {
            if f.queue.is_durable() {
                tracing::warn!(spans = spans_left, "forward queue not empty at the shutdown deadline; kept on disk for the next start");
            } else {
                f.fail(FailureReason::Shutdown, left as u64);
                tracing::error!(
                    spans = spans_left,
                    "forward queue not empty at the shutdown deadline; those spans are lost"
                );
            }
        }
        if let Err(e) = f.queue.sync() {
            tracing::error!(error = %e, "cannot sync the on-disk forward queue");
        }
        f.update_gauges();
        f.update_disk_gauge();
        FlushSummary { spans_left }
    }
}

/// Encodes spans (annotated where `notes` says) as one request.
fn encode_spans<'a>(
    spans: impl Iterator<Item = &'a BufferedSpan>,
    notes: &HashMap<SpanId, Annotation>,
) -> Bytes {
    encode_outgoing(spans.map(|s| OutgoingSpan {
        origin: &s.origin,
        encoded: &s.encoded,
        extra: note_of(notes, s),
    }))
}

fn encode_outgoing<'a>(spans: impl Iterator<Item = OutgoingSpan<'a>>) -> Bytes {
    let mut buf = Vec::new();
    encode::encode_request(spans, &mut buf);
    Bytes::from(buf)
}

fn note_of<'a>(notes: &'a HashMap<SpanId, Annotation>, span: &BufferedSpan) -> &'a [u8] {
    notes
        .get(&span.span_id)
        .map(Annotation::as_bytes)
        .unwrap_or(&[])
}

/// Attribute keys added in annotate mode (the contract with tracing backends' queries).
pub mod attr {
    /// On the entry span: the verdict's classification.
    pub const CLASSIFICATION: &str = "faultline.classification";
    /// On the entry span: the fingerprint's short stable id (when there is one).
    pub const FINGERPRINT: &str = "faultline.fingerprint";
    /// On the entry span: the blamed span's id (16 hex).
    pub const BLAME_SPAN_ID: &str = "faultline.blame.span_id";
    /// On the entry span: the blamed operation's share of the time budget, 0..1.
    pub const BUDGET_SHARE: &str = "faultline.budget_share";
    /// On the blamed span: `true`.
    pub const BLAME: &str = "faultline.blame";
    /// The prefix of every key above; keys with it are replaced, not repeated, on a trace
    /// this faultline annotates.
    pub const PREFIX: &str = "faultline.";
}

/// The annotations of a trace's verdicts, by span.
fn annotations(verdicts: &[Arc<Verdict>]) -> HashMap<SpanId, Annotation> {
    let mut notes: HashMap<SpanId, Annotation> = HashMap::new();
    for v in verdicts {
        if let Some(entry) = SpanId::from_hex(&v.entry.span_id) {
            let note = notes.entry(entry).or_default();
            note.push(
                attr::CLASSIFICATION,
                &AnnotationValue::Str(v.classification.as_str().to_string()),
            );
            if let Some(fp) = &v.fingerprint_id {
                note.push(attr::FINGERPRINT, &AnnotationValue::Str(fp.clone()));
            }
            if let Some(blame) = &v.blame {
                note.push(
                    attr::BLAME_SPAN_ID,
                    &AnnotationValue::Str(blame.span_id.clone()),
                );
                note.push(attr::BUDGET_SHARE, &AnnotationValue::Double(blame.share));
            }
        }
        if let Some(blame) = v.blame.as_ref().and_then(|b| SpanId::from_hex(&b.span_id)) {
            notes
                .entry(blame)
                .or_default()
                .push(attr::BLAME, &AnnotationValue::Bool(true));
        }
    }
    notes
}
/// The records the on-disk queue recovered, as queue items (one too short to hold a
/// request is skipped, and said).
fn recovered_items(records: queue::Recovered) -> Vec<Item> {
    let mut items = Vec::with_capacity(records.len());
    for (id, record) in records {
        match queue::parse_journal_record(&record) {
            Some((spans, body)) => items.push(Item {
                spans,
                body: Bytes::copy_from_slice(body),
                enqueued: std::time::Instant::now(),
                journal: Some(id),
            }),
            None => tracing::warn!("skipped a forward queue record too short to hold a request"),
        }
    }
    items
}

/// The on-disk queue survives a process crash as soon as a request is appended; a sync
/// a second, until `stop`, bounds what an OS crash or power loss can take.
fn spawn_disk_sync(forwarder: Arc<Forwarder>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(DISK_SYNC_PERIOD) => {}
                _ = stop.cancelled() => return,
            }
            let q = Arc::clone(&forwarder.queue);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || q.sync()).await {
                tracing::error!(error = %e, "cannot sync the on-disk forward queue");
            }
            forwarder.update_disk_gauge();
        }
    });
}
