//! The [`Store`] facade: the public entry point over the layers below (broker, log engine,
//! storage): a cheap `Clone + Send + Sync` handle; clients (producers, consumers) are made from
//! it. It is the top layer: it imports every layer below and nothing imports it.

mod builder;
mod clients;
mod inspect;
mod locks;
mod put;
mod queries;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::broker::Broker;
use crate::broker::retention::CleanupReport;
use crate::broker::runtime::Runtime;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::format::msg_id::OffsetMessageId;
use crate::message::{MessageExt, MessageQueue};
use crate::storage::Fs;
pub use builder::StoreBuilder;
pub use inspect::{ConsumerOffset, Damage, VerifyReport};

pub use crate::broker::put::{PutResult, PutStatus};
pub use crate::broker::read::GetResult;
pub use crate::broker::topics::TopicConfig;

/// An open message store. Cheap to clone (`Arc` inside), `Send + Sync`.
///
/// ```
/// use mqlite::{Message, MessageQueue, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.create_topic("orders", 4)?;
/// let put = store.put(&Message::new("orders", b"hello".to_vec()).with_tags("created"), 0)?;
/// let got = store.get_messages(&MessageQueue::new("orders", 0), put.queue_offset, 32)?;
/// assert_eq!(got.messages[0].body(), b"hello");
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    rt: Arc<Runtime>,
}

