//! Store configuration: [`StoreConfig`] with documented defaults, validated at open.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::cq_unit::CQ_UNIT_SIZE;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Group commit: a put returns once its record (and every record before it) is durable.
    /// Concurrent puts share one flush. A put whose flush has not completed within `timeout`
    /// returns [`PutStatus::FlushDiskTimeout`](crate::PutStatus::FlushDiskTimeout): the record is
    /// stored but not yet known to be durable. Consumers see a record only once it is durable.
    Sync {
        /// How long a put waits for its flush (RocketMQ `syncFlushTimeout`, default 5 s).
        timeout: Duration,
    },
    /// A background thread flushes every `interval` when at least `min_pages` 4 KiB pages are
    /// dirty, and everything every [`StoreConfig::flush_thorough_interval`] and at close. A put
    /// returns once the record is in the page cache: it survives a process crash, and a power
    /// loss can take back at most the last interval.
    Async {
        /// Time between flush checks (RocketMQ `flushIntervalCommitLog`, default 500 ms).
        interval: Duration,
        /// Dirty pages that trigger a flush (RocketMQ `flushCommitLogLeastPages`, default 4).
        min_pages: u32,
    },
}

impl FlushPolicy {
    /// `Sync` with RocketMQ's default 5 s timeout.
    pub const SYNC: FlushPolicy = FlushPolicy::Sync {
        timeout: Duration::from_secs(5),
    };
    /// `Async` with RocketMQ's defaults: 500 ms, 4 pages.
    pub const ASYNC: FlushPolicy = FlushPolicy::Async {
        interval: Duration::from_millis(500),
        min_pages: 4,
    };
}

impl Default for FlushPolicy {
    /// RocketMQ's default, `ASYNC_FLUSH`.
    fn default() -> Self {
        FlushPolicy::ASYNC
    }
}

/// How recovery treats a CommitLog record that fails validation (bad CRC, size or magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A damaged record within [`StoreConfig::tail_tolerance`] bytes of the last durable offset
    /// recorded in the checkpoint, or past it, is a torn tail: the log is truncated there.
    /// Damage earlier in the log, or followed by a later segment that starts with a valid
    /// record more than the tolerance away, is [`Error::Corrupted`]. The log simply ending
    /// (zeros) before the checkpoint's offset is accepted, as a checkpoint may be ahead.
    #[default]
    TolerateCorruptTail,
    /// Only records past the last durable offset recorded in the checkpoint may be truncated;
    /// any damage before it, zeroed records included, is [`Error::Corrupted`].
    AbsoluteConsistency,
    /// RocketMQ's own behaviour: the log ends at the first damaged record, whatever follows
    /// it. A way to open a store that the other modes refuse, at the price of everything after
    /// the damage.
    TruncateAtDamage,
}

