//! Bringing the index files up to the end of the log at open. The records they do not cover
//! yet (after a crash, or when the index was off or lost) are indexed inside the open, as
//! RocketMQ re-dispatches them, not on the index writer thread: what the open indexes is
//! flushed before the checkpoint's `indexMsgTimestamp` can cover it (those records may be
//! older than the timestamp the checkpoint already holds).
//!
//! - After a clean close there is usually nothing to index: [`open_index`] loads the files and
//!   indexes what is missing, checking each record's CRC (damage in a part of the log recovery
//!   never checked is skipped with a warning, and the catch-up goes on at the next segment).
//! - After a crash, the catch-up runs on a second thread beside recovery ([`beside_recovery`]),
//!   which reads the same records: recovery's CRC-checked scan publishes how far the log is
//!   known good ([`Verified`]), and the index follows it without checking the CRCs again. Both
//!   used to run one after the other, the index reading the whole tail a second time: a
//!   recovery of 1 M small records spent 58% of its time there. Files that index records past
//!   the end recovery finds (only after a power cut that lost indexed records) are detected
//!   once the end is known, and the open then falls back to [`open_index`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::commitlog::recovery::{self, ScanPolicy};
use super::index::{IndexLoad, IndexService};
use crate::config::StoreConfig;
use crate::error::Result;
use crate::storage::{Fs, Segment};

/// What loading the index files needs.
#[derive(Clone, Copy)]
pub(crate) struct IndexOpen<'a> {
    pub(crate) fs: &'a Fs,
    pub(crate) dir: &'a Path,
    pub(crate) config: &'a StoreConfig,
    /// The store was not closed cleanly: files not known durable are dropped.
    pub(crate) unclean: bool,
    /// The checkpoint's `indexMsgTimestamp`.
    pub(crate) durable_ts: u64,
}

impl IndexOpen<'_> {
    /// Loads the index files, dropping those that index records at or past `log_end`.
    fn load(&self, log_end: u64) -> Result<(IndexService, IndexLoad)> {
        IndexService::open(
            self.fs,
            self.dir,
            &self.config.index,
            self.unclean,
            self.durable_ts,
            log_end,
        )
    }
}

/// Loads the index files and indexes the records of the log up to `end` that they do not
/// cover yet, checking each record's CRC.
pub(crate) fn open_index(args: IndexOpen<'_>, segs: &[Segment], end: u64) -> Result<IndexService> {
    let (index, load) = args.load(end)?;
    let log_min = segs.first().map_or(end, Segment::base);
    let through = index.indexed_through();
    let from = through.unwrap_or(log_min).max(log_min);
    index.set_indexed_to(end);
    let indexed = index_checked(&index, segs, args.config, from, end, through)?;
    finish(&index, load.dropped, indexed, from)?;
    Ok(index)
}

/// Indexes the records of `[from, end)` with a CRC-checked scan, going on past damage at the
/// next segment; returns how many records were new to the index (after `through`).
fn index_checked(
    index: &IndexService,
    segs: &[Segment],
    config: &StoreConfig,
    from: u64,
    end: u64,
    through: Option<u64>,
) -> Result<u64> {
    let policy = ScanPolicy {
        durable: None,
        mode: crate::RecoveryMode::TruncateAtDamage,
        tail_tolerance: 0,
        referenced: 0,
    };
    let mut indexed = 0u64;
    let seg_size = config.commitlog_segment_size;
    let mut pos = from;
    while pos < end {
        let scanned = recovery::scan_until(segs, seg_size, pos, end, &policy, |rec| {
            // (The record at `through` is indexed already: `put_record` skips it.)
            if through.is_none_or(|t| rec.meta.physical_offset > t) {
                indexed += 1;
            }
            index.put_record(rec)
        })?;
        if scanned.end >= end {
            break;
        }
        // Records never span segments: the catch-up goes on at the next one, so intact
        // records after the damage (and those written later) are still found by key.
        let next = segs
            .iter()
            .map(Segment::base)
            .find(|&b| b > scanned.end)
            .unwrap_or(end)
            .min(end);
        ::log::warn!(
            "index: commitlog offset {} does not hold a valid record; the records from there to {next} are not indexed (queries do not find them by key)",
            scanned.end
        );
        pos = next;
    }
    Ok(indexed)
}

