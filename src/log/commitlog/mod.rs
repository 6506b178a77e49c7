//! The CommitLog: every record of every topic, appended by a single writer into fixed-size
//! segments named by their start offset. A record never straddles segments: one that does not
//! fit gets the 8-byte blank record and moves whole to the next segment.

mod preparer;
pub(crate) mod recovery;
#[cfg(test)]
mod write_behind_tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::record::{self, BLANK_LEN, Decoded, RecordView};
use crate::storage::mmap::{ANNOUNCE_ABOVE, ZeroAhead, zero_ahead_min_gap};
use crate::storage::{FlushScope, Segment, SegmentSet, SegmentWriter, WriteBehindMark};

pub(crate) use preparer::{Preparer, PreparerConfig};

/// What [`CommitLog::step`] found.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// A record (what the visitor returned) and the offset after it.
    Record(T, u64),
    /// Nothing to read here: go on at this offset.
    Skip(u64),
    /// The end of what may be read.
    End,
}

/// The shared, read side of the CommitLog plus its flush bookkeeping. The write side is a
/// [`LogWriter`], owned by whoever serialises appends.
#[derive(Debug)]
pub(crate) struct CommitLog {
    set: SegmentSet,
    segment_size: u64,
    /// The largest single append (one record or one batch) the log accepts; the zero-ahead
    /// gap of warming is derived from it, so the two cannot drift apart.
    max_append: usize,
    /// End of the appended data.
    written: AtomicU64,
    /// End of the data known durable.
    flushed: AtomicU64,
    /// Store time of the last appended record.
    last_store_ts: AtomicU64,
    /// Store time of the last record known durable.
    flushed_store_ts: AtomicU64,
    flush_lock: Mutex<()>,
    /// Where writing back ahead of the flush has got to ([`CommitLog::write_behind`]).
    written_back: WriteBehindMark,
    /// Woken each time appends cross a [`WRITE_BEHIND_STEP`] boundary, once the flush
    /// thread asked for it (`FlushPolicy::Async`).
    write_behind_wake: OnceLock<Sender<()>>,
}

/// Room a batch may take beyond the largest message: RocketMQ's limit on a batch is the max
/// message size, plus the records' headers and properties.
pub(crate) const BATCH_OVERHEAD: usize = 64 << 10;
/// How far ahead of the record being read sequential reads ask the CPU to load, and how much.
const PREFETCH_AHEAD: usize = 4096;
const PREFETCH_LEN: usize = 256;

/// Under `FlushPolicy::Async`, the flush thread starts writing the log back each time this
/// much more was appended ([`CommitLog::write_behind`]), so the periodic flush, and the one
/// at close, find most of it on disk already instead of writing it all at once. A power of
/// two: appends find a crossing with a shift.
pub(crate) const WRITE_BEHIND_STEP: u64 = 8 << 20;
/// How far behind the writer writing back stays: pages still being written are not written
/// back twice, and a tailing reader does not re-map what it is about to read.
const WRITE_BEHIND_MARGIN: u64 = 1 << 20;

/// The largest single append for a store whose largest message body is `max_message_size`.
pub(crate) fn max_append(max_message_size: usize) -> usize {
    max_message_size + BATCH_OVERHEAD
}

/// How close to the writer zero-filling ahead of it may start: [`Segment::zero_ahead`] keeps
/// clear of appends in flight by itself (long ones announce their end), this adds a margin
/// so the writer seldom has to wait for a zero-fill it catches up with.
pub(crate) const ZERO_AHEAD_GAP: usize = zero_ahead_min_gap(ANNOUNCE_ABOVE) + (128 << 10);

/// The single writer of the CommitLog.
#[derive(Debug)]
pub(crate) struct LogWriter {
    seg: SegmentWriter,
    preparer: Option<Preparer>,
    /// Bytes of the current segment already asked to be faulted in.
    populated_to: usize,
}

impl CommitLog {
    /// Wraps recovered segments. `end` is the end of valid data; the last segment's published
    /// length must already be set to it.
    pub(crate) fn new(
        set: SegmentSet,
        max_append: usize,
        end: u64,
        last_store_ts: u64,
    ) -> CommitLog {
        CommitLog {
            segment_size: set.segment_size(),
            set,
            max_append,
            written: AtomicU64::new(end),
            flushed: AtomicU64::new(end),
            last_store_ts: AtomicU64::new(last_store_ts),
            flushed_store_ts: AtomicU64::new(last_store_ts),
            flush_lock: Mutex::new(()),
            written_back: WriteBehindMark::new(end),
            write_behind_wake: OnceLock::new(),
        }
    }