/// Configuration of a store. Every field has a documented default; [`StoreConfig::validate`]
/// runs at open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Size of each CommitLog segment file (RocketMQ `mappedFileSizeCommitLog`). Segments are
    /// allocated in full when created. Default 64 MiB (a RocketMQ broker's is 1 GiB: see
    /// [`StoreConfig::rocketmq_broker`]). At least 4096.
    ///
    /// A store keeps the sizes it was created with (recorded in `config/mqlite.json`, or read
    /// off the files of a store a broker made): opening it with another size uses the store's
    /// and logs so at `info`.
    pub commitlog_segment_size: u64,
    /// Size of each consume queue file (RocketMQ `mappedFileSizeConsumeQueue`), rounded up to a
    /// multiple of 20. Allocated in full when a queue gets its first message. Default 600,000
    /// (30,000 units; a RocketMQ broker's is 300,000 units). Kept per store like
    /// [`StoreConfig::commitlog_segment_size`].
    pub consume_queue_segment_size: u64,
    /// When records reach the disk. Default [`FlushPolicy::ASYNC`].
    pub flush_policy: FlushPolicy,
    /// Under `Async`, flush everything at least this often (RocketMQ
    /// `flushCommitLogThoroughInterval`). Default 10 s.
    pub flush_thorough_interval: Duration,
    /// How often the checkpoint file and the consume queues are flushed. Default 1 s.
    pub checkpoint_interval: Duration,
    /// How often changed consumer offsets are written to `config/consumerOffset.json`
    /// (RocketMQ `flushConsumerOffsetInterval`). Default 5 s.
    pub consumer_offset_persist_interval: Duration,
    /// Under `FlushPolicy::Sync`, write zeros through the next CommitLog segment (prepared in the
    /// background) and flush them before the writer reaches it, so its flushes never pay for
    /// converting unwritten extents. The next segment is always allocated ahead of the writer,
    /// and pages are always faulted in ahead of it; this only adds the zero-fill. Default true.
    pub warm_segments: bool,
    /// Append RocketMQ's whole-record CRC (the `__CRC32#` property, 20 bytes; RocketMQ
    /// `enabledAppendPropCRC`) to every record, so recovery and reads detect damage anywhere in
    /// a record, not only in its body. Default true.
    pub record_crc: bool,
    /// Largest message body accepted, in bytes (RocketMQ `maxMessageSize`). Default 4 MiB.
    pub max_message_size: usize,
    /// Address written as the store host of every record and used in offset message ids.
    /// Default 127.0.0.1:10911 (RocketMQ's default broker port).
    pub store_host: SocketAddr,
    /// How recovery treats damaged records. Default [`RecoveryMode::TolerateCorruptTail`].
    pub recovery_mode: RecoveryMode,
    /// Under [`RecoveryMode::TolerateCorruptTail`], how far before the last durable offset a
    /// damaged record still counts as a torn tail. Default 64 KiB.
    pub tail_tolerance: u64,
    /// Delay levels (RocketMQ `messageDelayLevel`): space-separated durations with units `ms`,
    /// `s`, `m`, `h` or `d`; level `n` is the `n`-th entry. Default
    /// `"1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"`.
    pub message_delay_level: String,
    /// How long an orderly consumer's queue lock lives without renewal (RocketMQ
    /// `rocketmq.broker.rebalance.lockMaxLiveTime`); a queue whose holder died is free after
    /// this. Default 60 s.
    pub queue_lock_lease: Duration,
    /// Create a topic on its first put. Default true.
    pub auto_create_topics: bool,
    /// Queue count of auto-created topics (RocketMQ `defaultTopicQueueNums`). Default 4.
    pub default_topic_queues: u32,
    /// How often the transaction check service looks for half messages left without a commit
    /// or rollback (RocketMQ `transactionCheckInterval`). Default 30 s.
    pub transaction_check_interval: Duration,
    /// Age (since the producer sent it) after which a half message with no commit or rollback
    /// is checked back with its producer group's checker (RocketMQ `transactionTimeOut`);
    /// a message's `CHECK_IMMUNITY_TIME_IN_SECONDS` property overrides it. Default 6 s.
    pub transaction_timeout: Duration,
    /// Checks after which a half message still unresolved is discarded into
    /// `TRANS_CHECK_MAX_TIME_TOPIC` (RocketMQ `transactionCheckMax`). Default 15.
    pub transaction_check_max: u32,
    /// The index files (`index/`): lookups by key and by message id. Default
    /// [`IndexConfig::EMBEDDED`].
    pub index: IndexConfig,
    /// Retention and the disk-space guard. Default [`RetentionConfig::default`].
    pub retention: RetentionConfig,
    /// Run the store's housekeeping threads (the background flush and checkpoint, the indexer
    /// and the retention cleaner) in Linux's `SCHED_IDLE` class, so that they only use CPU
    /// the application's threads leave idle and never delay a producer or a consumer: with it
    /// off, a background flush could take the CPU from a waking consumer for milliseconds.
    /// Threads the application may wait on (segment preparation, prefaulting, `Sync` group
    /// commit) keep the normal class. Turn it off on a machine whose CPUs the application
    /// keeps busy all the time, where idle-class threads would fall behind (the background
    /// flush under `Async` most of all). No effect on other systems. Default true.
    pub idle_housekeeping: bool,
}

