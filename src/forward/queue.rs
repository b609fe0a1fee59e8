//! The forward queue: encoded requests waiting to be delivered, bounded in spans, with
//! an optional journal on disk that every item is written through.
//!
//! Capacity counts spans from the moment they are reserved until their delivery ends
//! (delivered, or given up), so a full queue means "this much is not delivered yet", and
//! the receivers push back on their senders instead of letting the queue grow
//! (docs/contract.md §2: overload is never a silent drop).
//!
//! Locks: `state` is a `std::sync::Mutex` held for a few pointer moves and never across
//! an `.await`; the journal has its own mutex because a disk write takes longer than a
//! queue operation and must not stall the senders popping batches.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// Where a queued item lives in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JournalId(pub u64, pub u64);

/// A durable log the queue writes through (the on-disk queue).
pub trait Journal: Send {
    /// Writes one record; it must survive a process crash once this returns.
    ///
    /// # Errors
    /// The record could not be written.
    fn append(&mut self, payload: &[u8]) -> Result<JournalId, String>;
    /// Marks a record delivered (or given up): it is not recovered again.
    ///
    /// # Errors
    /// The acknowledgement could not be written.
    fn ack(&mut self, id: JournalId) -> Result<(), String>;
    /// Flushes to stable storage.
    ///
    /// # Errors
    /// The flush failed.
    fn sync(&mut self) -> Result<(), String>;
    /// Bytes on disk.
    fn disk_bytes(&self) -> u64;
}

/// What a journal recovered at start-up: records a previous process left undelivered.
pub type Recovered = Vec<(JournalId, Vec<u8>)>;

/// Encodes a journal record: span count, then the request.
pub fn journal_record(spans: usize, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&(spans.min(u32::MAX as usize) as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// Decodes a journal record written by [`journal_record`].
pub fn parse_journal_record(record: &[u8]) -> Option<(usize, &[u8])> {
    let (count, body) = record.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*count) as usize, body))
}

/// One encoded `ExportTraceServiceRequest` waiting for delivery.
#[derive(Debug, Clone)]
pub struct Item {
    /// Spans in it.
    pub spans: usize,
    /// The request.
    pub body: Bytes,
    /// When it was queued.
    pub enqueued: Instant,
    /// Its journal record, with a disk queue.
    pub journal: Option<JournalId>,
}

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    /// Spans reserved, queued or being delivered.
    used: usize,
    closing: bool,
}

/// The bounded queue (module doc).
pub struct ForwardQueue {
    state: Mutex<State>,
    /// Signalled when capacity is released (for [`ForwardQueue::push_waiting`]).
    room: Condvar,
    /// Wakes senders waiting for items.
    ready: tokio::sync::Notify,
    capacity: usize,
    journal: Option<Mutex<Box<dyn Journal>>>,
}

/// Capacity held for spans about to be queued; released if dropped without
/// [`Reservation::commit`].
pub struct Reservation {
    queue: Arc<ForwardQueue>,
    spans: usize,
}

/// What [`Reservation::commit`] and the queue's pushes report about the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// Queued (and journalled, with a disk queue).
    Ok,
    /// Queued in memory, but the journal write failed (the message says why): the item
    /// will be delivered unless the process dies first.
    NotJournalled(String),
}

impl Reservation {
    /// Queues the encoded request for the reserved spans.
    pub fn commit(mut self, body: Bytes) -> Queued {
        let spans = std::mem::take(&mut self.spans);
        self.queue.enqueue(spans, body, false)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.spans > 0 {
            self.queue.release(self.spans);
        }
    }
}

