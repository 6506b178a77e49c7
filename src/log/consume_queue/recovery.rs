//! Loading a consume queue at open: structural checks, finding its end without a full scan,
//! validating the tail against the CommitLog, and trimming units past the log's end.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ConsumeQueue, UNIT};
use std::io::ErrorKind;

use crate::error::{Error, Result};
use crate::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use crate::storage::segment_set::remove_trailing;
use crate::storage::{Fs, Segment};

/// How many damaged units at the tail recovery trims before it gives up and rebuilds the queue.
const MAX_TAIL_TRIM: u64 = 4096;

/// What loading found.
pub(crate) enum Loaded {
    /// The queue, ready (possibly empty).
    Ready(ConsumeQueue),
    /// The queue, with damaged units cut from its tail: it lags the CommitLog and must be
    /// re-dispatched from its end.
    Trimmed(ConsumeQueue),
    /// The files were damaged beyond trimming and have been removed; the queue must be
    /// rebuilt from the CommitLog. Holds the (now empty) queue.
    Rebuild(ConsumeQueue),
    /// After a clean close (`trim` off): the last units do not match the log, and nothing was
    /// changed. Either the units or the records they reference are damaged; the caller checks
    /// the log between `kept_end` (where the last matching unit's record ends, 0 if none)
    /// and `claimed_end` (where the last unit says its record ends).
    Suspect { kept_end: u64, claimed_end: u64 },
}

fn read_unit(segs: &[Segment], file_size: u64, offset: u64) -> Option<CqUnit> {
    let byte = offset * UNIT;
    let seg = crate::storage::segment_set::find_in(segs, file_size, byte)?;
    let bytes = seg.read((byte - seg.base()) as usize, CQ_UNIT_SIZE)?;
    CqUnit::decode(bytes).ok().flatten()
}

fn is_zero_unit(seg: &Segment, idx: usize) -> bool {
    seg.read(idx * CQ_UNIT_SIZE, CQ_UNIT_SIZE)
        .is_none_or(|b| b.iter().all(|&x| x == 0))
}

/// How many files at the end of a queue an unclean open scans unit by unit for holes
/// (RocketMQ's consume queue recovery also re-reads the last three files).
const HOLE_SCAN_FILES: usize = 3;

/// Loads the queue in `dir`. `verify(queue_offset, unit)` says whether a unit points at the
/// matching CommitLog record; `log_min` is the CommitLog's smallest offset. After an unclean
/// shutdown (`unclean`), the last files are also scanned for a zero unit before the end: a
/// power cut can keep a later page of units and lose an earlier one, and the queue then ends
/// at the hole (the records past it are re-dispatched from the CommitLog). Without `trim`,
/// a tail that would be trimmed is reported as [`Loaded::Suspect`] and nothing is changed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn load(
    fs: &Fs,
    dir: &Path,
    topic: Arc<str>,
    queue_id: u32,
    file_size: u64,
    log_min: u64,
    unclean: bool,
    trim: bool,
    verify: &dyn Fn(u64, &CqUnit) -> bool,
) -> Result<Loaded> {
    let files = fs.list_segments(dir)?;
    let rebuild = |files: &[(u64, std::path::PathBuf)], topic: Arc<str>| -> Result<Loaded> {
        for (_, p) in files {
            fs.remove_file_if_exists(p)?;
        }
        fs.sync_dir(dir)?;
        Ok(Loaded::Rebuild(ConsumeQueue::empty(
            fs.clone(),
            topic,
            queue_id,
            dir.to_path_buf(),
            file_size,
        )))
    };
    if files.is_empty() {
        return Ok(Loaded::Ready(ConsumeQueue::empty(
            fs.clone(),
            topic,
            queue_id,
            dir.to_path_buf(),
            file_size,
        )));
    }
    // Structure: aligned, contiguous, full-size files.
    let mut segs = Vec::with_capacity(files.len());
    for (i, (base, path)) in files.iter().enumerate() {
        let aligned = base % file_size == 0;
        let contiguous = i == 0 || *base == files[i - 1].0 + file_size;
        if !(aligned && contiguous) {
            return rebuild(&files, topic);
        }
        match fs.open_segment(path, *base, file_size) {
            Ok(s) => segs.push(s),
            // A file of the wrong size or an empty one (its creation was cut short): damage
            // the log can repair.
            Err(Error::Corrupted { .. }) => return rebuild(&files, topic),
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::InvalidData => {
                return rebuild(&files, topic);
            }
            // Anything else (EACCES, ENOMEM, too many mappings) is not damage: the files
            // stay, and the open fails saying why.
            Err(e) => return Err(e),
        }
    }
    // A file created ahead of the writer and never written to holds nothing: units are written
    // in order, so its first unit is zero. (A crash can also leave a written file whose first
    // page was lost; what follows that hole is dropped below anyway, and every unit is
    // re-dispatched from the CommitLog.) The queue ends in the file before it.
    while segs.len() > 1 && segs.last().is_some_and(|s| is_zero_unit(s, 0)) {
        if let Some(unused) = segs.pop() {
            ::log::debug!(
                "{}: removing a consume queue file that holds no unit (created ahead)",
                unused.path().display()
            );
            // The directory is not synced for this: should the removal be lost, the next
            // open finds the file again and removes it again, and creating the next file
            // (ahead of the writer) syncs the directory anyway.
            fs.remove_file_if_exists(unused.path())?;
        }
    }
    let units_per_file = (file_size / UNIT) as usize;
    // End of data in the last file: units are written in order, so the used part is a prefix
    // of non-zero units followed by zeros; binary search for the first zero unit.
    let last = segs.last().expect("non-empty");
    let (mut lo, mut hi) = (0usize, units_per_file);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if is_zero_unit(last, mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let first_base = segs[0].base();
    let mut max = last.base() / UNIT + lo as u64;
    let old_end_bytes = max * UNIT;
    if unclean {
        let from = segs[segs.len().saturating_sub(HOLE_SCAN_FILES)].base() / UNIT;
        if let Some(hole) = (from..max).find(|&off| {
            crate::storage::segment_set::find_in(&segs, file_size, off * UNIT)
                .is_none_or(|s| is_zero_unit(s, ((off * UNIT - s.base()) / UNIT) as usize))
        }) {
            max = hole;
        }
    }
    // Min offset: skip pre-blank units, then units below the CommitLog minimum.
    let mut min = first_base / UNIT;
    while min < max {
        match read_unit(&segs, file_size, min) {
            Some(u) if u == CqUnit::PRE_BLANK => min += 1,
            _ => break,
        }
    }
    let (mut lo, mut hi) = (min, max);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match read_unit(&segs, file_size, mid) {
            Some(u) if u.physical_offset < log_min => lo = mid + 1,
            _ => hi = mid,
        }
    }
    min = lo;
    // Every file's first live unit must point at its record; a randomised or foreign file
    // fails this with overwhelming probability.
    for seg in &segs {
        let off = (seg.base() / UNIT).max(min);
        if off < max && off < (seg.base() + file_size) / UNIT {
            match read_unit(&segs, file_size, off) {
                Some(u) if verify(off, &u) => {}
                _ => return rebuild(&files, topic),
            }
        }
    }
    let claimed_end = if max > min {
        read_unit(&segs, file_size, max - 1).map_or(0, |u| u.physical_offset + u64::from(u.size))
    } else {
        0
    };
    // Trim the tail back to the last unit that points at its record.
    let mut trimmed = 0;
    while max > min {
        match read_unit(&segs, file_size, max - 1) {
            Some(u) if verify(max - 1, &u) => break,
            _ => {
                max -= 1;
                trimmed += 1;
                if trimmed > MAX_TAIL_TRIM {
                    if !trim {
                        return Ok(Loaded::Suspect {
                            kept_end: 0,
                            claimed_end,
                        });
                    }
                    return rebuild(&files, topic);
                }
            }
        }
    }
    let max_phys_end = if max > min {
        read_unit(&segs, file_size, max - 1).map_or(0, |u| u.physical_offset + u64::from(u.size))
    } else {
        0
    };
    if trimmed > 0 && !trim {
        return Ok(Loaded::Suspect {
            kept_end: max_phys_end,
            claimed_end,
        });
    }
    let mut cq = ConsumeQueue::empty(fs.clone(), topic, queue_id, dir.to_path_buf(), file_size);
    cq.set_bounds(min, max, max_phys_end);
    cq.install(segs, old_end_bytes)?;
    Ok(if trimmed > 0 || max < old_end_bytes / UNIT {
        Loaded::Trimmed(cq)
    } else {
        Loaded::Ready(cq)
    })
}

