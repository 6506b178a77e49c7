//! Moving and holding the poll position of owned queues: seek, pause and resume.

use super::LitePullConsumer;
use super::state::Lite;
use crate::error::{Error, Result};
use crate::message::MessageQueue;

fn not_assigned(queue: &MessageQueue) -> Error {
    Error::QueueNotAssigned {
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
    }
}

impl Lite {
    fn seek(&self, queue: &MessageQueue, offset: u64) -> Result<()> {
        self.check_usable()?;
        let core = self.core();
        let (min, max) = (core.min_offset(queue)?, core.max_offset(queue)?);
        if offset < min || offset > max {
            return Err(Error::OffsetOutOfRange {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                offset,
                min,
                max,
            });
        }
        let mut st = self.state.lock();
        let owned = st.owned.get_mut(queue).ok_or_else(|| not_assigned(queue))?;
        owned.position = offset;
        if self.can_commit() {
            self.commit_queue(queue, owned)?;
        }
        drop(st);
        self.wake();
        Ok(())
    }

    fn position(&self, queue: &MessageQueue) -> Result<u64> {
        self.check_usable()?;
        let st = self.state.lock();
        st.owned
            .get(queue)
            .map(|o| o.position)
            .ok_or_else(|| not_assigned(queue))
    }

    fn pause(&self, queues: &[MessageQueue]) -> Result<()> {
        self.check_usable()?;
        self.state.lock().paused.extend(queues.iter().cloned());
        Ok(())
    }

    fn resume(&self, queues: &[MessageQueue]) -> Result<()> {
        self.check_usable()?;
        let mut st = self.state.lock();
        for q in queues {
            st.paused.remove(q);
        }
        drop(st);
        self.wake();
        Ok(())
    }
}

impl LitePullConsumer {
    /// Moves `queue`'s poll position to `offset`: the next poll of the queue starts there.
    /// As RocketMQ's `seek`, it also commits `offset` as the group's offset of the queue (on
    /// a writable store), so whoever polls the queue next, this consumer after a restart or
    /// another after a rebalance, starts there too.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside the queue's `[min offset, max offset]`;
    /// [`Error::QueueNotAssigned`] for a queue this consumer does not own (not assigned, or
    /// not allocated to it, maybe during a rebalance); [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// let p = store.producer("p")?;
    /// for i in 0..5 {
    ///     p.send(Message::new("jobs", format!("job {i}")))?;
    /// }
    /// let q = MessageQueue::new("jobs", 0);
    /// let consumer = store.lite_pull_consumer("workers").build()?;
    /// consumer.assign(&[q.clone()])?; // consume_from LastOffset: starts at the end
    /// consumer.seek(&q, 3)?;
    /// assert_eq!(consumer.committed(&q)?, Some(3));
    /// let got = consumer.poll(Duration::from_secs(5))?;
    /// assert_eq!(got[0].body(), b"job 3");
    /// assert!(consumer.seek(&q, 6).is_err()); // past the max offset, 5
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seek(&self, queue: &MessageQueue, offset: u64) -> Result<()> {
        self.inner.seek(queue, offset)
    }

    /// [`seek`](LitePullConsumer::seek)s to `queue`'s first stored message (its min offset).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// store.producer("p")?.send(Message::new("jobs", "old job"))?;
    /// let q = MessageQueue::new("jobs", 0);
    /// let consumer = store.lite_pull_consumer("workers").build()?;
    /// consumer.assign(&[q.clone()])?;
    /// assert!(consumer.poll(Duration::ZERO)?.is_empty()); // started at the end
    /// consumer.seek_to_begin(&q)?;
    /// assert_eq!(consumer.poll(Duration::from_secs(5))?[0].body(), b"old job");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seek_to_begin(&self, queue: &MessageQueue) -> Result<()> {
        self.inner.check_usable()?;
        let min = self.inner.core().min_offset(queue)?;
        self.inner.seek(queue, min)
    }

    /// [`seek`](LitePullConsumer::seek)s to `queue`'s end (its max offset): only messages
    /// sent from now on are polled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// let p = store.producer("p")?;
    /// p.send(Message::new("jobs", "backlog"))?;
    /// let q = MessageQueue::new("jobs", 0);
    /// let consumer = store
    ///     .lite_pull_consumer("workers")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.assign(&[q.clone()])?;
    /// consumer.seek_to_end(&q)?; // skip the backlog
    /// p.send(Message::new("jobs", "new"))?;
    /// assert_eq!(consumer.poll(Duration::from_secs(5))?[0].body(), b"new");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seek_to_end(&self, queue: &MessageQueue) -> Result<()> {
        self.inner.check_usable()?;
        let max = self.inner.core().max_offset(queue)?;
        self.inner.seek(queue, max)
    }

    /// The next offset a poll of `queue` reads (everything before it was returned or
    /// filtered out).
    ///
    /// # Errors
    /// [`Error::QueueNotAssigned`] for a queue this consumer does not own; [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// store.producer("p")?.send(Message::new("jobs", "a"))?;
    /// let q = MessageQueue::new("jobs", 0);
    /// let consumer = store
    ///     .lite_pull_consumer("workers")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.assign(&[q.clone()])?;
    /// assert_eq!(consumer.position(&q)?, 0);
    /// consumer.poll(Duration::from_secs(5))?;
    /// assert_eq!(consumer.position(&q)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self, queue: &MessageQueue) -> Result<u64> {
        self.inner.position(queue)
    }

    /// Stops polling `queues` until [`resume`](LitePullConsumer::resume)d; their positions
    /// stay where they are. A pause holds whether or not the consumer owns the queue right
    /// now, across rebalances.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// store.producer("p")?.send(Message::new("jobs", "a"))?;
    /// let q = MessageQueue::new("jobs", 0);
    /// let consumer = store
    ///     .lite_pull_consumer("workers")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.assign(&[q.clone()])?;
    /// consumer.pause(&[q.clone()])?;
    /// assert!(consumer.poll(Duration::from_millis(10))?.is_empty());
    /// consumer.resume(&[q])?;
    /// assert_eq!(consumer.poll(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pause(&self, queues: &[MessageQueue]) -> Result<()> {
        self.inner.pause(queues)
    }

    /// Polls `queues` again after a [`pause`](LitePullConsumer::pause) (a poll waiting on
    /// another thread looks at them at once). Queues not paused are left as they are.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let consumer = store.lite_pull_consumer("workers").build()?;
    /// consumer.resume(&[mqlite::MessageQueue::new("jobs", 0)])?; // not paused: nothing to do
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume(&self, queues: &[MessageQueue]) -> Result<()> {
        self.inner.resume(queues)
    }
}
