//! Configuring a lite pull consumer: the settings fixed before it joins its group.

use std::sync::Arc;
use std::time::Duration;

use super::LitePullConsumer;
use super::state::Lite;
use crate::broker::runtime::Runtime;
use crate::broker::validate;
use crate::client::allocate::{AllocateStrategy, Averagely, FnStrategy, Strategy};
use crate::client::pull::ConsumeFrom;
use crate::error::{Error, Result};
use crate::message::MessageQueue;

/// Most messages one poll returns by default (RocketMQ's lite pull `pullBatchSize`).
const DEFAULT_PULL_BATCH_SIZE: usize = 10;
/// Largest accepted `pull_batch_size` (RocketMQ's consumers check `[1, 1024]`).
const MAX_PULL_BATCH_SIZE: usize = 1024;
/// How often polls commit by default (RocketMQ's `autoCommitIntervalMillis`).
const DEFAULT_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// Settings of a lite pull consumer.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) group: String,
    pub(crate) pull_batch_size: usize,
    pub(crate) consume_from: ConsumeFrom,
    pub(crate) auto_commit: bool,
    pub(crate) auto_commit_interval: Duration,
    pub(crate) strategy: Strategy,
    pub(crate) instance_name: Option<String>,
}

/// Configures a lite pull consumer; obtained from `Store::lite_pull_consumer`, finished by
/// [`LitePullConsumerBuilder::build`]. Every setting has RocketMQ's default, so
/// `store.lite_pull_consumer(group).build()?` is a working consumer.
///
/// These settings are fixed for the consumer's life because they decide how it takes part in
/// its group (its id, its allocation strategy, where it starts in a queue the group never
/// committed); what it consumes (`subscribe`, `assign`) and where (`seek`, `pause`) change
/// while it runs, on the [`LitePullConsumer`].
///
/// ```
/// use std::time::Duration;
/// use mqlite::{ConsumeFrom, Message};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("jobs", 2)?;
/// let consumer = store
///     .lite_pull_consumer("workers")
///     .pull_batch_size(32)
///     .consume_from(ConsumeFrom::FirstOffset)
///     .auto_commit_interval(Duration::from_secs(1))
///     .build()?;
/// consumer.subscribe("jobs", "*")?;
/// store.producer("p")?.send(Message::new("jobs", "job 1"))?;
/// let got = consumer.poll(Duration::from_secs(5))?;
/// assert_eq!(got[0].body(), b"job 1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct LitePullConsumerBuilder {
    store: Arc<Runtime>,
    options: Options,
}

impl std::fmt::Debug for LitePullConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullConsumerBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LitePullConsumerBuilder {
    pub(crate) fn new(store: Arc<Runtime>, group: &str) -> LitePullConsumerBuilder {
        LitePullConsumerBuilder {
            store,
            options: Options {
                group: group.to_owned(),
                pull_batch_size: DEFAULT_PULL_BATCH_SIZE,
                consume_from: ConsumeFrom::LastOffset,
                auto_commit: true,
                auto_commit_interval: DEFAULT_AUTO_COMMIT_INTERVAL,
                strategy: Strategy(Arc::new(Averagely)),
                instance_name: None,
            },
        }
    }

    /// Most messages one poll returns (RocketMQ `pullBatchSize`, default 10; 1 to 1024).
    pub fn pull_batch_size(mut self, n: usize) -> Self {
        self.options.pull_batch_size = n;
        self
    }

    /// Where the consumer starts in a queue its group has no committed offset for (default
    /// [`ConsumeFrom::LastOffset`]). A committed offset always wins.
    pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
        self.options.consume_from = from;
        self
    }

    /// Whether polls commit what earlier polls returned (default true, as RocketMQ's
    /// `autoCommit`): every `auto_commit_interval`, checked when `poll` is called, when a
    /// rebalance takes a queue away, and at shutdown or the store's close. Off, only
    /// [`LitePullConsumer::commit_sync`] and `seek` commit.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.options.auto_commit = on;
        self
    }

    /// How often polls auto-commit (RocketMQ `autoCommitIntervalMillis`, default 5 s). Commits
    /// are in-memory updates of the store's offset table (written to
    /// `config/consumerOffset.json` every `consumer_offset_persist_interval` and at close), so
    /// short intervals are cheap; `Duration::ZERO` commits at every poll.
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.options.auto_commit_interval = interval;
        self
    }

    /// How subscribed topics' queues are shared out in the group (default [`Averagely`]). A
    /// strategy that panics does not break the group: the consumer takes its share by
    /// [`Averagely`] for that rebalance instead, and a warning is logged once.
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

    /// The consumer's instance name, part of its id in the group (`{ip}@{instance}`); two
    /// consumers of one group may not share it. By default a unique name is made up.
    pub fn instance_name(mut self, name: &str) -> Self {
        self.options.instance_name = Some(name.to_owned());
        self
    }

    /// Makes the consumer. It owns no queue until [`LitePullConsumer::subscribe`] (group
    /// rebalancing) or [`LitePullConsumer::assign`] (queues of your choice).
    ///
    /// Works on a read-only store too (`Store::open_read_only`): polls read what the owning
    /// process writes, starting from the group's committed offsets, but nothing is committed
    /// (auto-commit does nothing, [`LitePullConsumer::commit_sync`] fails with
    /// [`Error::ReadOnly`]).
    ///
    /// # Errors
    /// [`Error::InvalidGroup`] for a bad group name (checked here, as `Store::pull_consumer`
    /// checks it), [`Error::InvalidConfig`] for a pull batch size outside 1 to 1024, and
    /// [`Error::Closed`] once the store is closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// assert!(store.lite_pull_consumer("no spaces").build().is_err());
    /// let consumer = store.lite_pull_consumer("workers").build()?;
    /// assert_eq!(consumer.group(), "workers");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<LitePullConsumer> {
        validate::group(&self.options.group)?;
        let n = self.options.pull_batch_size;
        if n == 0 || n > MAX_PULL_BATCH_SIZE {
            return Err(Error::InvalidConfig(format!(
                "pull_batch_size {n} must be between 1 and {MAX_PULL_BATCH_SIZE}"
            )));
        }
        let inner = Lite::start(self.store, self.options)?;
        Ok(LitePullConsumer { inner })
    }
}