/// Flushes what the catch-up indexed and says what it did.
fn finish(index: &IndexService, dropped: usize, indexed: u64, from: u64) -> Result<()> {
    // (Free after a clean close with nothing new to index: the checkpoint covers the files.)
    index.flush()?;
    if dropped > 0 || indexed > 0 {
        ::log::info!(
            "index: {dropped} file(s) dropped, {indexed} record(s) indexed from commitlog offset {from}"
        );
    }
    Ok(())
}

/// How far recovery's scan has checked the log, for the index catch-up beside it. Written by
/// recovery, read by the catch-up thread.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Where recovery's scan starts (records before it are not checked by it).
    from: AtomicU64,
    /// End of the last record recovery checked.
    to: AtomicU64,
    /// The end of the valid log, once recovery knows it (0 if it failed).
    end: AtomicU64,
    /// The catch-up is blocked in [`Verified::wait`]: progress wakes it.
    waiting: AtomicBool,
    lock: Mutex<()>,
    progress: Condvar,
}

const UNKNOWN: u64 = u64::MAX;

/// Yields before the catch-up blocks for recovery's progress (it is usually close behind).
const SPINS: u32 = 64;
/// The longest a blocked catch-up sleeps without a wake-up (one missed, say, since recovery
/// publishes its progress without a full fence).
const NAP: Duration = Duration::from_millis(1);

/// What the catch-up may do with the bytes at an offset.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// Before recovery's start: the catch-up checks the CRCs itself.
    BeforeRecovery,
    /// Recovery checked them.
    Yes,
    /// Past the end of the valid log (or recovery failed).
    PastEnd,
}

impl Default for Verified {
    fn default() -> Self {
        Verified {
            from: AtomicU64::new(UNKNOWN),
            to: AtomicU64::new(0),
            end: AtomicU64::new(UNKNOWN),
            waiting: AtomicBool::new(false),
            lock: Mutex::new(()),
            progress: Condvar::new(),
        }
    }
}

impl Verified {
    /// Recovery's scan starts at `from`.
    pub(crate) fn start(&self, from: u64) {
        self.to.store(from, Ordering::Release);
        self.from.store(from, Ordering::Release);
        self.wake();
    }

    /// Recovery checked the records up to `to`.
    #[inline]
    pub(crate) fn advance(&self, to: u64) {
        self.to.store(to, Ordering::Release);
        self.wake();
    }

    /// The valid log ends at `end` (0: recovery failed, the catch-up stops); the first call
    /// counts.
    pub(crate) fn finish(&self, end: u64) {
        let _ = self
            .end
            .compare_exchange(UNKNOWN, end, Ordering::AcqRel, Ordering::Acquire);
        self.wake();
    }

    #[inline]
    fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            let _guard = self.lock.lock();
            self.progress.notify_all();
        }
    }

    /// What the catch-up may do at `pos` now, if recovery has decided it.
    fn check(&self, pos: u64) -> Option<Checked> {
        // Recovery stores `to`, then `from`, ..., then `end`; read in the opposite order, what
        // is seen is consistent: once `end` is seen, `from` and the last `to` are; once `from`
        // is, `to` is the start or later.
        let end = self.end.load(Ordering::Acquire);
        let from = self.from.load(Ordering::Acquire);
        if from == UNKNOWN {
            // Recovery failed before it started.
            return (end != UNKNOWN).then_some(Checked::PastEnd);
        }
        if pos < from {
            return Some(Checked::BeforeRecovery);
        }
        if end == 0 {
            return Some(Checked::PastEnd);
        }
        if pos < self.to.load(Ordering::Acquire) {
            return Some(Checked::Yes);
        }
        (end != UNKNOWN).then_some(Checked::PastEnd)
    }

    /// Waits until recovery has checked the bytes at `pos`, or knows the end.
    fn wait(&self, pos: u64) -> Checked {
        for _ in 0..SPINS {
            if let Some(c) = self.check(pos) {
                return c;
            }
            std::thread::yield_now();
        }
        loop {
            let mut guard = self.lock.lock();
            self.waiting.store(true, Ordering::SeqCst);
            let checked = self.check(pos);
            if checked.is_none() {
                self.progress.wait_for(&mut guard, NAP);
            }
            self.waiting.store(false, Ordering::SeqCst);
            if let Some(c) = checked.or_else(|| self.check(pos)) {
                return c;
            }
        }
    }
}

/// The index loaded and caught up beside recovery, waiting for recovery's end
/// ([`IndexBeside::complete`]).
pub(crate) struct IndexBeside {
    index: IndexService,
    dropped: usize,
    indexed: u64,
    from: u64,
}

