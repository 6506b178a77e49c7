//! [`StoreBuilder`]: configures a [`Store`] and opens it (on the real file system, or on the
//! crash simulator with the `sim` feature).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Store;
use crate::config::{FlushPolicy, IndexConfig, RecoveryMode, RetentionConfig, StoreConfig};
use crate::error::Result;
use crate::storage::Fs;

/// Builds and opens a [`Store`](crate::Store). Obtained from
/// [`Store::builder`](crate::Store::builder).
///
/// ```
/// use std::time::Duration;
/// use mqlite::{FlushPolicy, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::builder(dir.path())
///     .flush_policy(FlushPolicy::Sync { timeout: Duration::from_secs(5) })
///     .commitlog_segment_size(1 << 20)
///     .open()?;
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreBuilder {
    fs: Fs,
    pub(crate) dir: PathBuf,
    pub(crate) config: StoreConfig,
    read_only: bool,
}

impl StoreBuilder {
    pub(crate) fn new(dir: PathBuf) -> Self {
        StoreBuilder {
            fs: Fs::default(),
            dir,
            config: StoreConfig::default(),
            read_only: false,
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: StoreConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses a RocketMQ broker's defaults where mqlite's differ: 1 GiB CommitLog segments and
    /// 300,000-unit consume queue files ([`StoreConfig::rocketmq_broker`]), for a store whose
    /// directory is to be handed to a broker running its default `broker.conf`. Other settings
    /// made on this builder are kept. A store keeps the sizes it was created with, so this
    /// matters when the store is created.
    ///
    /// ```no_run
    /// // Allocates a 1 GiB CommitLog segment.
    /// let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::builder(dir.path()).rocketmq_defaults().open()?;
    /// assert_eq!(store.config().commitlog_segment_size, 1 << 30);
    /// store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rocketmq_defaults(mut self) -> Self {
        let broker = StoreConfig::rocketmq_broker();
        self.config.commitlog_segment_size = broker.commitlog_segment_size;
        self.config.consume_queue_segment_size = broker.consume_queue_segment_size;
        self
    }

    /// Sets [`StoreConfig::flush_policy`].
    pub fn flush_policy(mut self, policy: FlushPolicy) -> Self {
        self.config.flush_policy = policy;
        self
    }

    /// Sets [`StoreConfig::commitlog_segment_size`].
    pub fn commitlog_segment_size(mut self, bytes: u64) -> Self {
        self.config.commitlog_segment_size = bytes;
        self
    }

    /// Sets [`StoreConfig::consume_queue_segment_size`].
    pub fn consume_queue_segment_size(mut self, bytes: u64) -> Self {
        self.config.consume_queue_segment_size = bytes;
        self
    }

    /// Sets [`StoreConfig::flush_thorough_interval`].
    pub fn flush_thorough_interval(mut self, interval: Duration) -> Self {
        self.config.flush_thorough_interval = interval;
        self
    }

    /// Sets [`StoreConfig::checkpoint_interval`].
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.config.checkpoint_interval = interval;
        self
    }

    /// Sets [`StoreConfig::consumer_offset_persist_interval`].
    pub fn consumer_offset_persist_interval(mut self, interval: Duration) -> Self {
        self.config.consumer_offset_persist_interval = interval;
        self
    }

    /// Sets [`StoreConfig::tail_tolerance`].
    pub fn tail_tolerance(mut self, bytes: u64) -> Self {
        self.config.tail_tolerance = bytes;
        self
    }

    /// Sets [`StoreConfig::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Sets [`StoreConfig::warm_segments`].
    pub fn warm_segments(mut self, warm: bool) -> Self {
        self.config.warm_segments = warm;
        self
    }