impl ConsumeQueue {
    /// Installs loaded segments: zeroes units past the max offset (up to `old_end_bytes`, the
    /// end of what was found on disk), drops files past it and creates the writer.
    fn install(&mut self, mut segs: Vec<Segment>, old_end_bytes: u64) -> Result<()> {
        let end = self.max_offset() * UNIT;
        // Files that start at or past the end hold nothing valid (keep the first file).
        let dir = self.set.dir().to_path_buf();
        remove_trailing(self.set.fs(), &dir, &mut segs, end, 1)?;
        for s in segs.iter_mut() {
            let rel_end = end.saturating_sub(s.base()).min(self.file_size) as usize;
            let rel_old = old_end_bytes.saturating_sub(s.base()).min(self.file_size) as usize;
            if rel_old > rel_end {
                s.zero(rel_end, rel_old)?;
            }
            s.set_published(rel_end);
            s.reclaim_writer();
        }
        let segments: Vec<Arc<Segment>> = segs.into_iter().map(Arc::new).collect();
        *self.writer.get_mut() = segments
            .last()
            .filter(|s| (s.published() as u64) < self.file_size)
            .and_then(|s| s.clone().into_writer());
        *self.capacity_end.get_mut() = segments.last().map_or(0, |s| s.base() + self.file_size);
        self.set.replace(segments);
        self.flushed.store(end, Ordering::Release);
        Ok(())
    }

    /// Drops units whose record ends past `log_end` (the CommitLog was truncated there).
    pub(crate) fn truncate_past(&mut self, log_end: u64) -> Result<()> {
        let mut max = self.max_offset();
        let min = self.min_offset();
        let old_max = max;
        while max > min {
            match self.get_unit_exclusive(max - 1) {
                Some(u) if u.physical_offset + u64::from(u.size) <= log_end => break,
                _ => max -= 1,
            }
        }
        if max == old_max {
            return Ok(());
        }
        *self.writer.get_mut() = None;
        let mut segs = Vec::new();
        for s in self.set.take() {
            let path = s.path().to_path_buf();
            segs.push(Arc::try_unwrap(s).map_err(|_| {
                crate::error::Error::InvalidConfig(format!(
                    "consume queue file {} still in use during recovery",
                    path.display()
                ))
            })?);
        }
        let max_phys_end = if max > min {
            self.get_unit_in(&segs, max - 1)
                .map_or(0, |u| u.physical_offset + u64::from(u.size))
        } else {
            0
        };
        self.set_bounds(min, max, max_phys_end);
        self.install(segs, old_max * UNIT)
    }

    fn get_unit_exclusive(&self, offset: u64) -> Option<CqUnit> {
        self.get(offset)
    }

    fn get_unit_in(&self, segs: &[Segment], offset: u64) -> Option<CqUnit> {
        read_unit(segs, self.file_size, offset)
    }
}
