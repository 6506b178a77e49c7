//! Health counters of a push consumer: failed fetches and the queues stuck on one.

use std::sync::atomic::Ordering;

use super::engine::Engine;
use crate::message::MessageQueue;

/// What [`PushConsumer::stats`](super::PushConsumer::stats) reports.
///
/// A push consumer cannot hand a fetch error to anyone: it logs it (`log::warn!`, once per
/// queue and condition), retries the queue every 500 ms, and shows it here. A queue listed in
/// [`ConsumerStats::stalled`] delivers nothing past [`StalledQueue::offset`] until a fetch
/// succeeds again (for example after the damaged data is repaired and the store reopened).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let store = mqlite::Store::open(dir.path())?;
/// let consumer = store
///     .push_consumer("g")
///     .subscribe("t", "*")
///     .start_concurrently(|_| mqlite::ConsumeStatus::Success)?;
/// let stats = consumer.stats();
/// assert_eq!(stats.pull_errors, 0);
/// assert!(stats.stalled.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Fetches that failed over the consumer's life.
    pub pull_errors: u64,
    /// Queues whose last fetch failed, sorted by queue.
    pub stalled: Vec<StalledQueue>,
}

/// A queue whose fetching is stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StalledQueue {
    /// The queue.
    pub queue: MessageQueue,
    /// The queue offset that cannot be fetched.
    pub offset: u64,
    /// The error of the last attempt (for example a CRC mismatch of a damaged record).
    pub error: String,
    /// Failed attempts in a row.
    pub attempts: u64,
}

impl Engine {
    pub(crate) fn stats(&self) -> ConsumerStats {
        let stalled = self
            .pqs_snapshot()
            .iter()
            .filter_map(|pq| {
                pq.stall().map(|st| StalledQueue {
                    queue: pq.queue.clone(),
                    offset: st.offset,
                    error: st.error,
                    attempts: st.attempts,
                })
            })
            .collect();
        ConsumerStats {
            pull_errors: self.pull_errors.load(Ordering::Relaxed),
            stalled,
        }
    }
}