    /// Creates the writer at the end of the log, creating the first (or next) segment when the
    /// log is empty or its last segment is full.
    pub(crate) fn writer(&self, preparer: Option<Preparer>) -> Result<LogWriter> {
        let last = self.set.last();
        let seg = match last {
            Some(seg) if (seg.published() as u64) < self.segment_size => seg,
            other => {
                let base = other.map_or(self.written.load(Ordering::Acquire), |s| {
                    s.base() + self.segment_size
                });
                self.set.create_and_push(base)?
            }
        };
        let seg = seg
            .into_writer()
            .ok_or_else(|| Error::InvalidConfig("commitlog writer already exists".into()))?;
        let mut w = LogWriter {
            seg,
            preparer,
            populated_to: 0,
        };
        // Pages ahead are prepared from the first append on: a store opened only to be read
        // (or closed again at once) costs no prefaulting.
        w.populated_to = w.seg.pos();
        Ok(w)
    }

    /// Appends `len` bytes of records, letting `fill` encode them in place given their physical
    /// offset, and returns that offset. Rolls to the next segment (writing the blank record) when it does not fit.
    pub(crate) fn append(
        &self,
        w: &mut LogWriter,
        len: usize,
        store_ts: u64,
        fill: impl FnOnce(&mut [u8], u64),
    ) -> Result<u64> {
        if len > self.max_append {
            return Err(Error::InvalidMessage(format!(
                "append of {len} bytes exceeds the largest append of {} bytes",
                self.max_append
            )));
        }
        if len as u64 + BLANK_LEN as u64 > self.segment_size {
            return Err(Error::InvalidMessage(format!(
                "record of {len} bytes does not fit in a {}-byte segment",
                self.segment_size
            )));
        }
        if w.seg.remaining() < len + BLANK_LEN {
            self.roll(w)?;
        }
        let base = w.seg.segment().base();
        let phys = base + w.seg.pos() as u64;
        w.seg.append(len, |buf| fill(buf, phys));
        w.seg.publish();
        if w.seg.pos() + w.lead() > w.populated_to {
            w.populate_ahead();
        }
        // Past half of the segment, have the next one prepared in the background.
        if w.seg.pos() * 2 >= self.segment_size as usize {
            w.request_next(self.segment_size);
        }
        self.last_store_ts.store(store_ts, Ordering::Relaxed);
        let end = phys + len as u64;
        self.written.store(end, Ordering::Release);
        if (phys ^ end) >= WRITE_BEHIND_STEP
            && let Some(wake) = self.write_behind_wake.get()
        {
            let _ = wake.try_send(());
        }
        Ok(phys)
    }

    /// Seals the current segment with the blank record and moves the writer to the next one.
    fn roll(&self, w: &mut LogWriter) -> Result<()> {
        let remaining = w.seg.remaining();
        if remaining >= BLANK_LEN {
            let mut blank = [0u8; BLANK_LEN];
            record::encode_blank(&mut blank, remaining as u32);
            w.seg.append(BLANK_LEN, |buf| buf.copy_from_slice(&blank));
            // The blank's TOTALSIZE covers the rest of the segment; publish all of it.
            w.seg.append(remaining - BLANK_LEN, |_| {});
            w.seg.publish();
        }
        let next_base = w.seg.segment().base() + self.segment_size;
        self.written.store(next_base, Ordering::Release);
        let seg = match w.preparer.as_mut().and_then(|p| p.take(next_base)) {
            // The preparer synced the directory already.
            Some(Ok(seg)) => self.set.push_durable(seg),
            // A failed preparation (say, a full disk) is retried here, once, inline.
            Some(Err(_)) | None => self.set.create_and_push(next_base)?,
        };
        w.seg = seg
            .into_writer()
            .ok_or_else(|| Error::InvalidConfig("commitlog writer already exists".into()))?;
        w.populated_to = 0;
        w.populate_ahead();
        Ok(())
    }

    /// The segments (a read-only store adds the ones the owning process created).
    pub(crate) fn segments(&self) -> &SegmentSet {
        &self.set
    }

    /// A read-only store found complete records up to `end` (the last stored at `store_ts`).
    pub(crate) fn advance_read_only(&self, end: u64, store_ts: u64) {
        self.last_store_ts.fetch_max(store_ts, Ordering::Relaxed);
        self.flushed_store_ts.fetch_max(store_ts, Ordering::Relaxed);
        self.flushed.fetch_max(end, Ordering::AcqRel);
        self.written.fetch_max(end, Ordering::AcqRel);
    }

    /// End of the appended data.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// End of the data known durable.
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Store time of the last record known durable.
    pub(crate) fn flushed_store_ts(&self) -> u64 {
        self.flushed_store_ts.load(Ordering::Relaxed)
    }

    /// Smallest offset still stored.
    pub(crate) fn min_offset(&self) -> u64 {
        self.set.first_base().unwrap_or_else(|| self.written())
    }

