//! Polling: one pass over the owned queues in round-robin order, and long polling when the
//! pass found nothing, woken by the writer (the store-wide arrival signal push consumers
//! sleep on too), by a rebalance, a seek, a resume or a shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::LitePullConsumer;
use super::state::{Lite, after};
use crate::client::pull::PullStatus;
use crate::error::Result;
use crate::message::{MessageExt, MessageQueue};

/// Safety net: a consumer that polls rebalances its group at least this often (RocketMQ's
/// client rebalances every 20 s); joins, leaves and queue-count changes rebalance at once.
const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);
/// A read-only store is written by another process, which cannot wake us: how often a
/// waiting poll looks at the files again.
const READ_ONLY_POLL: Duration = Duration::from_millis(5);

/// What one pass over the queues found.
struct Pass {
    messages: Vec<MessageExt>,
    /// Some position moved without messages (filtered out, or an illegal offset corrected):
    /// look again before waiting.
    moved: bool,
}

impl Lite {
    fn poll(self: &Arc<Self>, timeout: Duration) -> Result<Vec<MessageExt>> {
        let deadline = after(Instant::now(), timeout);
        self.check_usable()?;
        self.maybe_auto_commit()?;
        loop {
            self.check_usable()?;
            self.maybe_rebalance();
            let pass = self.pass()?;
            if !pass.messages.is_empty() {
                return Ok(pass.messages);
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            if !pass.moved {
                self.wait(deadline);
            }
        }
    }

    /// Commits what earlier polls returned, once `auto_commit_interval` has passed since the
    /// last time (RocketMQ's `maybeAutoCommit`, at the start of each poll).
    fn maybe_auto_commit(&self) -> Result<()> {
        if !self.options.auto_commit || !self.can_commit() {
            return Ok(());
        }
        let mut st = self.state.lock();
        let now = Instant::now();
        if now < st.next_auto_commit {
            return Ok(());
        }
        st.next_auto_commit = after(now, self.options.auto_commit_interval);
        self.commit_owned(&mut st)
    }

    /// Rebalances the group when a topic's queue count or the membership changed since the
    /// last time, or every [`REBALANCE_INTERVAL`].
    fn maybe_rebalance(&self) {
        let core = self.core();
        let epoch = core.groups.topic_epoch();
        if !*self.membership.lock() {
            // Not in a group (assigned queues, or not subscribed yet): nothing to rebalance,
            // but the epoch is seen, so waits do not keep waking for it.
            self.epoch.store(epoch, Ordering::Release);
            return;
        }
        {
            let mut st = self.state.lock();
            if self.epoch.load(Ordering::Acquire) == epoch
                && st.last_rebalance.elapsed() < REBALANCE_INTERVAL
            {
                return;
            }
            st.last_rebalance = Instant::now();
        }
        self.epoch.store(epoch, Ordering::Release);
        core.groups.rebalance(core, self.group());
    }

    /// Reads the owned, unpaused queues in turn, starting after the queue the last poll took
    /// messages from, until `pull_batch_size` messages are gathered.
    ///
    /// A queue that cannot be read (a damaged record, an I/O error) ends the pass: with the
    /// messages gathered so far if there are some (its error comes at the next poll, which
    /// starts there), else with its error (and the next poll starts after it, so the other
    /// queues are not held up).
    fn pass(&self) -> Result<Pass> {
        let core = self.core();
        let budget = self.options.pull_batch_size;
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut order: Vec<MessageQueue> = st
            .owned
            .keys()
            .filter(|q| !st.paused.contains(*q))
            .cloned()
            .collect();
        if let Some(last) = &st.resume_after {
            let split = order.partition_point(|q| q <= last);
            order.rotate_left(split);
        }
        let mut pass = Pass {
            messages: Vec::new(),
            moved: false,
        };
        for q in order {
            let want = budget - pass.messages.len();
            if want == 0 {
                break;
            }
            let Some(owned) = st.owned.get_mut(&q) else {
                continue;
            };
            let r = match core.pull(&q, &owned.filter, owned.position, want) {
                Ok(r) => r,
                Err(e) => {
                    if pass.messages.is_empty() {
                        st.resume_after = Some(q);
                        return Err(e);
                    }
                    break;
                }
            };
            match r.status {
                PullStatus::Found => {
                    owned.position = r.next_begin_offset;
                    // In the store's statistics, as a pull consumer's gets.
                    let bytes = r.messages.iter().map(|m| u64::from(m.store_size())).sum();
                    core.gets
                        .add(self.group(), &q.topic, r.messages.len() as u64, bytes);
                    pass.messages.extend(r.messages);
                    st.resume_after = Some(q);
                }
                PullStatus::NoMatchedMsg | PullStatus::OffsetIllegal => {
                    if r.status == PullStatus::OffsetIllegal {
                        ::log::warn!(
                            "lite pull consumer {} of group {}: offset {} is outside {q} \
                             ({}..{}); continuing at {}",
                            self.id,
                            self.group(),
                            owned.position,
                            r.min_offset,
                            r.max_offset,
                            r.next_begin_offset
                        );
                    }
                    if r.next_begin_offset != owned.position {
                        owned.position = r.next_begin_offset;
                        pass.moved = true;
                    }
                }
                PullStatus::NoNewMsg => {}
            }
        }
        Ok(pass)
    }

    /// Whether an owned, unpaused queue has messages past its position.
    fn has_new(&self) -> bool {
        let core = self.core();
        let st = self.state.lock();
        st.owned
            .iter()
            .filter(|(q, _)| !st.paused.contains(*q))
            .any(|(q, owned)| {
                core.queue(&q.topic, q.queue_id)
                    .is_some_and(|cq| cq.max_offset() > owned.position)
            })
    }

    /// Sleeps until something may have changed (a message in a queue of ours, a kick) or
    /// `deadline` (or the next periodic rebalance, if sooner).
    fn wait(&self, deadline: Instant) {
        let core = self.core();
        let wake_at = {
            let st = self.state.lock();
            deadline.min(after(st.last_rebalance, REBALANCE_INTERVAL))
        };
        if core.is_read_only() {
            let _ = core.refresh(true, false);
            if !self.has_new() {
                let now = Instant::now();
                std::thread::sleep(READ_ONLY_POLL.min(wake_at.saturating_duration_since(now)));
            }
            return;
        }
        // Registered first, then checked: an arrival after the check wakes the sleep.
        let waiting = core.arrivals().register();
        if self.shut.load(Ordering::Acquire)
            || core.check_open().is_err()
            || core.groups.topic_epoch() != self.epoch.load(Ordering::Acquire)
            || self.has_new()
        {
            return;
        }
        waiting.sleep(wake_at);
    }
}

impl LitePullConsumer {
    /// Returns the next messages of the owned queues: at most `pull_batch_size`, in offset
    /// order within each queue. Queues take turns (each poll starts after the queue the
    /// previous one took messages from), paused queues are skipped, and the subscriptions'
    /// selectors (tags or SQL92) apply.
    ///
    /// When nothing is there it waits, returning as soon as a message arrives in one of its
    /// queues (the writer wakes it: long polling, no sleeping loop), and an empty `Vec` once
    /// `timeout` has passed (`Duration::ZERO`: look once, never wait). What it returns counts
    /// as polled: the next poll continues after it, and commits (auto-commit, checked at the
    /// start of each poll, or [`LitePullConsumer::commit_sync`]) record it as consumed.
    ///
    /// A poll also rebalances the group when its membership or a subscribed topic's queue
    /// count changed. A queue taken away is not read any more (its messages already returned
    /// stay returned); a queue gained starts at the group's committed offset.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after shutdown or the store's close (a poll
    /// waiting then returns it at once); the error of a queue that cannot be read
    /// (`Error::Corrupted`, an I/O error), when no other queue had messages: the next poll
    /// goes on with the other queues and tries that one again at its turn; an auto-commit's
    /// error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// let consumer = store.lite_pull_consumer("workers").build()?;
    /// consumer.subscribe("jobs", "*")?;
    /// assert!(consumer.poll(Duration::ZERO)?.is_empty());
    /// let producer = store.producer("p")?;
    /// let sender = std::thread::spawn(move || producer.send(Message::new("jobs", "late")));
    /// let got = consumer.poll(Duration::from_secs(5))?; // woken by the send
    /// assert_eq!(got[0].body(), b"late");
    /// sender.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>> {
        self.inner.poll(timeout)
    }
}
