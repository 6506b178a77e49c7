//! The lite pull consumer: RocketMQ's `DefaultLitePullConsumer` in process. The application
//! calls `poll` in its own loop (no listener, no consumer threads); the consumer long-polls its
//! queues on the caller's thread, tracks a position per queue, takes part in group rebalancing
//! when it subscribes (or consumes queues chosen by hand when it assigns), and commits what was
//! polled through the store's offset table.
//!
//! Files: `builder` (settings), `core` (shared state and offset bookkeeping), `subscribe`
//! (subscribe, unsubscribe, assign), `member` (the group's view of it), `poll` (round robin
//! and long polling), `control` (seek, pause, resume), `commit`, `lifecycle` (shutdown, the
//! store's close, drop).

mod builder;
mod commit;
mod control;
mod lifecycle;
mod member;
mod poll;
mod state;
mod subscribe;

use std::sync::Arc;

pub use builder::LitePullConsumerBuilder;
use state::Lite;

/// Polls messages in the application's own loop (RocketMQ's `DefaultLitePullConsumer`).
/// Made by `Store::lite_pull_consumer(group)…build()`; `Send + Sync`, so one consumer may be
/// shared by threads (polls then take turns over the queues).
///
/// - **What it reads**: [`subscribe`](LitePullConsumer::subscribe) to topics and the group's
///   consumers (lite pull and push alike) share their queues out, rebalancing as consumers
///   come and go; or [`assign`](LitePullConsumer::assign) queues by hand, outside any group.
/// - **Reading**: [`poll`](LitePullConsumer::poll) returns up to `pull_batch_size` messages,
///   queue by queue in turn, waiting (woken by the writer) until some arrive or a timeout;
///   [`seek`](LitePullConsumer::seek), [`pause`](LitePullConsumer::pause) and
///   [`resume`](LitePullConsumer::resume) steer it.
/// - **Committing**: with auto-commit (the default) what was polled is committed every
///   `auto_commit_interval` (checked at each poll), when a rebalance takes a queue away, and
///   at shutdown; [`commit_sync`](LitePullConsumer::commit_sync) commits now and writes the
///   offsets to disk. Offsets are the group's, in `config/consumerOffset.json`.
/// - **Stopping**: [`shutdown`](LitePullConsumer::shutdown), dropping it, or `Store::close`.
///
/// Delivery is at least once: a message polled but not committed when its queue moves to
/// another consumer (without auto-commit), or before a crash, is polled again.
///
/// ```
/// use std::time::Duration;
/// use mqlite::{ConsumeFrom, Message};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("jobs", 4)?;
/// let producer = store.producer("p")?;
/// for i in 0..25 {
///     producer.send(Message::new("jobs", format!("job {i}")))?;
/// }
/// let consumer = store
///     .lite_pull_consumer("workers")
///     .consume_from(ConsumeFrom::FirstOffset)
///     .build()?;
/// consumer.subscribe("jobs", "*")?;
/// let mut done = 0;
/// while done < 25 {
///     let batch = consumer.poll(Duration::from_secs(5))?;
///     assert!(!batch.is_empty() && batch.len() <= 10); // pull_batch_size
///     done += batch.len();
/// }
/// consumer.shutdown()?; // commits, leaves the group
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LitePullConsumer {
    inner: Arc<Lite>,
}

impl std::fmt::Debug for LitePullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullConsumer")
            .field("id", &self.id())
            .field("group", &self.group())
            .finish_non_exhaustive()
    }
}

impl LitePullConsumer {
    /// The consumer's id in its group (`{ip}@{instance name}`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let consumer = store.lite_pull_consumer("workers").instance_name("w1").build()?;
    /// assert!(consumer.id().ends_with("@w1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The consumer group.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// assert_eq!(store.lite_pull_consumer("workers").build()?.group(), "workers");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn group(&self) -> &str {
        self.inner.group()
    }
}