/// The index files (RocketMQ `messageIndexEnable`, `maxHashSlotNum`, `maxIndexNum`).
///
/// An index file takes `40 + max_hash_slots * 4 + max_index_entries * 20` bytes on disk from
/// the moment it is created: 420,000,040 bytes with RocketMQ's values ([`IndexConfig::ROCKETMQ`]),
/// 8,400,040 bytes (8 MiB) with mqlite's default ([`IndexConfig::EMBEDDED`]), which holds
/// 400,000 keys (every message has one key, its msgId, plus one per business key). A store
/// opened with other values keeps using the files it finds only if they have the configured
/// size or RocketMQ's (the slot count is not stored in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Write index entries for every stored message (RocketMQ `messageIndexEnable`). When off,
    /// no index file is written or read and lookups by key scan the time range instead.
    /// Default true.
    pub enabled: bool,
    /// Hash slots per file (RocketMQ `maxHashSlotNum`, 5,000,000). Default 100,000.
    pub max_hash_slots: u32,
    /// Entries per file (RocketMQ `maxIndexNum`, 20,000,000). Default 400,000.
    pub max_index_entries: u32,
}

impl IndexConfig {
    /// mqlite's default: 100,000 slots and 400,000 entries, 8 MiB per file.
    pub const EMBEDDED: IndexConfig = IndexConfig {
        enabled: true,
        max_hash_slots: 100_000,
        max_index_entries: 400_000,
    };
    /// RocketMQ's defaults: 5,000,000 slots and 20,000,000 entries, 420 MB per file.
    pub const ROCKETMQ: IndexConfig = IndexConfig {
        enabled: true,
        max_hash_slots: crate::format::index::ROCKETMQ_MAX_HASH_SLOTS,
        max_index_entries: crate::format::index::ROCKETMQ_MAX_INDEX_ENTRIES,
    };
    /// No index files.
    pub const DISABLED: IndexConfig = IndexConfig {
        enabled: false,
        ..IndexConfig::EMBEDDED
    };
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig::EMBEDDED
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            commitlog_segment_size: DEFAULT_COMMITLOG_SEGMENT_SIZE,
            consume_queue_segment_size: DEFAULT_CONSUME_QUEUE_UNITS * CQ_UNIT_SIZE as u64,
            flush_policy: FlushPolicy::default(),
            flush_thorough_interval: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(1),
            consumer_offset_persist_interval: Duration::from_secs(5),
            warm_segments: true,
            record_crc: true,
            max_message_size: 4 * 1024 * 1024,
            store_host: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10911)),
            recovery_mode: RecoveryMode::default(),
            tail_tolerance: 64 * 1024,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_owned(),
            queue_lock_lease: Duration::from_secs(60),
            auto_create_topics: true,
            default_topic_queues: 4,
            transaction_check_interval: Duration::from_secs(30),
            transaction_timeout: Duration::from_secs(6),
            transaction_check_max: 15,
            index: IndexConfig::default(),
            retention: RetentionConfig::default(),
            idle_housekeeping: true,
        }
    }
}

/// Largest queue count a topic may have.
pub const MAX_QUEUES_PER_TOPIC: u32 = 1024;

/// mqlite's default CommitLog segment size: 64 MiB.
const DEFAULT_COMMITLOG_SEGMENT_SIZE: u64 = 64 << 20;
/// mqlite's default consume queue file size, in 20-byte units.
const DEFAULT_CONSUME_QUEUE_UNITS: u64 = 30_000;
/// A RocketMQ broker's CommitLog segment size (`mappedFileSizeCommitLog`): 1 GiB.
const BROKER_COMMITLOG_SEGMENT_SIZE: u64 = 1 << 30;
/// A RocketMQ broker's consume queue file size (`mappedFileSizeConsumeQueue`), in units.
const BROKER_CONSUME_QUEUE_UNITS: u64 = 300_000;

impl StoreConfig {
    /// A RocketMQ broker's defaults: the [`Default`] configuration with 1 GiB CommitLog
    /// segments and 300,000-unit (6,000,000-byte) consume queue files, the sizes a broker
    /// started with its default `broker.conf` expects. Create a store with these when its
    /// directory is to be handed to such a broker; the other defaults of
    /// [`StoreConfig::default`] are a broker's already.
    ///
    /// ```
    /// let c = mqlite::StoreConfig::rocketmq_broker();
    /// assert_eq!(c.commitlog_segment_size, 1 << 30);
    /// assert_eq!(c.consume_queue_segment_size, 6_000_000);
    /// ```
    pub fn rocketmq_broker() -> StoreConfig {
        StoreConfig {
            commitlog_segment_size: BROKER_COMMITLOG_SEGMENT_SIZE,
            consume_queue_segment_size: BROKER_CONSUME_QUEUE_UNITS * CQ_UNIT_SIZE as u64,
            ..StoreConfig::default()
        }
    }

