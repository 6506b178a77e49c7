//! Queries: queues, lookups by key and time, consumer lag and offset resets.

use crate::error::Result;
use crate::message::{MessageExt, MessageQueue};
use crate::view::MessageView;

use super::Store;

impl Store {
    /// Calls `f` with each message of `queue` from queue offset `offset` on (at most `max`),
    /// in offset order, without copying it: the [`MessageView`] borrows the stored record
    /// for the duration of the call (each record's CRC is checked once). `f` returns `false`
    /// to stop. Returns the queue offset to read next. An offset below the queue's minimum
    /// starts at the minimum. The fastest way to read a queue; [`Store::get_messages`] copies
    /// messages out instead.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let q = mqlite::MessageQueue::new("orders", 0);
    /// store.put(&mqlite::Message::new("orders", "a").with_tags("paid"), 0)?;
    /// store.put(&mqlite::Message::new("orders", "b"), 0)?;
    /// let mut paid = 0;
    /// let next = store.scan(&q, 0, usize::MAX, |m| {
    ///     paid += usize::from(m.tags() == Some("paid"));
    ///     true
    /// })?;
    /// assert_eq!((paid, next), (1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scan(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: usize,
        f: impl FnMut(&MessageView<'_>) -> bool,
    ) -> Result<u64> {
        self.core().scan_views(queue, offset, max, f)
    }

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
        self.core().queues_of(topic)
    }

    /// Messages of `topic` whose business keys (KEYS) include `key`, or whose msgId
    /// (`UNIQ_KEY`) is `key`, stored between `begin_ms` and `end_ms` (inclusive, ms since the
    /// Unix epoch): **newest first**, as RocketMQ's `queryMessage` returns them, at most `max`
    /// (and at most 64, RocketMQ's `maxMsgsNumBatch`).
    ///
    /// With the index on ([`IndexConfig::enabled`](crate::IndexConfig), the default) the
    /// lookup goes through the index files: the key's hash chain is walked newest file first,
    /// and each candidate record is read and checked (hashes collide), so the answer is the
    /// one a scan gives. With the index off, each queue's time range is found by binary search
    /// on store times and scanned.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let p = store.producer("p")?;
    /// p.send(mqlite::Message::new("orders", "created").with_keys(["ORDER-1"]))?;
    /// p.send(mqlite::Message::new("orders", "other").with_keys(["ORDER-2"]))?;
    /// p.send(mqlite::Message::new("orders", "paid").with_keys(["ORDER-1"]))?;
    /// let found = store.query_by_key("orders", "ORDER-1", 0, u64::MAX, 32)?;
    /// assert_eq!(found.len(), 2);
    /// assert_eq!(found[0].body(), b"paid"); // newest first
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: u64,
        end_ms: u64,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        self.core().query_by_key(topic, key, begin_ms, end_ms, max)
    }

    /// The message of `topic` whose msgId (`UNIQ_KEY`, what [`SendResult::msg_id`](crate::SendResult::msg_id)
    /// holds) is `msg_id`, found through the index (RocketMQ's
    /// `viewMessage(topic, msgId)`); [`Error::MessageIdNotFound`](crate::Error) if none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let sent = store.producer("p")?.send(mqlite::Message::new("orders", "created"))?;
    /// let m = store.view_message_by_id("orders", &sent.msg_id.to_string())?;
    /// assert_eq!(m.body(), b"created");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn view_message_by_id(&self, topic: &str, msg_id: &str) -> Result<MessageExt> {
        self.core().view_message_by_id(topic, msg_id)
    }

    /// Messages of `topic` stored between `begin_ms` and `end_ms` (inclusive), oldest first
    /// (by store time, then CommitLog offset), at most `max`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let p = store.producer("p")?;
    /// p.send(mqlite::Message::new("orders", "a"))?;
    /// p.send(mqlite::Message::new("orders", "b"))?;
    /// let all = store.messages_between("orders", 0, u64::MAX, 10)?;
    /// assert_eq!(all.len(), 2);
    /// assert_eq!(all[0].body(), b"a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn messages_between(
        &self,
        topic: &str,
        begin_ms: u64,
        end_ms: u64,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        self.core().messages_between(topic, begin_ms, end_ms, max)
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
        crate::broker::validate::group(group)?;
        let committed = self.core().committed_offsets(group, topic);
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
    ///
    /// The reset takes effect in the group's running push consumers in this process, as
    /// RocketMQ's reset notifies them: each drops its progress in the topic's queues (what it
    /// had fetched, and what its listener is still consuming, which commits nothing any more)
    /// and goes on from the reset offsets, so no later commit of theirs overwrites the reset
    /// with an older position. Broadcasting consumers of the group have their own offsets
    /// reset too. Pull consumers read committed offsets from the store, so their next
    /// [`PullConsumer::committed_offset`](crate::PullConsumer::committed_offset) sees it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 1)?;
    /// store.producer("p")?.send(mqlite::Message::new("orders", "a"))?;
    /// let q = mqlite::MessageQueue::new("orders", 0);
    /// let pull = store.pull_consumer("billing")?;
    /// pull.commit_offset(&q, 1)?;
    /// store.reset_offset_by_time("billing", "orders", 0)?; // back to the first message
    /// assert_eq!(pull.committed_offset(&q)?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset_offset_by_time(&self, group: &str, topic: &str, ms: u64) -> Result<()> {
        crate::broker::validate::group(group)?;
        let queues = self.queues(topic)?;
        let mut offsets = std::collections::BTreeMap::new();
        for q in &queues {
            offsets.insert(q.queue_id, self.offset_by_time(q, ms)?);
        }
        let core = self.core();
        core.groups.reset_offsets(group, topic, &offsets, || {
            for q in &queues {
                core.commit_offset(group, q, offsets[&q.queue_id])?;
            }
            Ok(())
        })
    }
}
