//! An ordered set of equally sized segment files in one directory, named by the absolute
//! offset of their first byte (RocketMQ's `MappedFileQueue`): the CommitLog and every consume
//! queue are one. Finds a segment by offset, adds the next one (its directory entry made
//! durable first), flushes a range, and deletes from the front.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The segments of one directory, oldest first, contiguous.
#[derive(Debug)]
pub(crate) struct SegmentSet {
    fs: Fs,
    dir: PathBuf,
    segment_size: u64,
    segments: RwLock<Vec<Arc<Segment>>>,
}

impl SegmentSet {
    /// Wraps segments already loaded (recovered) from `dir`.
    pub(crate) fn new(fs: Fs, dir: PathBuf, segment_size: u64, segs: Vec<Segment>) -> SegmentSet {
        SegmentSet {
            fs,
            dir,
            segment_size,
            segments: RwLock::new(segs.into_iter().map(Arc::new).collect()),
        }
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

    /// Replaces the segments (recovery, before the set is shared).
    pub(crate) fn replace(&mut self, segs: Vec<Arc<Segment>>) {
        *self.segments.get_mut() = segs;
    }

    /// Takes the segments out (recovery, before the set is shared).
    pub(crate) fn take(&mut self) -> Vec<Arc<Segment>> {
        std::mem::take(self.segments.get_mut())
    }

    /// Base of the first segment.
    pub(crate) fn first_base(&self) -> Option<u64> {
        self.segments.read().first().map(|s| s.base())
    }

    pub(crate) fn last(&self) -> Option<Arc<Segment>> {
        self.segments.read().last().cloned()
    }

    /// All segments, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments.read().clone()
    }

    /// The segment holding absolute offset `offset`.
    pub(crate) fn find(&self, offset: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        find_in(&segs, self.segment_size, offset).cloned()
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
        self.segments.write().push(seg.clone());
        Ok(seg)
    }

    /// Appends `seg`, whose directory entry was made durable by whoever created it.
    pub(crate) fn push_durable(&self, seg: Segment) -> Arc<Segment> {
        let seg = Arc::new(seg);
        self.segments.write().push(seg.clone());
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
        if to <= from {
            return Ok(());
        }
        let segs: Vec<Arc<Segment>> = self
            .segments
            .read()
            .iter()
            .filter(|s| s.base() + self.segment_size > from && s.base() < to)
            .cloned()
            .collect();
        for s in segs {
            let start = from.saturating_sub(s.base()) as usize;
            let end = (to - s.base()).min(self.segment_size) as usize;
            s.flush(start, end)?;
        }
        Ok(())
    }

    /// Removes segments from the front while `deletable` says so, never the last one, and
    /// deletes their files (directory synced). Readers holding a removed segment keep its
    /// mapping until they drop it. Returns how many were removed.
    pub(crate) fn delete_front_while(
        &self,
        mut deletable: impl FnMut(&Segment) -> bool,
    ) -> Result<usize> {
        let mut removed = Vec::new();
        {
            let mut segs = self.segments.write();
            while segs.len() > 1 && deletable(&segs[0]) {
                removed.push(segs.remove(0));
            }
        }
        for seg in &removed {
            self.fs.remove_file_if_exists(seg.path())?;
        }
        if !removed.is_empty() {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(removed.len())
    }

    /// Removes the last segment if `unused` says so and it is not the only one, and deletes
    /// its file (directory synced).
    pub(crate) fn remove_last_if(&self, unused: impl FnOnce(&Segment) -> bool) -> Result<()> {
        let removed = {
            let mut segs = self.segments.write();
            match segs.last() {
                Some(last) if segs.len() > 1 && unused(last) => segs.pop(),
                _ => None,
            }
        };
        if let Some(seg) = removed {
            self.fs.remove_file_if_exists(seg.path())?;
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
