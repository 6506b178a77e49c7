//! The push consumer as a member of its group: which topics it has, how it takes its share of
//! queues (the user's strategy, guarded), releasing and taking up queues in a rebalance, and
//! offset resets while it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::engine::{Engine, RELEASE_WAIT, retry_topic};
use super::process_queue::ProcessQueue;
use crate::broker::group::Member;
use crate::message::MessageQueue;

impl Member for Engine {
    fn id(&self) -> &str {
        Engine::id(self)
    }

    fn topics(&self) -> Vec<String> {
        self.options()
            .subscriptions
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn broadcasting(&self) -> bool {
        !self.clustering()
    }

    /// The user's strategy, guarded against panics (see `Strategy::allocate_guarded`).
    fn allocate(&self, group: &str, queues: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue> {
        self.options().strategy.allocate_guarded(
            "push consumer",
            group,
            Engine::id(self),
            queues,
            cids,
            &self.strategy_panicked,
        )
    }

    fn alive(&self) -> bool {
        // A consumer shutting down keeps its queues until it has committed and left.
        self.fetch_alive.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire)
    }

    fn release(&self, keep: &BTreeSet<MessageQueue>) {
        let gone: Vec<Arc<ProcessQueue>> = {
            let mut pqs = self.pqs.lock();
            let gone: Vec<MessageQueue> =
                pqs.keys().filter(|q| !keep.contains(*q)).cloned().collect();
            gone.iter().filter_map(|q| pqs.remove(q)).collect()
        };
        if !gone.is_empty() {
            ::log::info!(
                "rebalance: consumer {} of group {} releases {:?}",
                Engine::id(self),
                self.options().group,
                gone.iter().map(|pq| &pq.queue).collect::<Vec<_>>()
            );
        }
        for pq in gone {
            if self.orderly() {
                // Let the batch in flight finish and commit, then give the queue away. If it
                // is still running, keep the queue and its store lock (no new batch starts);
                // the next rebalance finishes the release.
                pq.set_releasing(true);
                let Some(_in_flight) = pq.consume_lock.try_lock_for(RELEASE_WAIT) else {
                    self.pqs.lock().insert(pq.queue.clone(), pq);
                    continue;
                };
                if let Some(offset) = pq.drop_queue() {
                    self.commit(&pq.queue, offset);
                }
                self.core().locks.unlock(
                    &self.options().group,
                    Engine::id(self),
                    std::slice::from_ref(&pq.queue),
                );
            } else if let Some(offset) = pq.drop_queue() {
                self.commit(&pq.queue, offset);
            }
        }
    }

    fn assign(&self, queues: &BTreeSet<MessageQueue>) {
        let mut added = false;
        for q in queues {
            if let Some(pq) = self.pqs.lock().get(q) {
                // Ours again before a pending release finished.
                if pq.is_releasing() {
                    pq.set_releasing(false);
                    added = true;
                }
                continue;
            }
            let Some((_, filter)) = self
                .options()
                .subscriptions
                .iter()
                .find(|(t, _)| *t == q.topic)
            else {
                continue;
            };
            let retry = q.topic == retry_topic(&self.options().group);
            let start = self.start_offset(q, retry);
            let cq = self.core().queue(&q.topic, q.queue_id);
            let pq = Arc::new(ProcessQueue::new(
                q.clone(),
                filter.clone(),
                retry,
                cq,
                start,
                self.orderly(),
                self.counters().topic(&q.topic),
            ));
            ::log::info!(
                "rebalance: consumer {} of group {} takes {q:?} from offset {start}",
                Engine::id(self),
                self.options().group
            );
            self.pqs.lock().insert(q.clone(), pq);
            added = true;
        }
        if added {
            self.core().arrivals().kick();
        }
    }

    fn reset_begin(&self, topic: &str) {
        let dropped: Vec<Arc<ProcessQueue>> = {
            let mut pqs = self.pqs.lock();
            let gone: Vec<MessageQueue> =
                pqs.keys().filter(|q| q.topic == topic).cloned().collect();
            gone.iter().filter_map(|q| pqs.remove(q)).collect()
        };
        for pq in &dropped {
            // Dropped without a commit: a listener call still running on it commits nothing.
            pq.drop_queue();
        }
        self.resetting.lock().extend(dropped);
    }

    fn reset_finish(&self, topic: &str, offsets: &BTreeMap<u32, u64>) {
        let old: Vec<Arc<ProcessQueue>> = std::mem::take(&mut *self.resetting.lock());
        if self.is_shut() {
            return;
        }
        for (q, offset) in offsets {
            if self.broadcasting() {
                // Broadcasting consumers keep their offsets per instance: reset theirs too.
                self.commit(&MessageQueue::new(topic, *q), *offset);
            }
        }
        let mut added = false;
        for pq in old {
            let start = offsets
                .get(&pq.queue.queue_id)
                .copied()
                .unwrap_or_else(|| self.start_offset(&pq.queue, pq.retry));
            let mut pqs = self.pqs.lock();
            if !pqs.contains_key(&pq.queue) {
                pqs.insert(pq.queue.clone(), Arc::new(pq.successor(start)));
                added = true;
            }
        }
        if added {
            self.core().arrivals().kick();
        }
    }
}