/// Loads the index files and indexes the records recovery checks as it goes (`verified`),
/// plus, itself, any before recovery's start that the files do not cover. Runs on its own
/// thread while recovery scans `segs`; ends when recovery's end is known and reached.
pub(crate) fn beside_recovery(
    args: IndexOpen<'_>,
    segs: &[Segment],
    verified: &Verified,
) -> Result<IndexBeside> {
    // The end of the log is not known yet: no file is dropped for indexing past it here
    // (`complete` checks that once it is).
    let (index, load) = args.load(u64::MAX)?;
    let seg_size = args.config.commitlog_segment_size;
    let log_min = segs.first().map_or(0, Segment::base);
    let through = index.indexed_through();
    let from = through.unwrap_or(log_min).max(log_min);
    let mut indexed = 0u64;
    let mut pos = from;
    loop {
        match verified.wait(pos) {
            Checked::PastEnd => break,
            Checked::BeforeRecovery => {
                // Up to where recovery starts, with CRC checks; then follow recovery.
                let start = verified.from.load(Ordering::Acquire);
                indexed += index_checked(&index, segs, args.config, pos, start, through)?;
                pos = start;
            }
            Checked::Yes => {
                let Some((rec, next)) = recovery::step_checked(segs, seg_size, pos) else {
                    // Only where the index files said a record starts that is not one (files
                    // that do not match this log): go on at the next segment, as the checked
                    // catch-up does past damage.
                    let next = segs
                        .iter()
                        .map(Segment::base)
                        .find(|&b| b > pos)
                        .unwrap_or(u64::MAX);
                    ::log::warn!(
                        "index: commitlog offset {pos} does not start a record; the records from there to {next} are not indexed (queries do not find them by key)"
                    );
                    pos = next;
                    continue;
                };
                if let Some(rec) = rec {
                    if through.is_none_or(|t| pos > t) {
                        indexed += 1;
                    }
                    index.put_record(&rec)?;
                }
                pos = next;
            }
        }
    }
    Ok(IndexBeside {
        index,
        dropped: load.dropped,
        indexed,
        from,
    })
}

impl IndexBeside {
    /// Recovery found the log to end at `end` (and truncated it there): flushes the index,
    /// unless its files index records past `end`, when they are loaded again by
    /// [`open_index`] (which drops those).
    pub(crate) fn complete(
        self,
        args: IndexOpen<'_>,
        segs: &[Segment],
        end: u64,
    ) -> Result<IndexService> {
        if self.index.indexes_past(end) {
            ::log::info!(
                "index: files index records past the end of the recovered commitlog ({end}); loading them again"
            );
            drop(self.index);
            return open_index(args, segs, end);
        }
        self.index.set_indexed_to(end);
        finish(&self.index, self.dropped, self.indexed, self.from)?;
        Ok(self.index)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::{Checked, Verified};

    #[test]
    fn the_catch_up_follows_what_recovery_published() {
        let v = Arc::new(Verified::default());
        let waiter = {
            let v = v.clone();
            std::thread::spawn(move || [v.wait(100), v.wait(1000), v.wait(1500)])
        };
        v.start(1000);
        v.advance(1200);
        v.advance(1500);
        v.finish(1500);
        assert_eq!(
            waiter.join().unwrap(),
            [Checked::BeforeRecovery, Checked::Yes, Checked::PastEnd]
        );
        // A recovery that failed, before or after it started, stops the catch-up.
        let failed = Verified::default();
        failed.finish(0);
        assert_eq!(failed.wait(0), Checked::PastEnd);
        let failed = Verified::default();
        failed.start(10);
        failed.advance(20);
        failed.finish(0);
        assert_eq!(failed.wait(15), Checked::PastEnd);
        assert_eq!(failed.wait(5), Checked::BeforeRecovery);
    }

    /// Recovery's start racing the catch-up's first look: an offset before the start is never
    /// taken as checked by recovery.
    #[test]
    fn a_record_before_recovery_start_is_never_taken_as_checked() {
        let rounds = 20_000;
        let barrier = Arc::new(Barrier::new(2));
        let slots: Arc<Vec<Verified>> =
            Arc::new((0..rounds).map(|_| Verified::default()).collect());
        let recovery = {
            let (barrier, slots) = (barrier.clone(), slots.clone());
            std::thread::spawn(move || {
                for v in slots.iter() {
                    barrier.wait();
                    v.start(1000);
                    v.finish(1000);
                }
            })
        };
        for v in slots.iter() {
            barrier.wait();
            assert_eq!(v.wait(100), Checked::BeforeRecovery);
        }
        recovery.join().unwrap();
    }
}
