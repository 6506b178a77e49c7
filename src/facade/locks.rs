//! Queue locks of orderly consumers, for tools and tests.

use crate::error::Result;
use crate::message::MessageQueue;

use super::Store;

impl Store {
    /// Locks queues for `holder` in `group` (RocketMQ `LOCK_BATCH_MQ`), renewing its own leases;
    /// returns the queues it holds afterwards. Orderly consumers do this themselves; it is
    /// public for tools and tests.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let q = mqlite::MessageQueue::new("t", 0);
    /// assert_eq!(store.lock_queues("g", "a", &[q.clone()])?, vec![q.clone()]);
    /// assert!(store.lock_queues("g", "b", &[q.clone()])?.is_empty());
    /// store.unlock_queues("g", "a", &[q.clone()])?;
    /// assert_eq!(store.lock_queues("g", "b", &[q.clone()])?, vec![q]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_queues(
        &self,
        group: &str,
        holder: &str,
        queues: &[MessageQueue],
    ) -> Result<Vec<MessageQueue>> {
        let core = self.core();
        core.check_open()?;
        Ok(core
            .locks
            .lock(group, holder, queues, core.config().queue_lock_lease))
    }

    /// Releases queue locks held by `holder` (RocketMQ `UNLOCK_BATCH_MQ`).
    pub fn unlock_queues(&self, group: &str, holder: &str, queues: &[MessageQueue]) -> Result<()> {
        let core = self.core();
        core.check_open()?;
        core.locks.unlock(group, holder, queues);
        Ok(())
    }
}
