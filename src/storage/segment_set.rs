//! An ordered set of equally sized segment files in one directory, named by the absolute
//! offset of their first byte (RocketMQ's `MappedFileQueue`): the CommitLog and every consume
//! queue are one. Finds a segment by offset, adds the next one (its directory entry made
//! durable first), flushes a range, and deletes from the front.
//!
//! A set may hold files it has not mapped yet ([`SegmentSet::with_files`]): a consume queue's
//! older files are mapped on first use, so opening a store with many of them does not map
//! (and closing it unmap) files nobody reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use super::fs::{Fs, segment_name};
use super::mmap::Segment;
use crate::error::Result;

/// The page size flushes are rounded to.
pub(crate) const PAGE_SIZE: u64 = 4096;

/// How much of the appended data a flush covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushScope {
    /// Everything appended.
    All,
    /// Up to the last full page of the segment being written: the page the writer is still
    /// filling stays dirty, so the writer never waits for it to be written out (a page under
    /// writeback cannot be modified). Periodic flushes use this.
    WholePages,
}

/// One file of a set: mapped from the start, or on first use.
#[derive(Debug)]
struct Slot {
    base: u64,
    seg: OnceLock<Arc<Segment>>,
}

impl Slot {
    fn mapped(seg: Arc<Segment>) -> Arc<Slot> {
        Arc::new(Slot {
            base: seg.base(),
            seg: OnceLock::from(seg),
        })
    }
}

fn slots(files: Vec<(u64, Option<Arc<Segment>>)>) -> Vec<Arc<Slot>> {
    files
        .into_iter()
        .map(|(base, seg)| match seg {
            Some(seg) => Slot::mapped(seg),
            None => Arc::new(Slot {
                base,
                seg: OnceLock::new(),
            }),
        })
        .collect()
}

/// The segments of one directory, oldest first, contiguous.
#[derive(Debug)]
pub(crate) struct SegmentSet {
    fs: Fs,
    dir: PathBuf,
    segment_size: u64,
    segments: RwLock<Vec<Arc<Slot>>>,
}

/// Where [`SegmentSet::write_behind`] has got to for one set (an absolute offset).
#[derive(Debug, Default)]
pub(crate) struct WriteBehindMark(AtomicU64);

impl WriteBehindMark {
    pub(crate) fn new(at: u64) -> WriteBehindMark {
        WriteBehindMark(AtomicU64::new(at))
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl SegmentSet {
    /// Wraps segments already loaded (recovered) from `dir`.
    pub(crate) fn new(fs: Fs, dir: PathBuf, segment_size: u64, segs: Vec<Segment>) -> SegmentSet {
        let files = segs.into_iter().map(|s| (s.base(), Some(Arc::new(s))));
        SegmentSet::with_files(fs, dir, segment_size, files.collect())
    }

    /// Wraps the files of `dir` at the given bases (ascending, contiguous), each with its
    /// segment if mapped already, else mapped on first use. A file left unmapped must be
    /// complete and never written again: mapped on use, all its bytes are published.
    pub(crate) fn with_files(
        fs: Fs,
        dir: PathBuf,
        segment_size: u64,
        files: Vec<(u64, Option<Arc<Segment>>)>,
    ) -> SegmentSet {
        SegmentSet {
            fs,
            dir,
            segment_size,
            segments: RwLock::new(slots(files)),
        }
    }

    /// The segment of `slot`, mapping its file if that was not done yet.
    fn segment(&self, slot: &Slot) -> Result<Arc<Segment>> {
        if let Some(seg) = slot.seg.get() {
            return Ok(seg.clone());
        }
        let path = self.dir.join(segment_name(slot.base));
        let seg = Arc::new(self.fs.open_segment(&path, slot.base, self.segment_size)?);
        // Two threads may map it at once: the first one's mapping is kept.
        Ok(slot.seg.get_or_init(|| seg).clone())
    }

    /// [`SegmentSet::segment`], for callers that cannot return an error: a file that cannot be
    /// mapped (no memory, too many mappings) is logged and reads as missing.
    fn segment_or_log(&self, slot: &Slot) -> Option<Arc<Segment>> {
        self.segment(slot)
            .inspect_err(|e| ::log::error!("cannot map a segment to read it: {e}"))
            .ok()
    }

    pub(crate) fn fs(&self) -> &Fs {
        &self.fs
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn segment_size(&self) -> u64 {
        self.segment_size
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.read().is_empty()
    }

    /// Replaces the files (recovery, before the set is shared): as for
    /// [`SegmentSet::with_files`].
    pub(crate) fn replace(&mut self, files: Vec<(u64, Option<Arc<Segment>>)>) {
        *self.segments.get_mut() = slots(files);
    }

    /// Takes the files out (recovery, before the set is shared), each with its segment if
    /// it was mapped.
    pub(crate) fn take(&mut self) -> Vec<(u64, Option<Arc<Segment>>)> {
        std::mem::take(self.segments.get_mut())
            .into_iter()
            .map(|slot| (slot.base, slot.seg.get().cloned()))
            .collect()
    }

    /// How many files the set holds.
    pub(crate) fn len(&self) -> usize {
        self.segments.read().len()
    }

    /// Base of the first segment.
    pub(crate) fn first_base(&self) -> Option<u64> {
        self.segments.read().first().map(|s| s.base)
    }

    /// Base of the last segment.
    pub(crate) fn last_base(&self) -> Option<u64> {
        self.segments.read().last().map(|s| s.base)
    }

    pub(crate) fn last(&self) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        self.segment_or_log(segs.last()?)
    }

    /// All segments, oldest first, mapping those not mapped yet.
    pub(crate) fn snapshot(&self) -> Result<Vec<Arc<Segment>>> {
        // Mapped under the lock: a file is not deleted while it is being mapped.
        let segs = self.segments.read();
        segs.iter().map(|s| self.segment(s)).collect()
    }

    /// The segments mapped so far, oldest first: all of them in a set that has no unmapped
    /// files (the CommitLog's). Nothing was written to a file not mapped.
    pub(crate) fn mapped_snapshot(&self) -> Vec<Arc<Segment>> {
        let slots = self.segments.read();
        slots.iter().filter_map(|s| s.seg.get().cloned()).collect()
    }

    /// The segment holding absolute offset `offset`, mapped on first use (a file that cannot
    /// be mapped is logged and reads as missing: see [`SegmentSet::try_find`]).
    pub(crate) fn find(&self, offset: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        self.segment_or_log(self.find_slot(&segs, offset)?)
    }

    /// The segment holding absolute offset `offset`, mapped on first use.
    pub(crate) fn try_find(&self, offset: u64) -> Result<Option<Arc<Segment>>> {
        // Mapped under the lock: a file is not deleted while it is being mapped.
        let segs = self.segments.read();
        match self.find_slot(&segs, offset) {
            Some(slot) => self.segment(slot).map(Some),
            None => Ok(None),
        }
    }

    fn find_slot<'a>(&self, segs: &'a [Arc<Slot>], offset: u64) -> Option<&'a Arc<Slot>> {
        let first = segs.first()?.base;
        if offset < first {
            return None;
        }
        segs.get(((offset - first) / self.segment_size) as usize)
            .filter(|s| s.base <= offset && offset < s.base + self.segment_size)
    }

