//! The log engine: the CommitLog, the consume queues and their dispatcher, flushing (group
//! commit under `Sync`, the background flusher), the checkpoint and `abort` marker, and
//! recovery (in [`open`], apart from steady state). It stores records and finds them again; it
//! knows nothing of topics' configuration, consumers or groups.

pub(crate) mod arrivals;
mod checkpoint;
pub(crate) mod commitlog;
pub(crate) mod consume_queue;
mod dispatch;
pub(crate) mod flusher;
pub(crate) mod group_commit;
pub(crate) mod index;
mod index_catch_up;
pub(crate) mod layout;
pub(crate) mod open;
pub(crate) mod open_read_only;
mod slots;
mod space;
pub(crate) mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
// FxHash (rustc's): topic names are chosen by the application, not by an attacker, so a
// non-keyed hash is fine for the queue map.
use rustc_hash::FxBuildHasher;

use crate::config::{FlushPolicy, StoreConfig};
use crate::error::{Error, Result};
use crate::format::checkpoint::Checkpoint;
use crate::format::cq_unit::CqUnit;
use crate::format::record::RecordView;
use crate::storage::lock::DirLock;
use crate::storage::{FlushScope, Fs, Segment};

use arrivals::Arrivals;
use checkpoint::CheckpointFile;
use commitlog::{CommitLog, LogWriter};
use consume_queue::ConsumeQueue;
use dispatch::{Dispatcher, PendingUnit};
use group_commit::{Durability, GroupCommit};

type QueueMap = HashMap<Arc<str>, Vec<Option<Arc<ConsumeQueue>>>, FxBuildHasher>;

/// Everything appends serialise on.
#[derive(Debug)]
pub(crate) struct WriteState {
    log: LogWriter,
    /// Creates consume queue files ahead of the writer.
    queue_files: consume_queue::QueueFilesAhead,
    /// The writer's queues by topic (a queue gets its slot at its first append).
    slots: slots::QueueSlots,
    last_store_ts: u64,
}

/// A record to append: its encoded length and how to encode it once its place is known.
pub(crate) trait Record {
    /// Encoded length in bytes.
    fn len(&self) -> usize;
    /// Encodes the record into `buf` (exactly [`Record::len`] bytes).
    fn encode(&self, buf: &mut [u8], at: &Placement);
    /// The consume queue tag code of the record.
    fn tag_code(&self, store_ts: u64) -> i64;
}

/// Where a record goes, given to [`Record::encode`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// Queue id.
    pub(crate) queue_id: u32,
    /// Queue offset.
    pub(crate) queue_offset: u64,
    /// CommitLog offset.
    pub(crate) physical_offset: u64,
    /// Store time, ms.
    pub(crate) store_ts: u64,
}

/// Where a contiguous run of appended records landed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    /// Queue offset of the first record.
    pub(crate) first_queue_offset: u64,
    /// CommitLog offset of the first record.
    pub(crate) physical_offset: u64,
    /// End of the last record.
    pub(crate) end: u64,
    /// Store time of the records.
    pub(crate) store_ts: u64,
}

/// The log engine.
#[derive(Debug)]
pub(crate) struct Engine {
    /// The open ran crash recovery (the log may have lost an unflushed tail).
    crash_recovered: bool,
    dir: PathBuf,
    config: StoreConfig,
    fs: Fs,
    log: CommitLog,
    /// `None` for a read-only engine, which never appends.
    write: Mutex<Option<WriteState>>,
    queues: RwLock<QueueMap>,
    dispatcher: Dispatcher,
    group: GroupCommit,
    poisoned: AtomicBool,
    closed: AtomicBool,
    checkpoint: CheckpointFile,
    /// The index files (`None` when indexing is off).
    index: Option<index::IndexService>,
    /// The disk-space guard refuses writes (the reason), see `broker::retention`.
    disk_full: space::Refusal,
    /// The delay table in ms (level n at index n - 1), for schedule-topic tag codes.
    delay_levels: Vec<u64>,
    /// Wakes readers waiting for any queue (push consumers' fetch threads).
    arrivals: Arrivals,
    lock: Mutex<Option<DirLock>>,
    /// Set for a read-only engine: follows what the owning process appends.
    read_only: Option<open_read_only::Follower>,
}

impl Engine {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage handle.
    pub(crate) fn fs_handle(&self) -> &Fs {
        &self.fs
    }

