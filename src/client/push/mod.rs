//! The push consumer: RocketMQ's `DefaultMQPushConsumer` in process — subscriptions, a fetch
//! thread and a pool of consume threads per consumer, queues shared out within the group,
//! flow control, retries through `%RETRY%{group}` and dead letters in `%DLQ%{group}`.

mod concurrent;
mod engine;
mod lifecycle;
mod member;
mod orderly;
pub(crate) mod process_queue;
mod retry_policy;
mod stats;
mod work_queue;

use std::sync::Arc;
use std::time::Duration;

use crate::broker::runtime::Runtime;
use crate::broker::validate;
use crate::client::allocate::{AllocateStrategy, Averagely, FnStrategy, Strategy};
use crate::client::pull::ConsumeFrom;
use crate::error::{Error, Result};
use crate::filter::MessageSelector;
use crate::message::{MessageExt, MessageQueue};

pub use concurrent::ConsumeConcurrentlyContext;
pub(crate) use engine::Engine;
pub use retry_policy::{CustomizedRetryPolicy, ExponentialRetryPolicy, RetryPolicy};
pub use stats::{ConsumerQueueStats, ConsumerStats, ConsumerTopicStats, StalledQueue};

/// What a concurrent listener reports for a batch (RocketMQ `ConsumeConcurrentlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeStatus {
    /// Consumed: the messages are acknowledged (with a context, those up to
    /// [`ConsumeConcurrentlyContext::ack_index`]; the rest are retried).
    Success,
    /// Not consumed: the messages are retried later through the group's retry topic (in
    /// clustering mode), with growing delays (see [`RetryPolicy`]), and end in its
    /// dead-letter topic after `max_reconsume_times` tries. Broadcasting consumers drop them
    /// (with a `log::warn!`), as RocketMQ's do.
    ReconsumeLater,
}

/// How a group's consumers share messages (RocketMQ `MessageModel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    /// Each message goes to one consumer of the group; queues are shared out (the default).
    #[default]
    Clustering,
    /// Every consumer gets every message; offsets are kept per consumer instance, and failed
    /// messages are not retried.
    Broadcasting,
}

/// What an orderly listener reports for a batch (RocketMQ `ConsumeOrderlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderlyStatus {
    /// Consumed. With auto-commit (the default) the batch is committed; without it, it is
    /// kept uncommitted until a later [`OrderlyStatus::Commit`].
    Success,
    /// Not consumed: the batch goes back in front of its queue and is retried after
    /// `suspend_current_queue_time`, counting a reconsume; later messages of the queue wait.
    /// After `max_reconsume_times` tries a message goes to the group's dead-letter topic.
    SuspendCurrentQueueAMoment,
    /// Without auto-commit: commits everything consumed so far (with auto-commit: like
    /// `Success`).
    Commit,
    /// Without auto-commit: puts back everything consumed since the last commit and retries
    /// it after the suspend time (with auto-commit: like `Success`).
    Rollback,
}

/// Per-batch context of an orderly listener (RocketMQ `ConsumeOrderlyContext`).
#[derive(Debug, Clone)]
pub struct ConsumeOrderlyContext {
    queue: MessageQueue,
    /// Commit after each successful batch (default true).
    pub auto_commit: bool,
    /// Overrides the consumer's suspend time for this batch.
    pub suspend_current_queue_time: Option<Duration>,
}

impl ConsumeOrderlyContext {
    /// The queue being consumed.
    pub fn queue(&self) -> &MessageQueue {
        &self.queue
    }
}

pub(crate) type ConcurrentListener =
    Arc<dyn Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeStatus + Send + Sync>;
pub(crate) type OrderlyListener =
    Arc<dyn Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> OrderlyStatus + Send + Sync>;

/// The listener a consumer was started with.
#[derive(Clone)]
pub(crate) enum Listener {
    Concurrent(ConcurrentListener),
    Orderly(OrderlyListener),
}

