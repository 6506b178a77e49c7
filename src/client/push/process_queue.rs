//! A process queue: the push consumer's view of one assigned queue — messages fetched but not
//! yet consumed, where to fetch next, and whether the queue is still ours.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::consume_queue::ConsumeQueue;
use crate::filter::TagFilter;
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
}

impl ProcessQueue {
    pub(crate) fn new(
        queue: MessageQueue,
        filter: TagFilter,
        retry: bool,
        cq: Option<Arc<ConsumeQueue>>,
        start: u64,
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
        }
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

    /// Moves the fetch position past filtered-out or illegal offsets. Returns the offset to
    /// commit when nothing is cached (so the committed offset follows), if not dropped.
    pub(crate) fn skip_to(&self, next: u64) -> Option<u64> {
        let mut s = self.state.lock();
        if s.dropped {
            return None;
        }
        s.next_fetch = next;
        s.cached.is_empty().then_some(next)
    }

    /// Removes consumed messages. Returns the offset to commit — the oldest message still
    /// cached, or the fetch position when none is — and whether fetching had been paused by
    /// flow control; `None` if the queue was dropped (a new owner has it now).
    pub(crate) fn remove(&self, offsets: impl IntoIterator<Item = u64>) -> Option<(u64, bool)> {
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
        Some((Self::commit_point(&s), was_blocked))
    }

    fn commit_point(s: &State) -> u64 {
        s.cached.keys().next().copied().unwrap_or(s.next_fetch)
    }

    /// Marks the queue dropped and returns where its next owner should start.
    pub(crate) fn drop_queue(&self) -> u64 {
        let mut s = self.state.lock();
        s.dropped = true;
        Self::commit_point(&s)
    }

    /// Cached message count and bytes.
    pub(crate) fn backlog(&self) -> (usize, u64) {
        let s = self.state.lock();
        (s.cached.len(), s.bytes)
    }
}
