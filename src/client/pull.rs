//! The pull consumer: RocketMQ's `DefaultMQPullConsumer` semantics over an in-process store
//! — pull by queue offset with tag or SQL92 selectors, long polling, and offsets
//! committed per (group, topic, queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::runtime::Runtime;
use crate::broker::validate;
use crate::error::Result;
use crate::filter::MessageSelector;
use crate::message::MessageQueue;

pub use crate::broker::read::{PullResult, PullStatus};

/// Where a group with no committed offset starts (RocketMQ `ConsumeFromWhere`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFrom {
    /// At the end of the queue: only messages sent from now on (the default).
    #[default]
    LastOffset,
    /// At the queue's first message still stored.
    FirstOffset,
    /// At the first message stored at or after this time (ms since the Unix epoch).
    Timestamp(u64),
}

/// Pulls messages from queues and tracks the group's offsets. Obtained from
/// `Store::pull_consumer`; cheap to clone.
///
/// ```
/// use mqlite::{Message, PullStatus};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("orders", 1)?;
/// let producer = store.producer("p")?;
/// producer.send(Message::new("orders", "a").with_tags("created"))?;
/// producer.send(Message::new("orders", "b").with_tags("paid"))?;
///
/// let consumer = store.pull_consumer("billing")?;
/// let queue = &consumer.queues("orders")?[0];
/// let r = consumer.pull(queue, "paid", 0, 32)?;
/// assert_eq!(r.status, PullStatus::Found);
/// assert_eq!(r.messages.len(), 1);
/// consumer.commit_offset(queue, r.next_begin_offset)?;
/// assert_eq!(consumer.committed_offset(queue)?, Some(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PullConsumer {
    store: Arc<Runtime>,
    group: String,
}

impl PullConsumer {
    pub(crate) fn new(store: Arc<Runtime>, group: &str) -> PullConsumer {
        PullConsumer {
            store,
            group: group.to_owned(),
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The queues of `topic` (its read queues).
    pub fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.store.core().queues_of(topic)
    }

    /// Pulls up to `max` messages matching the tag expression `expr` (`*`, `TagA`,
    /// `TagA || TagB`) from `offset` on, with RocketMQ's statuses: `Found`, `NoNewMsg` (at the
    /// end of the queue), `NoMatchedMsg` (scanned, nothing matched) and `OffsetIllegal`
    /// (outside the queue; the result's `next_begin_offset` is where to continue). For SQL92
    /// selectors see [`PullConsumer::pull_filtered`].
    pub fn pull(
        &self,
        queue: &MessageQueue,
        expr: &str,
        offset: u64,
        max: usize,
    ) -> Result<PullResult> {
        let selector = MessageSelector::by_tag(expr)?;
        self.pull_filtered(queue, &selector, offset, max)
    }

    /// [`PullConsumer::pull`] with a selector: a tag expression or a SQL92 expression over
    /// message properties, parsed once. Like RocketMQ's broker, a pull examines at most
    /// 16,000 queue entries past `offset` when the selector skips some; `next_begin_offset`
    /// moves past every entry examined, matching or not (`NoMatchedMsg` when none matched).
    ///
    /// ```
    /// use mqlite::{Message, MessageSelector, PullStatus};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("t", 1)?;
    /// let producer = store.producer("p")?;
    /// for i in 0..10 {
    ///     producer.send(Message::new("t", "x").with_property("n", i.to_string()))?;
    /// }
    /// let consumer = store.pull_consumer("g")?;
    /// let q = mqlite::MessageQueue::new("t", 0);
    /// let odd = MessageSelector::by_sql("n IN ('1', '3', '5', '7', '9')")?;
    /// let r = consumer.pull_filtered(&q, &odd, 0, 3)?;
    /// let got: Vec<_> = r.messages.iter().map(|m| m.property("n").unwrap()).collect();
    /// assert_eq!(got, ["1", "3", "5"]);
    /// assert_eq!(r.next_begin_offset, 6);
    /// let none = MessageSelector::by_sql("n > 100")?;
    /// let r = consumer.pull_filtered(&q, &none, 0, 32)?;
    /// assert_eq!((r.status, r.next_begin_offset), (PullStatus::NoMatchedMsg, 10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pull_filtered(
        &self,
        queue: &MessageQueue,
        selector: &MessageSelector,
        offset: u64,
        max: usize,
    ) -> Result<PullResult> {
        let r = self.store.core().pull(queue, selector, offset, max)?;
        self.count(queue, &r);
        Ok(r)
    }

    /// Counts what a pull got in the store's statistics.
    fn count(&self, queue: &MessageQueue, r: &PullResult) {
        if !r.messages.is_empty() {
            let bytes = r.messages.iter().map(|m| u64::from(m.store_size())).sum();
            (self.store.core().gets).add(&self.group, &queue.topic, r.messages.len() as u64, bytes);
        }
    }