/// Settings of a push consumer.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) group: String,
    pub(crate) subscriptions: Vec<(String, MessageSelector)>,
    pub(crate) consume_from: ConsumeFrom,
    pub(crate) model: MessageModel,
    pub(crate) threads: usize,
    pub(crate) batch_max: usize,
    pub(crate) pull_batch: usize,
    pub(crate) max_cached_messages: usize,
    pub(crate) max_cached_bytes: u64,
    pub(crate) max_span: u64,
    /// `None`: 16 for concurrent consumers, unlimited for orderly ones.
    pub(crate) max_reconsume_times: Option<u32>,
    pub(crate) suspend: Duration,
    pub(crate) lock_interval: Duration,
    pub(crate) strategy: Strategy,
    pub(crate) instance_name: Option<String>,
    pub(crate) rebalance_interval: Duration,
    pub(crate) local_retry_delay: Duration,
    pub(crate) retry_policy: RetryPolicy,
    pub(crate) consume_timeout: Duration,
    /// Testing hook (`sim` feature): thread number n (0: fetch) fails to spawn.
    pub(crate) fail_spawn: Option<usize>,
}

/// RocketMQ's default `consumeTimeout`.
const DEFAULT_CONSUME_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Configures a push consumer; obtained from `Store::push_consumer`, finished by
/// [`PushConsumerBuilder::start_concurrently`] (or its variant with a context,
/// [`PushConsumerBuilder::start_concurrently_with_context`]) or
/// [`PushConsumerBuilder::start_orderly`].
///
/// ```
/// use mqlite::{ConsumeFrom, ConsumeStatus, Message};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("orders", 4)?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let consumer = store
///     .push_consumer("billing")
///     .subscribe("orders", "created || paid")
///     .consume_from(ConsumeFrom::FirstOffset)
///     .threads(2)
///     .start_concurrently(move |msgs| {
///         for m in msgs {
///             tx.send(m.body().to_vec()).unwrap();
///         }
///         ConsumeStatus::Success
///     })?;
/// store.producer("p")?.send(Message::new("orders", "order 1").with_tags("paid"))?;
/// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5))?, b"order 1");
/// consumer.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct PushConsumerBuilder {
    store: Arc<Runtime>,
    options: Options,
    errors: Vec<Error>,
}

impl std::fmt::Debug for PushConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumerBuilder")
            .field("group", &self.options.group)
            .finish_non_exhaustive()
    }
}

impl PushConsumerBuilder {
    pub(crate) fn new(store: Arc<Runtime>, group: &str) -> PushConsumerBuilder {
        PushConsumerBuilder {
            store,
            options: Options {
                group: group.to_owned(),
                subscriptions: Vec::new(),
                consume_from: ConsumeFrom::LastOffset,
                model: MessageModel::Clustering,
                threads: 4,
                batch_max: 1,
                pull_batch: 32,
                max_cached_messages: 1000,
                max_cached_bytes: 100 << 20,
                max_span: 2000,
                max_reconsume_times: None,
                suspend: Duration::from_millis(1000),
                lock_interval: Duration::from_secs(20),
                strategy: Strategy(Arc::new(Averagely)),
                instance_name: None,
                rebalance_interval: Duration::from_secs(20),
                local_retry_delay: Duration::from_secs(5),
                retry_policy: RetryPolicy::DelayLevels,
                consume_timeout: DEFAULT_CONSUME_TIMEOUT,
                fail_spawn: None,
            },
            errors: Vec::new(),
        }
    }

    /// Subscribes to `topic` with a tag expression (`*`, `a`, `a || b`); call once per topic
    /// (a later subscription to the same topic replaces the earlier one). A malformed
    /// expression makes the start fail with [`Error::InvalidFilter`].
    pub fn subscribe(self, topic: &str, expr: &str) -> Self {
        if let Err(e) = validate::client_topic(topic) {
            return self.failed(e);
        }
        match MessageSelector::by_tag(expr) {
            Ok(selector) => self.subscribe_with(topic, selector),
            Err(e) => self.failed(e),
        }
    }