    /// Sets [`StoreConfig::recovery_mode`].
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.config.recovery_mode = mode;
        self
    }

    /// Sets [`StoreConfig::record_crc`].
    pub fn record_crc(mut self, on: bool) -> Self {
        self.config.record_crc = on;
        self
    }

    /// Sets [`StoreConfig::message_delay_level`].
    pub fn message_delay_level(mut self, levels: &str) -> Self {
        self.config.message_delay_level = levels.to_owned();
        self
    }

    /// Sets [`StoreConfig::queue_lock_lease`].
    pub fn queue_lock_lease(mut self, lease: Duration) -> Self {
        self.config.queue_lock_lease = lease;
        self
    }

    /// Sets [`StoreConfig::auto_create_topics`].
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.config.auto_create_topics = on;
        self
    }

    /// Sets [`StoreConfig::transaction_check_interval`].
    pub fn transaction_check_interval(mut self, interval: Duration) -> Self {
        self.config.transaction_check_interval = interval;
        self
    }

    /// Sets [`StoreConfig::transaction_timeout`].
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.config.transaction_timeout = timeout;
        self
    }

    /// Sets [`StoreConfig::transaction_check_max`].
    pub fn transaction_check_max(mut self, checks: u32) -> Self {
        self.config.transaction_check_max = checks;
        self
    }

    /// Sets [`StoreConfig::default_topic_queues`].
    pub fn default_topic_queues(mut self, queues: u32) -> Self {
        self.config.default_topic_queues = queues;
        self
    }

    /// Sets [`StoreConfig::store_host`].
    pub fn store_host(mut self, addr: SocketAddr) -> Self {
        self.config.store_host = addr;
        self
    }

    /// Sets [`StoreConfig::index`]: [`IndexConfig::EMBEDDED`] (the default),
    /// [`IndexConfig::ROCKETMQ`], [`IndexConfig::DISABLED`] or your own sizes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::builder(dir.path())
    ///     .index(mqlite::IndexConfig { max_hash_slots: 1024, ..mqlite::IndexConfig::EMBEDDED })
    ///     .open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn index(mut self, index: IndexConfig) -> Self {
        self.config.index = index;
        self
    }

    /// Sets [`StoreConfig::retention`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut retention = mqlite::RetentionConfig::default();
    /// retention.max_store_bytes = Some(512 << 20);
    /// let store = mqlite::Store::builder(dir.path()).retention(retention).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retention(mut self, retention: RetentionConfig) -> Self {
        self.config.retention = retention;
        self
    }

    /// Sets [`StoreConfig::idle_housekeeping`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// // On a machine the application keeps busy, housekeeping at the normal priority:
    /// let store = mqlite::Store::builder(dir.path()).idle_housekeeping(false).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn idle_housekeeping(mut self, idle: bool) -> Self {
        self.config.idle_housekeeping = idle;
        self
    }

    /// Puts the store on the crash-simulating, fault-injecting backend `sim` (for tests; needs
    /// the `sim` feature). The store directory must be under the simulator's root.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let sim = mqlite::sim::SimStorage::new(dir.path())?;
    /// let store = mqlite::Store::builder(dir.path().join("store")).simulated(&sim).open()?;
    /// store.put(&mqlite::Message::new("t", "x"), 0)?;
    /// drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "sim")]
    pub fn simulated(mut self, sim: &crate::sim::SimStorage) -> Self {
        self.fs = Fs::new(std::sync::Arc::new(sim.clone()));
        self
    }

    /// Opens the store read-only (default `false`): it may be open in another process
    /// meanwhile, which keeps writing.
    ///
    /// - Nothing is written and no lock is taken: no `abort` marker, checkpoint, config JSON,
    ///   recovery, segment creation or zeroing, and no background thread. Files are mapped
    ///   read-only; the segment sizes are taken from the files.
    /// - Reads serve only what was checked: the CommitLog's records are CRC-checked from the
    ///   checkpoint's confirmed end to the first incomplete record, and consume queue units
    ///   whose records lie past that are ignored. A store that needs recovery (its owner
    ///   crashed) is read the same way, without repairing it.
    /// - New messages become visible: every read looks for new records and queue units (and
    ///   the next segment once one is full), new topics and queues are looked for every few
    ///   milliseconds, and
    ///   [`PullConsumer::pull_timeout`](crate::PullConsumer::pull_timeout) polls until a
    ///   message arrives or its timeout passes.
    /// - Every call that would write (`put`, sends, `create_topic`, committing or resetting
    ///   offsets, `flush`, `delete_segments_before`, starting a push consumer) fails with
    ///   [`Error::ReadOnly`](crate::Error::ReadOnly). Committed offsets are those in
    ///   `config/consumerOffset.json` when the store was opened.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// mqlite::Store::open(dir.path())?.create_topic("orders", 2)?;
    /// let reader = mqlite::Store::builder(dir.path()).read_only(true).open()?;
    /// assert_eq!(reader.queues("orders")?.len(), 2);
    /// assert!(matches!(reader.create_topic("t", 1), Err(mqlite::Error::ReadOnly)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Validates the configuration and opens (creating or recovering) the store.
    pub fn open(self) -> Result<Store> {
        Store::open_with(self.fs, self.dir, self.config, self.read_only)
    }
}