impl ForwardQueue {
    /// A queue of at most `capacity` spans, writing through `journal` when given, that
    /// starts with `recovered` (items a previous process left in the journal; they may
    /// exceed the capacity, which then refuses new spans until they are delivered).
    pub fn new(
        capacity: usize,
        journal: Option<Box<dyn Journal>>,
        recovered: Vec<Item>,
    ) -> Arc<ForwardQueue> {
        let used = recovered.iter().map(|i| i.spans).sum();
        Arc::new(ForwardQueue {
            state: Mutex::new(State {
                items: recovered.into(),
                used,
                closing: false,
            }),
            room: Condvar::new(),
            ready: tokio::sync::Notify::new(),
            capacity,
            journal: journal.map(Mutex::new),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated (every update
        // is a single push/pop plus a counter), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Capacity in spans.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Spans reserved, queued or being delivered.
    pub fn depth(&self) -> usize {
        self.lock().used
    }

    /// Items waiting to be taken by a sender.
    pub fn waiting_items(&self) -> usize {
        self.lock().items.len()
    }

    /// True while there is room for at least one more span.
    pub fn has_room(&self) -> bool {
        self.lock().used < self.capacity
    }

    /// Reserves room for `spans`, or `None` when they do not fit. A request larger than
    /// the whole capacity fits an empty queue, so it cannot be refused forever.
    pub fn try_reserve(self: &Arc<Self>, spans: usize) -> Option<Reservation> {
        let mut s = self.lock();
        if s.used + spans > self.capacity && s.used > 0 {
            return None;
        }
        s.used += spans;
        Some(Reservation {
            queue: Arc::clone(self),
            spans,
        })
    }

    /// Queues without a reservation, above the capacity if need be (late spans in
    /// annotate mode, which were accepted before anyone could refuse them).
    pub fn push_over(&self, spans: usize, body: Bytes) -> Queued {
        self.lock().used += spans;
        self.enqueue(spans, body, true)
    }

    /// Queues from a thread that may block (the analysis stage in annotate mode): waits
    /// for room, so a slow downstream slows analysis, which fills the trace buffer, which
    /// pushes back on senders. Once the queue is closing it no longer waits.
    pub fn push_waiting(&self, spans: usize, body: Bytes) -> Queued {
        {
            let mut s = self.lock();
            while s.used > 0 && s.used + spans > self.capacity && !s.closing {
                s = self
                    .room
                    .wait_timeout(s, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            s.used += spans;
        }
        self.enqueue(spans, body, true)
    }

    /// Journals and queues `body` for spans already counted in `used`.
    fn enqueue(&self, spans: usize, body: Bytes, _unreserved: bool) -> Queued {
        let mut outcome = Queued::Ok;
        let journal = match &self.journal {
            None => None,
            Some(j) => {
                let mut j = j.lock().unwrap_or_else(|p| p.into_inner());
                match j.append(&journal_record(spans, &body)) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        outcome = Queued::NotJournalled(e);
                        None
                    }
                }
            }
        };
        self.lock().items.push_back(Item {
            spans,
            body,
            enqueued: Instant::now(),
            journal,
        });
        self.ready.notify_one();
        outcome
    }

    fn release(&self, spans: usize) {
        let mut s = self.lock();
        s.used = s.used.saturating_sub(spans);
        drop(s);
        self.room.notify_all();
    }

    /// Takes the next items, up to `max_bytes` and `max_spans` (at least one item), waiting
    /// for one; `None` once the queue is closing and empty.
    pub async fn next_batch(&self, max_bytes: usize, max_spans: usize) -> Option<Vec<Item>> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some(first) = s.items.pop_front() {
                    let (mut bytes, mut spans) = (first.body.len(), first.spans);
                    let mut batch = vec![first];
                    while let Some(next) = s.items.front() {
                        if bytes + next.body.len() > max_bytes || spans + next.spans > max_spans {
                            break;
                        }
                        bytes += next.body.len();
                        spans += next.spans;
                        batch.extend(s.items.pop_front());
                    }
                    if !s.items.is_empty() {
                        // Let another sender take the rest.
                        self.ready.notify_one();
                    }
                    return Some(batch);
                }
                if s.closing {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Ends the delivery of `items` (delivered or given up): releases their capacity and
    /// acknowledges their journal records.
    ///
    /// # Errors
    /// An acknowledgement could not be written (the items would be delivered again after
    /// a restart).
    pub fn finish(&self, items: &[Item]) -> Result<(), String> {
        let mut result = Ok(());
        if let Some(j) = &self.journal {
            let mut j = j.lock().unwrap_or_else(|p| p.into_inner());
            for id in items.iter().filter_map(|i| i.journal) {
                if let Err(e) = j.ack(id) {
                    result = Err(e);
                }
            }
        }
        self.release(items.iter().map(|i| i.spans).sum());
        result
    }

    /// Lets go of `items` without acknowledging them: with a journal they are recovered
    /// at the next start (shutdown deadline).
    pub fn abandon(&self, items: &[Item]) {
        self.release(items.iter().map(|i| i.spans).sum());
    }

    /// No more waiting: senders drain what is queued and stop; `push_waiting` stops
    /// waiting for room.
    pub fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_waiters();
        self.room.notify_all();
    }

    /// Removes and returns everything still queued (at the shutdown deadline).
    pub fn take_all(&self) -> Vec<Item> {
        let items: Vec<Item> = self.lock().items.drain(..).collect();
        self.abandon(&items);
        items
    }

    /// True when the queue writes through a journal.
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Flushes the journal to stable storage.
    ///
    /// # Errors
    /// The flush failed.
    pub fn sync(&self) -> Result<(), String> {
        match &self.journal {
            Some(j) => j.lock().unwrap_or_else(|p| p.into_inner()).sync(),
            None => Ok(()),
        }
    }

    /// Bytes the journal holds on disk (0 without one).
    pub fn disk_bytes(&self) -> u64 {
        match &self.journal {
            Some(j) => j.lock().unwrap_or_else(|p| p.into_inner()).disk_bytes(),
            None => 0,
        }
    }
}

/// Concatenates the items' requests into one (module doc of `encode`).
pub fn concat(items: &[Item]) -> Bytes {
    if let [one] = items {
        return one.body.clone();
    }
    let mut buf = BytesMut::with_capacity(items.iter().map(|i| i.body.len()).sum());
    for i in items {
        buf.extend_from_slice(&i.body);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Clone)]
    struct MemJournal(Arc<Mutex<(u64, Recovered)>>);

    impl Journal for MemJournal {
        fn append(&mut self, payload: &[u8]) -> Result<JournalId, String> {
            let mut g = self.0.lock().unwrap();
            g.0 += 1;
            let id = JournalId(0, g.0);
            g.1.push((id, payload.to_vec()));
            Ok(id)
        }
        fn ack(&mut self, id: JournalId) -> Result<(), String> {
            self.0.lock().unwrap().1.retain(|(i, _)| *i != id);
            Ok(())
        }
        fn sync(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn disk_bytes(&self) -> u64 {
            self.0
                .lock()
                .unwrap()
                .1
                .iter()
                .map(|(_, p)| p.len() as u64)
                .sum()
        }
    }

    fn body(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    #[test]
    fn reservations_bound_the_queue_and_are_released_when_dropped() {
        let q = ForwardQueue::new(10, None, Vec::new());
        let a = q.try_reserve(6).unwrap();
        assert!(q.try_reserve(5).is_none(), "6 + 5 > 10");
        let b = q.try_reserve(4).unwrap();
        assert_eq!(q.depth(), 10);
        assert!(!q.has_room());
        drop(b);
        assert_eq!(q.depth(), 6);
        assert_eq!(a.commit(body(1)), Queued::Ok);
        assert_eq!(q.depth(), 6, "queued spans still count");
        assert_eq!(q.waiting_items(), 1);
    }

    #[test]
    fn a_request_larger_than_the_queue_fits_when_it_is_empty() {
        let q = ForwardQueue::new(10, None, Vec::new());
        let r = q.try_reserve(50).unwrap();
        assert!(q.try_reserve(1).is_none());
        drop(r);
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn batches_merge_items_up_to_the_limits_and_finishing_frees_room() {
        let q = ForwardQueue::new(100, None, Vec::new());
        for n in 0..5 {
            q.try_reserve(10).unwrap().commit(body(n));
        }
        let batch = q.next_batch(25, 1000).await.unwrap();
        assert_eq!(batch.len(), 2, "two 10-byte items fit in 25 bytes");
        assert_eq!(concat(&batch).len(), 20);
        let rest = q.next_batch(1000, 20).await.unwrap();
        assert_eq!(rest.len(), 2, "two 10-span items fit in 20 spans");
        assert_eq!(q.depth(), 50);
        q.finish(&batch).unwrap();
        q.finish(&rest).unwrap();
        assert_eq!(q.depth(), 10);
        q.close();
        let last = q.next_batch(1000, 1000).await.unwrap();
        assert_eq!(last.len(), 1);
        assert!(q.next_batch(1000, 1000).await.is_none(), "closed and empty");
    }

    #[tokio::test]
    async fn a_waiting_sender_wakes_when_an_item_arrives() {
        let q = ForwardQueue::new(100, None, Vec::new());
        let q2 = Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.next_batch(1000, 1000).await });
        tokio::task::yield_now().await;
        q.try_reserve(3).unwrap().commit(body(7));
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got[0].spans, 3);
    }

    #[test]
    fn push_waiting_blocks_until_room_is_released() {
        let q = ForwardQueue::new(10, None, Vec::new());
        q.try_reserve(8).unwrap().commit(body(1));
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.push_waiting(5, body(2)));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.waiting_items(), 1, "still waiting for room");
        let first: Vec<Item> = q.lock().items.drain(..1).collect();
        q.finish(&first).unwrap();
        assert_eq!(t.join().unwrap(), Queued::Ok);
        assert_eq!(q.depth(), 5);
    }

    #[test]
    fn closing_stops_the_wait_for_room() {
        let q = ForwardQueue::new(10, None, Vec::new());
        q.try_reserve(10).unwrap().commit(body(1));
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.push_waiting(5, body(2)));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        t.join().unwrap();
        assert_eq!(q.depth(), 15, "queued above capacity rather than lost");
    }

