//! ConsumeQueue: the per-(topic, queue id) index of 20-byte units pointing into the CommitLog,
//! stored under `consumequeue/{topic}/{queueId}/` in files named by the byte offset of their
//! first unit.

mod ahead;
mod files;
#[cfg(test)]
mod prefault_tests;
pub(crate) mod recovery;

pub(crate) use ahead::QueueFilesAhead;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use crate::rate::RateWindow;
use crate::storage::mmap::{ZeroAhead, zero_ahead_min_gap};
use crate::storage::{FlushScope, Fs, Segment, SegmentSet, SegmentWriter, WriteBehindMark};

const UNIT: u64 = CQ_UNIT_SIZE as u64;
/// How far behind its writer [`ConsumeQueue::write_behind`] stays (the pages a tailing reader
/// is about to read stay mapped), and the least it starts writing back at once.
const WRITE_BEHIND_MARGIN: u64 = 64 << 10;
const WRITE_BEHIND_LEAST: u64 = 64 << 10;

/// One consume queue.
#[derive(Debug)]
pub(crate) struct ConsumeQueue {
    topic: Arc<str>,
    queue_id: u32,
    file_size: u64,
    set: SegmentSet,
    writer: Mutex<Option<SegmentWriter>>,
    /// Smallest valid queue offset.
    min_offset: AtomicU64,
    /// Next queue offset to write (the queue's max offset).
    max_offset: AtomicU64,
    /// End (offset + size) of the last dispatched record in the CommitLog.
    max_phys_end: AtomicU64,
    /// Bytes of units known durable, as an absolute byte offset.
    flushed: AtomicU64,
    /// Bytes of units whose writing back was started ([`ConsumeQueue::write_behind`]).
    written_back: WriteBehindMark,
    /// End of the last file, as an absolute byte offset (0 without files).
    capacity_end: AtomicU64,
    /// Held while a file is created (by the writer or by [`QueueFilesAhead`]), so the same
    /// file is never created twice.
    creating: Mutex<()>,
    /// A request for the next file is with [`QueueFilesAhead`].
    ahead_requested: AtomicBool,
    /// Pages up to this absolute byte offset were asked to be faulted in ahead of the writer
    /// ([`ConsumeQueue::wants_prefault`]).
    prefaulted_to: AtomicU64,
    /// Threads blocked in [`ConsumeQueue::wait_beyond`]; arrivals notify only when non-zero.
    waiters: AtomicUsize,
    arrival_lock: Mutex<()>,
    arrival: Condvar,
    /// Messages and bytes dispatched since the queue was opened (recovery's re-dispatch not
    /// counted), for the store's put statistics.
    puts: RateWindow,
}

/// How long a waiter spins before it blocks: under load the next message arrives within a few
/// microseconds and a futex wake-up costs more than that. It stays short so that a consumer
/// that is waiting leaves its CPU to other threads: a consumer spinning through the gaps of a
/// steady stream holds a core, and then any other thread (the application's, the store's
/// housekeeping, the kernel's writeback) can only run by displacing it for a scheduler tick.
const SPIN: Duration = Duration::from_micros(5);

/// How much of a queue file is faulted in at a time ahead of its writer, and how far ahead:
/// the writer's first touch of a page of a new queue file otherwise faults it in (a read of
/// the unwritten extent, then a write fault), ~7% of an append of a small message. Up to two
/// pieces ahead: a queue that is written to holds at most 128 KiB of prepared pages.
const PREFAULT_PIECE: u64 = 64 << 10;
/// Pages closer than this to the writer's position are left to it: [`Segment::zero_ahead`]
/// needs a gap for the units a writer may have appended unseen (it appends a unit at a time).
const PREFAULT_GAP: u64 = 4 << 10;
const _: () = assert!(PREFAULT_GAP as usize >= zero_ahead_min_gap(CQ_UNIT_SIZE));
/// How much is zeroed at a time: a writer that catches up with the zeroing waits for at most
/// this much.
const PREFAULT_STEP: usize = 16 << 10;

impl ConsumeQueue {
    /// The directory of a queue.
    pub(crate) fn queue_dir(root: &Path, topic: &str, queue_id: u32) -> PathBuf {
        root.join("consumequeue")
            .join(topic)
            .join(queue_id.to_string())
    }

