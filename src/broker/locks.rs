//! The queue lock table (RocketMQ's broker-side `RebalanceLockManager`): an orderly consumer
//! must hold a queue's lock to consume it. Locks are leases: they lapse when not renewed within
//! [`StoreConfig::queue_lock_lease`](crate::StoreConfig::queue_lock_lease), so a queue whose
//! holder died is taken over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