    /// Subscribes to `topic` with a selector: a tag expression or a SQL92 expression over
    /// message properties (RocketMQ's `subscribe(topic, MessageSelector)`). Only the
    /// messages it selects reach the listener; the others are skipped in the store, and the
    /// queue's offset moves past them. Retries (through the group's retry topic) are not
    /// filtered again.
    ///
    /// ```
    /// use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageSelector};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let consumer = store
    ///     .push_consumer("eu-billing")
    ///     .subscribe_with("orders", MessageSelector::by_sql("region = 'eu'")?)
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .start_concurrently(move |msgs| {
    ///         for m in msgs {
    ///             tx.send(m.body().to_vec()).unwrap();
    ///         }
    ///         ConsumeStatus::Success
    ///     })?;
    /// let producer = store.producer("p")?;
    /// producer.send(Message::new("orders", "us order").with_property("region", "us"))?;
    /// producer.send(Message::new("orders", "eu order").with_property("region", "eu"))?;
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5))?, b"eu order");
    /// consumer.shutdown()?;
    /// assert!(rx.try_recv().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_with(mut self, topic: &str, selector: MessageSelector) -> Self {
        match validate::client_topic(topic) {
            Ok(()) => {
                self.options.subscriptions.retain(|(t, _)| t != topic);
                self.options
                    .subscriptions
                    .push((topic.to_owned(), selector));
            }
            Err(e) => self.errors.push(e),
        }
        self
    }

    fn failed(mut self, e: Error) -> Self {
        self.errors.push(e);
        self
    }

    /// Where the group starts in a queue it has no committed offset for (default
    /// [`ConsumeFrom::LastOffset`]).
    pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
        self.options.consume_from = from;
        self
    }

    /// Clustering (default) or broadcasting.
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.options.model = model;
        self
    }

    /// Consume threads (default 4).
    pub fn threads(mut self, n: usize) -> Self {
        self.options.threads = n;
        self
    }

    /// Most messages handed to the listener at once (RocketMQ `consumeMessageBatchMaxSize`,
    /// default 1).
    pub fn consume_message_batch_max_size(mut self, n: usize) -> Self {
        self.options.batch_max = n;
        self
    }

    /// Messages fetched from a queue at once (RocketMQ `pullBatchSize`, default 32).
    pub fn pull_batch_size(mut self, n: usize) -> Self {
        self.options.pull_batch = n;
        self
    }

    /// Flow control: most messages cached per queue before fetching pauses (RocketMQ
    /// `pullThresholdForQueue`, default 1000).
    pub fn pull_threshold_for_queue(mut self, n: usize) -> Self {
        self.options.max_cached_messages = n;
        self
    }

    /// Flow control: most body bytes cached per queue (RocketMQ `pullThresholdSizeForQueue`,
    /// default 100 MiB).
    pub fn pull_threshold_size_for_queue(mut self, bytes: u64) -> Self {
        self.options.max_cached_bytes = bytes;
        self
    }

    /// Flow control: largest offset span of cached messages in a queue (RocketMQ
    /// `consumeConcurrentlyMaxSpan`, default 2000).
    pub fn consume_concurrently_max_span(mut self, span: u64) -> Self {
        self.options.max_span = span;
        self
    }

    /// Tries before a message goes to the dead-letter topic (default 16 for concurrent
    /// consumers, unlimited for orderly ones).
    pub fn max_reconsume_times(mut self, n: u32) -> Self {
        self.options.max_reconsume_times = Some(n);
        self
    }

    /// Orderly: how long a queue waits after `SuspendCurrentQueueAMoment` (RocketMQ
    /// `suspendCurrentQueueTimeMillis`, default 1 s).
    pub fn suspend_current_queue_time(mut self, d: Duration) -> Self {
        self.options.suspend = d;
        self
    }

    /// Orderly: how often queue locks are renewed (RocketMQ `lockInterval`, default 20 s;
    /// keep it well below the store's `queue_lock_lease`).
    pub fn lock_interval(mut self, d: Duration) -> Self {
        self.options.lock_interval = d;
        self
    }

    /// How queues are shared out in the group (default [`Averagely`]).
    ///
    /// A strategy that panics does not break the group: the panic is caught, the consumer
    /// takes its share by [`Averagely`] for that rebalance instead, and a warning is logged
    /// (once per consumer, through the `log` crate).
    pub fn allocate_strategy(mut self, strategy: impl AllocateStrategy + 'static) -> Self {
        self.options.strategy = Strategy(Arc::new(strategy));
        self
    }

    /// A strategy from a closure `(group, consumer id, sorted queues, sorted consumer ids) ->
    /// queues of that consumer`.
    pub fn allocate_with<F>(self, f: F) -> Self
    where
        F: Fn(&str, &str, &[MessageQueue], &[String]) -> Vec<MessageQueue> + Send + Sync + 'static,
    {
        self.allocate_strategy(FnStrategy(f))
    }

    /// The consumer's instance name, part of its id (`{ip}@{instance}`); broadcasting
    /// consumers keep their offsets under it, so give each a stable one. By default a unique
    /// name is made up.
    pub fn instance_name(mut self, name: &str) -> Self {
        self.options.instance_name = Some(name.to_owned());
        self
    }

    /// Period of the safety rebalance, which also drops consumers whose threads died
    /// (default 20 s). Joins, leaves and queue-count changes rebalance at once anyway.
    pub fn rebalance_interval(mut self, d: Duration) -> Self {
        self.options.rebalance_interval = d;
        self
    }

    /// How long before a message whose retry could not be stored is consumed again locally
    /// (default 5 s).
    pub fn local_retry_delay(mut self, d: Duration) -> Self {
        self.options.local_retry_delay = d;
        self
    }

    /// Concurrent consumers: how long failed messages wait before they are delivered again
    /// (RocketMQ 5 client's retry policy). The default, [`RetryPolicy::DelayLevels`], is
    /// RocketMQ 4's: the store's delay levels, 10 s, 30 s, 1 min, … 2 h. The other policies
    /// store each retry as a timer message in the store (1 ms precision), so delays of
    /// milliseconds work; the retry still goes through `%RETRY%{group}` with RocketMQ's
    /// send-back properties (`RETRY_TOPIC`, `ORIGIN_MESSAGE_ID`, reconsume times + 1), and a
    /// message tried `max_reconsume_times` times still goes to `%DLQ%{group}`. A listener's
    /// [`ConsumeConcurrentlyContext::delay_level_when_next_consume`] overrides the policy for
    /// its batch. Orderly consumers retry in place and ignore it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, ConsumeStatus, CustomizedRetryPolicy, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let consumer = store
    ///     .push_consumer("workers")
    ///     .subscribe("jobs", "*")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .retry_policy(CustomizedRetryPolicy::new([
    ///         Duration::from_millis(50),
    ///         Duration::from_millis(200),
    ///     ]))
    ///     .start_concurrently(move |msgs| {
    ///         let tries = msgs[0].reconsume_times();
    ///         tx.send(tries).unwrap();
    ///         if tries < 2 { ConsumeStatus::ReconsumeLater } else { ConsumeStatus::Success }
    ///     })?;
    /// store.producer("p")?.send(Message::new("jobs", "resize image 7"))?;
    /// let wait = Duration::from_secs(10);
    /// let tries: Vec<i32> = (0..3).map(|_| rx.recv_timeout(wait).unwrap()).collect();
    /// assert_eq!(tries, [0, 1, 2]); // retried after 50 ms, then after 200 ms
    /// consumer.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retry_policy(mut self, policy: impl Into<RetryPolicy>) -> Self {
        self.options.retry_policy = policy.into();
        self
    }

    /// Concurrent consumers: how long a listener call may run (RocketMQ `consumeTimeout`,
    /// default 15 min). The messages of a call still running after that are sent back for
    /// retry (delay level 3, or after the [`RetryPolicy`]'s delay; broadcasting consumers
    /// drop them) and leave the queue's cache, so the committed offset moves past them, as
    /// RocketMQ's `cleanExpireMsg` does; whatever the call returns later is ignored (its
    /// messages are not acknowledged, retried or counted again). The call itself is not
    /// interrupted: it keeps its consume thread until it returns.
    ///
    /// Calls are checked every quarter of the timeout (at most every minute, at least every
    /// 10 ms), so a message is sent back between `timeout` and about `1.25 × timeout` after
    /// its call started. Orderly consumers have no consume timeout, as in RocketMQ.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let consumer = store
    ///     .push_consumer("g")
    ///     .subscribe("t", "*")
    ///     .consume_timeout(Duration::from_secs(30))
    ///     .start_concurrently(|_| mqlite::ConsumeStatus::Success)?;
    /// # consumer.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consume_timeout(mut self, timeout: Duration) -> Self {
        self.options.consume_timeout = timeout;
        self
    }

    /// Testing hook: makes the consumer's `n`th thread fail to spawn (0 is the fetch thread,
    /// then the consume threads), so that the cleanup of a failed start can be tested.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn fail_thread_spawn(mut self, n: usize) -> Self {
        self.options.fail_spawn = Some(n);
        self
    }

    fn check(&mut self) -> Result<()> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        validate::group(&self.options.group)?;
        let o = &self.options;
        if o.subscriptions.is_empty() {
            return Err(Error::InvalidConfig(
                "subscribe to at least one topic".into(),
            ));
        }
        if o.threads == 0 || o.threads > 1024 || o.batch_max == 0 || o.pull_batch == 0 {
            return Err(Error::InvalidConfig(
                "threads (1..=1024), batch sizes and pull batch size must be positive".into(),
            ));
        }
        if o.max_cached_messages == 0 || o.max_cached_bytes == 0 {
            return Err(Error::InvalidConfig(
                "flow-control thresholds must be positive".into(),
            ));
        }
        if o.consume_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "the consume timeout must be positive".into(),
            ));
        }
        o.retry_policy.check()
    }

    /// Starts consuming; `listener` is called from the consumer's threads with up to
    /// `consume_message_batch_max_size` messages at a time. A panic in the listener counts as
    /// [`ConsumeStatus::ReconsumeLater`].
    ///
    /// Fails with [`Error::Closed`] once the store is closed, and with the error of a thread
    /// that could not be spawned; a failed start leaves nothing running and nothing in the
    /// group.
    pub fn start_concurrently<F>(self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(&[MessageExt]) -> ConsumeStatus + Send + Sync + 'static,
    {
        self.start_concurrently_with_context(move |msgs, _ctx| listener(msgs))
    }

    /// Starts consuming like [`PushConsumerBuilder::start_concurrently`], with a
    /// [`ConsumeConcurrentlyContext`] per batch: the listener can acknowledge part of a batch
    /// (`ack_index`) and choose when its failures come back (`delay_level_when_next_consume`,
    /// including straight to the dead-letter topic). See [`ConsumeConcurrentlyContext`].
    ///
    /// ```
    /// use mqlite::{ConsumeFrom, ConsumeStatus, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let consumer = store
    ///     .push_consumer("g")
    ///     .subscribe("t", "*")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .consume_message_batch_max_size(10)
    ///     .start_concurrently_with_context(|msgs, ctx| {
    ///         // Only the first half of each batch is handled now; the rest comes back later.
    ///         ctx.ack_index = (msgs.len() / 2) as i32 - 1;
    ///         ConsumeStatus::Success
    ///     })?;
    /// store.producer("p")?.send(Message::new("t", "x"))?;
    /// consumer.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_concurrently_with_context<F>(mut self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeStatus
            + Send
            + Sync
            + 'static,
    {
        self.check()?;
        let listener = Listener::Concurrent(Arc::new(listener));
        let engine = Engine::start(self.store, self.options, listener)?;
        Ok(PushConsumer {
            engine: Some(engine),
        })
    }

    /// Starts consuming in order: each queue's messages reach `listener` one batch at a time,
    /// in queue-offset order, never two batches of one queue at once, while different queues
    /// run in parallel on the consumer's threads. A queue is consumed only while this
    /// consumer holds its lock in the store (see `Store::lock_queues`), so during a
    /// rebalance no queue is consumed by two consumers. A panic in the listener counts as
    /// [`OrderlyStatus::SuspendCurrentQueueAMoment`]. Broadcasting is refused, as in RocketMQ.
    ///
    /// ```
    /// use mqlite::{ConsumeFrom, Message, OrderlyStatus};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let consumer = store
    ///     .push_consumer("fulfilment")
    ///     .subscribe("orders", "*")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .start_orderly(move |msgs, _ctx| {
    ///         for m in msgs {
    ///             tx.send(m.body().to_vec()).unwrap();
    ///         }
    ///         OrderlyStatus::Success
    ///     })?;
    /// let p = store.producer("p")?;
    /// for step in ["create", "pay", "complete"] {
    ///     p.send_ordered(Message::new("orders", step), "ORDER-1")?;
    /// }
    /// let wait = std::time::Duration::from_secs(5);
    /// let got: Vec<Vec<u8>> = (0..3).map(|_| rx.recv_timeout(wait).unwrap()).collect();
    /// assert_eq!(got, [b"create".to_vec(), b"pay".to_vec(), b"complete".to_vec()]);
    /// consumer.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_orderly<F>(mut self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> OrderlyStatus + Send + Sync + 'static,
    {
        self.check()?;
        if self.options.model == MessageModel::Broadcasting {
            return Err(Error::InvalidConfig(
                "orderly consumption needs queue locks, which broadcasting consumers cannot \
                 take: use clustering"
                    .into(),
            ));
        }
        let listener = Listener::Orderly(Arc::new(listener));
        let engine = Engine::start(self.store, self.options, listener)?;
        Ok(PushConsumer {
            engine: Some(engine),
        })
    }
}