    /// Base of the segment that holds (or would hold) `offset`, given the first segment.
    pub(crate) fn base_of(&self, offset: u64) -> u64 {
        let first = self.first_base().unwrap_or(0);
        if offset < first {
            return offset - offset % self.segment_size;
        }
        first + (offset - first) / self.segment_size * self.segment_size
    }

    /// Creates the segment file starting at `base` (not yet part of the set).
    pub(crate) fn create(&self, base: u64) -> Result<Segment> {
        self.fs
            .create_segment(&self.dir.join(segment_name(base)), base, self.segment_size)
    }

    /// Makes `seg`'s directory entry durable and appends it to the set.
    pub(crate) fn push(&self, seg: Segment) -> Result<Arc<Segment>> {
        self.fs.sync_dir(&self.dir)?;
        let seg = Arc::new(seg);
        self.segments.write().push(Slot::mapped(seg.clone()));
        Ok(seg)
    }

    /// Appends `seg`, whose directory entry was made durable by whoever created it.
    pub(crate) fn push_durable(&self, seg: Segment) -> Arc<Segment> {
        let seg = Arc::new(seg);
        self.segments.write().push(Slot::mapped(seg.clone()));
        seg
    }

    /// Creates the segment at `base` and appends it. Should making its directory entry
    /// durable fail, the new (empty) file is removed again, so a later attempt can create it
    /// afresh instead of finding a file that is not part of the set.
    pub(crate) fn create_and_push(&self, base: u64) -> Result<Arc<Segment>> {
        let seg = self.create(base)?;
        let path = seg.path().to_path_buf();
        self.push(seg).inspect_err(|_| {
            let _ = self.fs.remove_file_if_exists(&path);
        })
    }

    /// The end a flush of data written up to `written` covers under `scope`.
    pub(crate) fn flush_target(&self, written: u64, scope: FlushScope) -> u64 {
        match scope {
            FlushScope::All => written,
            FlushScope::WholePages => {
                let base = self.base_of(written);
                base + ((written - base) & !(PAGE_SIZE - 1))
            }
        }
    }

    /// Flushes the bytes `[from, to)` (absolute offsets) of the segments holding them.
    pub(crate) fn flush_range(&self, from: u64, to: u64) -> Result<()> {
        self.each_mapped_in(from, to, |s, start, end| s.flush(start, end))
    }