    /// Flushes what `scope` covers of the data appended so far and returns the new durable
    /// end. Concurrent callers are serialised; one that finds the work done returns at once.
    pub(crate) fn flush(&self, scope: FlushScope) -> Result<u64> {
        let _guard = self.flush_lock.lock();
        let ts = self.last_store_ts.load(Ordering::Relaxed);
        let target = self.set.flush_target(self.written(), scope);
        let from = self.flushed();
        if target <= from {
            return Ok(from);
        }
        self.set.flush_range(from, target)?;
        self.flushed_store_ts.store(ts, Ordering::Relaxed);
        self.flushed.store(target, Ordering::Release);
        Ok(target)
    }

    /// Has `wake` woken each time appends cross a [`WRITE_BEHIND_STEP`] boundary, for its
    /// receiver to call [`CommitLog::write_behind`] (only the first caller's is kept).
    pub(crate) fn wake_write_behind(&self, wake: Sender<()>) {
        let _ = self.write_behind_wake.set(wake);
    }

    /// Starts writing back, without waiting, what was appended up to a margin behind the
    /// writer and is neither flushed nor started yet. Nothing becomes durable here: only
    /// [`CommitLog::flush`] moves the durable end.
    pub(crate) fn write_behind(&self) -> Result<()> {
        let flushed = self.flushed();
        // Never past the segment holding the durable end. The pieces written back complete in
        // any order, and a power cut may keep a later one and lose an earlier one: within a
        // segment recovery reads that as a torn tail, but valid records at the start of a
        // later segment past a hole in an earlier one are its evidence of mid-log damage. So
        // a segment is written back only once the ones before it are durable (a flush writes
        // segments in order, waiting for each).
        let segment_end = self.set.base_of(flushed) + self.segment_size;
        let target = self
            .written()
            .saturating_sub(WRITE_BEHIND_MARGIN)
            .min(segment_end);
        self.set
            .write_behind(&self.written_back, flushed, target, 0)
    }

    /// Where [`CommitLog::write_behind`] has got to.
    #[cfg(test)]
    pub(crate) fn written_back(&self) -> u64 {
        self.written_back.get()
    }

    /// Flushes every segment's data, whatever the flush bookkeeping says (after recovery).
    pub(crate) fn sync_all(&self) -> Result<()> {
        for seg in self.set.mapped_snapshot() {
            seg.flush(0, seg.published())?;
        }
        Ok(())
    }