impl Store {
    /// Opens the store in `dir` with the default configuration, creating it if needed and
    /// recovering it after an unclean exit.
    ///
    /// Fails with [`Error::Locked`](crate::Error::Locked) when another store (in this or another process) has the
    /// directory open. The segment files must not be modified by anything else while open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder(dir).open()
    }

    /// A builder to configure the store before opening it.
    pub fn builder(dir: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder::new(dir.as_ref().to_path_buf())
    }

    /// Opens the store in `dir` read-only, even while another process has it open and keeps
    /// writing; see [`StoreBuilder::read_only`] for what that means.
    ///
    /// ```
    /// use mqlite::{Message, MessageQueue, Store};
    /// let dir = tempfile::tempdir()?;
    /// let owner = Store::open(dir.path())?;
    /// owner.put(&Message::new("orders", "first"), 0)?;
    /// let reader = Store::open_read_only(dir.path())?;     // no lock: the owner keeps it
    /// let q = MessageQueue::new("orders", 0);
    /// assert_eq!(reader.get_messages(&q, 0, 10)?.messages[0].body(), b"first");
    /// owner.put(&Message::new("orders", "second"), 0)?;
    /// assert_eq!(reader.get_messages(&q, 1, 10)?.messages[0].body(), b"second");
    /// assert!(matches!(reader.put(&Message::new("orders", "x"), 0), Err(mqlite::Error::ReadOnly)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder(dir).read_only(true).open()
    }

    pub(crate) fn open_with(
        fs: Fs,
        dir: PathBuf,
        config: StoreConfig,
        read_only: bool,
    ) -> Result<Store> {
        let rt = if read_only {
            Runtime::open_read_only(fs, dir, config)?
        } else {
            Runtime::open(fs, dir, config)?
        };
        Ok(Store { rt })
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.core().is_read_only()
    }

    pub(crate) fn core(&self) -> &Arc<Broker> {
        self.rt.core()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.core().dir()
    }

    /// The configuration in effect (validated).
    pub fn config(&self) -> &StoreConfig {
        self.core().config()
    }

    /// Creates a topic with `queues` queues, or raises an existing topic's queue count to
    /// `queues` (queue counts never shrink). Persisted in `config/topics.json`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let cfg = store.create_topic("orders", 8)?;
    /// assert_eq!(cfg.write_queue_nums, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_topic(&self, name: &str, queues: u32) -> Result<TopicConfig> {
        crate::broker::validate::user_topic(name)?;
        self.core().create_topic(name, queues)
    }

    /// The configuration of a topic.
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.core().topic_config(name)
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.core().topic_list()
    }

    /// Reads up to `max` messages of `queue` from queue offset `offset` on.
    ///
    /// A queue that does not exist is an error, as for a pull.
    /// An offset below the queue's minimum starts at the minimum; at or past the max offset
    /// the result is empty. Under `FlushPolicy::Sync` only durable messages are visible.
    pub fn get_messages(&self, queue: &MessageQueue, offset: u64, max: usize) -> Result<GetResult> {
        self.core().get_messages(queue, offset, max)
    }

    /// The smallest offset of a queue (0 for a queue that never had a message);
    /// [`Error::TopicNotFound`](crate::Error::TopicNotFound) or
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound) for a queue that does not exist.
    pub fn min_offset(&self, queue: &MessageQueue) -> Result<u64> {
        self.core().min_offset(queue)
    }

    /// The max offset of a queue: the offset the next message will get (errors as
    /// [`Store::min_offset`]).
    pub fn max_offset(&self, queue: &MessageQueue) -> Result<u64> {
        self.core().max_offset(queue)
    }

    /// Reads the message whose record starts at CommitLog offset `offset`.
    pub fn message_at(&self, offset: u64) -> Result<MessageExt> {
        self.core().refresh(false, false)?;
        self.core().message_at(offset)
    }

    /// Reads a message by its offset msgId: the 32 (or 56) hex characters, or the
    /// [`OffsetMessageId`] a send returned.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let put = store.put(&mqlite::Message::new("t", b"x".to_vec()), 0)?;
    /// assert_eq!(store.view_message(&put.offset_msg_id)?.body(), b"x");
    /// assert_eq!(store.view_message(&put.offset_msg_id.to_string())?.body(), b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn view_message<T: ToOffsetMessageId + ?Sized>(
        &self,
        offset_msg_id: &T,
    ) -> Result<MessageExt> {
        let id = offset_msg_id.to_offset_message_id()?;
        self.message_at(id.physical_offset)
    }

    /// Smallest CommitLog offset still stored.
    pub fn commitlog_min_offset(&self) -> u64 {
        self.core().log().min_offset()
    }

    /// End of the CommitLog (the offset the next record will get, unless it rolls).
    pub fn commitlog_max_offset(&self) -> u64 {
        let _ = self.core().refresh(false, false);
        self.core().log().written()
    }

    /// Deletes the CommitLog segments that end at or before `offset` (never the segment being
    /// written) and the consume queue and index files that only point into them; queues' min
    /// offsets move up accordingly, and a reader behind them starts at the new minimum.
    /// Returns the new smallest CommitLog offset. This is the manual form of retention by
    /// offset; [`Store::cleanup_now`] runs the configured retention.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::builder(dir.path()).commitlog_segment_size(4096).open()?;
    /// for i in 0..100 {
    ///     store.put(&mqlite::Message::new("t", format!("message {i}")), 0)?;
    /// }
    /// let min = store.delete_segments_before(store.commitlog_max_offset())?;
    /// assert!(min > 0);
    /// assert!(store.min_offset(&mqlite::MessageQueue::new("t", 0))? > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_segments_before(&self, offset: u64) -> Result<u64> {
        self.core().delete_segments_before(offset)
    }

    /// Runs retention now (RocketMQ's manual delete): CommitLog segments older than
    /// [`RetentionConfig::file_reserved_time`](crate::RetentionConfig) are deleted whatever
    /// the hour, and while the store is over
    /// [`RetentionConfig::max_store_bytes`](crate::RetentionConfig) or the disk over
    /// `disk_clean_forcibly_ratio`, the oldest segments go whatever their age; never the
    /// segment being written. Consume queue and index files pointing only into deleted
    /// segments go too. Then the disk-space guard decides whether puts are refused
    /// ([`Error::DiskFull`](crate::Error::DiskFull)). Unpaced; works with the cleaner thread
    /// off.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut retention = mqlite::RetentionConfig::default();
    /// retention.max_store_bytes = Some(1 << 20);
    /// retention.enabled = false; // no cleaner thread: only cleanup_now deletes
    /// let store = mqlite::Store::builder(dir.path())
    ///     .commitlog_segment_size(64 << 10)
    ///     .consume_queue_segment_size(20_000)
    ///     .index(mqlite::IndexConfig::DISABLED)
    ///     .retention(retention)
    ///     .open()?;
    /// for i in 0..10_000 {
    ///     match store.put(&mqlite::Message::new("t", vec![b'x'; 200]), 0) {
    ///         Ok(_) => {}
    ///         Err(mqlite::Error::DiskFull(_)) => break, // the cap is reached
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// let report = store.cleanup_now()?;
    /// assert!(report.deleted_segments > 0 && !report.disk_full);
    /// store.put(&mqlite::Message::new("t", "room again"), 0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cleanup_now(&self) -> Result<CleanupReport> {
        self.core()
            .run_retention(crate::broker::retention::Trigger::Manual)
    }

    /// Flushes everything appended so far to disk now, whatever the flush policy.
    pub fn flush(&self) -> Result<()> {
        self.core().check_open()?;
        self.core().check_not_read_only()?;
        self.core().flush_all()
    }

    /// Closes the store cleanly, in this order:
    ///
    /// 1. Every push consumer started from the store and still running is shut down: no more
    ///    rebalancing, each stops fetching, waits for its listener calls in flight (however
    ///    long they take), commits what was consumed and leaves its group; its later
    ///    [`PushConsumer::shutdown`](crate::PushConsumer::shutdown) or drop does nothing.
    ///    Every [`LitePullConsumer`](crate::LitePullConsumer) is stopped the same way: it
    ///    commits what was polled (with auto-commit) and leaves its group; a poll waiting on
    ///    another thread returns [`Error::Closed`](crate::Error::Closed).
    /// 2. Pending [`Producer::send_async`](crate::Producer::send_async) sends are drained:
    ///    each one accepted before `close` is stored (or refused) and its callback gets its real
    ///    result (a stored message is reported stored).
    /// 3. The engine flushes everything, persists offsets and schedule progress, records the
    ///    end of the log in the checkpoint (so the next open checks only the log's last
    ///    `tail_tolerance` bytes) and removes the `abort` marker (not synced: after a power
    ///    cut right then, the next open recovers instead, finding everything).
    ///
    /// Afterwards every call through this store, its other clones, and the producers and
    /// consumers made from it fails with [`Error::Closed`](crate::Error::Closed) (starting a
    /// push consumer, `send`, `send_async`, `pull`, `commit_offset`, ...); nothing panics.
    /// Dropping the last handle (of the store and every client) without `close` does the
    /// same on a best-effort basis. Calling `close` from a listener or a `send_async`
    /// callback works, but cannot wait for that very call.
    ///
    /// ```
    /// use mqlite::{ConsumeFrom, ConsumeStatus, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let consumer = store
    ///     .push_consumer("g")
    ///     .subscribe("t", "*")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .start_concurrently(|_| ConsumeStatus::Success)?;
    /// let producer = store.producer("p")?;
    /// producer.send_async(Message::new("t", "x"), |r| assert!(r.is_ok()))?;
    /// store.clone().close()?;              // stops `consumer`, drains the send
    /// assert!(matches!(
    ///     producer.send(Message::new("t", "y")).map_err(|e| e.into_parts().0),
    ///     Err(mqlite::Error::Closed)
    /// ));
    /// consumer.shutdown()?;                // already stopped: Ok
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) -> Result<()> {
        self.rt.shutdown()
    }
}

/// What [`Store::view_message`] accepts: an offset msgId as text or parsed.
pub trait ToOffsetMessageId {
    /// The parsed id.
    fn to_offset_message_id(&self) -> Result<OffsetMessageId>;
}

impl ToOffsetMessageId for OffsetMessageId {
    fn to_offset_message_id(&self) -> Result<OffsetMessageId> {
        Ok(*self)
    }
}

impl ToOffsetMessageId for str {
    fn to_offset_message_id(&self) -> Result<OffsetMessageId> {
        Ok(self.parse()?)
    }
}

impl ToOffsetMessageId for String {
    fn to_offset_message_id(&self) -> Result<OffsetMessageId> {
        self.as_str().to_offset_message_id()
    }
}
