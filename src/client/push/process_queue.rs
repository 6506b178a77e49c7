//! A process queue: the push consumer's view of one assigned queue — messages fetched but not
//! yet consumed, where to fetch next, and whether the queue is still ours.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::stats::TopicCounters;
use crate::filter::MessageSelector;
use crate::log::consume_queue::ConsumeQueue;
use crate::message::{MessageExt, MessageQueue};

/// Flow-control limits of one queue (RocketMQ `pullThresholdForQueue`,
/// `pullThresholdSizeForQueue`, `consumeConcurrentlyMaxSpan`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: u64,
    /// Max offset span of cached messages; `None` in orderly mode.
    pub(crate) max_span: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Cached messages by queue offset, with their body sizes.
    cached: BTreeMap<u64, u32>,
    bytes: u64,
    next_fetch: u64,
    dropped: bool,
    blocked: bool,
    /// Concurrent mode: the batches handed out (queued, or with the listener), by id, so
    /// that the consume timeout can find the ones running too long.
    batches: BTreeMap<u64, Arc<Batch>>,
    next_batch: u64,
}

/// A batch of a queue's messages for the concurrent listener. Exactly one of the consume
/// thread (when the listener returns) and the consume-timeout check (when the call runs too
/// long) settles it: [`Batch::claim`] and the timeout's expiry are one compare-and-swap.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) id: u64,
    pub(crate) msgs: Vec<MessageExt>,
    /// When the listener call started: nanoseconds since the consumer started, plus one; 0
    /// while the batch waits for a thread.
    started: AtomicU64,
    state: AtomicU8,
}

const PENDING: u8 = 0;
const SETTLED: u8 = 1;
const EXPIRED: u8 = 2;

impl Batch {
    /// The listener call starts now, `nanos` after the consumer started.
    pub(crate) fn start(&self, nanos: u64) {
        self.started
            .store(nanos.saturating_add(1), Ordering::Release);
    }