    #[tokio::test]
    async fn the_journal_holds_exactly_what_is_not_delivered() {
        let journal = MemJournal::default();
        let q = ForwardQueue::new(100, Some(Box::new(journal.clone())), Vec::new());
        q.try_reserve(2).unwrap().commit(body(1));
        q.try_reserve(3).unwrap().commit(body(2));
        assert_eq!(journal.0.lock().unwrap().1.len(), 2);
        let batch = q.next_batch(10, 100).await.unwrap();
        q.finish(&batch).unwrap();
        let left = journal.0.lock().unwrap().1.clone();
        assert_eq!(left.len(), 1);
        let (spans, req) = parse_journal_record(&left[0].1).unwrap();
        assert_eq!((spans, req), (3, &body(2)[..]));
        // Abandoned at a deadline: kept in the journal for the next start.
        let rest = q.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(journal.0.lock().unwrap().1.len(), 1);
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn recovered_items_count_against_the_capacity() {
        let recovered = vec![Item {
            spans: 20,
            body: body(1),
            enqueued: Instant::now(),
            journal: Some(JournalId(1, 1)),
        }];
        let q = ForwardQueue::new(10, None, recovered);
        assert_eq!(q.depth(), 20);
        assert!(q.try_reserve(1).is_none());
    }
}
