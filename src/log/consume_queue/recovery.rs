//! Loading a consume queue at open: structural checks, finding its end without a full scan,
//! validating the tail against the CommitLog, and trimming units past the log's end.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::files::{Entry, Files};
use super::{ConsumeQueue, UNIT};
use std::io::ErrorKind;

use crate::error::{Error, Result};
use crate::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use crate::storage::fs::segment_name;
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
    // Structure: aligned, contiguous, full-size files. The last one (the last few after an
    // unclean shutdown) is mapped, the others are only checked.
    let mapped_from = files
        .len()
        .saturating_sub(if unclean { HOLE_SCAN_FILES } else { 1 });
    let mut loaded = Files {
        fs,
        file_size,
        entries: Vec::with_capacity(files.len()),
    };
    for (i, (base, path)) in files.iter().enumerate() {
        let aligned = base % file_size == 0;
        let contiguous = i == 0 || *base == files[i - 1].0 + file_size;
        if !(aligned && contiguous) {
            return rebuild(&files, topic);
        }
        let mut entry = Entry {
            base: *base,
            path: path.clone(),
            seg: None,
            first: [0; CQ_UNIT_SIZE],
        };
        if i >= mapped_from {
            match fs.open_segment(path, *base, file_size) {
                Ok(s) => entry.seg = Some(s),
                // A file of the wrong size or an empty one (its creation was cut short):
                // damage the log can repair.
                Err(Error::Corrupted { .. }) => return rebuild(&files, topic),
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::InvalidData => {
                    return rebuild(&files, topic);
                }
                // Anything else (EACCES, ENOMEM, too many mappings) is not damage: the files
                // stay, and the open fails saying why.
                Err(e) => return Err(e),
            }
        } else if fs.read_at(path, 0, &mut entry.first)? != file_size {
            return rebuild(&files, topic);
        }
        loaded.entries.push(entry);
    }
    // A file created ahead of the writer and never written to holds nothing: units are written
    // in order, so its first unit is zero. (A crash can also leave a written file whose first
    // page was lost; what follows that hole is dropped below anyway, and every unit is
    // re-dispatched from the CommitLog.) The queue ends in the file before it.
    while loaded.entries.len() > 1 && loaded.is_zero(loaded.last_first_unit())? {
        if let Some(unused) = loaded.entries.pop() {
            ::log::debug!(
                "{}: removing a consume queue file that holds no unit (created ahead)",
                unused.path.display()
            );
            drop(unused.seg);
            // The directory is not synced for this: should the removal be lost, the next
            // open finds the file again and removes it again, and creating the next file
            // (ahead of the writer) syncs the directory anyway.
            fs.remove_file_if_exists(&unused.path)?;
        }
    }
    loaded.map_last(if unclean { HOLE_SCAN_FILES } else { 1 })?;
    let units_per_file = file_size / UNIT;
    // End of data in the last file: units are written in order, so the used part is a prefix
    // of non-zero units followed by zeros; binary search for the first zero unit.
    let last_first = loaded.last_first_unit();
    let (mut lo, mut hi) = (0u64, units_per_file);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if loaded.is_zero(last_first + mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let first_base = loaded.entries[0].base;
    let mut max = last_first + lo;
    let old_end_bytes = max * UNIT;
    if unclean {
        let from = loaded.entries[loaded.entries.len().saturating_sub(HOLE_SCAN_FILES)].base / UNIT;
        for off in from..max {
            if loaded.is_zero(off)? {
                max = off;
                break;
            }
        }
    }
    // Min offset: skip pre-blank units (a file of them is read unit by unit: mapped), then
    // units below the CommitLog minimum.
    let mut min = first_base / UNIT;
    if min < max && loaded.unit(min)? == Some(CqUnit::PRE_BLANK) {
        loaded.map_at(min)?;
        while min < max && loaded.unit(min)? == Some(CqUnit::PRE_BLANK) {
            min += 1;
        }
    }
    if min < max
        && loaded
            .unit(min)?
            .is_none_or(|u| u.physical_offset < log_min)
    {
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match loaded.unit(mid)? {
                Some(u) if u.physical_offset < log_min => lo = mid + 1,
                _ => hi = mid,
            }
        }
        min = lo;
    }
    // Every file's first live unit must point at its record; a randomised or foreign file
    // fails this with overwhelming probability.
    for e in &loaded.entries {
        let off = (e.base / UNIT).max(min);
        if off < max && off < (e.base + file_size) / UNIT {
            match loaded.unit(off)? {
                Some(u) if verify(off, &u) => {}
                _ => return rebuild(&files, topic),
            }
        }
    }
    let claimed_end = if max > min {
        loaded
            .unit(max - 1)?
            .map_or(0, |u| u.physical_offset + u64::from(u.size))
    } else {
        0
    };
    // Trim the tail back to the last unit that points at its record.
    let mut trimmed = 0;
    while max > min {
        match loaded.unit(max - 1)? {
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
        loaded
            .unit(max - 1)?
            .map_or(0, |u| u.physical_offset + u64::from(u.size))
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
    let files = loaded
        .entries
        .into_iter()
        .map(|e| (e.base, e.seg))
        .collect();
    cq.install(files, old_end_bytes)?;
    Ok(if trimmed > 0 || max < old_end_bytes / UNIT {
        Loaded::Trimmed(cq)
    } else {
        Loaded::Ready(cq)
    })
}

impl ConsumeQueue {
    /// Installs the loaded files (each with its segment if mapped): zeroes units past the max
    /// offset (up to `old_end_bytes`, the end of what was found on disk), drops files past it
    /// and creates the writer in the last file, which is mapped. Every other file lies below
    /// the max offset: unmapped ones stay so until read.
    fn install(
        &mut self,
        mut files: Vec<(u64, Option<Segment>)>,
        old_end_bytes: u64,
    ) -> Result<()> {
        let end = self.max_offset() * UNIT;
        let dir = self.set.dir().to_path_buf();
        let fs = self.set.fs().clone();
        // Files that start at or past the end hold nothing valid (the first file stays). The
        // one that becomes the last is mapped first: a failure to map it changes nothing.
        let kept = files.iter().take_while(|f| f.0 < end).count().max(1);
        if let Some((base, seg @ None)) = files.get_mut(kept - 1) {
            *seg = Some(fs.open_segment(&dir.join(segment_name(*base)), *base, self.file_size)?);
        }
        if files.len() > kept {
            // Last first: a failure leaves the files contiguous.
            for (base, seg) in files.drain(kept..).rev() {
                drop(seg);
                fs.remove_file_if_exists(&dir.join(segment_name(base)))?;
            }
            fs.sync_dir(&dir)?;
        }
        let mut installed = Vec::with_capacity(files.len());
        for (base, seg) in files {
            let seg = match seg {
                Some(mut s) => {
                    let rel_end = end.saturating_sub(base).min(self.file_size) as usize;
                    let rel_old = old_end_bytes.saturating_sub(base).min(self.file_size) as usize;
                    if rel_old > rel_end {
                        s.zero(rel_end, rel_old)?;
                    }
                    s.set_published(rel_end);
                    s.reclaim_writer();
                    Some(Arc::new(s))
                }
                None => None,
            };
            installed.push((base, seg));
        }
        let last = installed.last().and_then(|f| f.1.clone());
        *self.writer.get_mut() = last
            .as_ref()
            .filter(|s| (s.published() as u64) < self.file_size)
            .and_then(|s| s.clone().into_writer());
        *self.capacity_end.get_mut() = last.map_or(0, |s| s.base() + self.file_size);
        self.set.replace(installed);
        self.flushed.store(end, Ordering::Release);
        Ok(())
    }

    /// Drops units whose record ends past `log_end` (the CommitLog was truncated there).
    pub(crate) fn truncate_past(&mut self, log_end: u64) -> Result<()> {
        let mut max = self.max_offset();
        let min = self.min_offset();
        let old_max = max;
        while max > min {
            match self.try_unit_at(max - 1)? {
                Some(u) if u.physical_offset + u64::from(u.size) <= log_end => break,
                _ => max -= 1,
            }
        }
        if max == old_max {
            return Ok(());
        }
        let max_phys_end = if max > min {
            self.try_unit_at(max - 1)?
                .map_or(0, |u| u.physical_offset + u64::from(u.size))
        } else {
            0
        };
        *self.writer.get_mut() = None;
        let mut files = Vec::new();
        for (base, seg) in self.set.take() {
            let seg = match seg {
                Some(s) => Some(Arc::try_unwrap(s).map_err(|s| {
                    crate::error::Error::InvalidConfig(format!(
                        "consume queue file {} still in use during recovery",
                        s.path().display()
                    ))
                })?),
                None => None,
            };
            files.push((base, seg));
        }
        self.set_bounds(min, max, max_phys_end);
        self.install(files, old_max * UNIT)
    }
}