    /// The segment holding `offset`.
    pub(crate) fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        self.set.find(offset)
    }

    /// Decodes the record at `offset` (no CRC check: it was verified when written or
    /// recovered) and hands it to `f`. `limit` bounds what may be read (the visible end).
    pub(crate) fn with_record<T>(
        &self,
        offset: u64,
        limit: u64,
        f: impl FnOnce(&RecordView<'_>, &Segment) -> T,
    ) -> Result<T> {
        self.with_record_cached(&mut None, offset, limit, f)
    }

    /// [`CommitLog::with_record`] that keeps the last segment used in `cache`, so sequential
    /// reads look the segment list up once per segment.
    pub(crate) fn with_record_cached<T>(
        &self,
        cache: &mut Option<Arc<Segment>>,
        offset: u64,
        limit: u64,
        f: impl FnOnce(&RecordView<'_>, &Segment) -> T,
    ) -> Result<T> {
        let hit = cache
            .as_ref()
            .is_some_and(|s| s.base() <= offset && offset < s.base() + self.segment_size);
        if !hit {
            *cache = Some(
                self.segment_for(offset)
                    .ok_or(Error::MessageNotFound(offset))?,
            );
        }
        // An error built only when missing (`ok_or` made and dropped one per record read).
        let Some(seg) = cache.as_ref() else {
            return Err(Error::MessageNotFound(offset));
        };
        let pos = (offset - seg.base()) as usize;
        let visible = (limit.saturating_sub(seg.base())).min(self.segment_size) as usize;
        let bytes = seg.read_from(pos);
        let bytes = &bytes[..bytes.len().min(visible.saturating_sub(pos))];
        if bytes.is_empty() {
            return Err(Error::MessageNotFound(offset));
        }
        seg.prefetch(pos + PREFETCH_AHEAD, PREFETCH_LEN);
        // Reads verify CRCs too: damage that happened after recovery must not be served.
        match record::decode(bytes, true) {
            Ok(Decoded::Message(rec)) => Ok(f(&rec, seg)),
            Ok(Decoded::Blank { .. }) => Err(Error::MessageNotFound(offset)),
            Err(e) => Err(Error::corrupted(
                seg.path(),
                pos as u64,
                format!("record at commitlog offset {offset}: {e}"),
            )),
        }
    }

    /// One step of a sequential read (the index writer tailing the log): the record at
    /// `offset` if it lies below `limit` (handed to `f`, without a CRC check: what is read
    /// here was written by this process or checked by recovery), a blank record or a deleted
    /// segment to skip, or the end.
    pub(crate) fn step<T>(
        &self,
        cache: &mut Option<Arc<Segment>>,
        offset: u64,
        limit: u64,
        f: impl FnOnce(&RecordView<'_>) -> T,
    ) -> Result<Step<T>> {
        if offset >= limit {
            return Ok(Step::End);
        }
        let min = self.min_offset();
        if offset < min {
            return Ok(Step::Skip(min));
        }
        let hit = cache
            .as_ref()
            .is_some_and(|s| s.base() <= offset && offset < s.base() + self.segment_size);
        if !hit {
            match self.segment_for(offset) {
                Some(s) => *cache = Some(s),
                None => return Ok(Step::End),
            }
        }
        let Some(seg) = cache.as_ref() else {
            return Ok(Step::End);
        };
        let next_segment = seg.base() + self.segment_size;
        let pos = (offset - seg.base()) as usize;
        let visible = (limit.saturating_sub(seg.base())).min(self.segment_size) as usize;
        let bytes = seg.read_from(pos);
        let bytes = &bytes[..bytes.len().min(visible.saturating_sub(pos))];
        if bytes.is_empty() {
            return Ok(if limit >= next_segment {
                Step::Skip(next_segment)
            } else {
                Step::End
            });
        }
        match record::decode(bytes, false) {
            Ok(Decoded::Message(rec)) => {
                let next = offset + u64::from(rec.total_size);
                Ok(Step::Record(f(&rec), next))
            }
            Ok(Decoded::Blank { .. }) => Ok(Step::Skip(next_segment)),
            Err(e) => Err(Error::corrupted(
                seg.path(),
                pos as u64,
                format!("record at commitlog offset {offset}: {e}"),
            )),
        }
    }

    /// Deletes whole segments that end at or before `offset`, oldest first, never the last
    /// (active) one. Readers still holding a deleted segment keep its mapping until they drop
    /// it. Returns the new smallest offset.
    pub(crate) fn delete_before(&self, offset: u64) -> Result<u64> {
        let size = self.segment_size;
        self.set
            .delete_front_while(|s| Ok(s.base() + size <= offset))?;
        Ok(self.min_offset())
    }

    /// The segments, oldest first.
    pub(crate) fn segment_snapshot(&self) -> Vec<Arc<Segment>> {
        self.set.mapped_snapshot()
    }

    /// Deletes the oldest segment if `deletable` says so and it is not the last one (the
    /// one being written). Returns whether one was deleted.
    pub(crate) fn delete_oldest_if(&self, deletable: impl Fn(&Segment) -> bool) -> Result<bool> {
        let mut first = true;
        let n = self.set.delete_front_while(|s| {
            let go = first && deletable(s);
            first = false;
            Ok(go)
        })?;
        Ok(n > 0)
    }

    /// Deletes segment files after the one holding the writer (a segment prepared ahead but
    /// never used), so a closed store holds only what it wrote.
    pub(crate) fn remove_unused_segments(&self, writer_base: u64) -> Result<()> {
        self.set.remove_files_after(writer_base)
    }
}

impl LogWriter {
    fn lead(&self) -> usize {
        self.preparer.as_ref().map_or(0, |p| p.lead)
    }

    /// Keeps the prefault thread its lead ahead of the writer.
    fn populate_ahead(&mut self) {
        let size = self.seg.segment().size();
        let lead = self.lead();
        let Some(p) = &mut self.preparer else { return };
        while self.populated_to < size && self.populated_to < self.seg.pos() + lead {
            let to = (self.populated_to + preparer::POPULATE_CHUNK).min(size);
            p.populate(self.seg.segment(), self.populated_to, to);
            self.populated_to = to;
        }
    }

    fn request_next(&mut self, segment_size: u64) {
        let next = self.seg.segment().base() + segment_size;
        if let Some(p) = &mut self.preparer {
            p.request(next);
        }
    }

    /// Zero-fills (and flushes) the first `len` bytes from the writer's position, before any
    /// append.
    pub(crate) fn zero_start(&self, len: usize) -> Result<()> {
        let pos = self.seg.pos();
        self.seg
            .segment()
            .zero_ahead(pos, pos + len, 0, ZeroAhead::Durable)
            .map(|_| ())
    }

    /// Start offset of the segment being written.
    pub(crate) fn segment_base(&self) -> u64 {
        self.seg.segment().base()
    }

    /// Stops the preparer thread, waiting for a preparation in progress.
    pub(crate) fn stop_preparer(&mut self) {
        if let Some(p) = self.preparer.take() {
            p.stop();
        }
    }
}
