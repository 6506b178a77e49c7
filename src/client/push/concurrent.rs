//! Concurrent consumption (RocketMQ `ConsumeMessageConcurrentlyService`): the listener's
//! per-batch context, acknowledging a batch up to its ack index, sending the rest back for
//! retry (the store's delay levels, the consumer's retry policy, or straight to the dead-letter
//! topic), and the consume timeout (RocketMQ `cleanExpireMsg`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::engine::Engine;
use super::process_queue::{Batch, ProcessQueue};
use super::{ConcurrentListener, ConsumeStatus};
use crate::broker::retry::{FIRST_RETRY_LEVEL, RetryDelay};
use crate::clock::now_ms;
use crate::message::{MessageExt, MessageQueue};

/// Most often the consume timeout is checked.
const MIN_EXPIRY_CHECK: Duration = Duration::from_millis(10);
/// Least often the consume timeout is checked.
const MAX_EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// Per-batch context of a concurrent listener (RocketMQ `ConsumeConcurrentlyContext`), given
/// to listeners started with
/// [`PushConsumerBuilder::start_concurrently_with_context`](super::PushConsumerBuilder::start_concurrently_with_context).
///
/// - [`ack_index`](Self::ack_index): on [`ConsumeStatus::Success`], the messages at
///   `0..=ack_index` of the batch are acknowledged and the ones after it are sent back for
///   retry, as if they had failed. The default, `i32::MAX`, acknowledges the whole batch; `-1`
///   acknowledges none. On [`ConsumeStatus::ReconsumeLater`] the whole batch is retried
///   whatever it says.
/// - [`delay_level_when_next_consume`](Self::delay_level_when_next_consume): when the
///   retries of this batch are delivered. `0` (the default): the consumer's
///   [`RetryPolicy`](super::RetryPolicy) decides (by default the store: delay level 3 +
///   reconsume times, RocketMQ's rule); `-1` (any negative value): straight to the group's
///   dead-letter topic `%DLQ%{group}`, however many tries are left; `n > 0`: delay level `n`
///   of the store's table (capped at its last level).
///
/// Broadcasting consumers do not retry: the messages after `ack_index` are dropped, each
/// with a `log::warn!`.
///
/// ```
/// use mqlite::{ConsumeFrom, ConsumeStatus, Message};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("orders", 1)?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let consumer = store
///     .push_consumer("billing")
///     .subscribe("orders", "*")
///     .consume_from(ConsumeFrom::FirstOffset)
///     .consume_message_batch_max_size(8)
///     .start_concurrently_with_context(move |msgs, ctx| {
///         // Acknowledge the messages before the first one that cannot be handled; the
///         // rest come back later through `%RETRY%billing`.
///         if let Some(bad) = msgs.iter().position(|m| m.body() == b"bad") {
///             ctx.ack_index = bad as i32 - 1;
///             ctx.delay_level_when_next_consume = -1; // no use retrying: dead letter
///         }
///         tx.send((ctx.queue().clone(), msgs.len())).unwrap();
///         ConsumeStatus::Success
///     })?;
/// store.producer("p")?.send(Message::new("orders", "bad"))?;
/// let (queue, n) = rx.recv_timeout(std::time::Duration::from_secs(5))?;
/// assert_eq!((queue.topic.as_str(), n), ("orders", 1));
/// consumer.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConsumeConcurrentlyContext {
    queue: MessageQueue,
    /// When the retries of this batch are delivered: `0` the retry policy decides (by
    /// default level 3 + reconsume times), `-1` the dead-letter topic at once, `n > 0` delay
    /// level `n`. Default 0.
    pub delay_level_when_next_consume: i32,
    /// On [`ConsumeStatus::Success`], the index of the last acknowledged message of the
    /// batch; the messages after it are retried. Default `i32::MAX` (all acknowledged);
    /// `-1` acknowledges none.
    pub ack_index: i32,
}

impl ConsumeConcurrentlyContext {
    pub(super) fn new(queue: MessageQueue) -> Self {
        ConsumeConcurrentlyContext {
            queue,
            delay_level_when_next_consume: 0,
            ack_index: i32::MAX,
        }
    }

    /// The queue the batch comes from (for retried messages, the group's retry queue, as in
    /// RocketMQ).
    pub fn queue(&self) -> &MessageQueue {
        &self.queue
    }
}

impl Engine {
    /// Runs one batch through the listener and settles it: the messages up to the context's
    /// `ack_index` (all, on success by default) are acknowledged, the others sent back for
    /// retry (clustering) or dropped (broadcasting). A batch the consume timeout took away
    /// meanwhile is left alone: its result is ignored.
    pub(super) fn consume_batch(
        &self,
        pq: &Arc<ProcessQueue>,
        batch: &Arc<Batch>,
        listener: &ConcurrentListener,
    ) {
        let started = Instant::now();
        batch.start(self.counters().nanos(started));
        let mut ctx = ConsumeConcurrentlyContext::new(pq.queue.clone());
        let status = std::panic::catch_unwind(AssertUnwindSafe(|| listener(&batch.msgs, &mut ctx)))
            .unwrap_or(ConsumeStatus::ReconsumeLater);
        let rt = started.elapsed();
        let ms = now_ms();
        pq.stats.consume_call(ms, rt);
        if !batch.claim() {
            ::log::info!(
                "push consumer {} of group {}: a listener call on queue {} returned {status:?} \
                 after its consume timeout; ignored (its messages were sent back or dropped \
                 already)",
                self.id(),
                self.options().group,
                pq.queue
            );
            return;
        }
        let n = batch.msgs.len();
        let acked = match status {
            ConsumeStatus::Success => {
                (i64::from(ctx.ack_index).clamp(-1, n as i64 - 1) + 1) as usize
            }
            ConsumeStatus::ReconsumeLater => 0,
        };
        pq.stats.consumed(ms, acked, n - acked);
        let level = ctx.delay_level_when_next_consume;
        let local = self.send_back_all(&pq.queue, &batch.msgs[acked..], |m| {
            self.retry_delay(level, m, false)
        });
        self.settle(pq, batch, local);
    }

