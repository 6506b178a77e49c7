//! Orderly consumption (RocketMQ `ConsumeMessageOrderlyService`): queue locks in the store, one
//! consume task per queue taking batches in offset order, suspend-and-retry in place, commit and
//! rollback without auto-commit.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::engine::{Engine, LOCK_RETRY};
use super::process_queue::ProcessQueue;
use super::{ConsumeOrderlyContext, OrderlyListener, OrderlyStatus};
use crate::broker::retry::{RetryDelay, goes_to_dlq};
use crate::message::MessageQueue;

/// Longest one consume task stays on a queue before yielding its thread to other queues.
const TURN: Duration = Duration::from_millis(200);

impl Engine {
    /// Whether a lock acquired at `at` is still trusted locally: for half the store's lease
    /// (RocketMQ: 30 s of a 60 s lease), so it lapses here before it can lapse in the store.
    pub(super) fn lock_valid_at(&self, at: Option<Instant>) -> bool {
        let lease = self.core().config().queue_lock_lease;
        at.is_some_and(|t| t.elapsed() < lease / 2)
    }

    pub(super) fn lock_valid(&self, pq: &ProcessQueue) -> bool {
        self.lock_valid_at(pq.locked_at())
    }

    /// Locks newly assigned queues (retrying every `LOCK_RETRY`) and renews held locks every
    /// `lock_interval`; a queue whose renewal fails stops being consumed.
    pub(super) fn maintain_locks(&self, last_round: &mut Option<Instant>) {
        let now = Instant::now();
        if last_round.is_some_and(|t| now.duration_since(t) < LOCK_RETRY) {
            return;
        }
        *last_round = Some(now);
        let pqs: Vec<Arc<ProcessQueue>> = self.pqs_snapshot();
        let due: Vec<&Arc<ProcessQueue>> = pqs
            .iter()
            .filter(|pq| {
                pq.locked_at().is_none_or(|t| {
                    now.duration_since(t) >= self.options().lock_interval || !self.lock_valid(pq)
                })
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let queues: Vec<MessageQueue> = due.iter().map(|pq| pq.queue.clone()).collect();
        let core = self.core();
        let held = core.locks.lock(
            &self.options().group,
            self.id(),
            &queues,
            core.config().queue_lock_lease,
        );
        for pq in due {
            if pq.is_dropped() {
                // Released by a rebalance meanwhile: give back what we just locked.
                if held.contains(&pq.queue) {
                    core.locks.unlock(
                        &self.options().group,
                        self.id(),
                        std::slice::from_ref(&pq.queue),
                    );
                }
                continue;
            }
            if held.contains(&pq.queue) {
                if pq.orderly_locked(now, |o| self.lock_valid_at(o.locked_at)) && !pq.is_releasing()
                {
                    self.submit(pq, None);
                } else if pq.is_releasing() {
                    pq.unschedule();
                }
            } else {
                pq.orderly_unlocked();
            }
        }
    }

    /// Runs one queue's consume task (see [`Engine::orderly_turn`]). If the consumer was shut
    /// down meanwhile without waiting for this task, gives the queue's store lock back now
    /// that the listener is done with it.
    pub(super) fn consume_orderly(
        self: &Arc<Self>,
        pq: &Arc<ProcessQueue>,
        listener: &OrderlyListener,
    ) {
        self.orderly_turn(pq, listener);
        if self.is_shut() && pq.is_dropped() {
            self.core().locks.unlock(
                &self.options().group,
                self.id(),
                std::slice::from_ref(&pq.queue),
            );
        }
    }

    /// Batches of one queue in offset order until the queue is empty, the lock lapses, the
    /// consumer stops, a suspend, or the turn ends.
    fn orderly_turn(self: &Arc<Self>, pq: &Arc<ProcessQueue>, listener: &OrderlyListener) {
        let _one_thread = pq.consume_lock.lock();
        let started = Instant::now();
        loop {
            if self.is_stopping() || pq.is_dropped() || pq.is_releasing() || !self.lock_valid(pq) {
                pq.unschedule();
                return;
            }
            if started.elapsed() > TURN {
                // Let other queues have the thread; this task goes to the back of the line.
                self.submit(pq, None);
                return;
            }
            let batch = pq.take(self.options().batch_max);
            if batch.is_empty() {
                return;
            }
            let mut ctx = ConsumeOrderlyContext {
                queue: pq.queue.clone(),
                auto_commit: true,
                suspend_current_queue_time: None,
            };
            let call_started = Instant::now();
            let status = std::panic::catch_unwind(AssertUnwindSafe(|| listener(&batch, &mut ctx)))
                .unwrap_or(OrderlyStatus::SuspendCurrentQueueAMoment);
            let ms = crate::clock::now_ms();
            pq.stats.consume_call(ms, call_started.elapsed());
            match status {
                OrderlyStatus::SuspendCurrentQueueAMoment | OrderlyStatus::Rollback => {
                    pq.stats.consumed(ms, 0, batch.len());
                }
                OrderlyStatus::Success | OrderlyStatus::Commit => {
                    pq.stats.consumed(ms, batch.len(), 0);
                }
            }
            let delay = ctx
                .suspend_current_queue_time
                .unwrap_or(self.options().suspend);
            match (ctx.auto_commit, status) {
                (_, OrderlyStatus::SuspendCurrentQueueAMoment) => {
                    if self.suspend(pq, batch, delay) {
                        return;
                    }
                }
                (true, _) | (false, OrderlyStatus::Commit) => self.commit_consumed(pq),
                (false, OrderlyStatus::Success) => {}
                (false, OrderlyStatus::Rollback) => {
                    pq.rollback();
                    self.later(pq, None, delay);
                    return;
                }
            }
        }
    }

    fn commit_consumed(&self, pq: &ProcessQueue) {
        if pq.commit_consumed(|offset| self.commit(&pq.queue, offset)) == Some(true) {
            self.core().arrivals().kick();
        }
    }

    /// Puts a suspended batch back (one more reconsume each), except messages out of tries,
    /// which go to the dead-letter topic. Returns whether the queue is now suspended.
    fn suspend(
        &self,
        pq: &Arc<ProcessQueue>,
        batch: Vec<crate::MessageExt>,
        delay: Duration,
    ) -> bool {
        let max = self.max_reconsume();
        let core = self.core();
        let mut back = Vec::new();
        let mut dead = Vec::new();
        for mut m in batch {
            if goes_to_dlq(&m, max)
                && core
                    .send_back(&self.options().group, &m, max, RetryDelay::Growing)
                    .is_ok()
            {
                dead.push(m.queue_offset());
            } else {
                m.reconsume_times = m.reconsume_times.saturating_add(1);
                back.push(m);
            }
        }
        if !dead.is_empty() {
            pq.forget(&dead, |offset| self.commit(&pq.queue, offset));
        }
        if back.is_empty() {
            return false;
        }
        pq.put_back(back);
        self.later(pq, None, delay);
        true
    }
}