    /// Like [`PullConsumer::pull`], but when there is nothing new it waits: it returns as soon
    /// as a matching message arrives (woken by the writer, not by polling), or with `NoNewMsg`
    /// once `timeout` has passed. Messages that do not match are skipped while waiting, and
    /// `next_begin_offset` reflects them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("t", 1)?;
    /// let consumer = store.pull_consumer("g")?;
    /// let q = mqlite::MessageQueue::new("t", 0);
    /// let producer = store.producer("p")?;
    /// let sender = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     producer.send(mqlite::Message::new("t", "late")).unwrap();
    /// });
    /// let r = consumer.pull_timeout(&q, "*", 0, 32, std::time::Duration::from_secs(5))?;
    /// assert_eq!(r.messages[0].body(), b"late");
    /// sender.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pull_timeout(
        &self,
        queue: &MessageQueue,
        expr: &str,
        offset: u64,
        max: usize,
        timeout: Duration,
    ) -> Result<PullResult> {
        let selector = MessageSelector::by_tag(expr)?;
        self.pull_filtered_timeout(queue, &selector, offset, max, timeout)
    }

    /// [`PullConsumer::pull_timeout`] (long polling) with a selector: waits up to `timeout`
    /// for a message the selector matches, skipping the others as they arrive.
    ///
    /// ```
    /// use mqlite::{Message, MessageSelector};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("t", 1)?;
    /// let consumer = store.pull_consumer("g")?;
    /// let q = mqlite::MessageQueue::new("t", 0);
    /// let producer = store.producer("p")?;
    /// let sender = std::thread::spawn(move || {
    ///     producer.send(Message::new("t", "small").with_property("size", "1")).unwrap();
    ///     std::thread::sleep(Duration::from_millis(20));
    ///     producer.send(Message::new("t", "large").with_property("size", "9")).unwrap();
    /// });
    /// let large = MessageSelector::by_sql("size > 5")?;
    /// let r = consumer.pull_filtered_timeout(&q, &large, 0, 32, Duration::from_secs(5))?;
    /// assert_eq!(r.messages[0].body(), b"large");
    /// assert_eq!(r.next_begin_offset, 2);
    /// sender.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pull_filtered_timeout(
        &self,
        queue: &MessageQueue,
        selector: &MessageSelector,
        offset: u64,
        max: usize,
        timeout: Duration,
    ) -> Result<PullResult> {
        let deadline = Instant::now() + timeout;
        let core = self.store.core();
        let mut offset = offset;
        loop {
            let mut r = core.pull(queue, selector, offset, max)?;
            match r.status {
                PullStatus::Found | PullStatus::OffsetIllegal => {
                    self.count(queue, &r);
                    return Ok(r);
                }
                PullStatus::NoMatchedMsg => {
                    offset = r.next_begin_offset;
                    if Instant::now() >= deadline {
                        r.status = PullStatus::NoNewMsg;
                        return Ok(r);
                    }
                }
                PullStatus::NoNewMsg => {
                    if Instant::now() >= deadline {
                        return Ok(r);
                    }
                    offset = r.next_begin_offset;
                    if !core.wait_for_message(queue, offset, deadline)? {
                        let r = core.pull(queue, selector, offset, max)?;
                        self.count(queue, &r);
                        return Ok(r);
                    }
                }
            }
        }
    }

    /// Records `offset` as the next offset the group consumes from `queue`. Persisted to
    /// `config/consumerOffset.json` periodically and at close; after a crash a consumer may see
    /// messages again (from the last persisted offset) but never skips one. An unknown topic
    /// or queue, or an offset past the queue's max offset
    /// ([`Error::InvalidOffset`](crate::Error::InvalidOffset)), is refused and nothing is
    /// recorded.
    pub fn commit_offset(&self, queue: &MessageQueue, offset: u64) -> Result<()> {
        validate::group(&self.group)?;
        self.store.core().commit_offset(&self.group, queue, offset)
    }

    /// The group's committed offset of `queue`, if any.
    pub fn committed_offset(&self, queue: &MessageQueue) -> Result<Option<u64>> {
        validate::group(&self.group)?;
        self.store.core().committed_offset(&self.group, queue)
    }

    /// Where the group consumes `queue` from: its committed offset, or, when it has none, the
    /// position `from` names (RocketMQ's `ConsumeFromWhere` on first start).
    pub fn consume_offset(&self, queue: &MessageQueue, from: ConsumeFrom) -> Result<u64> {
        if let Some(off) = self.committed_offset(queue)? {
            return Ok(off);
        }
        let core = self.store.core();
        match from {
            ConsumeFrom::LastOffset => self.store.core().max_offset(queue),
            ConsumeFrom::FirstOffset => self.store.core().min_offset(queue),
            ConsumeFrom::Timestamp(ms) => core.offset_by_time(queue, ms),
        }
    }

    /// The offset of the first message of `queue` stored at or after `ms` (ms since the
    /// Unix epoch); the max offset when there is none.
    pub fn offset_by_time(&self, queue: &MessageQueue, ms: u64) -> Result<u64> {
        self.store.core().offset_by_time(queue, ms)
    }
}