    /// Starts writing the bytes `[from, to)` (absolute offsets) back to disk without waiting
    /// ([`Segment::start_write_back`]); [`SegmentSet::flush_range`] still makes them durable.
    pub(crate) fn start_write_back(&self, from: u64, to: u64) -> Result<()> {
        self.each_mapped_in(from, to, |s, start, end| s.start_write_back(start, end))
    }

    /// Starts writing back, without waiting, the whole pages below `target` (absolute) that
    /// neither a flush (`flushed`) nor an earlier call through `mark` covered, if they are at
    /// least `least` bytes, and moves `mark` to the end. Makes nothing durable.
    pub(crate) fn write_behind(
        &self,
        mark: &WriteBehindMark,
        flushed: u64,
        target: u64,
        least: u64,
    ) -> Result<()> {
        let target = target & !(PAGE_SIZE - 1);
        let from = mark.get().max(flushed);
        if target <= from || target - from < least {
            return Ok(());
        }
        self.start_write_back(from, target)?;
        mark.0.store(target, Ordering::Relaxed);
        Ok(())
    }

    /// Calls `f` with each mapped segment holding bytes of `[from, to)` (absolute offsets)
    /// and that part of it (relative offsets), in order.
    fn each_mapped_in(
        &self,
        from: u64,
        to: u64,
        mut f: impl FnMut(&Segment, usize, usize) -> Result<()>,
    ) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        // A file not mapped was never written through this set: nothing of it to write.
        let segs: Vec<Arc<Segment>> = self
            .segments
            .read()
            .iter()
            .filter(|s| s.base + self.segment_size > from && s.base < to)
            .filter_map(|s| s.seg.get().cloned())
            .collect();
        for s in segs {
            let start = from.saturating_sub(s.base()) as usize;
            let end = (to - s.base()).min(self.segment_size) as usize;
            f(&s, start, end)?;
        }
        Ok(())
    }

    /// Removes segments from the front while `deletable` says so, never the last one, and
    /// deletes their files (directory synced). Readers holding a removed segment keep its
    /// mapping until they drop it. Returns how many were removed.
    pub(crate) fn delete_front_while(
        &self,
        mut deletable: impl FnMut(&Segment) -> Result<bool>,
    ) -> Result<usize> {
        let mut removed = Vec::new();
        let result = {
            let mut segs = self.segments.write();
            loop {
                if segs.len() <= 1 {
                    break Ok(());
                }
                match self.segment(&segs[0]).and_then(|s| deletable(&s)) {
                    Ok(true) => removed.push(segs.remove(0)),
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        for slot in &removed {
            self.fs
                .remove_file_if_exists(&self.dir.join(segment_name(slot.base)))?;
        }
        if !removed.is_empty() {
            self.fs.sync_dir(&self.dir)?;
        }
        result.map(|()| removed.len())
    }

    /// Removes the last segment if `unused` says so and it is not the only one, and deletes
    /// its file (directory synced).
    pub(crate) fn remove_last_if(&self, unused: impl FnOnce(&Segment) -> bool) -> Result<()> {
        let removed = {
            let mut segs = self.segments.write();
            let last = match segs.last() {
                Some(last) if segs.len() > 1 => self.segment(last)?,
                _ => return Ok(()),
            };
            if unused(&last) { segs.pop() } else { None }
        };
        if let Some(slot) = removed {
            self.fs
                .remove_file_if_exists(&self.dir.join(segment_name(slot.base)))?;
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes the files in the directory that start after `base` but are not in the set (a
    /// segment prepared ahead and never used).
    pub(crate) fn remove_files_after(&self, base: u64) -> Result<()> {
        let mut any = false;
        for (b, path) in self.fs.list_segments(&self.dir)? {
            if b > base {
                self.fs.remove_file_if_exists(&path)?;
                any = true;
            }
        }
        if any {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Recovery's "truncate after" on segments not yet shared: removes the trailing segments
/// that start at or after `from` (keeping at least `keep` of them) and deletes their files,
/// syncing `dir` if any went.
pub(crate) fn remove_trailing(
    fs: &Fs,
    dir: &Path,
    segs: &mut Vec<Segment>,
    from: u64,
    keep: usize,
) -> Result<()> {
    let mut removed = false;
    while segs.len() > keep {
        match segs.pop() {
            Some(s) if s.base() >= from => {
                let path = s.path().to_path_buf();
                drop(s);
                fs.remove_file_if_exists(&path)?;
                removed = true;
            }
            Some(s) => {
                segs.push(s);
                break;
            }
            None => break,
        }
    }
    if removed {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// The segment of a contiguous, sorted slice holding `offset`.
pub(crate) fn find_in<S: std::borrow::Borrow<Segment>>(
    segs: &[S],
    segment_size: u64,
    offset: u64,
) -> Option<&S> {
    let first = segs.first()?.borrow().base();
    if offset < first {
        return None;
    }
    segs.get(((offset - first) / segment_size) as usize)
        .filter(|s| {
            let s: &Segment = (*s).borrow();
            s.base() <= offset && offset < s.base() + segment_size
        })
}
