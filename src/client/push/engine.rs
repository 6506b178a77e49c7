//! The running push consumer: a fetch thread filling process queues, consume threads calling
//! the listener, offsets committed as the oldest unfinished message moves, and group membership.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::process_queue::{Batch, Limits, ProcessQueue};
use super::stats::Counters;
use super::work_queue::WorkQueue;
use super::{Listener, MessageModel, Options};
use crate::broker::Broker as Core;
use crate::broker::OffsetScope;
use crate::broker::runtime::Runtime;
use crate::client::pull::{ConsumeFrom, PullStatus};
use crate::clock::now_ms;
use crate::error::Result;
use crate::filter::MessageSelector;
use crate::format::properties::keys;
use crate::message::MessageQueue;

/// Longest the fetch thread sleeps without a reason to wake.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How long fetching a queue pauses after a failed fetch (a damaged record, an I/O error).
pub(super) const STALL_RETRY: Duration = Duration::from_millis(500);
/// How often an orderly consumer retries locking queues it could not lock.
pub(super) const LOCK_RETRY: Duration = Duration::from_millis(100);
/// How long a rebalance waits for an orderly batch in flight before leaving the queue's
/// release to the next rebalance.
pub(super) const RELEASE_WAIT: Duration = Duration::from_millis(500);

/// Work for a consume thread: a batch of a queue (concurrent), or a turn on a queue
/// (orderly: `batch` is `None`, the messages are taken from the process queue).
pub(super) struct Task {
    pub(super) pq: Arc<ProcessQueue>,
    pub(super) batch: Option<Arc<Batch>>,
}

/// The shared state of one push consumer.
pub(crate) struct Engine {
    pub(super) store: Arc<Runtime>,
    options: Options,
    id: String,
    pub(super) listener: Listener,
    pub(super) pqs: Mutex<BTreeMap<MessageQueue, Arc<ProcessQueue>>>,
    pub(super) tasks: WorkQueue<Task>,
    pub(super) delayed: Mutex<Vec<(Instant, Task)>>,
    pub(super) stopping: AtomicBool,
    pub(super) fetch_alive: AtomicBool,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Threads of this consumer still running, and the signal of one ending.
    pub(super) live: Mutex<usize>,
    pub(super) exited: Condvar,
    pub(super) shut: AtomicBool,
    /// Set when a shutdown has finished (committed and left), for a concurrent second one
    /// to wait for.
    pub(super) stopped: Mutex<bool>,
    pub(super) stopped_cv: Condvar,
    /// Ids of the consumer's threads (a stop called from one cannot wait for it).
    pub(super) thread_ids: Mutex<Vec<std::thread::ThreadId>>,
    offset_group: String,
    /// True once the consumer is in its group (it leaves it when stopping).
    pub(super) joined: AtomicBool,
    /// The group epoch this consumer last rebalanced at.
    pub(super) epoch: std::sync::atomic::AtomicU64,
    /// Process queues dropped by an offset reset in progress, to be replaced.
    pub(super) resetting: Mutex<Vec<Arc<ProcessQueue>>>,
    /// The user's allocation strategy panicked (reported once).
    pub(super) strategy_panicked: AtomicBool,
    /// Fetches that failed (damaged records, I/O errors), over the consumer's life.
    pub(super) pull_errors: AtomicU64,
    /// Testing hook (`sim` feature): the fetch thread panics at its next turn.
    pub(super) kill_fetch: AtomicBool,
    /// Statistics counters, per subscribed topic.
    counters: Counters,
}

/// Marks the fetch thread gone when dropped, even by a panic, and has the group rebalance at
/// once so its queues are taken over.
pub(super) struct AliveGuard<'a>(pub(super) &'a Engine);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_alive.store(false, Ordering::Release);
        if !self.0.stopping.load(Ordering::Acquire) {
            let core = self.0.core();
            core.groups.membership_changed();
            core.arrivals().kick();
        }
    }
}

pub(crate) fn retry_topic(group: &str) -> String {
    crate::format::system::retry_topic(group)
}

