//! Committing what was polled, and reading the group's committed offsets.

use super::LitePullConsumer;
use super::state::Lite;
use crate::error::Result;
use crate::message::MessageQueue;

impl Lite {
    fn commit_sync(&self) -> Result<()> {
        self.check_usable()?;
        let core = self.core();
        core.check_not_read_only()?;
        let committed = {
            let mut st = self.state.lock();
            self.commit_owned(&mut st)
        };
        // Written out even if one queue failed: the others were committed.
        let persisted = core.persist_offsets();
        committed.and(persisted)
    }
}

impl LitePullConsumer {
    /// Commits what has been polled: for every owned queue whose position moved, its
    /// position becomes the group's committed offset (through the store's commit path, as
    /// `PullConsumer::commit_offset`), and `config/consumerOffset.json` is written
    /// (atomically, with an fsync) before it returns, so the commits survive a crash. The
    /// group then resumes there: this consumer after a restart, or another one that takes a
    /// queue over.
    ///
    /// # Errors
    /// [`Error::ReadOnly`](crate::Error::ReadOnly) on a read-only store (nothing is
    /// committed), [`Error::Closed`](crate::Error::Closed), or the error of a commit or of
    /// writing the file (the other queues are still committed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// store.producer("p")?.send(Message::new("jobs", "job"))?;
    /// let consumer = store
    ///     .lite_pull_consumer("workers")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .auto_commit(false)
    ///     .build()?;
    /// consumer.subscribe("jobs", "*")?;
    /// let q = MessageQueue::new("jobs", 0);
    /// assert_eq!(consumer.poll(Duration::from_secs(5))?.len(), 1);
    /// assert_eq!(consumer.committed(&q)?, None);
    /// consumer.commit_sync()?;
    /// assert_eq!(consumer.committed(&q)?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_sync(&self) -> Result<()> {
        self.inner.commit_sync()
    }

    /// The group's committed offset of `queue` (the next offset to consume), if it has one.
    /// Any queue, owned or not.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// let q = mqlite::MessageQueue::new("jobs", 0);
    /// let consumer = store.lite_pull_consumer("workers").build()?;
    /// assert_eq!(consumer.committed(&q)?, None);
    /// store.pull_consumer("workers")?.commit_offset(&q, 0)?;
    /// assert_eq!(consumer.committed(&q)?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn committed(&self, queue: &MessageQueue) -> Result<Option<u64>> {
        self.inner.check_usable()?;
        self.inner
            .core()
            .committed_offset(self.inner.group(), queue)
    }
}
