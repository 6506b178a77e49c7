//! The read side: reading queues (with tag or SQL92 selectors), RocketMQ's pull statuses, waiting for
//! arrivals, consumer offsets and lookups by time.

use std::sync::Arc;
use std::time::Instant;

use super::{Broker, OffsetScope};
use crate::error::{Error, Result};
use crate::filter::MessageSelector;
use crate::format::record::RecordView;
use crate::log::consume_queue::ConsumeQueue;
use crate::message::{Batch, MessageExt, MessageQueue};
use crate::view::MessageView;

/// Most consume queue units one read examines when a filter skips messages (RocketMQ
/// `maxFilterMessageCount`).
const MAX_SCAN: usize = 16_000;

/// What one read of a queue found.
pub(crate) struct Read {
    /// The messages that matched.
    pub(crate) messages: Vec<MessageExt>,
    /// Offset after the last unit examined.
    pub(crate) scanned_to: u64,
}

/// Outcome of a pull (RocketMQ `PullStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PullStatus {
    /// Messages were found.
    Found,
    /// Nothing past the offset (yet).
    NoNewMsg,
    /// Messages were scanned but none matched the filter; continue from `next_begin_offset`.
    NoMatchedMsg,
    /// The offset is outside the queue; continue from `next_begin_offset`.
    OffsetIllegal,
}

/// The result of a pull.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PullResult {
    /// What happened.
    pub status: PullStatus,
    /// The messages found, in queue-offset order.
    pub messages: Vec<MessageExt>,
    /// The offset to pull from next.
    pub next_begin_offset: u64,
    /// The queue's smallest offset.
    pub min_offset: u64,
    /// The queue's max offset (the next offset to be written).
    pub max_offset: u64,
}

/// Messages read from a queue by `Store::get_messages`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GetResult {
    /// The messages, in queue-offset order.
    pub messages: Vec<MessageExt>,
    /// The queue offset to read next.
    pub next_offset: u64,
    /// The queue's smallest offset.
    pub min_offset: u64,
    /// The queue's max offset (the next offset to be written).
    pub max_offset: u64,
}

impl Broker {
    /// The smallest offset of a queue (0 for a queue that never had a message).
    pub(crate) fn min_offset(&self, queue: &MessageQueue) -> Result<u64> {
        Ok(self.queue_checked(queue)?.map_or(0, |q| q.min_offset()))
    }

    /// The max offset of a queue: the offset the next message will get.
    pub(crate) fn max_offset(&self, queue: &MessageQueue) -> Result<u64> {
        Ok(self.queue_checked(queue)?.map_or(0, |q| q.max_offset()))
    }

    /// The queues of `topic` (its read queues).
    pub(crate) fn queues_of(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.check_open()?;
        self.read_queues(topic)
    }

    /// The group's committed offsets of `topic`, by queue id.
    pub(crate) fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> std::collections::BTreeMap<u32, u64> {
        self.offsets.of(group, topic)
    }

    fn queue_checked(&self, queue: &MessageQueue) -> Result<Option<Arc<ConsumeQueue>>> {
        self.check_open()?;
        self.refresh(false, false)?;
        match self.topics.queue_count(&queue.topic) {
            None => match self.queue(&queue.topic, queue.queue_id) {
                Some(cq) => Ok(Some(cq)),
                None => Err(Error::TopicNotFound(queue.topic.clone())),
            },
            Some(count) if queue.queue_id >= count => Err(Error::QueueNotFound {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
            }),
            Some(_) => Ok(self.queue(&queue.topic, queue.queue_id)),
        }
    }