/// A running push consumer. [`PushConsumer::shutdown`] (or dropping it) stops fetching,
/// lets messages being consumed finish, hands back the ones not started, commits offsets and
/// leaves the group, whose queues are then shared out among the others.
///
/// `Store::close` does the same for every push consumer still running
/// on the store before it closes it; the consumer then does nothing more, and its
/// `shutdown` returns `Ok`.
pub struct PushConsumer {
    engine: Option<Arc<Engine>>,
}

impl std::fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumer")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl PushConsumer {
    /// The consumer's id in its group.
    pub fn id(&self) -> &str {
        self.engine.as_ref().map_or("", |e| e.id())
    }

    /// The queues this consumer owns right now, sorted.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        self.engine
            .as_ref()
            .map(|e| e.assigned())
            .unwrap_or_default()
    }

    /// Messages fetched but not yet consumed, and their body bytes, over all owned queues
    /// (bounded by the flow-control thresholds).
    pub fn cached(&self) -> (usize, u64) {
        self.engine.as_ref().map_or((0, 0), |e| e.cached())
    }

    /// Statistics: consume and fetch rates and times per topic over the last minute, totals
    /// since the start (consumed, failed, timed out), per owned queue the committed offset,
    /// lag and cache; and health counters: failed fetches, and the queues whose fetching is
    /// stuck right now (a damaged record, an I/O error) with where and why. A stuck queue is
    /// retried every 500 ms and reported once through `log::warn!`. See [`ConsumerStats`].
    pub fn stats(&self) -> ConsumerStats {
        self.engine
            .as_ref()
            .map_or_else(ConsumerStats::default, |e| e.stats())
    }

    /// Testing hook: makes the consumer's fetch thread panic at its next turn, as a bug would,
    /// so that the group's handling of a consumer whose thread died can be tested.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn kill_fetch_thread(&self) {
        if let Some(e) = &self.engine {
            e.kill_fetch
                .store(true, std::sync::atomic::Ordering::Release);
            e.core().arrivals().kick();
        }
    }

    /// Stops the consumer (see the type's docs), waiting for every listener call in flight
    /// however long it takes, and reports whether committing went well.
    pub fn shutdown(mut self) -> Result<()> {
        match self.engine.take() {
            Some(e) => e.shutdown(None).map(drop),
            None => Ok(()),
        }
    }

    /// Stops the consumer like [`PushConsumer::shutdown`], but waits at most `timeout` for
    /// listener calls in flight. Returns `Ok(true)` if they all finished (everything consumed
    /// is committed), `Ok(false)` if some were still running: those calls finish on their own
    /// threads afterwards, what they consume is not committed (the messages are delivered
    /// again to the group), and an orderly queue being consumed keeps its lock until its
    /// listener call returns, so no other consumer takes it meanwhile. Either way the
    /// consumer has left its group and fetches nothing more.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, ConsumeStatus, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let consumer = store
    ///     .push_consumer("g")
    ///     .subscribe("t", "*")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .start_concurrently(|_| ConsumeStatus::Success)?;
    /// store.producer("p")?.send(Message::new("t", "x"))?;
    /// let all_finished = consumer.shutdown_timeout(Duration::from_secs(1))?;
    /// # let _ = all_finished;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Result<bool> {
        match self.engine.take() {
            Some(e) => e.shutdown(Some(timeout)),
            None => Ok(true),
        }
    }
}

impl Drop for PushConsumer {
    /// As [`PushConsumer::shutdown`] (waits for listener calls in flight); use
    /// [`PushConsumer::shutdown_timeout`] to bound the wait.
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            let _ = e.shutdown(None);
        }
    }
}