    /// Whether the open ran crash recovery: the store was not closed cleanly, so messages
    /// acknowledged under `Async` but never flushed may be gone.
    pub(crate) fn crash_recovered(&self) -> bool {
        self.crash_recovered
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn log(&self) -> &CommitLog {
        &self.log
    }

    pub(crate) fn arrivals(&self) -> &Arrivals {
        &self.arrivals
    }

    pub(crate) fn delay_levels(&self) -> &[u64] {
        &self.delay_levels
    }

    pub(crate) fn is_sync(&self) -> bool {
        matches!(self.config.flush_policy, FlushPolicy::Sync { .. })
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        self.check_not_read_only()?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// [`Error::ReadOnly`] for a read-only engine.
    pub(crate) fn check_not_read_only(&self) -> Result<()> {
        if self.read_only.is_some() {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Like [`Engine::check_writable`], and the disk-space guard must not be refusing puts.
    pub(crate) fn check_space(&self) -> Result<()> {
        self.check_writable()?;
        self.disk_full.check()
    }

    /// Whether the engine was opened read-only.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    /// A read-only engine picks up what the owning process appended since the last look
    /// (at most every few milliseconds; `force` looks now); nothing for a writable one.
    pub(crate) fn refresh(&self, force: bool) -> Result<()> {
        match &self.read_only {
            Some(f) => f.refresh(self, force),
            None => Ok(()),
        }
    }

    /// Sets (`Some(reason)`) or clears the disk-space guard's refusal of puts.
    pub(crate) fn set_disk_full(&self, reason: Option<String>) {
        self.disk_full.set(reason);
    }

    /// The index files, if indexing is on.
    pub(crate) fn index(&self) -> Option<&index::IndexService> {
        self.index.as_ref()
    }

    /// Indexes every visible record the index files do not cover yet (the index writer
    /// thread runs this as records arrive; queries run it first, so they see every record
    /// visible when they start). Records are read back from the log, as RocketMQ's reput
    /// service does, so appends pay nothing for the index.
    pub(crate) fn index_pending(&self) -> Result<()> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let _one = index.indexing();
        let mut at = index.indexed_to();
        let limit = self.visible_end();
        let mut cache = None;
        loop {
            let step = self
                .log
                .step(&mut cache, at, limit, |rec| index.put_record(rec))?;
            match step {
                commitlog::Step::Record(r, next) => {
                    r?;
                    at = next;
                }
                commitlog::Step::Skip(next) => at = next,
                commitlog::Step::End => return Ok(()),
            }
            index.set_indexed_to(at);
        }
    }

    /// The CommitLog segments, oldest first.
    pub(crate) fn log_segments(&self) -> Vec<Arc<Segment>> {
        self.log.segment_snapshot()
    }

    /// Marks the store poisoned after a failed flush or dispatch: every later write fails
    /// until the store is reopened.
    pub(crate) fn poison(&self, cause: &Error) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            ::log::error!(
                "store {} poisoned by: {cause}; every write fails until it is reopened (recovery repairs the log)",
                self.dir.display()
            );
        }
        self.group.fail();
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
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

    /// The queue object of `topic`/`queue_id`, created (and made visible to readers) if
    /// missing. Creation happens under the map's write lock, so there is one object per queue.
    pub(crate) fn queue_or_create(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(cq) = self.queue(topic, queue_id) {
            return Ok(cq);
        }
        self.check_not_read_only()?;
        let mut queues = self.queues.write();
        if let Some(cq) = queues
            .get(topic)
            .and_then(|v| v.get(queue_id as usize))
            .and_then(Clone::clone)
        {
            return Ok(cq);
        }
        let cq = Arc::new(ConsumeQueue::create(
            &self.fs,
            &self.dir,
            Arc::from(topic),
            queue_id,
            self.config.consume_queue_segment_size,
        )?);
        let v = queues.entry(cq.topic().clone()).or_default();
        let id = queue_id as usize;
        if v.len() <= id {
            v.resize_with(id + 1, || None);
        }
        v[id] = Some(cq.clone());
        Ok(cq)
    }

    /// The visible end of the CommitLog: durable data under `Sync`, everything under `Async`.
    pub(crate) fn visible_end(&self) -> u64 {
        if self.is_sync() {
            self.log.flushed()
        } else {
            self.log.written()
        }
    }

    /// Decodes the visible record at CommitLog offset `offset` and hands it to `f`.
    pub(crate) fn with_record<T>(
        &self,
        offset: u64,
        f: impl FnOnce(&RecordView<'_>, &Segment) -> T,
    ) -> Result<T> {
        self.check_open()?;
        self.log.with_record(offset, self.visible_end(), f)
    }

    /// Reads the visible message whose record starts at CommitLog offset `offset`.
    pub(crate) fn message_at(&self, offset: u64) -> Result<crate::message::MessageExt> {
        self.with_record(offset, |rec, _| {
            crate::message::MessageExt::from_record(rec, Arc::from(rec.topic))
        })
    }

    /// Appends `records` to queue `queue_id` of `topic` as one contiguous region with
    /// consecutive queue offsets, and dispatches their units (at once under `Async`, once
    /// durable under `Sync`). Nothing is written if the region cannot be appended. The first
    /// append to a queue since open asks `resolve` for it (the broker checks and creates
    /// topics there), under the write lock, so the queue's next offset is taken from its
    /// consume queue exactly once. `now` is the clock read before the call: the store time is
    /// the later of it and the previous store time, so it is never earlier than a time read
    /// before the put, and never goes backwards.
    pub(crate) fn append<R: Record>(
        &self,
        topic: &str,
        queue_id: u32,
        records: &[R],
        now: u64,
        resolve: impl FnOnce() -> Result<Arc<ConsumeQueue>>,
    ) -> Result<Region> {
        if records.is_empty() {
            return Err(Error::InvalidMessage("empty batch".into()));
        }
        let total: usize = records.iter().map(Record::len).sum();
        let mut guard = self.write.lock();
        self.check_space()?;
        let ws = guard.as_mut().ok_or(Error::ReadOnly)?;
        let slot = ws.slots.get_or_insert(topic, queue_id, resolve)?;
        let first_queue_offset = slot.next_offset;
        let last_queue_offset = first_queue_offset + records.len() as u64 - 1;
        slot.cq.reserve(last_queue_offset)?;
        ws.queue_files.maybe_request(&slot.cq, last_queue_offset);
        // Store timestamps never go backwards, so recovery can rely on their order.
        let store_ts = now.max(ws.last_store_ts);
        let physical_offset = self.log.append(&mut ws.log, total, store_ts, |buf, phys| {
            let mut pos = 0;
            for (i, r) in records.iter().enumerate() {
                let at = Placement {
                    queue_id,
                    queue_offset: first_queue_offset + i as u64,
                    physical_offset: phys + pos as u64,
                    store_ts,
                };
                r.encode(&mut buf[pos..pos + r.len()], &at);
                pos += r.len();
            }
        })?;
        ws.last_store_ts = store_ts;
        slot.next_offset += records.len() as u64;
        let mut phys = physical_offset;
        for (i, r) in records.iter().enumerate() {
            let queue_offset = first_queue_offset + i as u64;
            let unit = CqUnit {
                physical_offset: phys,
                size: r.len() as u32,
                tag_code: r.tag_code(store_ts),
            };
            phys += r.len() as u64;
            if self.is_sync() {
                self.dispatcher.defer(PendingUnit {
                    cq: slot.cq.clone(),
                    queue_offset,
                    unit,
                    store_ts,
                });
            } else if let Err(e) =
                self.dispatcher
                    .dispatch_appended(&slot.cq, queue_offset, unit, store_ts)
            {
                // The record is in the log but not in its queue: only recovery can mend that.
                self.poison(&e);
                return Err(e);
            }
        }
        drop(guard);
        if !self.is_sync() {
            self.arrivals.notify();
            if let Some(index) = &self.index {
                index.kick(physical_offset + total as u64);
            }
        }
        Ok(Region {
            first_queue_offset,
            physical_offset,
            end: physical_offset + total as u64,
            store_ts,
        })
    }

    /// Under `Sync`, waits (leading a group flush if needed) until `end` is durable.
    pub(crate) fn wait_durable(&self, end: u64) -> Result<Durability> {
        match self.config.flush_policy {
            FlushPolicy::Async { .. } => Ok(Durability::Durable),
            FlushPolicy::Sync { timeout } => self.group.wait(end, Instant::now() + timeout, || {
                self.flush_log(FlushScope::All)
            }),
        }
    }

    /// Writes the pending consume queue units whose records end at or before `durable`.
    fn dispatch_durable(&self, durable: u64) -> Result<()> {
        if self.dispatcher.dispatch_durable(durable)? {
            self.arrivals().notify();
            if let Some(index) = &self.index {
                index.kick(durable);
            }
        }
        Ok(())
    }

    /// Flushes the CommitLog (what `scope` covers) and dispatches what became durable.
    /// Poisons the store on failure.
    pub(crate) fn flush_log(&self, scope: FlushScope) -> Result<u64> {
        let result = self.log.flush(scope).and_then(|durable| {
            self.dispatch_durable(durable)?;
            Ok(durable)
        });
        if let Err(e) = &result {
            self.poison(e);
        }
        result
    }

    /// Starts writing back, without waiting, what the log and the consume queues hold a
    /// margin behind their writers and no flush has covered yet (`FlushPolicy::Async`, each
    /// time appends cross a `WRITE_BEHIND_STEP`): the periodic flush, and the one at close,
    /// then find most of it on disk. Makes nothing durable.
    pub(crate) fn write_behind(&self) -> Result<()> {
        // Every file gets its turn; the first failure is reported.
        let mut result = self.log.write_behind();
        for q in self.all_queues() {
            let r = q.write_behind();
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Tells group-commit waiters about a flush done outside a wait.
    pub(crate) fn advance_group(&self, durable: u64) {
        self.group.advance(durable);
    }

    /// Flushes the CommitLog and every consume queue, then the checkpoint.
    pub(crate) fn flush_all(&self) -> Result<()> {
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let durable = self.flush_log(FlushScope::All)?;
        self.group.advance(durable);
        if let Some(index) = &self.index
            && let Err(e) = self.index_pending().and_then(|()| index.flush())
        {
            self.poison(&e);
            return Err(e);
        }
        self.flush_queues(durable, FlushScope::All)
    }

    /// Flushes the consume queues (what `scope` covers), then records the durable state in
    /// the checkpoint.
    pub(crate) fn flush_queues(&self, durable: u64, scope: FlushScope) -> Result<()> {
        let logics = self.dispatcher.logics_ts();
        for q in self.all_queues() {
            if let Err(e) = q.flush_scope(scope) {
                self.poison(&e);
                return Err(e);
            }
        }
        self.checkpoint.write(&Checkpoint {
            physic_msg_timestamp: self.log.flushed_store_ts(),
            logics_msg_timestamp: logics,
            index_msg_timestamp: self.index.as_ref().map_or(0, |i| i.durable_ts()),
            master_flushed_offset: durable,
            confirm_phy_offset: durable,
        })
    }

    /// Deletes the CommitLog segments that end at or before `offset` and the consume queue
    /// files that only point into them. Returns the new smallest CommitLog offset.
    pub(crate) fn delete_segments_before(&self, offset: u64) -> Result<u64> {
        self.check_writable()?;
        let min = self.log.delete_before(offset)?;
        self.after_log_deletion(min)?;
        Ok(min)
    }

    /// Deletes the consume queue and index files that point only below `min`, the
    /// CommitLog's new smallest offset.
    pub(crate) fn after_log_deletion(&self, min: u64) -> Result<()> {
        // Every queue and the index get their turn; the first error is returned.
        let mut first = None;
        for q in self.all_queues() {
            if let Err(e) = q.delete_before(min) {
                first.get_or_insert(e);
            }
        }
        if let Some(index) = &self.index
            && let Err(e) = index.delete_before(min)
        {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Closes the engine: waits for appends in progress, flushes everything, writes the
    /// checkpoint, runs `before_clean_mark` (the broker persists its state), removes the
    /// `abort` marker and releases the directory lock. A poisoned store keeps its `abort`
    /// marker, so the next open recovers.
    pub(crate) fn shutdown(&self, before_clean_mark: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut guard = self.write.lock();
        let Some(ws) = guard.as_mut() else {
            // Read-only: nothing to flush or mark, no lock held.
            return Ok(());
        };
        ws.log.stop_preparer();
        ws.queue_files.stop();
        let result = if self.is_poisoned() {
            Err(Error::Poisoned)
        } else {
            self.flush_all().and_then(|()| {
                before_clean_mark()?;
                self.log.remove_unused_segments(ws.log.segment_base())?;
                for cq in self.all_queues() {
                    cq.remove_unused_next_file()?;
                }
                // Not synced: if a power cut brings the marker back, the next open recovers,
                // which is always safe (everything above is durable already).
                self.fs
                    .remove_file_if_exists(&self.dir.join(open::ABORT_FILE))
            })
        };
        drop(guard);
        self.lock.lock().take();
        result
    }
}
