//! The CommitLog: every record of every topic, appended by a single writer into fixed-size
//! segments named by their start offset. A record never straddles segments: one that does not
//! fit gets the 8-byte blank record and moves whole to the next segment.

mod preparer;
pub(crate) mod recovery;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::record::{self, BLANK_LEN, Decoded, RecordView};
use crate::storage::fs::{segment_name, sync_dir};
use crate::storage::{Segment, SegmentWriter};

pub(crate) use preparer::Preparer;

/// The shared, read side of the CommitLog plus its flush bookkeeping. The write side is a
/// [`LogWriter`], owned by whoever serialises appends.
#[derive(Debug)]
pub(crate) struct CommitLog {
    dir: PathBuf,
    segment_size: u64,
    segments: RwLock<Vec<Arc<Segment>>>,
    /// End of the appended data.
    written: AtomicU64,
    /// End of the data known durable.
    flushed: AtomicU64,
    /// Store time of the last appended record.
    last_store_ts: AtomicU64,
    /// Store time of the last record known durable.
    flushed_store_ts: AtomicU64,
    flush_lock: Mutex<()>,
}

const PAGE: u64 = 4096;

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
        dir: PathBuf,
        segment_size: u64,
        segments: Vec<Segment>,
        end: u64,
        last_store_ts: u64,
    ) -> CommitLog {
        CommitLog {
            dir,
            segment_size,
            segments: RwLock::new(segments.into_iter().map(Arc::new).collect()),
            written: AtomicU64::new(end),
            flushed: AtomicU64::new(end),
            last_store_ts: AtomicU64::new(last_store_ts),
            flushed_store_ts: AtomicU64::new(last_store_ts),
            flush_lock: Mutex::new(()),
        }
    }

    /// Creates the writer at the end of the log, creating the first (or next) segment when the
    /// log is empty or its last segment is full.
    pub(crate) fn writer(&self, preparer: Option<Preparer>) -> Result<LogWriter> {
        let last = self.segments.read().last().cloned();
        let seg = match last {
            Some(seg) if (seg.published() as u64) < self.segment_size => seg,
            other => {
                let base = other.map_or(self.written.load(Ordering::Acquire), |s| {
                    s.base() + self.segment_size
                });
                self.add_segment(Segment::create(
                    &self.dir.join(segment_name(base)),
                    base,
                    self.segment_size,
                )?)?
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
        w.populated_to = w.seg.pos();
        w.populate_ahead();
        Ok(w)
    }

    fn add_segment(&self, seg: Segment) -> Result<Arc<Segment>> {
        sync_dir(&self.dir)?;
        let seg = Arc::new(seg);
        self.segments.write().push(seg.clone());
        Ok(seg)
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
        self.written.store(phys + len as u64, Ordering::Release);
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
            Some(Ok(seg)) => seg,
            // A failed preparation (say, a full disk) is retried here, once, inline.
            Some(Err(_)) | None => Segment::create(
                &self.dir.join(segment_name(next_base)),
                next_base,
                self.segment_size,
            )?,
        };
        let seg = self.add_segment(seg)?;
        w.seg = seg
            .into_writer()
            .ok_or_else(|| Error::InvalidConfig("commitlog writer already exists".into()))?;
        w.populated_to = 0;
        w.populate_ahead();
        Ok(())
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
        self.segments
            .read()
            .first()
            .map_or(self.written(), |s| s.base())
    }

    /// Flushes everything appended so far and returns the new durable end; with
    /// `whole_pages`, only up to the last full page: the page the writer is still filling
    /// stays dirty, so the writer never waits for it to be written out (a page under
    /// writeback cannot be modified). Periodic flushes use that. Concurrent callers are
    /// serialised; one that finds the work done returns at once.
    pub(crate) fn flush_upto(&self, whole_pages: bool) -> Result<u64> {
        let _guard = self.flush_lock.lock();
        let ts = self.last_store_ts.load(Ordering::Relaxed);
        let mut target = self.written();
        if whole_pages {
            let first = self.segments.read().first().map_or(0, |s| s.base());
            let base =
                first + (target.saturating_sub(first) / self.segment_size) * self.segment_size;
            target = base + ((target - base) & !(PAGE - 1));
        }
        let from = self.flushed();
        if target <= from {
            return Ok(from);
        }
        let segments: Vec<Arc<Segment>> = {
            let segs = self.segments.read();
            segs.iter()
                .filter(|s| s.base() + self.segment_size > from && s.base() < target)
                .cloned()
                .collect()
        };
        for seg in segments {
            let start = from.saturating_sub(seg.base()) as usize;
            let end = (target - seg.base()).min(self.segment_size) as usize;
            seg.flush(start, end)?;
        }
        self.flushed_store_ts.store(ts, Ordering::Relaxed);
        self.flushed.store(target, Ordering::Release);
        Ok(target)
    }

    /// Flushes every segment's data, whatever the flush bookkeeping says (after recovery).
    pub(crate) fn sync_all(&self) -> Result<()> {
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        for seg in segs {
            seg.flush(0, seg.published())?;
        }
        Ok(())
    }

    /// The segment holding `offset`.
    pub(crate) fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        let first = segs.first()?.base();
        if offset < first {
            return None;
        }
        let idx = ((offset - first) / self.segment_size) as usize;
        segs.get(idx).filter(|s| s.base() <= offset).cloned()
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
        let seg = cache.as_ref().ok_or(Error::MessageNotFound(offset))?;
        let pos = (offset - seg.base()) as usize;
        let visible = (limit.saturating_sub(seg.base())).min(self.segment_size) as usize;
        let bytes = seg.read_from(pos);
        let bytes = &bytes[..bytes.len().min(visible.saturating_sub(pos))];
        if bytes.is_empty() {
            return Err(Error::MessageNotFound(offset));
        }
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

    /// Deletes whole segments that end at or before `offset`, oldest first, never the last
    /// (active) one. Readers still holding a deleted segment keep its mapping until they drop
    /// it. Returns the new smallest offset.
    pub(crate) fn delete_before(&self, offset: u64) -> Result<u64> {
        let mut removed = Vec::new();
        {
            let mut segs = self.segments.write();
            while segs.len() > 1 && segs[0].base() + self.segment_size <= offset {
                removed.push(segs.remove(0));
            }
        }
        for seg in &removed {
            crate::storage::fs::remove_file_if_exists(seg.path())?;
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(self.min_offset())
    }

    /// Deletes segment files after the one holding the writer (a segment prepared ahead but
    /// never used), so a closed store holds only what it wrote.
    pub(crate) fn remove_unused_segments(&self, writer_base: u64) -> Result<()> {
        for (base, path) in crate::storage::fs::list_segments(&self.dir)? {
            if base > writer_base {
                crate::storage::fs::remove_file_if_exists(&path)?;
            }
        }
        sync_dir(&self.dir)
    }
}

impl LogWriter {
    fn lead(&self) -> usize {
        self.preparer.as_ref().map_or(0, |p| p.lead)
    }

    /// Keeps the prefault thread its lead ahead of the writer.
    fn populate_ahead(&mut self) {
        let size = self.seg.segment().size();
        let Some(p) = &self.preparer else { return };
        while self.populated_to < size && self.populated_to < self.seg.pos() + self.lead() {
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
        self.seg.segment().zero_ahead(pos, pos + len, 0).map(|_| ())
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