    /// Visits the matching records of `cq` from `offset` on, examining at most `budget`
    /// units, until `on_record` returns false. A unit is checked first by its tag code (tag
    /// selectors), then by its record (the exact tag, or a SQL selector on the properties).
    /// Each record's CRC is checked once, as it is decoded. Returns the offset after the last
    /// unit examined, and the first damaged unit with its error, if any (the visit stops
    /// there).
    fn visit_queue(
        &self,
        cq: &ConsumeQueue,
        offset: u64,
        budget: usize,
        filter: &MessageSelector,
        mut on_record: impl FnMut(&RecordView<'_>) -> bool,
    ) -> (u64, Option<(u64, Error)>) {
        let limit = self.visible_end();
        let mut failure = None;
        let mut cache = None;
        let queue_id = cq.queue_id();
        let topic = cq.topic();
        let (scanned_to, unmapped) = cq.scan(offset, budget, |qoff, unit| {
            if !filter.matches_code(unit.tag_code) {
                return true;
            }
            let read = self
                .log()
                .with_record_cached(&mut cache, unit.physical_offset, limit, |rec, seg| {
                    if rec.meta.queue_offset != qoff || rec.meta.queue_id != queue_id {
                        return Err(Error::corrupted(
                            seg.path(),
                            unit.physical_offset - seg.base(),
                            format!(
                                "consume queue {topic}:{queue_id} offset {qoff} points at another record"
                            ),
                        ));
                    }
                    if !filter.is_all() && !filter.matches(rec.properties) {
                        return Ok(true);
                    }
                    Ok(on_record(rec))
                });
            match read.and_then(|r| r) {
                Ok(go_on) => go_on,
                // Its segment was deleted while the queue still listed it (the queue's
                // minimum moves right after): gone, as RocketMQ skips a removed message.
                Err(Error::MessageNotFound(phys)) if phys < self.log().min_offset() => true,
                Err(e) => {
                    failure = Some((qoff, e));
                    false
                }
            }
        });
        if let Some(e) = unmapped {
            failure.get_or_insert((scanned_to, e));
        }
        match failure {
            Some((qoff, e)) => (qoff, Some((qoff, e))),
            None => (scanned_to, None),
        }
    }

    /// Reads up to `max` matching messages from `offset`, examining at most `MAX_SCAN` units
    /// when the filter skips some.
    pub(crate) fn read_queue(
        &self,
        cq: &ConsumeQueue,
        offset: u64,
        max: usize,
        filter: &MessageSelector,
    ) -> Result<Read> {
        let mut batch = Batch::with_capacity(max.min(64));
        let topic = cq.topic().clone();
        let budget = if filter.is_all() {
            max
        } else {
            MAX_SCAN.max(max)
        };
        let (scanned_to, failure) = self.visit_queue(cq, offset, budget, filter, |rec| {
            batch.push(rec, topic.clone());
            batch.len() < max
        });
        let messages = batch.finish();
        if let Some((_, e)) = failure
            && messages.is_empty()
        {
            // Return what was read; the next read starts at the damaged unit and reports it.
            return Err(e);
        }
        Ok(Read {
            messages,
            scanned_to,
        })
    }

    /// Calls `f` with each message of `queue` from `offset` on (at most `max`), borrowed in
    /// place. Returns the offset to read next.
    pub(crate) fn scan_views(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: usize,
        mut f: impl FnMut(&MessageView<'_>) -> bool,
    ) -> Result<u64> {
        let Some(cq) = self.queue_checked(queue)? else {
            return Ok(offset);
        };
        let mut seen = 0usize;
        let (next, failure) = self.visit_queue(&cq, offset, max, &MessageSelector::ALL, |rec| {
            seen += 1;
            f(&MessageView::new(rec))
        });
        match failure {
            Some((_, e)) if seen == 0 => Err(e),
            _ => Ok(next),
        }
    }

    pub(crate) fn get_messages(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: usize,
    ) -> Result<GetResult> {
        let Some(cq) = self.queue_checked(queue)? else {
            return Ok(GetResult {
                messages: Vec::new(),
                next_offset: offset,
                min_offset: 0,
                max_offset: 0,
            });
        };
        let read = self.read_queue(&cq, offset, max, &MessageSelector::ALL)?;
        let next_offset = read
            .messages
            .last()
            .map_or(read.scanned_to.max(offset), |m| m.queue_offset + 1);
        Ok(GetResult {
            messages: read.messages,
            next_offset,
            min_offset: cq.min_offset(),
            max_offset: cq.max_offset(),
        })
    }

    /// RocketMQ's `getMessage` status rules (§13.3).
    pub(crate) fn pull(
        &self,
        queue: &MessageQueue,
        filter: &MessageSelector,
        offset: u64,
        max: usize,
    ) -> Result<PullResult> {
        let cq = self.queue_checked(queue)?;
        let (min, max_offset) = cq
            .as_ref()
            .map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
        let result = |status, messages, next| PullResult {
            status,
            messages,
            next_begin_offset: next,
            min_offset: min,
            max_offset,
        };
        let Some(cq) = cq.filter(|_| max_offset > 0) else {
            // NO_MESSAGE_IN_QUEUE: fine at offset 0, illegal anywhere else.
            let status = if offset == 0 {
                PullStatus::NoNewMsg
            } else {
                PullStatus::OffsetIllegal
            };
            return Ok(result(status, Vec::new(), 0));
        };
        if offset < min {
            return Ok(result(PullStatus::OffsetIllegal, Vec::new(), min));
        }
        if offset == max_offset {
            return Ok(result(PullStatus::NoNewMsg, Vec::new(), offset));
        }
        if offset > max_offset {
            // OFFSET_OVERFLOW_BADLY: RocketMQ sends the consumer to 0 when the queue starts at
            // 0, else to the max offset.
            let next = if min == 0 { 0 } else { max_offset };
            return Ok(result(PullStatus::OffsetIllegal, Vec::new(), next));
        }
        let read = self.read_queue(&cq, offset, max.max(1), filter)?;
        if read.messages.is_empty() {
            return Ok(result(
                PullStatus::NoMatchedMsg,
                Vec::new(),
                read.scanned_to.max(offset),
            ));
        }
        // Like RocketMQ, continue after everything examined, matching or not.
        let next = read.scanned_to;
        Ok(result(PullStatus::Found, read.messages, next))
    }

    /// Waits until `queue` has a message at or past `offset`, or `deadline`.
    pub(crate) fn wait_for_message(
        &self,
        queue: &MessageQueue,
        offset: u64,
        deadline: Instant,
    ) -> Result<bool> {
        self.check_open()?;
        if self.is_read_only() {
            return self.poll_for_message(queue, offset, deadline);
        }
        let cq = match self.queue(&queue.topic, queue.queue_id) {
            Some(cq) => cq,
            None => self.queue_or_create(&queue.topic, queue.queue_id)?,
        };
        Ok(cq.wait_beyond(offset, deadline))
    }

    /// [`Broker::wait_for_message`] of a read-only store: another process writes, so nothing
    /// wakes us; the files are looked at again every few milliseconds.
    fn poll_for_message(
        &self,
        queue: &MessageQueue,
        offset: u64,
        deadline: Instant,
    ) -> Result<bool> {
        const POLL: std::time::Duration = std::time::Duration::from_millis(5);
        loop {
            self.check_open()?;
            self.refresh(true, false)?;
            if self
                .queue(&queue.topic, queue.queue_id)
                .is_some_and(|cq| cq.max_offset() > offset)
            {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    pub(crate) fn commit_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
        offset: u64,
    ) -> Result<()> {
        self.check_not_read_only()?;
        let max = self.max_offset(queue)?;
        if offset > max {
            return Err(Error::InvalidOffset {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                offset,
                max,
            });
        }
        self.offsets
            .set(group, &queue.topic, queue.queue_id, offset);
        Ok(())
    }

    pub(crate) fn committed_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<u64>> {
        self.check_open()?;
        Ok(self.offsets.get(group, &queue.topic, queue.queue_id))
    }

    /// Binary search of the first message stored at or after `ms`.
    pub(crate) fn offset_by_time(&self, queue: &MessageQueue, ms: u64) -> Result<u64> {
        let Some(cq) = self.queue_checked(queue)? else {
            return Ok(0);
        };
        let limit = self.visible_end();
        let (mut lo, mut hi) = (cq.min_offset(), cq.max_offset());
        let mut cache = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ts = match cq.try_get(mid)? {
                Some(unit) => self.log().with_record_cached(
                    &mut cache,
                    unit.physical_offset,
                    limit,
                    |rec, _| rec.meta.store_timestamp.max(0) as u64,
                )?,
                None => break,
            };
            if ts < ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

impl Broker {
    /// The read queues of `topic`.
    pub(crate) fn read_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let cfg = self
            .topic_config(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_owned()))?;
        Ok((0..cfg.read_queue_nums)
            .map(|q| MessageQueue::new(topic, q))
            .collect())
    }

    /// Min and max offset of a queue (0, 0 when it has no consume queue yet).
    pub(crate) fn queue_bounds(&self, queue: &MessageQueue) -> (u64, u64) {
        self.queue(&queue.topic, queue.queue_id)
            .map_or((0, 0), |q| (q.min_offset(), q.max_offset()))
    }

    /// Commits to the group offsets, or to the per-instance broadcasting offsets.
    pub(crate) fn commit_offset_for(
        &self,
        scope: OffsetScope,
        group: &str,
        queue: &MessageQueue,
        offset: u64,
    ) -> Result<()> {
        self.check_open()?;
        self.check_not_read_only()?;
        let table = match scope {
            OffsetScope::Instance => &self.broadcast_offsets,
            OffsetScope::Group => &self.offsets,
        };
        table.set(group, &queue.topic, queue.queue_id, offset);
        Ok(())
    }

    /// The committed offset from the group or broadcasting table.
    pub(crate) fn committed_offset_for(
        &self,
        scope: OffsetScope,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<u64>> {
        self.check_open()?;
        let table = match scope {
            OffsetScope::Instance => &self.broadcast_offsets,
            OffsetScope::Group => &self.offsets,
        };
        Ok(table.get(group, &queue.topic, queue.queue_id))
    }
}
