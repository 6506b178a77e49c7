//! Queue allocation strategies: pure functions from the sorted queues of a topic and the
//! sorted ids of the group's consumers to the queues one consumer owns (RocketMQ's
//! `AllocateMessageQueueStrategy`).

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::message::MessageQueue;

/// Decides which queues a consumer of a group owns. `queues` and `consumers` arrive sorted
/// (queues by topic then id, consumer ids as strings); every consumer must get the same answer
/// for the same inputs, and together they must cover every queue exactly once.
pub trait AllocateStrategy: Send + Sync {
    /// The queues `consumer` owns.
    fn allocate(
        &self,
        group: &str,
        consumer: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Vec<MessageQueue>;

    /// A name for logs and `Debug`.
    fn name(&self) -> &str;
}

/// RocketMQ's default (`AVG`): contiguous runs, the first `queues % consumers` consumers get
/// one queue more. 8 queues over 3 consumers: {0,1,2}, {3,4,5}, {6,7}.
///
/// ```
/// use mqlite::{AllocateStrategy, Averagely, MessageQueue};
/// let qs: Vec<_> = (0..8).map(|i| MessageQueue::new("t", i)).collect();
/// let cs = vec!["a".to_string(), "b".into(), "c".into()];
/// let ids = |c: &str| Averagely.allocate("g", c, &qs, &cs).iter().map(|q| q.queue_id).collect::<Vec<_>>();
/// assert_eq!((ids("a"), ids("b"), ids("c")), (vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Averagely;

impl AllocateStrategy for Averagely {
    fn allocate(
        &self,
        _group: &str,
        consumer: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Vec<MessageQueue> {
        let Some(i) = consumers.iter().position(|c| c == consumer) else {
            return Vec::new();
        };
        let (n, m) = (queues.len(), consumers.len());
        if n == 0 {
            return Vec::new();
        }
        let rem = n % m;
        let size = if n <= m {
            1
        } else if i < rem {
            n / m + 1
        } else {
            n / m
        };
        let start = if i < rem { i * size } else { i * size + rem };
        let take = size.min(n.saturating_sub(start));
        queues.iter().skip(start).take(take).cloned().collect()
    }

    fn name(&self) -> &str {
        "AVG"
    }
}

/// RocketMQ's `AVG_BY_CIRCLE`: queue `j` goes to consumer `j % consumers`.
///
/// ```
/// use mqlite::{AllocateStrategy, AveragelyByCircle, MessageQueue};
/// let qs: Vec<_> = (0..5).map(|i| MessageQueue::new("t", i)).collect();
/// let cs = vec!["a".to_string(), "b".into()];
/// let a: Vec<_> = AveragelyByCircle.allocate("g", "a", &qs, &cs).iter().map(|q| q.queue_id).collect();
/// assert_eq!(a, vec![0, 2, 4]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AveragelyByCircle;

impl AllocateStrategy for AveragelyByCircle {
    fn allocate(
        &self,
        _group: &str,
        consumer: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Vec<MessageQueue> {
        let Some(i) = consumers.iter().position(|c| c == consumer) else {
            return Vec::new();
        };
        queues
            .iter()
            .enumerate()
            .filter(|(j, _)| j % consumers.len() == i)
            .map(|(_, q)| q.clone())
            .collect()
    }

    fn name(&self) -> &str {
        "AVG_BY_CIRCLE"
    }
}

/// Consistent hashing with virtual nodes (RocketMQ `CONSISTENT_HASH`): each consumer has
/// `virtual_nodes` points on a ring (key `"{consumer}-{k}"`), each queue goes to the first point
/// at or after its own hash. Adding or removing a consumer moves only the queues next to its
/// points. Hash: masked CRC32 of the key's UTF-8 bytes (RocketMQ uses MD5; the ring differs, the
/// properties do not).
///
/// ```
/// use mqlite::{AllocateStrategy, ConsistentHash, MessageQueue};
/// let qs: Vec<_> = (0..16).map(|i| MessageQueue::new("t", i)).collect();
/// let cs = vec!["a".to_string(), "b".into()];
/// let s = ConsistentHash::default();
/// let total = s.allocate("g", "a", &qs, &cs).len() + s.allocate("g", "b", &qs, &cs).len();
/// assert_eq!(total, 16);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ConsistentHash {
    /// Points per consumer on the ring (RocketMQ's default is 10).
    pub virtual_nodes: usize,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash { virtual_nodes: 10 }
    }
}

fn ring_hash(s: &str) -> u32 {
    crc32fast::hash(s.as_bytes())
}

impl AllocateStrategy for ConsistentHash {
    fn allocate(
        &self,
        _group: &str,
        consumer: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Vec<MessageQueue> {
        if !consumers.iter().any(|c| c == consumer) {
            return Vec::new();
        }
        let mut ring: Vec<(u32, &str)> = consumers
            .iter()
            .flat_map(|c| {
                (0..self.virtual_nodes.max(1))
                    .map(move |k| (ring_hash(&format!("{c}-{k}")), c.as_str()))
            })
            .collect();
        ring.sort_unstable();
        queues
            .iter()
            .filter(|q| {
                let h = ring_hash(&format!(
                    "MessageQueue [topic={}, brokerName=mqlite, queueId={}]",
                    q.topic, q.queue_id
                ));
                let i = ring.partition_point(|(p, _)| *p < h);
                let owner = ring.get(i).or(ring.first()).map(|(_, c)| *c);
                owner == Some(consumer)
            })
            .cloned()
            .collect()
    }

    fn name(&self) -> &str {
        "CONSISTENT_HASH"
    }
}

/// A strategy from a closure.
pub(crate) struct FnStrategy<F>(pub(crate) F);

impl<F> AllocateStrategy for FnStrategy<F>
where
    F: Fn(&str, &str, &[MessageQueue], &[String]) -> Vec<MessageQueue> + Send + Sync,
{
    fn allocate(
        &self,
        group: &str,
        consumer: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Vec<MessageQueue> {
        (self.0)(group, consumer, queues, consumers)
    }

    fn name(&self) -> &str {
        "custom"
    }
}

/// A shared strategy.
#[derive(Clone)]
pub(crate) struct Strategy(pub(crate) Arc<dyn AllocateStrategy>);

impl Strategy {
    /// The strategy's share for consumer `id` (`kind` names it in the log: "push consumer",
    /// "lite pull consumer"). If the strategy panics, [`Averagely`]'s share instead, warned
    /// once per consumer through `panicked`, so a faulty strategy cannot leave the group half
    /// rebalanced.
    pub(crate) fn allocate_guarded(
        &self,
        kind: &str,
        group: &str,
        id: &str,
        queues: &[MessageQueue],
        cids: &[String],
        panicked: &AtomicBool,
    ) -> Vec<MessageQueue> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.0.allocate(group, id, queues, cids)
        })) {
            Ok(mine) => mine,
            Err(_) => {
                if !panicked.swap(true, Ordering::AcqRel) {
                    ::log::warn!(
                        "{kind} {id} of group {group}: its allocation strategy panicked; it uses \
                         the default averaging strategy instead while it does"
                    );
                }
                Averagely.allocate(group, id, queues, cids)
            }
        }
    }
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_partition(s: &dyn AllocateStrategy, n: u32, m: usize) {
        let qs: Vec<_> = (0..n).map(|i| MessageQueue::new("t", i)).collect();
        let cs: Vec<String> = (0..m).map(|i| format!("c{i:02}")).collect();
        let mut all: Vec<MessageQueue> = cs
            .iter()
            .flat_map(|c| s.allocate("g", c, &qs, &cs))
            .collect();
        all.sort();
        assert_eq!(all, qs, "{} n={n} m={m}", s.name());
    }

    #[test]
    fn every_queue_exactly_once() {
        for n in 0..20 {
            for m in 1..8 {
                check_partition(&Averagely, n, m);
                check_partition(&AveragelyByCircle, n, m);
                check_partition(&ConsistentHash::default(), n, m);
            }
        }
    }

    #[test]
    fn averagely_matches_rocketmq_examples() {
        let qs: Vec<_> = (0..3).map(|i| MessageQueue::new("t", i)).collect();
        let cs: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
        // More consumers than queues: the last ones get nothing.
        assert_eq!(Averagely.allocate("g", "c2", &qs, &cs).len(), 1);
        assert!(Averagely.allocate("g", "c3", &qs, &cs).is_empty());
        assert!(Averagely.allocate("g", "nobody", &qs, &cs).is_empty());
    }
}
