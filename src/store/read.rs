//! The read side: reading queues (with tag filters), RocketMQ's pull statuses, waiting for
//! arrivals, consumer offsets and lookups by time.

use std::sync::Arc;
use std::time::Instant;

use super::{Core, GetResult, Store};
use crate::client::pull::{PullResult, PullStatus};
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::filter::TagFilter;
use crate::format::properties::{self, keys};
use crate::message::{Batch, MessageExt, MessageQueue};

/// Most consume queue units one read examines when a filter skips messages (RocketMQ
/// `maxFilterMessageCount`).
const MAX_SCAN: usize = 16_000;

/// What one read of a queue found.
struct Read {
    messages: Vec<MessageExt>,
    /// Offset after the last unit examined.
    scanned_to: u64,
}

impl Core {
    fn queue_checked(&self, queue: &MessageQueue) -> Result<Option<Arc<ConsumeQueue>>> {
        self.check_open()?;
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

    /// Reads up to `max` matching messages from `offset`, examining at most `MAX_SCAN` units
    /// when the filter skips some.
    fn read_queue(
        &self,
        cq: &ConsumeQueue,
        offset: u64,
        max: usize,
        filter: &TagFilter,
    ) -> Result<Read> {
        let limit = self.visible_end();
        let mut batch = Batch::with_capacity(max.min(64));
        let mut failure = None;
        let mut cache = None;
        let queue_id = cq.queue_id();
        let topic = cq.topic();
        let budget = if filter.is_all() {
            max
        } else {
            MAX_SCAN.max(max)
        };
        let scanned_to = cq.scan(offset, budget, |qoff, unit| {
            if !filter.matches_code(unit.tag_code) {
                return true;
            }
            let read = self
                .log
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
                    if !filter.is_all()
                        && !filter.matches(properties::get(rec.properties, keys::TAGS))
                    {
                        return Ok(false);
                    }
                    batch.push(rec, topic.clone());
                    Ok(true)
                });
            match read.and_then(|r| r) {
                Ok(true) => batch.len() < max,
                Ok(false) => true,
                Err(e) => {
                    failure = Some((qoff, e));
                    false
                }
            }
        });
        let messages = batch.finish();
        if let Some((qoff, e)) = failure {
            if messages.is_empty() {
                return Err(e);
            }
            // Return what was read; the next read starts at the damaged unit and reports it.
            return Ok(Read {
                messages,
                scanned_to: qoff,
            });
        }
        Ok(Read {
            messages,
            scanned_to,
        })
    }

    pub(crate) fn get_messages(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: usize,
    ) -> Result<GetResult> {
        let Some(cq) = self.queue_checked(queue).or_else(|e| match e {
            Error::TopicNotFound(_) | Error::QueueNotFound { .. } => Ok(None),
            e => Err(e),
        })?
        else {
            return Ok(GetResult {
                messages: Vec::new(),
                next_offset: offset,
                min_offset: 0,
                max_offset: 0,
            });
        };
        let read = self.read_queue(&cq, offset, max, &TagFilter::ALL)?;
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
        filter: &TagFilter,
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
        let cq = match self.queue(&queue.topic, queue.queue_id) {
            Some(cq) => cq,
            None => self.queue_or_create(&queue.topic, queue.queue_id)?,
        };
        Ok(cq.wait_beyond(offset, deadline))
    }

    pub(crate) fn commit_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
        offset: u64,
    ) -> Result<()> {
        self.check_open()?;
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
            let ts = match cq.get(mid) {
                Some(unit) => self.log.with_record_cached(
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

impl Core {
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
        broadcast: bool,
        group: &str,
        queue: &MessageQueue,
        offset: u64,
    ) -> Result<()> {
        self.check_open()?;
        let table = if broadcast {
            &self.broadcast_offsets
        } else {
            &self.offsets
        };
        table.set(group, &queue.topic, queue.queue_id, offset);
        Ok(())
    }

    /// The committed offset from the group or broadcasting table.
    pub(crate) fn committed_offset_for(
        &self,
        broadcast: bool,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<u64>> {
        self.check_open()?;
        let table = if broadcast {
            &self.broadcast_offsets
        } else {
            &self.offsets
        };
        Ok(table.get(group, &queue.topic, queue.queue_id))
    }
}

impl Store {
    /// The queues of `topic`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 2)?;
    /// let qs = store.queues("orders")?;
    /// assert_eq!(qs, vec![mqlite::MessageQueue::new("orders", 0), mqlite::MessageQueue::new("orders", 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let core = self.core();
        core.check_open()?;
        let cfg = core
            .topic_config(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_owned()))?;
        Ok((0..cfg.read_queue_nums)
            .map(|q| MessageQueue::new(topic, q))
            .collect())
    }

    /// Messages of `topic` whose business keys include `key`, or whose msgId (`UNIQ_KEY`) is
    /// `key`, stored between `begin_ms` and `end_ms` (inclusive, ms since the Unix epoch):
    /// oldest first, at most 64 (RocketMQ's query maximum). Each queue's time range is found by
    /// binary search on store times and then scanned: there are no index files yet, so a
    /// query costs a read of the range.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let p = store.producer("p");
    /// p.send(mqlite::Message::new("orders", "created").with_keys(["ORDER-1"]))?;
    /// p.send(mqlite::Message::new("orders", "other").with_keys(["ORDER-2"]))?;
    /// let found = store.query_by_key("orders", "ORDER-1", 0, u64::MAX)?;
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(found[0].body(), b"created");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<MessageExt>> {
        const MAX_RESULTS: usize = 64;
        let core = self.core();
        let mut found = Vec::new();
        for q in self.queues(topic)? {
            let Some(cq) = core.queue(&q.topic, q.queue_id) else {
                continue;
            };
            let mut off = core.offset_by_time(&q, begin_ms)?;
            let end = core.offset_by_time(&q, end_ms.saturating_add(1))?;
            while off < end && found.len() < MAX_RESULTS {
                let read =
                    core.read_queue(&cq, off, (end - off).min(256) as usize, &TagFilter::ALL)?;
                if read.messages.is_empty() {
                    break;
                }
                off = read.scanned_to;
                found.extend(read.messages.into_iter().filter(|m| {
                    m.keys().any(|k| k == key) || m.property(keys::UNIQ_KEY) == Some(key)
                }));
            }
        }
        found.sort_by_key(|m| (m.store_timestamp(), m.physical_offset()));
        found.truncate(MAX_RESULTS);
        Ok(found)
    }

    /// Ids of the live consumers of `group` in this process, sorted.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.core().groups.member_ids(group)
    }

    /// The offset of the first message of `queue` stored at or after `ms` (ms since the Unix
    /// epoch), found by binary search on store times; the max offset if there is none.
    pub fn offset_by_time(&self, queue: &MessageQueue, ms: u64) -> Result<u64> {
        self.core().offset_by_time(queue, ms)
    }

    /// How many messages of `topic` the group has not consumed: the sum over its queues of the
    /// max offset minus the committed offset (minus the min offset where nothing is committed).
    pub fn consumer_lag(&self, group: &str, topic: &str) -> Result<u64> {
        super::validate::group(group)?;
        let committed = self.core().offsets.of(group, topic);
        let mut lag = 0;
        for q in self.queues(topic)? {
            let max = self.max_offset(&q)?;
            let from = match committed.get(&q.queue_id) {
                Some(&c) => c,
                None => self.min_offset(&q)?,
            };
            lag += max.saturating_sub(from);
        }
        Ok(lag)
    }

    /// Sets the group's committed offset of every queue of `topic` to the first message stored
    /// at or after `ms` (RocketMQ's "reset offset by time").
    pub fn reset_offset_by_time(&self, group: &str, topic: &str, ms: u64) -> Result<()> {
        super::validate::group(group)?;
        for q in self.queues(topic)? {
            let off = self.offset_by_time(&q, ms)?;
            self.core().commit_offset(group, &q, off)?;
        }
        Ok(())
    }
}