impl Engine {
    pub(crate) fn start(
        store: Arc<Runtime>,
        mut options: Options,
        listener: Listener,
    ) -> Result<Arc<Engine>> {
        let core = store.core().clone();
        if store.is_closing() {
            return Err(crate::Error::Closed);
        }
        let ip = core.config().store_host.ip();
        let id = crate::client::consumer_id(ip, options.instance_name.as_deref());
        for (topic, _) in &options.subscriptions {
            if core.topic_config(topic).is_none() {
                // Subscribing never creates a topic (a misspelled name would become one): the
                // consumer waits for it, as RocketMQ's does without a route, and takes its
                // queues when it is created.
                ::log::warn!(
                    "group {}: subscribed topic {topic:?} does not exist (yet); its queues are taken when it is created",
                    options.group
                );
            }
        }
        if options.model == MessageModel::Clustering {
            // The group's retry topic is consumed too (RocketMQ subscribes to it for you).
            let retry = retry_topic(&options.group);
            core.create_topic(&retry, 1)?;
            options.subscriptions.push((retry, MessageSelector::ALL));
        }
        let counters = Counters::new(options.subscriptions.iter().map(|(t, _)| t.as_str()));
        let offset_group = match options.model {
            MessageModel::Clustering => options.group.clone(),
            MessageModel::Broadcasting => format!("{}@{id}", options.group),
        };
        let engine = Arc::new(Engine {
            store,
            options,
            offset_group,
            id,
            listener,
            pqs: Mutex::new(BTreeMap::new()),
            tasks: WorkQueue::new(),
            delayed: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            fetch_alive: AtomicBool::new(true),
            joined: AtomicBool::new(false),
            epoch: std::sync::atomic::AtomicU64::new(core.groups.topic_epoch()),
            threads: Mutex::new(Vec::new()),
            live: Mutex::new(0),
            exited: Condvar::new(),
            shut: AtomicBool::new(false),
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
            thread_ids: Mutex::new(Vec::new()),
            resetting: Mutex::new(Vec::new()),
            strategy_panicked: AtomicBool::new(false),
            pull_errors: AtomicU64::new(0),
            kill_fetch: AtomicBool::new(false),
            counters,
        });
        engine.launch()?;
        Ok(engine)
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn pqs_snapshot(&self) -> Vec<Arc<ProcessQueue>> {
        self.pqs.lock().values().cloned().collect()
    }

    pub(crate) fn assigned(&self) -> Vec<MessageQueue> {
        self.pqs.lock().keys().cloned().collect()
    }

    pub(crate) fn cached(&self) -> (usize, u64) {
        self.pqs
            .lock()
            .values()
            .map(|pq| pq.backlog())
            .fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2))
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) fn core(&self) -> &Arc<Core> {
        self.store.core()
    }

    pub(super) fn options(&self) -> &Options {
        &self.options
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(super) fn orderly(&self) -> bool {
        matches!(self.listener, Listener::Orderly(_))
    }

    /// Tries before the dead-letter topic: 16 for concurrent consumers, unlimited for orderly
    /// ones, unless configured.
    pub(super) fn max_reconsume(&self) -> u32 {
        self.options
            .max_reconsume_times
            .unwrap_or(if self.orderly() { u32::MAX } else { 16 })
    }

    /// Queues a consume task to run after `delay`.
    pub(super) fn later(&self, pq: &Arc<ProcessQueue>, batch: Option<Arc<Batch>>, delay: Duration) {
        self.delayed.lock().push((
            Instant::now() + delay,
            Task {
                pq: pq.clone(),
                batch,
            },
        ));
        self.core().arrivals().kick();
    }

    /// Queues a consume task now.
    pub(super) fn submit(&self, pq: &Arc<ProcessQueue>, batch: Option<Arc<Batch>>) {
        self.tasks.push(Task {
            pq: pq.clone(),
            batch,
        });
    }

    pub(super) fn clustering(&self) -> bool {
        self.options.model == MessageModel::Clustering
    }

    /// The table offsets are kept in.
    pub(super) fn offset_scope(&self) -> OffsetScope {
        if self.clustering() {
            OffsetScope::Group
        } else {
            OffsetScope::Instance
        }
    }

    /// The name offsets are kept under: the group, or group and instance when broadcasting.
    pub(super) fn offset_group(&self) -> &str {
        &self.offset_group
    }

    pub(super) fn commit(&self, queue: &MessageQueue, offset: u64) {
        let _ =
            self.core()
                .commit_offset_for(self.offset_scope(), self.offset_group(), queue, offset);
    }

    /// Where a newly assigned queue starts: the committed offset, else the `ConsumeFrom` rule
    /// (RocketMQ's: retry topics start at 0 for "last", at their end for a timestamp).
    pub(super) fn start_offset(&self, queue: &MessageQueue, retry: bool) -> u64 {
        let core = self.core();
        if let Ok(Some(c)) =
            core.committed_offset_for(self.offset_scope(), self.offset_group(), queue)
        {
            return c;
        }
        let (min, max) = core.queue_bounds(queue);
        match self.options.consume_from {
            ConsumeFrom::LastOffset if retry => 0,
            ConsumeFrom::LastOffset => max,
            ConsumeFrom::FirstOffset => min,
            ConsumeFrom::Timestamp(_) if retry => max,
            ConsumeFrom::Timestamp(ms) => core.offset_by_time(queue, ms).unwrap_or(max),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_messages: self.options.max_cached_messages,
            max_bytes: self.options.max_cached_bytes,
            // Orderly queues are consumed in order: no span limit (as in RocketMQ).
            max_span: (!self.orderly()).then_some(self.options.max_span),
        }
    }

    pub(super) fn fetch_loop(self: &Arc<Self>) {
        let core = self.core().clone();
        let limits = self.limits();
        let mut epoch = self.epoch.load(Ordering::Acquire);
        let mut last_rebalance = Instant::now();
        let mut last_lock_round = None;
        let mut next_expiry = Instant::now() + self.expiry_check_interval();
        while !self.stopping.load(Ordering::Acquire) {
            assert!(
                !self.kill_fetch.load(Ordering::Acquire),
                "injected: the fetch thread dies (testing hook)"
            );
            let now_epoch = core.groups.topic_epoch();
            let releasing = self.pqs.lock().values().any(|pq| pq.is_releasing());
            if now_epoch != epoch
                || last_rebalance.elapsed() >= self.options.rebalance_interval
                || (releasing && last_rebalance.elapsed() >= LOCK_RETRY)
            {
                epoch = now_epoch;
                last_rebalance = Instant::now();
                core.groups.rebalance(&core, &self.options.group);
            }
            if self.orderly() {
                self.maintain_locks(&mut last_lock_round);
            }
            if !self.orderly() && Instant::now() >= next_expiry {
                self.expire_calls();
                next_expiry = Instant::now() + self.expiry_check_interval();
            }
            let next_delayed = self.run_delayed();
            let pqs: Vec<Arc<ProcessQueue>> = self.pqs.lock().values().cloned().collect();
            let mut progressed = false;
            for pq in &pqs {
                progressed |= self.fetch_one(&core, pq, &limits);
            }
            if progressed {
                continue;
            }
            let waiting = core.arrivals().register();
            if self.stopping.load(Ordering::Acquire)
                || core.groups.topic_epoch() != epoch
                || pqs
                    .iter()
                    .any(|pq| !pq.flow_controlled(&limits) && pq.has_new() && pq.stall().is_none())
            {
                continue;
            }
            let mut deadline = Instant::now() + IDLE_WAIT;
            if self.orderly() {
                for pq in &pqs {
                    deadline = deadline.min(match pq.locked_at() {
                        Some(t) if self.lock_valid(pq) => t + self.options.lock_interval,
                        _ => Instant::now() + LOCK_RETRY,
                    });
                    if pq.is_releasing() {
                        // Finish the release as soon as the batch in flight is done.
                        deadline = deadline.min(Instant::now() + LOCK_RETRY);
                    }
                }
            }
            if let Some(d) = next_delayed {
                deadline = deadline.min(d);
            }
            for st in pqs.iter().filter_map(|pq| pq.stall()) {
                deadline = deadline.min(st.at + STALL_RETRY);
            }
            deadline = deadline.min(last_rebalance + self.options.rebalance_interval);
            if !self.orderly() {
                deadline = deadline.min(next_expiry);
            }
            waiting.sleep(deadline);
        }
    }

    /// Fetches one batch for `pq`; whether anything moved.
    fn fetch_one(&self, core: &Core, pq: &Arc<ProcessQueue>, limits: &Limits) -> bool {
        if pq.is_dropped()
            || pq.flow_controlled(limits)
            || (self.orderly() && (!self.lock_valid(pq) || pq.is_releasing()))
        {
            return false;
        }
        if pq.stall().is_some_and(|st| st.at.elapsed() < STALL_RETRY) {
            return false;
        }
        let from = pq.next_fetch();
        let pull_started = Instant::now();
        let r = match core.pull(&pq.queue, &pq.filter, from, self.options.pull_batch) {
            Ok(r) => {
                if let Some(st) = pq.unstalled() {
                    log::info!(
                        "push consumer {} of group {}: queue {} fetches again at offset {from} \
                         after {} failed attempts",
                        self.id,
                        self.options.group,
                        pq.queue,
                        st.attempts
                    );
                }
                r
            }
            Err(e) => {
                self.pull_failed(pq, from, &e);
                return false;
            }
        };
        match r.status {
            PullStatus::Found => {
                let bytes = r.messages.iter().map(|m| m.body().len() as u64).sum();
                pq.stats
                    .pulled(now_ms(), r.messages.len(), bytes, pull_started.elapsed());
                // In the store's statistics (whole records, as RocketMQ's GROUP_GET_SIZE).
                let stored: u64 = r.messages.iter().map(|m| u64::from(m.store_size())).sum();
                (core.gets).add(
                    &self.options.group,
                    &pq.queue.topic,
                    r.messages.len() as u64,
                    stored,
                );
                let mut msgs = r.messages;
                if pq.retry {
                    for m in &mut msgs {
                        if let Some(t) = m.property(keys::RETRY_TOPIC) {
                            m.topic = Arc::from(t);
                        }
                    }
                }
                if self.orderly() {
                    if !pq.add(&msgs, r.next_begin_offset) {
                        return false;
                    }
                    if pq.orderly_add(msgs, |o| self.lock_valid_at(o.locked_at)) {
                        self.submit(pq, None);
                    }
                    return true;
                }
                let Some(batches) =
                    pq.add_batches(msgs, r.next_begin_offset, self.options.batch_max)
                else {
                    return false;
                };
                for batch in batches {
                    self.tasks.push(Task {
                        pq: pq.clone(),
                        batch: Some(batch),
                    });
                }
                true
            }
            PullStatus::NoMatchedMsg | PullStatus::OffsetIllegal => {
                pq.skip_to(r.next_begin_offset, |c| self.commit(&pq.queue, c));
                r.next_begin_offset != from
            }
            PullStatus::NoNewMsg => false,
        }
    }

    /// A fetch of `pq` at `from` failed: counted, reported once per queue and condition
    /// (`log::warn!`), and visible in [`PushConsumer::stats`](super::PushConsumer::stats)
    /// until a fetch succeeds; the queue is retried every `STALL_RETRY`.
    fn pull_failed(&self, pq: &ProcessQueue, from: u64, e: &crate::Error) {
        if matches!(e, crate::Error::Closed) {
            return;
        }
        self.pull_errors.fetch_add(1, Ordering::Relaxed);
        if pq.stalled(from, e.to_string()) {
            log::warn!(
                "push consumer {} of group {}: cannot fetch queue {} at offset {from}: {e}; \
                 the queue is stalled there (retrying every {:?})",
                self.id,
                self.options.group,
                pq.queue,
                STALL_RETRY
            );
        }
    }

    /// Resubmits local retries that are due; returns when the next one is.
    fn run_delayed(&self) -> Option<Instant> {
        let mut delayed = self.delayed.lock();
        if delayed.is_empty() {
            return None;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = delayed.drain(..).partition(|(t, _)| *t <= now);
        *delayed = later;
        for (_, task) in due {
            self.tasks.push(task);
        }
        delayed.iter().map(|(t, _)| *t).min()
    }

    pub(super) fn consume_loop(self: &Arc<Self>) {
        while let Some(task) = self.tasks.pop() {
            // On shutdown, tasks not started are handed back: they stay uncommitted.
            if self.stopping.load(Ordering::Acquire) || task.pq.is_dropped() {
                continue;
            }
            match (&self.listener, task.batch) {
                (Listener::Concurrent(l), Some(batch)) => self.consume_batch(&task.pq, &batch, l),
                (Listener::Orderly(l), _) => self.consume_orderly(&task.pq, l),
                (Listener::Concurrent(_), None) => {}
            }
        }
    }
}
