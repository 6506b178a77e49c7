//! What retention and the disk-space guard need from the engine: how much the store takes,
//! how full its disk is, and deleting the oldest CommitLog segment with the consume queue and
//! index files that only point into it.

use std::time::SystemTime;

use super::Engine;
use crate::error::Result;

/// The oldest CommitLog segment, as retention sees it.
#[derive(Debug, Clone)]
pub(crate) struct OldestSegment {
    /// Its first offset.
    pub(crate) base: u64,
    /// Its file's modification time.
    pub(crate) modified: SystemTime,
}

impl Engine {
    /// Bytes the store's files take: CommitLog segments (the one prepared ahead included),
    /// consume queue and index files.
    pub(crate) fn store_bytes(&self) -> Result<u64> {
        let log_dir = self.dir().join("commitlog");
        let segs = self.fs.list_segments(&log_dir)?.len() as u64;
        let mut total = segs * self.config().commitlog_segment_size;
        for q in self.all_queues() {
            total += q.file_bytes();
        }
        if let Some(index) = self.index() {
            total += index.file_bytes();
        }
        Ok(total)
    }

    /// How full the file system holding the store is, in percent, as `df` shows it
    /// (`used / (used + available)`: space reserved for root counts as neither).
    pub(crate) fn disk_used_percent(&self) -> Result<f64> {
        let (used, avail) = self.fs.disk_space(self.dir())?;
        let total = used.saturating_add(avail);
        if total == 0 {
            return Ok(0.0);
        }
        Ok(used as f64 * 100.0 / total as f64)
    }

    /// The oldest CommitLog segment if it may be deleted at all: it is not the last one (the
    /// one being written).
    pub(crate) fn oldest_deletable_segment(&self) -> Result<Option<OldestSegment>> {
        let segs = self.log_segments();
        if segs.len() < 2 {
            return Ok(None);
        }
        let first = &segs[0];
        Ok(Some(OldestSegment {
            base: first.base(),
            modified: self.fs.modified(first.path())?,
        }))
    }

    /// Deletes the CommitLog segment starting at `base` if it is still the oldest and not the
    /// last, then the consume queue and index files that only point into it, and moves each
    /// queue's min offset past it. Returns the new smallest CommitLog offset, or `None` if
    /// nothing was deleted.
    pub(crate) fn delete_oldest_segment(&self, base: u64) -> Result<Option<u64>> {
        self.check_open()?;
        if !self.log.delete_oldest_if(|s| s.base() == base)? {
            return Ok(None);
        }
        let min = self.log.min_offset();
        self.after_log_deletion(min)?;
        Ok(Some(min))
    }
}

/// The disk-space guard's refusal of writes: a flag the put path reads with one atomic load,
/// and the reason, read only when it is set.
#[derive(Debug, Default)]
pub(crate) struct Refusal {
    refusing: std::sync::atomic::AtomicBool,
    reason: parking_lot::RwLock<Option<String>>,
}

impl Refusal {
    /// [`crate::Error::DiskFull`] while writes are refused.
    pub(crate) fn check(&self) -> crate::error::Result<()> {
        if !self.refusing.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        match self.reason.read().as_ref() {
            Some(why) => Err(crate::error::Error::DiskFull(why.clone())),
            None => Ok(()),
        }
    }

    /// Sets (`Some(reason)`) or clears the refusal, logging when it starts and ends.
    pub(crate) fn set(&self, reason: Option<String>) {
        let mut g = self.reason.write();
        match (&*g, &reason) {
            (None, Some(r)) => ::log::warn!("puts refused: disk full ({r})"),
            (Some(_), None) => ::log::info!("puts accepted again: disk space returned"),
            _ => {}
        }
        self.refusing
            .store(reason.is_some(), std::sync::atomic::Ordering::Release);
        *g = reason;
    }
}
