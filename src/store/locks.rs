//! The queue lock table (RocketMQ's broker-side `RebalanceLockManager`): an orderly consumer
//! must hold a queue's lock to consume it. Locks are leases: they lapse when not renewed within
//! [`StoreConfig::queue_lock_lease`](crate::StoreConfig::queue_lock_lease), so a queue whose
//! holder died is taken over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Store;
use crate::error::Result;
use crate::message::MessageQueue;

#[derive(Debug)]
struct Lease {
    holder: String,
    renewed: Instant,
}

/// All queue locks of a store.
#[derive(Debug, Default)]
pub(crate) struct QueueLocks {
    table: Mutex<HashMap<(String, MessageQueue), Lease>>,
}

impl QueueLocks {
    /// Locks (or renews) each queue for `holder` unless another holder has a live lease;
    /// returns the queues `holder` now holds.
    pub(crate) fn lock(
        &self,
        group: &str,
        holder: &str,
        queues: &[MessageQueue],
        lease: Duration,
    ) -> Vec<MessageQueue> {
        let now = Instant::now();
        let mut t = self.table.lock();
        let mut got = Vec::new();
        for q in queues {
            let key = (group.to_owned(), q.clone());
            let free = match t.get(&key) {
                None => true,
                Some(l) => l.holder == holder || now.duration_since(l.renewed) > lease,
            };
            if free {
                t.insert(
                    key,
                    Lease {
                        holder: holder.to_owned(),
                        renewed: now,
                    },
                );
                got.push(q.clone());
            }
        }
        got
    }

    /// Releases the queues `holder` holds among `queues`.
    pub(crate) fn unlock(&self, group: &str, holder: &str, queues: &[MessageQueue]) {
        let mut t = self.table.lock();
        for q in queues {
            let key = (group.to_owned(), q.clone());
            if t.get(&key).is_some_and(|l| l.holder == holder) {
                t.remove(&key);
            }
        }
    }
}

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