    /// A queue with no files yet, rooted at `dir`.
    pub(crate) fn empty(
        fs: Fs,
        topic: Arc<str>,
        queue_id: u32,
        dir: PathBuf,
        file_size: u64,
    ) -> ConsumeQueue {
        ConsumeQueue {
            topic,
            queue_id,
            file_size,
            set: SegmentSet::new(fs, dir, file_size, Vec::new()),
            writer: Mutex::new(None),
            min_offset: AtomicU64::new(0),
            max_offset: AtomicU64::new(0),
            max_phys_end: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            written_back: WriteBehindMark::default(),
            capacity_end: AtomicU64::new(0),
            creating: Mutex::new(()),
            ahead_requested: AtomicBool::new(false),
            prefaulted_to: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            arrival_lock: Mutex::new(()),
            arrival: Condvar::new(),
            puts: RateWindow::default(),
        }
    }

    /// Sets the recovered bounds (before the queue is shared).
    pub(crate) fn set_bounds(&mut self, min_offset: u64, max_offset: u64, max_phys_end: u64) {
        *self.min_offset.get_mut() = min_offset;
        *self.max_offset.get_mut() = max_offset;
        *self.max_phys_end.get_mut() = max_phys_end;
    }

    /// An empty queue (its directory is created, no file yet).
    pub(crate) fn create(
        fs: &Fs,
        root: &Path,
        topic: Arc<str>,
        queue_id: u32,
        file_size: u64,
    ) -> Result<ConsumeQueue> {
        let dir = Self::queue_dir(root, &topic, queue_id);
        fs.create_dir_all(&dir)?;
        Ok(Self::empty(fs.clone(), topic, queue_id, dir, file_size))
    }

    /// The queue's files (a read-only store adds the ones the owning process created).
    pub(crate) fn segments(&self) -> &SegmentSet {
        &self.set
    }

