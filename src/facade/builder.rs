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
}

impl StoreBuilder {
    pub(crate) fn new(dir: PathBuf) -> Self {
        StoreBuilder {
            fs: Fs::default(),
            dir,
            config: StoreConfig::default(),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: StoreConfig) -> Self {
        self.config = config;
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

    /// Validates the configuration and opens (creating or recovering) the store.
    pub fn open(self) -> Result<Store> {
        Store::open_with(self.fs, self.dir, self.config)
    }
}