    /// The listener returned: whether its result counts (false: the batch timed out
    /// meanwhile and was sent back; the result is ignored).
    pub(crate) fn claim(&self) -> bool {
        self.state
            .compare_exchange(PENDING, SETTLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Takes the batch away from its listener call if that started before `cutoff`
    /// (nanoseconds since the consumer started) and has not returned.
    fn expire_if_started_before(&self, cutoff: u64) -> bool {
        let started = self.started.load(Ordering::Acquire);
        started != 0
            && started - 1 < cutoff
            && self
                .state
                .compare_exchange(PENDING, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The queue offsets of the batch.
    pub(crate) fn offsets(&self) -> impl Iterator<Item = u64> + '_ {
        self.msgs.iter().map(MessageExt::queue_offset)
    }
}

/// One assigned queue.
#[derive(Debug)]
pub(crate) struct ProcessQueue {
    pub(crate) queue: MessageQueue,
    pub(crate) filter: MessageSelector,
    /// Messages here come from the group's retry topic: their topic is restored from
    /// `RETRY_TOPIC`.
    pub(crate) retry: bool,
    pub(crate) cq: Option<Arc<ConsumeQueue>>,
    state: Mutex<State>,
    /// Orderly mode: the messages themselves, and who may consume.
    pub(crate) orderly: Option<Mutex<Orderly>>,
    /// Held while a batch of this queue is with the listener (orderly mode): one thread per
    /// queue, and a rebalance waits on it before giving the queue away. Shared with the
    /// process queue that replaces this one after an offset reset, so a batch of the old one
    /// still with the listener and a batch of the new one never run at once.
    pub(crate) consume_lock: Arc<Mutex<()>>,
    /// Orderly: a rebalance is taking the queue away but a batch was still in flight; no new
    /// batch starts, the store lock is kept, and a later rebalance finishes the release.
    releasing: std::sync::atomic::AtomicBool,
    /// The last fetch failed (a damaged record, an I/O error): fetching retries after a pause.
    stall: Mutex<Option<Stall>>,
    /// The statistics of the queue's topic.
    pub(crate) stats: Arc<TopicCounters>,
}

/// Why fetching a queue is stuck.
#[derive(Debug, Clone)]
pub(crate) struct Stall {
    /// The queue offset that could not be fetched.
    pub(crate) offset: u64,
    /// The error, as text.
    pub(crate) error: String,
    /// When the last attempt failed.
    pub(crate) at: std::time::Instant,
    /// Failed attempts in a row.
    pub(crate) attempts: u64,
}

/// Orderly state of a process queue (RocketMQ's `msgTreeMap` and
/// `consumingMsgOrderlyTreeMap`).
#[derive(Debug, Default)]
pub(crate) struct Orderly {
    /// Fetched, not yet handed to the listener.
    msgs: BTreeMap<u64, MessageExt>,
    /// Handed to the listener, not yet committed (auto-commit off keeps them here).
    consuming: BTreeMap<u64, MessageExt>,
    /// A consume task for this queue is queued or running.
    scheduled: bool,
    /// When the store lock was last acquired or renewed.
    pub(crate) locked_at: Option<std::time::Instant>,
}

impl ProcessQueue {
    pub(crate) fn new(
        queue: MessageQueue,
        filter: MessageSelector,
        retry: bool,
        cq: Option<Arc<ConsumeQueue>>,
        start: u64,
        orderly: bool,
        stats: Arc<TopicCounters>,
    ) -> ProcessQueue {
        ProcessQueue {
            queue,
            filter,
            retry,
            cq,
            state: Mutex::new(State {
                next_fetch: start,
                ..State::default()
            }),
            orderly: orderly.then(|| Mutex::new(Orderly::default())),
            consume_lock: Arc::new(Mutex::new(())),
            releasing: std::sync::atomic::AtomicBool::new(false),
            stall: Mutex::new(None),
            stats,
        }
    }

    /// A fresh process queue for the same queue, fetching from `start`, that shares this
    /// one's consume lock (it replaces this one after an offset reset).
    pub(crate) fn successor(&self, start: u64) -> ProcessQueue {
        let mut next = ProcessQueue::new(
            self.queue.clone(),
            self.filter.clone(),
            self.retry,
            self.cq.clone(),
            start,
            self.orderly.is_some(),
            self.stats.clone(),
        );
        next.consume_lock = self.consume_lock.clone();
        next
    }

    /// Records a failed fetch at `offset`; returns whether it is a new condition (the queue
    /// was not stalled, or stalled elsewhere or for another reason), to be reported once.
    pub(crate) fn stalled(&self, offset: u64, error: String) -> bool {
        let mut s = self.stall.lock();
        let now = std::time::Instant::now();
        match &mut *s {
            Some(st) if st.offset == offset && st.error == error => {
                st.at = now;
                st.attempts += 1;
                false
            }
            _ => {
                *s = Some(Stall {
                    offset,
                    error,
                    at: now,
                    attempts: 1,
                });
                true
            }
        }
    }

    /// A fetch succeeded: the stall, if there was one, is over (returned).
    pub(crate) fn unstalled(&self) -> Option<Stall> {
        self.stall.lock().take()
    }

    /// The current stall, if fetching is stuck.
    pub(crate) fn stall(&self) -> Option<Stall> {
        self.stall.lock().clone()
    }

    pub(crate) fn is_releasing(&self) -> bool {
        self.releasing.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_releasing(&self, on: bool) {
        self.releasing
            .store(on, std::sync::atomic::Ordering::Release);
    }

    /// Orderly: keeps fetched messages; returns true when the caller must schedule a consume
    /// task (none is scheduled and the queue is locked).
    pub(crate) fn orderly_add(
        &self,
        msgs: Vec<MessageExt>,
        lock_valid: impl Fn(&Orderly) -> bool,
    ) -> bool {
        let Some(o) = &self.orderly else { return false };
        let mut o = o.lock();
        for m in msgs {
            o.msgs.insert(m.queue_offset(), m);
        }
        self.schedule_if_ready(&mut o, &lock_valid)
    }

    fn schedule_if_ready(&self, o: &mut Orderly, lock_valid: &dyn Fn(&Orderly) -> bool) -> bool {
        if o.scheduled || o.msgs.is_empty() || !lock_valid(o) {
            return false;
        }
        o.scheduled = true;
        true
    }

    /// Orderly: after the lock was (re)acquired, whether a consume task must be scheduled.
    pub(crate) fn orderly_locked(
        &self,
        at: std::time::Instant,
        lock_valid: impl Fn(&Orderly) -> bool,
    ) -> bool {
        let Some(o) = &self.orderly else { return false };
        let mut o = o.lock();
        o.locked_at = Some(at);
        self.schedule_if_ready(&mut o, &lock_valid)
    }

    /// Orderly: the lock was lost.
    pub(crate) fn orderly_unlocked(&self) {
        if let Some(o) = &self.orderly {
            o.lock().locked_at = None;
        }
    }

    /// Orderly: when the lock was last acquired or renewed.
    pub(crate) fn locked_at(&self) -> Option<std::time::Instant> {
        self.orderly.as_ref().and_then(|o| o.lock().locked_at)
    }

    /// Orderly: the next batch, in offset order, moved to the consuming set. An empty batch
    /// ends the consume task (it is unscheduled under the same lock, so no message is left
    /// without a task).
    pub(crate) fn take(&self, n: usize) -> Vec<MessageExt> {
        let Some(o) = &self.orderly else {
            return Vec::new();
        };
        let mut o = o.lock();
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            let Some((off, m)) = o.msgs.pop_first() else {
                break;
            };
            batch.push(m.clone());
            o.consuming.insert(off, m);
        }
        if batch.is_empty() {
            o.scheduled = false;
        }
        batch
    }

    /// Orderly: ends the consume task early (lost lock, stop); messages stay for the next one.
    pub(crate) fn unschedule(&self) {
        if let Some(o) = &self.orderly {
            o.lock().scheduled = false;
        }
    }

    /// Orderly: commits everything consumed so far through `commit`; returns whether fetching
    /// had been paused (`None` if dropped).
    pub(crate) fn commit_consumed(&self, commit: impl FnOnce(u64)) -> Option<bool> {
        let done: Vec<u64> = match &self.orderly {
            Some(o) => std::mem::take(&mut o.lock().consuming)
                .into_keys()
                .collect(),
            None => Vec::new(),
        };
        self.remove(done, commit)
    }

    /// Orderly: puts these consumed messages back in front (with their updated reconsume
    /// counts), to be consumed again.
    pub(crate) fn put_back(&self, msgs: Vec<MessageExt>) {
        if let Some(o) = &self.orderly {
            let mut o = o.lock();
            for m in msgs {
                o.consuming.remove(&m.queue_offset());
                o.msgs.insert(m.queue_offset(), m);
            }
        }
    }

    /// Orderly: puts back everything consumed since the last commit (auto-commit off).
    pub(crate) fn rollback(&self) {
        if let Some(o) = &self.orderly {
            let mut o = o.lock();
            let consuming = std::mem::take(&mut o.consuming);
            o.msgs.extend(consuming);
        }
    }

    /// Orderly: forgets consumed messages that went elsewhere (dead letters) without
    /// committing the others.
    pub(crate) fn forget(&self, offsets: &[u64], commit: impl FnOnce(u64)) -> Option<bool> {
        if let Some(o) = &self.orderly {
            let mut o = o.lock();
            for off in offsets {
                o.consuming.remove(off);
            }
        }
        self.remove(offsets.iter().copied(), commit)
    }

    pub(crate) fn next_fetch(&self) -> u64 {
        self.state.lock().next_fetch
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.state.lock().dropped
    }

    /// Whether the store has units past the fetch position.
    pub(crate) fn has_new(&self) -> bool {
        self.cq
            .as_ref()
            .is_some_and(|cq| cq.max_offset() > self.next_fetch())
    }

    /// Whether fetching should pause until the backlog drains. Remembers that it did, so the
    /// consumer can wake the fetcher when it drains.
    pub(crate) fn flow_controlled(&self, limits: &Limits) -> bool {
        let mut s = self.state.lock();
        let span = match (s.cached.keys().next(), s.cached.keys().next_back()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        let blocked = s.cached.len() >= limits.max_messages
            || s.bytes >= limits.max_bytes
            || limits.max_span.is_some_and(|m| span > m);
        s.blocked |= blocked;
        blocked
    }

    /// Adds fetched messages and moves the fetch position; false if the queue was dropped.
    pub(crate) fn add(&self, msgs: &[MessageExt], next: u64) -> bool {
        let mut s = self.state.lock();
        if s.dropped {
            return false;
        }
        for m in msgs {
            let size = m.body().len() as u32;
            if s.cached.insert(m.queue_offset(), size).is_none() {
                s.bytes += u64::from(size);
            }
        }
        s.next_fetch = s.next_fetch.max(next);
        true
    }

    /// Concurrent mode: adds fetched messages like [`ProcessQueue::add`] and cuts them into
    /// batches of at most `batch_max`, tracked until settled; `None` if the queue was dropped.
    pub(crate) fn add_batches(
        &self,
        msgs: Vec<MessageExt>,
        next: u64,
        batch_max: usize,
    ) -> Option<Vec<Arc<Batch>>> {
        let mut s = self.state.lock();
        if s.dropped {
            return None;
        }
        for m in &msgs {
            let size = m.body().len() as u32;
            if s.cached.insert(m.queue_offset(), size).is_none() {
                s.bytes += u64::from(size);
            }
        }
        s.next_fetch = s.next_fetch.max(next);
        let mut batches = Vec::with_capacity(msgs.len().div_ceil(batch_max.max(1)));
        let mut it = msgs.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<MessageExt> = it.by_ref().take(batch_max.max(1)).collect();
            batches.push(Self::register(&mut s, chunk));
        }
        Some(batches)
    }

    /// Concurrent mode: a new batch of messages already cached (consumed again locally);
    /// `None` if the queue was dropped.
    pub(crate) fn track(&self, msgs: Vec<MessageExt>) -> Option<Arc<Batch>> {
        let mut s = self.state.lock();
        if s.dropped {
            return None;
        }
        Some(Self::register(&mut s, msgs))
    }

    fn register(s: &mut State, msgs: Vec<MessageExt>) -> Arc<Batch> {
        let id = s.next_batch;
        s.next_batch += 1;
        let batch = Arc::new(Batch {
            id,
            msgs,
            started: AtomicU64::new(0),
            state: AtomicU8::new(PENDING),
        });
        s.batches.insert(id, batch.clone());
        batch
    }

    /// Concurrent mode: the batches whose listener call started before `cutoff` and
    /// is still running, each now taken from its call (their results will be ignored).
    pub(crate) fn expire(&self, cutoff: u64) -> Vec<Arc<Batch>> {
        let s = self.state.lock();
        if s.dropped {
            return Vec::new();
        }
        s.batches
            .values()
            .filter(|b| b.expire_if_started_before(cutoff))
            .cloned()
            .collect()
    }

    /// Concurrent mode: a batch is settled: forgets it and removes `offsets` (those of its
    /// messages done with) like [`ProcessQueue::remove`].
    pub(crate) fn finish(
        &self,
        batch: u64,
        offsets: impl IntoIterator<Item = u64>,
        commit: impl FnOnce(u64),
    ) -> Option<bool> {
        let mut s = self.state.lock();
        s.batches.remove(&batch);
        Self::remove_locked(&mut s, offsets, commit)
    }

    /// Moves the fetch position past filtered-out or illegal offsets; when nothing is cached the
    /// committed offset follows, through `commit`.
    pub(crate) fn skip_to(&self, next: u64, commit: impl FnOnce(u64)) {
        let mut s = self.state.lock();
        if s.dropped {
            return;
        }
        s.next_fetch = next;
        if s.cached.is_empty() {
            commit(next);
        }
    }

    /// Removes consumed messages and commits, through `commit`, the oldest message still cached
    /// (or the fetch position when none is). Commits happen under the queue's lock, so they
    /// land in order. Returns whether fetching had been paused by flow control; `None` if the
    /// queue was dropped (a new owner has it now).
    pub(crate) fn remove(
        &self,
        offsets: impl IntoIterator<Item = u64>,
        commit: impl FnOnce(u64),
    ) -> Option<bool> {
        Self::remove_locked(&mut self.state.lock(), offsets, commit)
    }

    fn remove_locked(
        s: &mut State,
        offsets: impl IntoIterator<Item = u64>,
        commit: impl FnOnce(u64),
    ) -> Option<bool> {
        if s.dropped {
            return None;
        }
        for o in offsets {
            if let Some(size) = s.cached.remove(&o) {
                s.bytes -= u64::from(size);
            }
        }
        let was_blocked = std::mem::take(&mut s.blocked);
        commit(Self::commit_point_of(s));
        Some(was_blocked)
    }

    fn commit_point_of(s: &State) -> u64 {
        s.cached.keys().next().copied().unwrap_or(s.next_fetch)
    }

    /// Where the committed offset stands by this queue's state: the oldest message cached,
    /// or the fetch position when none is.
    pub(crate) fn commit_point(&self) -> u64 {
        Self::commit_point_of(&self.state.lock())
    }

    /// Marks the queue dropped and returns where its next owner should start; `None` if it
    /// was dropped already (its progress was handed over or reset: nothing to commit).
    pub(crate) fn drop_queue(&self) -> Option<u64> {
        let mut s = self.state.lock();
        if std::mem::replace(&mut s.dropped, true) {
            return None;
        }
        Some(Self::commit_point_of(&s))
    }

    /// Cached message count and bytes.
    pub(crate) fn backlog(&self) -> (usize, u64) {
        let s = self.state.lock();
        (s.cached.len(), s.bytes)
    }
}
