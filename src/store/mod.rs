//! The [`Store`]: owns the CommitLog, the consume queues, topics, flushing and recovery.

pub(crate) mod arrivals;
mod checkpoint;
mod json_file;
pub(crate) mod locks;
mod offsets;
mod open;
pub(crate) mod put;
mod read;
pub(crate) mod retry;
pub(crate) mod schedule;
mod schedule_service;
#[cfg(test)]
mod tests;
pub(crate) mod topics;
pub(crate) mod validate;

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::commitlog::{CommitLog, LogWriter};
use crate::config::{FlushPolicy, StoreBuilder, StoreConfig};
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::flush::group_commit::GroupCommit;
use crate::format::checkpoint::Checkpoint;
use crate::format::cq_unit::CqUnit;
use crate::format::msg_id::{MessageIdGenerator, OffsetMessageId};
use crate::message::{MessageExt, MessageQueue};
use crate::storage::lock::DirLock;

use checkpoint::CheckpointFile;
pub use put::{PutResult, PutStatus};
pub use topics::TopicConfig;
use topics::TopicTable;

/// A consume queue unit waiting for its record to become durable (`FlushPolicy::Sync`).
#[derive(Debug)]
pub(crate) struct PendingUnit {
    cq: Arc<ConsumeQueue>,
    queue_offset: u64,
    unit: CqUnit,
    store_ts: u64,
}

impl PendingUnit {
    fn end(&self) -> u64 {
        self.unit.physical_offset + u64::from(self.unit.size)
    }
}

/// Per-queue state of the writer: the next queue offset to assign.
#[derive(Debug)]
pub(crate) struct QueueSlot {
    next_offset: u64,
    cq: Arc<ConsumeQueue>,
}

/// Everything appends serialise on.
#[derive(Debug)]
pub(crate) struct WriteState {
    log: LogWriter,
    slots: SlotMap,
    last_store_ts: u64,
}

/// The writer's queue slots by topic, hashed with a fast non-keyed hash (topic names are
/// chosen by the application, not by an attacker).
pub(crate) type SlotMap = HashMap<Arc<str>, Vec<Option<QueueSlot>>, BuildHasherDefault<FxHasher>>;

/// FxHash (as used by rustc): one multiply per 8 bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_be_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type QueueMap = HashMap<Arc<str>, Vec<Option<Arc<ConsumeQueue>>>>;

/// The shared state behind every [`Store`] handle and background thread.
#[derive(Debug)]
pub(crate) struct Core {
    dir: PathBuf,
    config: StoreConfig,
    log: CommitLog,
    write: Mutex<WriteState>,
    queues: RwLock<QueueMap>,
    topics: TopicTable,
    group: GroupCommit,
    pending: Mutex<VecDeque<PendingUnit>>,
    poisoned: AtomicBool,
    closed: AtomicBool,
    ids: MessageIdGenerator,
    checkpoint: CheckpointFile,
    /// Store time of the last record dispatched to a consume queue.
    logics_ts: AtomicU64,
    offsets: offsets::ConsumerOffsets,
    /// The delay table in ms (level n at index n - 1).
    delay_levels: Vec<u64>,
    schedule: schedule::ScheduleState,
    /// Wakes push consumers' fetch threads.
    pub(crate) arrivals: arrivals::Arrivals,
    /// Consumer groups and their members.
    pub(crate) groups: crate::client::group::Groups,
    /// Queue locks of orderly consumers.
    pub(crate) locks: locks::QueueLocks,
    /// Offsets of broadcasting consumers, per consumer instance.
    broadcast_offsets: offsets::ConsumerOffsets,
    /// Wakes the schedule service when a delayed message is stored.
    schedule_wake: Sender<()>,
    lock: Mutex<Option<DirLock>>,
}

#[derive(Debug)]
struct Background {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

#[derive(Debug)]
struct Handle {
    core: Arc<Core>,
    background: Mutex<Vec<Background>>,
}

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
    handle: Arc<Handle>,
}

/// Messages read from a queue by [`Store::get_messages`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GetResult {
    /// The messages, in queue-offset order.
    pub messages: Vec<MessageExt>,
    /// The queue offset to read next.
    pub next_offset: u64,
    /// The queue's smallest offset.
    pub min_offset: u64,
    /// The queue's max offset (the next offset to be written).
    pub max_offset: u64,
}

