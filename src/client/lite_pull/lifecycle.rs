//! Stopping a lite pull consumer: by `shutdown`, by dropping it, or by the store's close.
//! Each commits what was polled (with auto-commit), gives the queues up and leaves the group,
//! whose other consumers then take them over.

use std::sync::atomic::Ordering;

use super::LitePullConsumer;
use super::state::Lite;
use crate::broker::runtime::Attached;
use crate::error::Result;

impl Lite {
    /// Stops the consumer; a second call returns once the first has finished.
    pub(super) fn shutdown(&self) -> Result<()> {
        let _serial = self.stopping.lock();
        if self.shut.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A poll waiting on another thread wakes and returns `Closed`.
        self.wake();
        let core = self.core().clone();
        let writes = self.can_commit() && core.check_open().is_ok();
        let mut result = Ok(());
        {
            let mut st = self.state.lock();
            if self.options.auto_commit && writes {
                result = self.commit_owned(&mut st);
            }
            st.owned.clear();
            st.resetting.clear();
        }
        let joined = std::mem::replace(&mut *self.membership.lock(), false);
        if joined {
            core.groups.leave(&core, self.group(), &self.id);
        }
        self.gone.store(true, Ordering::Release);
        if writes {
            result = result.and(core.persist_offsets());
        }
        result
    }
}

impl Attached for Lite {
    /// The store is closing: stop as a shutdown does.
    fn close(&self) -> Result<()> {
        self.shutdown()
    }
}

impl LitePullConsumer {
    /// Stops the consumer: with auto-commit it commits what was polled, then gives its queues
    /// up and leaves its group (the other consumers of the group take the queues over), and
    /// writes the offsets to `config/consumerOffset.json`. Dropping the consumer does the
    /// same, ignoring errors; `Store::close` does it for every lite pull consumer still
    /// running, after which the consumer's calls fail with
    /// [`Error::Closed`](crate::Error::Closed) and its `shutdown` returns `Ok`.
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
    ///     .build()?;
    /// consumer.subscribe("jobs", "*")?;
    /// assert_eq!(consumer.poll(Duration::from_secs(5))?.len(), 1);
    /// consumer.shutdown()?; // auto-commit: what was polled is committed
    /// let q = MessageQueue::new("jobs", 0);
    /// assert_eq!(store.pull_consumer("workers")?.committed_offset(&q)?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Drop for LitePullConsumer {
    /// As [`LitePullConsumer::shutdown`]; an error is logged.
    fn drop(&mut self) {
        if let Err(e) = self.inner.shutdown() {
            ::log::warn!(
                "lite pull consumer {} of group {}: shutdown on drop failed: {e}",
                self.inner.id,
                self.inner.group()
            );
        }
    }
}