    /// When a failed message comes back: the listener's delay level if it set one, else the
    /// retry policy's delay, else the store's rule (after a consume timeout, level 3, as
    /// RocketMQ's `cleanExpireMsg` sends back).
    fn retry_delay(&self, level: i32, m: &MessageExt, timed_out: bool) -> RetryDelay {
        match level {
            l if l < 0 => RetryDelay::DeadLetter,
            l if l > 0 => RetryDelay::Level(l.unsigned_abs()),
            _ => match self
                .options()
                .retry_policy
                .delay(m.reconsume_times().max(0) as u32)
            {
                Some(d) => RetryDelay::After(d),
                None if timed_out => RetryDelay::Level(FIRST_RETRY_LEVEL),
                None => RetryDelay::Growing,
            },
        }
    }

    /// Sends `failed` back for retry (clustering) or drops them with a warning
    /// (broadcasting, as RocketMQ does); returns the messages whose send-back failed, to be
    /// consumed again locally.
    fn send_back_all(
        &self,
        queue: &MessageQueue,
        failed: &[MessageExt],
        delay: impl Fn(&MessageExt) -> RetryDelay,
    ) -> Vec<MessageExt> {
        if failed.is_empty() {
            return Vec::new();
        }
        if !self.clustering() {
            for m in failed {
                ::log::warn!(
                    "broadcasting consumer {} of group {}: message {} at offset {} of queue \
                     {queue} was not consumed; dropped (broadcasting consumers do not retry)",
                    self.id(),
                    self.options().group,
                    m.msg_id(),
                    m.queue_offset()
                );
            }
            return Vec::new();
        }
        let core = self.core();
        let max = self.max_reconsume();
        failed
            .iter()
            .filter(|m| {
                core.send_back(&self.options().group, m, max, delay(m))
                    .is_err()
            })
            .cloned()
            .collect()
    }

    /// Ends a settled batch: its messages leave the queue's cache (all but `local`) and the
    /// commit moves; `local` (messages whose send-back failed) are consumed again after
    /// `local_retry_delay`, counting one more try, as RocketMQ does.
    fn settle(&self, pq: &Arc<ProcessQueue>, batch: &Batch, local: Vec<MessageExt>) {
        let done = batch
            .offsets()
            .filter(|o| !local.iter().any(|m| m.queue_offset() == *o));
        if pq.finish(batch.id, done, |offset| self.commit(&pq.queue, offset)) == Some(true) {
            self.core().arrivals().kick();
        }
        if local.is_empty() {
            return;
        }
        let local = local
            .into_iter()
            .map(|mut m| {
                m.reconsume_times = m.reconsume_times.saturating_add(1);
                m
            })
            .collect();
        if let Some(retry) = pq.track(local) {
            self.later(pq, Some(retry), self.options().local_retry_delay);
        }
    }

    /// How often the consume timeout is checked: a quarter of it, within 10 ms ..= 1 min.
    pub(super) fn expiry_check_interval(&self) -> Duration {
        (self.options().consume_timeout / 4).clamp(MIN_EXPIRY_CHECK, MAX_EXPIRY_CHECK)
    }

    /// The consume timeout (RocketMQ `cleanExpireMsg`): batches whose listener call has run
    /// longer than the timeout are taken from it, sent back for retry (level 3, or the retry
    /// policy's delay; broadcasting: dropped) and leave the queue's cache, so the committed
    /// offset moves past them. Runs on the fetch thread.
    pub(super) fn expire_calls(&self) {
        let counters = self.counters();
        let now = Instant::now();
        let timeout = u64::try_from(self.options().consume_timeout.as_nanos()).unwrap_or(u64::MAX);
        let Some(cutoff) = counters.nanos(now).checked_sub(timeout) else {
            return;
        };
        for pq in self.pqs_snapshot() {
            for batch in pq.expire(cutoff) {
                let n = batch.msgs.len();
                pq.stats.consumed(now_ms(), 0, n);
                let first = counters.timed_out.fetch_add(n as u64, Ordering::Relaxed) == 0;
                let what = format!(
                    "push consumer {} of group {}: a listener call on queue {} (offsets {:?}) ran \
                     past the consume timeout of {:?}; its messages are sent back for retry and \
                     its result will be ignored",
                    self.id(),
                    self.options().group,
                    pq.queue,
                    batch.offsets().collect::<Vec<_>>(),
                    self.options().consume_timeout
                );
                if first {
                    ::log::warn!("{what}");
                } else {
                    ::log::info!("{what}");
                }
                let local =
                    self.send_back_all(&pq.queue, &batch.msgs, |m| self.retry_delay(0, m, true));
                self.settle(&pq, &batch, local);
            }
        }
    }
}