    /// Checks every field, and rounds the consume queue file size up to a multiple of 20.
    ///
    /// ```
    /// let mut c = mqlite::StoreConfig::default();
    /// c.commitlog_segment_size = 100;
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&mut self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.commitlog_segment_size < 4096 || self.commitlog_segment_size > i64::MAX as u64 / 2 {
            return bad(format!(
                "commitlog_segment_size {} must be between 4096 and 2^62",
                self.commitlog_segment_size
            ));
        }
        let unit = CQ_UNIT_SIZE as u64;
        self.consume_queue_segment_size = self.consume_queue_segment_size.div_ceil(unit) * unit;
        if self.consume_queue_segment_size < 10 * unit
            || self.consume_queue_segment_size > i32::MAX as u64
        {
            return bad(format!(
                "consume_queue_segment_size {} must be between 200 and 2^31",
                self.consume_queue_segment_size
            ));
        }
        match self.flush_policy {
            FlushPolicy::Sync { .. } => {}
            FlushPolicy::Async { interval, .. } => {
                if interval.is_zero() {
                    return bad("flush interval must be positive".into());
                }
            }
        }
        if self.flush_thorough_interval.is_zero()
            || self.checkpoint_interval.is_zero()
            || self.consumer_offset_persist_interval.is_zero()
        {
            return bad("flush_thorough_interval and checkpoint_interval must be positive".into());
        }
        if self.max_message_size == 0 || self.max_message_size > i32::MAX as usize / 2 {
            return bad(format!(
                "max_message_size {} must be between 1 and 2^30",
                self.max_message_size
            ));
        }
        self.delay_levels()?;
        if self.transaction_check_interval.is_zero() || self.transaction_check_max == 0 {
            return bad(
                "transaction_check_interval and transaction_check_max must be positive".into(),
            );
        }
        if self.index.max_hash_slots == 0
            || self.index.max_index_entries < 2
            || self.index.max_hash_slots > i32::MAX as u32 / 4
            || self.index.max_index_entries > i32::MAX as u32 / 20
        {
            return bad(format!(
                "index: max_hash_slots {} and max_index_entries {} must be at least 1 and 2 and keep a file under 2 GiB",
                self.index.max_hash_slots, self.index.max_index_entries
            ));
        }
        self.retention.validate()?;
        if self.default_topic_queues == 0 || self.default_topic_queues > MAX_QUEUES_PER_TOPIC {
            return bad(format!(
                "default_topic_queues {} must be between 1 and {MAX_QUEUES_PER_TOPIC}",
                self.default_topic_queues
            ));
        }
        Ok(())
    }
}

impl StoreConfig {
    /// The delay table parsed from [`StoreConfig::message_delay_level`], in milliseconds.
    ///
    /// ```
    /// let mut c = mqlite::StoreConfig::default();
    /// c.message_delay_level = "100ms 1s 2m".into();
    /// assert_eq!(c.delay_levels()?, vec![100, 1_000, 120_000]);
    /// # Ok::<(), mqlite::Error>(())
    /// ```
    pub fn delay_levels(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for item in self.message_delay_level.split_whitespace() {
            let split = item
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(item.len());
            let (num, unit) = item.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("delay level {item:?} has no number")))?;
            let factor = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => {
                    return Err(Error::InvalidConfig(format!(
                        "delay level {item:?}: unit must be ms, s, m, h or d"
                    )));
                }
            };
            out.push(n.saturating_mul(factor));
        }
        if out.is_empty() || out.len() > 64 {
            return Err(Error::InvalidConfig(
                "message_delay_level must list between 1 and 64 delays".into(),
            ));
        }
        Ok(out)
    }
}

