//! A process queue: the push consumer's view of one assigned queue — messages fetched but not
//! yet consumed, where to fetch next, and whether the queue is still ours.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::filter::TagFilter;
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
}

/// One assigned queue.
#[derive(Debug)]
pub(crate) struct ProcessQueue {
    pub(crate) queue: MessageQueue,
    pub(crate) filter: TagFilter,
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
        filter: TagFilter,
        retry: bool,
        cq: Option<Arc<ConsumeQueue>>,
        start: u64,
        orderly: bool,
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
        let mut s = self.state.lock();
        if s.dropped {
            return None;
        }
        for o in offsets {
            if let Some(size) = s.cached.remove(&o) {
                s.bytes -= u64::from(size);
            }
        }
        let was_blocked = std::mem::take(&mut s.blocked);
        commit(Self::commit_point(&s));
        Some(was_blocked)
    }

    fn commit_point(s: &State) -> u64 {
        s.cached.keys().next().copied().unwrap_or(s.next_fetch)
    }

    /// Marks the queue dropped and returns where its next owner should start; `None` if it
    /// was dropped already (its progress was handed over or reset: nothing to commit).
    pub(crate) fn drop_queue(&self) -> Option<u64> {
        let mut s = self.state.lock();
        if std::mem::replace(&mut s.dropped, true) {
            return None;
        }
        Some(Self::commit_point(&s))
    }

    /// Cached message count and bytes.
    pub(crate) fn backlog(&self) -> (usize, u64) {
        let s = self.state.lock();
        (s.cached.len(), s.bytes)
    }
}