    /// The file size of the queue.
    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }

    /// A read-only store found valid units `[min_offset, max_offset)` whose last record ends
    /// at `max_phys_end` in the CommitLog. Bounds only move up.
    pub(crate) fn advance_read_only(&self, min_offset: u64, max_offset: u64, max_phys_end: u64) {
        self.min_offset.fetch_max(min_offset, Ordering::AcqRel);
        self.max_phys_end.fetch_max(max_phys_end, Ordering::AcqRel);
        self.max_offset.fetch_max(max_offset, Ordering::AcqRel);
    }

    /// The queue's directory.
    pub(crate) fn dir(&self) -> &Path {
        self.set.dir()
    }

    pub(crate) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    pub(crate) fn queue_id(&self) -> u32 {
        self.queue_id
    }

    pub(crate) fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// Bytes its files take on disk.
    pub(crate) fn file_bytes(&self) -> u64 {
        self.set.len() as u64 * self.set.segment_size()
    }

    /// Messages and bytes put into the queue since it was opened.
    pub(crate) fn puts(&self) -> &RateWindow {
        &self.puts
    }

    pub(crate) fn max_phys_end(&self) -> u64 {
        self.max_phys_end.load(Ordering::Acquire)
    }

    /// Writes the unit for `queue_offset`. A unit below the max offset was already written
    /// (re-dispatch) and is ignored; one past it is refused, since queue offsets are dense.
    /// A queue without files may start at any offset: the units before it in its first file
    /// get RocketMQ's pre-blank.
    pub(crate) fn put(&self, queue_offset: u64, unit: CqUnit) -> Result<()> {
        let mut writer = self.writer.lock();
        let max = self.max_offset();
        if queue_offset < max {
            return Ok(());
        }
        // Steady state: the next unit, with room in the current file.
        if queue_offset == max
            && let Some(w) = writer.as_mut()
            && w.remaining() >= CQ_UNIT_SIZE
        {
            self.write_unit(w, queue_offset, unit);
            drop(writer);
            self.notify();
            return Ok(());
        }
        let empty = self.set.is_empty();
        if queue_offset > max && !empty {
            return Err(Error::corrupted(
                self.dir(),
                max * UNIT,
                format!(
                    "queue {}:{} expects offset {max}, got {queue_offset}",
                    self.topic, self.queue_id
                ),
            ));
        }
        let byte_pos = queue_offset * UNIT;
        if writer.as_ref().is_none_or(|w| w.remaining() < CQ_UNIT_SIZE) {
            let seg = self.segment_holding(byte_pos)?;
            *writer = None;
            *writer = Some(seg.clone().into_writer().ok_or_else(|| {
                Error::corrupted(seg.path(), 0, "consume queue file already has a writer")
            })?);
            if empty {
                self.min_offset.store(queue_offset, Ordering::Release);
                self.flushed.store(seg.base(), Ordering::Release);
            }
        }
        let Some(w) = writer.as_mut() else {
            return Err(Error::corrupted(
                self.dir(),
                byte_pos,
                "no consume queue writer",
            ));
        };
        // Pre-blank units up to the first real one (only in a new queue's first file).
        while w.segment().base() + (w.pos() as u64) < byte_pos {
            w.append(CQ_UNIT_SIZE, |b| {
                b.copy_from_slice(&CqUnit::PRE_BLANK.encode())
            });
        }
        self.write_unit(w, queue_offset, unit);
        drop(writer);
        self.notify();
        Ok(())
    }

    /// Appends the unit at the writer's position and publishes the new max offset.
    fn write_unit(&self, w: &mut SegmentWriter, queue_offset: u64, unit: CqUnit) {
        let encoded = unit.encode();
        w.append(CQ_UNIT_SIZE, |b| b.copy_from_slice(&encoded));
        w.publish();
        self.max_phys_end.store(
            unit.physical_offset + u64::from(unit.size),
            Ordering::Release,
        );
        self.max_offset.store(queue_offset + 1, Ordering::Release);
    }

    /// Wakes threads waiting for new units, if there are any.
    fn notify(&self) {
        // Pairs with the waiter's increment: either it sees the new max offset, or we see it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.arrival_lock.lock();
            self.arrival.notify_all();
        }
    }

    /// Waits until the max offset passes `offset` or `deadline` comes; returns whether it did.
    /// Spins briefly first, then blocks until woken by an arrival (no polling).
    pub(crate) fn wait_beyond(&self, offset: u64, deadline: Instant) -> bool {
        let spin_until = Instant::now() + SPIN;
        loop {
            if self.max_offset() > offset {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now >= spin_until {
                break;
            }
            std::hint::spin_loop();
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.arrival_lock.lock();
        let arrived = loop {
            if self.max_offset() > offset {
                break true;
            }
            if self.arrival.wait_until(&mut guard, deadline).timed_out() {
                break self.max_offset() > offset;
            }
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        arrived
    }

    /// Makes sure the file that will hold `queue_offset` exists, so that [`ConsumeQueue::put`]
    /// of it cannot fail for lack of space. A queue without files is left alone.
    pub(crate) fn reserve(&self, queue_offset: u64) -> Result<()> {
        let byte_end = (queue_offset + 1) * UNIT;
        if byte_end <= self.capacity_end.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.set.last_base() {
            None => return Ok(()),
            Some(l) if l + self.file_size >= byte_end => return Ok(()),
            Some(_) => {}
        }
        self.segment_holding(queue_offset * UNIT).map(|_| ())
    }

    /// The file holding `byte_pos`, creating it (and any before it) when missing.
    fn segment_holding(&self, byte_pos: u64) -> Result<Arc<Segment>> {
        let base = self.set.base_of(byte_pos);
        if let Some(s) = self.set.try_find(base)? {
            return Ok(s);
        }
        let _creating = self.creating.lock();
        if let Some(s) = self.set.try_find(base)? {
            return Ok(s); // created ahead meanwhile
        }
        loop {
            let next = self.set.last_base().map_or(base, |l| l + self.file_size);
            let seg = self.set.create_and_push(next)?;
            self.capacity_end
                .store(next + self.file_size, Ordering::Release);
            if next >= base {
                return Ok(seg);
            }
        }
    }

    /// Whether the writer, about to write up to `last_queue_offset`, is past half of the
    /// queue's last file; if so, marks the next file as requested (so it is asked for once).
    pub(crate) fn wants_next_file(&self, last_queue_offset: u64) -> bool {
        let capacity = self.capacity_end.load(Ordering::Acquire);
        let byte_end = (last_queue_offset + 1) * UNIT;
        capacity > 0
            && byte_end <= capacity
            && byte_end > capacity - self.file_size / 2
            && !self.ahead_requested.swap(true, Ordering::AcqRel)
    }

    /// The byte range of the queue's files to fault in ahead of a writer about to write up to
    /// `last_queue_offset` (then marked as asked for, so it is asked for once), if any: up to
    /// two pieces ([`PREFAULT_PIECE`]) past the writer, inside the file it writes.
    pub(crate) fn wants_prefault(&self, last_queue_offset: u64) -> Option<(u64, u64)> {
        let byte_end = (last_queue_offset + 1) * UNIT;
        let asked = self.prefaulted_to.load(Ordering::Relaxed);
        if asked >= byte_end + PREFAULT_PIECE {
            return None;
        }
        let file_end = (byte_end / self.file_size + 1) * self.file_size;
        // Only inside a file that exists (a new queue's first file is created by its first
        // put, after this is asked).
        let to = ((byte_end / PREFAULT_PIECE + 2) * PREFAULT_PIECE)
            .min(file_end)
            .min(self.capacity_end.load(Ordering::Acquire));
        let from = asked.max(byte_end + PREFAULT_GAP);
        if from + PREFAULT_PIECE / 2 > to {
            return None;
        }
        self.prefaulted_to.fetch_max(to, Ordering::Relaxed);
        Some((from, to))
    }

    /// Writes zeros into the page cache over `[from, to)` (absolute byte offsets inside one
    /// file) and maps the pages writable, unless the writer is already there
    /// ([`Segment::zero_ahead`]). Advisory: a file that is missing or cannot be mapped is
    /// left alone, and errors are only logged.
    pub(crate) fn prefault(&self, from: u64, to: u64) {
        let base = self.set.base_of(from);
        let Ok(Some(seg)) = self.set.try_find(base) else {
            return;
        };
        let (mut at, end) = ((from - base) as usize, (to - base) as usize);
        while at < end {
            let step_end = end.min(at + PREFAULT_STEP);
            match seg.zero_ahead(at, step_end, PREFAULT_GAP as usize, ZeroAhead::PageCache) {
                Ok(true) => seg.populate(at, step_end, true),
                // The writer is already there: the rest of the range is left to it.
                Ok(false) => return,
                Err(e) => {
                    ::log::debug!("faulting in {} ahead: {e}", seg.path().display());
                    return;
                }
            }
            at = step_end;
        }
    }

    /// A request for the next file could not be queued: the writer creates it when needed.
    pub(crate) fn request_dropped(&self) {
        self.ahead_requested.store(false, Ordering::Release);
    }

    /// Creates the file after the last one, unless it exists ([`QueueFilesAhead`]).
    pub(crate) fn create_next_file(&self) -> Result<()> {
        let result = {
            let _creating = self.creating.lock();
            match self.set.last_base() {
                None => Ok(()),
                Some(last) => {
                    let next = last + self.file_size;
                    self.set.create_and_push(next).map(|_| {
                        self.capacity_end
                            .fetch_max(next + self.file_size, Ordering::AcqRel);
                    })
                }
            }
        };
        self.ahead_requested.store(false, Ordering::Release);
        result
    }

    /// At a clean close: removes the last file if it was created ahead and holds no unit, so
    /// the directory is left as RocketMQ would leave it.
    pub(crate) fn remove_unused_next_file(&self) -> Result<()> {
        let _creating = self.creating.lock();
        let end = self.max_offset() * UNIT;
        self.set.remove_last_if(|last| last.base() >= end)
    }

    /// Whether the queue has any file.
    pub(crate) fn has_files(&self) -> bool {
        !self.set.is_empty()
    }

    /// The first unit whose record starts at or after `phys` (binary search, within the last
    /// file when that one starts before `phys`: the lookups at open are near the end, and the
    /// older files stay unmapped). An error if a file cannot be mapped.
    pub(crate) fn first_unit_from(&self, phys: u64) -> Result<Option<CqUnit>> {
        let (mut lo, mut hi) = (self.min_offset(), self.max_offset());
        if let Some(last) = self.set.last_base() {
            let first_in_last = (last / UNIT).max(lo);
            if first_in_last < hi
                && self
                    .try_unit_at(first_in_last)?
                    .is_some_and(|u| u.physical_offset < phys)
            {
                lo = first_in_last;
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.try_unit_at(mid)? {
                Some(u) if u.physical_offset < phys => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.try_get(lo)
    }

    /// [`ConsumeQueue::get`], with an error if the unit's file cannot be mapped.
    pub(crate) fn try_get(&self, queue_offset: u64) -> Result<Option<CqUnit>> {
        if queue_offset < self.min_offset() || queue_offset >= self.max_offset() {
            return Ok(None);
        }
        self.try_unit_at(queue_offset)
    }

    /// The unit at `queue_offset`, if it is between the min and max offsets. A file that
    /// cannot be mapped is logged and reads as missing: callers that must tell use
    /// [`ConsumeQueue::try_get`].
    pub(crate) fn get(&self, queue_offset: u64) -> Option<CqUnit> {
        self.try_get(queue_offset)
            .inspect_err(|e| ::log::error!("consume queue {}:{}: {e}", self.topic, self.queue_id))
            .ok()
            .flatten()
    }

    /// Calls `f` with consecutive units from `from` on (at most `max`), stopping early when `f`
    /// returns false. Returns the offset after the last unit visited, and the error that
    /// stopped the visit there if a file could not be mapped.
    pub(crate) fn scan(
        &self,
        from: u64,
        max: usize,
        mut f: impl FnMut(u64, CqUnit) -> bool,
    ) -> (u64, Option<Error>) {
        let mut off = from.max(self.min_offset());
        let end = self.max_offset().min(off.saturating_add(max as u64));
        while off < end {
            let byte_pos = off * UNIT;
            let seg = match self.set.try_find(byte_pos) {
                Ok(Some(seg)) => seg,
                Ok(None) => break,
                Err(e) => return (off, Some(e)),
            };
            let rel = (byte_pos - seg.base()) as usize;
            let in_seg = ((seg.size() - rel) / CQ_UNIT_SIZE) as u64;
            let n = in_seg.min(end - off) as usize;
            let Some(bytes) = seg.read(rel, n * CQ_UNIT_SIZE) else {
                break;
            };
            for chunk in bytes.chunks_exact(CQ_UNIT_SIZE) {
                let Ok(Some(unit)) = CqUnit::decode(chunk) else {
                    return (off, None);
                };
                let keep_going = f(off, unit);
                off += 1;
                if !keep_going {
                    return (off, None);
                }
            }
        }
        (off, None)
    }

    /// Drops files whose units all point below `log_min` (never the last file) and moves the
    /// min offset to the first unit at or above it (RocketMQ's `correctMinOffset`).
    pub(crate) fn delete_before(&self, log_min: u64) -> Result<()> {
        self.set.delete_front_while(|first| {
            let last_unit = first
                .read(first.size() - CQ_UNIT_SIZE, CQ_UNIT_SIZE)
                .and_then(|b| CqUnit::decode(b).ok().flatten());
            Ok(last_unit.is_some_and(|u| u.physical_offset + u64::from(u.size) <= log_min))
        })?;
        // Binary search the first unit still in the log.
        let first_file = self.set.first_base().map_or(0, |b| b / UNIT);
        let (mut lo, mut hi) = (self.min_offset().max(first_file), self.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.try_unit_at(mid)? {
                Some(u) if u.physical_offset < log_min => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.min_offset.fetch_max(lo, Ordering::AcqRel);
        Ok(())
    }

    /// The unit at `queue_offset` regardless of the min offset; an error if its file cannot
    /// be mapped.
    fn try_unit_at(&self, queue_offset: u64) -> Result<Option<CqUnit>> {
        let byte_pos = queue_offset * UNIT;
        let Some(seg) = self.set.try_find(byte_pos)? else {
            return Ok(None);
        };
        Ok(seg
            .read((byte_pos - seg.base()) as usize, CQ_UNIT_SIZE)
            .and_then(|b| CqUnit::decode(b).ok().flatten()))
    }

    /// Flushes units written since the last flush.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_scope(FlushScope::All)
    }

    /// Starts writing back, without waiting, the units written up to a margin behind the
    /// writer that are neither flushed nor started yet (at least `WRITE_BEHIND_LEAST` of
    /// them). Nothing becomes durable here: only a flush moves the durable end.
    pub(crate) fn write_behind(&self) -> Result<()> {
        self.set.write_behind(
            &self.written_back,
            self.flushed.load(Ordering::Acquire),
            (self.max_offset() * UNIT).saturating_sub(WRITE_BEHIND_MARGIN),
            WRITE_BEHIND_LEAST,
        )
    }

    /// Flushes what `scope` covers of the units written since the last flush. Units lost from
    /// an unflushed page are re-dispatched by recovery.
    pub(crate) fn flush_scope(&self, scope: FlushScope) -> Result<()> {
        let target = self.set.flush_target(self.max_offset() * UNIT, scope);
        let from = self.flushed.load(Ordering::Acquire);
        if target <= from {
            return Ok(());
        }
        self.set.flush_range(from, target)?;
        self.flushed.store(target, Ordering::Release);
        Ok(())
    }
}