/// Retention (RocketMQ's `CleanCommitLogService`) and the disk-space guard.
///
/// CommitLog segments are deleted oldest first, never the one being written, at most
/// [`RetentionConfig::delete_batch_max`] per run with [`RetentionConfig::delete_interval`]
/// between deletions, when a run is due:
/// - in a [`RetentionConfig::delete_when`] hour, or when the disk holding the store is more
///   than [`RetentionConfig::disk_max_used_space_ratio`] % full, segments older than
///   [`RetentionConfig::file_reserved_time`] (by file modification time) go;
/// - above [`RetentionConfig::disk_clean_forcibly_ratio`] %, or while the store is larger
///   than [`RetentionConfig::max_store_bytes`], segments go whatever their age, consumed or
///   not (the loss is logged per consumer group).
///
/// Consume queue and index files that point only into deleted segments go with them.
/// Above [`RetentionConfig::disk_full_ratio`] % (or with the store over
/// `max_store_bytes` and nothing left to delete) puts fail with
/// [`Error::DiskFull`](crate::Error::DiskFull) until space returns; that is checked every
/// [`RetentionConfig::check_interval`] and when a segment fills.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionConfig {
    /// Run the cleaner thread. When off, nothing is deleted except by
    /// `Store::cleanup_now` and
    /// `Store::delete_segments_before`; the guard
    /// still runs. Default true.
    pub enabled: bool,
    /// Age (by modification time) after which a segment may be deleted (RocketMQ
    /// `fileReservedTime`). Default 72 h.
    pub file_reserved_time: Duration,
    /// Hours of the day (UTC; RocketMQ uses local time) in which expired segments are deleted,
    /// `;`-separated two-digit hours (RocketMQ `deleteWhen`). Default `"04"`.
    pub delete_when: String,
    /// Disk usage in percent above which expired segments are deleted at any hour (RocketMQ
    /// `diskMaxUsedSpaceRatio`, clamped to 10..=95). Default 75.
    pub disk_max_used_space_ratio: u32,
    /// Disk usage in percent above which segments are deleted whatever their age (RocketMQ
    /// `diskSpaceCleanForciblyRatio`). Default 85.
    pub disk_clean_forcibly_ratio: u32,
    /// Disk usage in percent above which puts fail with `Error::DiskFull` (RocketMQ
    /// `diskSpaceWarningLevelRatio`). Default 90.
    pub disk_full_ratio: u32,
    /// Upper bound of the store's size in bytes (CommitLog, consume queues and index files),
    /// or `None` (the default) for no bound. Above it the oldest segments are deleted whatever
    /// their age; if that cannot bring the store under it, puts fail with `Error::DiskFull`.
    /// The bound is checked on a timer and at each CommitLog roll: between two checks the
    /// store may exceed it by the segment prepared ahead of the writer.
    pub max_store_bytes: Option<u64>,
    /// How often the cleaner and the guard run (RocketMQ `cleanResourceInterval`). Default
    /// 10 s.
    pub check_interval: Duration,
    /// Pause between two deletions in one run (RocketMQ `deleteCommitLogFilesInterval`).
    /// Default 100 ms.
    pub delete_interval: Duration,
    /// Most segments deleted in one run (RocketMQ `deleteFileBatchMax`). Default 10.
    pub delete_batch_max: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: "04".into(),
            disk_max_used_space_ratio: 75,
            disk_clean_forcibly_ratio: 85,
            disk_full_ratio: 90,
            max_store_bytes: None,
            check_interval: Duration::from_secs(10),
            delete_interval: Duration::from_millis(100),
            delete_batch_max: 10,
        }
    }
}

impl RetentionConfig {
    /// Checks the values and returns the `delete_when` hours.
    pub(crate) fn validate(&mut self) -> Result<Vec<u32>> {
        self.disk_max_used_space_ratio = self.disk_max_used_space_ratio.clamp(10, 95);
        if self.disk_clean_forcibly_ratio == 0
            || self.disk_clean_forcibly_ratio > 100
            || self.disk_full_ratio == 0
            || self.disk_full_ratio > 100
        {
            return Err(Error::InvalidConfig(
                "retention: disk ratios are percentages between 1 and 100".into(),
            ));
        }
        if self.check_interval.is_zero() || self.delete_batch_max == 0 {
            return Err(Error::InvalidConfig(
                "retention: check_interval and delete_batch_max must be positive".into(),
            ));
        }
        self.delete_hours()
    }

    /// The `delete_when` hours.
    pub(crate) fn delete_hours(&self) -> Result<Vec<u32>> {
        self.delete_when
            .split(';')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| match h.parse::<u32>() {
                Ok(n) if n < 24 => Ok(n),
                _ => Err(Error::InvalidConfig(format!(
                    "retention: delete_when hour {h:?} is not 00..23"
                ))),
            })
            .collect()
    }
}