impl Store {
    /// Opens the store in `dir` with the default configuration, creating it if needed and
    /// recovering it after an unclean exit.
    ///
    /// Fails with [`Error::Locked`] when another store (in this or another process) has the
    /// directory open. The segment files must not be modified by anything else while open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder(dir).open()
    }

    /// A builder to configure the store before opening it.
    pub fn builder(dir: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder::new(dir.as_ref().to_path_buf())
    }

    pub(crate) fn open_with(dir: PathBuf, config: StoreConfig) -> Result<Store> {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let core = Arc::new(open::open(dir, config, wake_tx)?);
        let mut background = Vec::new();
        let spawned = crate::flush::start(core.clone())
            .map(|(stop, thread)| background.push(Background { stop, thread }))
            .and_then(|()| schedule_service::start(core.clone(), wake_rx))
            .map(|(stop, thread)| background.push(Background { stop, thread }));
        let handle = Arc::new(Handle {
            core,
            background: Mutex::new(background),
        });
        if let Err(e) = spawned {
            let _ = handle.shutdown();
            return Err(Error::io("spawn background thread", &handle.core.dir, e));
        }
        Ok(Store { handle })
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.core().dir
    }

    /// The configuration in effect (validated).
    pub fn config(&self) -> &StoreConfig {
        &self.core().config
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
        validate::user_topic(name)?;
        self.core().create_topic(name, queues)
    }

    /// The configuration of a topic.
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.core().topics.get(name)
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.core().topics.list()
    }

    /// Reads up to `max` messages of `queue` from queue offset `offset` on.
    ///
    /// An offset below the queue's minimum starts at the minimum; at or past the max offset
    /// the result is empty. Under `FlushPolicy::Sync` only durable messages are visible.
    pub fn get_messages(&self, queue: &MessageQueue, offset: u64, max: usize) -> Result<GetResult> {
        self.core().get_messages(queue, offset, max)
    }

    /// The smallest offset of a queue (0 for a queue that never had a message).
    pub fn min_offset(&self, queue: &MessageQueue) -> Result<u64> {
        self.core().check_open()?;
        Ok(self
            .core()
            .queue(&queue.topic, queue.queue_id)
            .map_or(0, |q| q.min_offset()))
    }

    /// The max offset of a queue: the offset the next message will get.
    pub fn max_offset(&self, queue: &MessageQueue) -> Result<u64> {
        self.core().check_open()?;
        Ok(self
            .core()
            .queue(&queue.topic, queue.queue_id)
            .map_or(0, |q| q.max_offset()))
    }

    /// Reads the message whose record starts at CommitLog offset `offset`.
    pub fn message_at(&self, offset: u64) -> Result<MessageExt> {
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
        self.core().log.min_offset()
    }

    /// End of the CommitLog (the offset the next record will get, unless it rolls).
    pub fn commitlog_max_offset(&self) -> u64 {
        self.core().log.written()
    }

    /// Deletes the CommitLog segments that end at or before `offset` (never the segment being
    /// written) and the consume queue files that only point into them; queues' min offsets
    /// move up accordingly, and a reader behind them starts at the new minimum. Returns the new
    /// smallest CommitLog offset. This is the manual form of retention.
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
        let core = self.core();
        core.check_writable()?;
        let min = core.log.delete_before(offset)?;
        for q in core.all_queues() {
            q.delete_before(min)?;
        }
        Ok(min)
    }

    /// Flushes everything appended so far to disk now, whatever the flush policy.
    pub fn flush(&self) -> Result<()> {
        self.core().check_open()?;
        self.core().flush_all()
    }

    /// Closes the store cleanly: flushes everything, records the end of the log in the
    /// checkpoint (so the next open checks only the log's last `tail_tolerance` bytes) and removes the `abort` marker. Other
    /// clones of this handle get [`Error::Closed`] afterwards. Dropping the last handle
    /// without `close` does the same on a best-effort basis.
    pub fn close(self) -> Result<()> {
        self.handle.shutdown()
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

impl Handle {
    fn shutdown(&self) -> Result<()> {
        // The schedule service (last started) stops first: it writes through the store.
        let threads: Vec<Background> = self.background.lock().drain(..).rev().collect();
        for bg in threads {
            let _ = bg.stop.send(());
            let _ = bg.thread.join();
        }
        self.core.shutdown()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Core {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Marks the store poisoned after a failed flush.
    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        self.group.fail();
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Flushes the log, then writes `config/delayOffset.json` if the schedule progressed (so the
    /// file never counts a delivery a crash could take back).
    pub(crate) fn persist_schedule(&self) -> Result<()> {
        if !self.schedule.is_dirty() {
            return Ok(());
        }
        self.flush_log()?;
        self.schedule.persist_if_dirty()
    }

    /// Writes `config/consumerOffset.json` if offsets changed.
    pub(crate) fn persist_offsets(&self) -> Result<()> {
        self.offsets.persist_if_dirty()?;
        self.broadcast_offsets.persist_if_dirty()
    }

    /// Tells group-commit waiters about a flush done outside a wait.
    pub(crate) fn advance_group(&self, durable: u64) {
        self.group.advance(durable);
    }

    pub(crate) fn log(&self) -> &CommitLog {
        &self.log
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn is_sync(&self) -> bool {
        matches!(self.config.flush_policy, FlushPolicy::Sync { .. })
    }

    pub(crate) fn queue(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .get(topic)
            .and_then(|v| v.get(queue_id as usize))
            .and_then(Clone::clone)
    }

    pub(crate) fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .values()
            .flat_map(|v| v.iter().flatten().cloned())
            .collect()
    }

    pub(crate) fn write_queue_count(&self, name: &str) -> Option<u32> {
        self.topics.write_queues(name)
    }

    pub(crate) fn topic_config(&self, name: &str) -> Option<TopicConfig> {
        self.topics.get(name)
    }

    pub(crate) fn create_topic(&self, name: &str, queues: u32) -> Result<TopicConfig> {
        self.check_writable()?;
        if queues == 0 || queues > crate::config::MAX_QUEUES_PER_TOPIC {
            return Err(Error::InvalidConfig(format!(
                "queue count {queues} must be between 1 and {}",
                crate::config::MAX_QUEUES_PER_TOPIC
            )));
        }
        let before = self.topics.get(name).map(|c| c.queue_count());
        let cfg = self.topics.ensure(name, queues)?;
        if before != Some(cfg.queue_count()) {
            self.groups.topics_changed();
            self.arrivals.kick();
        }
        // Create the queue directories now: a configured queue whose directory later goes
        // missing is then known to need a rebuild.
        for q in 0..cfg.queue_count() {
            self.queue_or_create(name, q)?;
        }
        Ok(cfg)
    }

    /// The visible end of the CommitLog: durable data under `Sync`, everything under `Async`.
    fn visible_end(&self) -> u64 {
        if self.is_sync() {
            self.log.flushed()
        } else {
            self.log.written()
        }
    }

    fn message_at(&self, offset: u64) -> Result<MessageExt> {
        self.check_open()?;
        let limit = self.visible_end();
        self.log.with_record(offset, limit, |rec, _| {
            MessageExt::from_record(rec, Arc::from(rec.topic))
        })
    }

    /// Writes pending consume queue units whose records end at or before `durable`.
    pub(crate) fn dispatch_pending(&self, durable: u64) -> Result<()> {
        let ready: Vec<PendingUnit> = {
            let mut pending = self.pending.lock();
            let n = pending.iter().take_while(|p| p.end() <= durable).count();
            pending.drain(..n).collect()
        };
        let any = !ready.is_empty();
        for p in ready {
            p.cq.put(p.queue_offset, p.unit)?;
            self.logics_ts.fetch_max(p.store_ts, Ordering::Relaxed);
        }
        if any {
            self.arrivals.notify();
        }
        Ok(())
    }

    /// Flushes the CommitLog and dispatches what became durable. Poisons on failure.
    pub(crate) fn flush_log(&self) -> Result<u64> {
        self.flush_log_upto(false)
    }

    /// [`Core::flush_log`]; with `whole_pages`, up to the last full page (periodic flushes).
    pub(crate) fn flush_log_upto(&self, whole_pages: bool) -> Result<u64> {
        let result = self.log.flush_upto(whole_pages).and_then(|durable| {
            self.dispatch_pending(durable)?;
            Ok(durable)
        });
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Flushes the CommitLog and every consume queue.
    pub(crate) fn flush_all(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let durable = self.flush_log()?;
        self.group.advance(durable);
        self.flush_queues_and_checkpoint(durable)
    }

    /// Flushes the consume queues, then records the durable state in the checkpoint.
    pub(crate) fn flush_queues_and_checkpoint(&self, durable: u64) -> Result<()> {
        self.flush_queues_upto(durable, false)
    }

    /// Flushes the consume queues (`whole_pages`: all but the page each is filling), then
    /// records the durable state in the checkpoint.
    pub(crate) fn flush_queues_upto(&self, durable: u64, whole_pages: bool) -> Result<()> {
        let logics = self.logics_ts.load(Ordering::Relaxed);
        for q in self.all_queues() {
            if let Err(e) = q.flush_upto(whole_pages) {
                self.poison();
                return Err(e);
            }
        }
        self.checkpoint.write(&Checkpoint {
            physic_msg_timestamp: self.log.flushed_store_ts(),
            logics_msg_timestamp: logics,
            index_msg_timestamp: 0,
            master_flushed_offset: durable,
            confirm_phy_offset: durable,
        })
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Wait for appends in progress; none can start now.
        let mut ws = self.write.lock();
        ws.log.stop_preparer();
        let result = if self.poisoned.load(Ordering::Acquire) {
            // Leave the abort marker: the next open recovers.
            Err(Error::Poisoned)
        } else {
            self.flush_all().and_then(|()| {
                self.offsets.persist_if_dirty()?;
                self.broadcast_offsets.persist_if_dirty()?;
                self.schedule.persist_if_dirty()?;
                self.log.remove_unused_segments(ws.log.segment_base())?;
                let abort = self.dir.join("abort");
                crate::storage::fs::remove_file_if_exists(&abort)?;
                crate::storage::fs::sync_dir(&self.dir)
            })
        };
        drop(ws);
        self.lock.lock().take();
        result
    }
}
