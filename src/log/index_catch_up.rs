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
use std::sync::atomic::{AtomicU64, Ordering};

use super::commitlog::recovery::{self, ScanPolicy};
use super::index::IndexService;
use crate::config::StoreConfig;
use crate::error::{Error, Result};
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

/// Loads the index files and indexes the records of the log up to `end` that they do not
/// cover yet, checking each record's CRC.
pub(crate) fn open_index(args: IndexOpen<'_>, segs: &[Segment], end: u64) -> Result<IndexService> {
    let (index, load) = IndexService::open(
        args.fs,
        args.dir,
        &args.config.index,
        args.unclean,
        args.durable_ts,
        end,
    )?;
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
        let scanned = recovery::scan(segs, seg_size, pos, &policy, |rec| {
            if rec.meta.physical_offset >= end {
                return Ok(());
            }
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
    /// The end of the valid log, once recovery knows it (or 0 if it failed).
    end: AtomicU64,
}

const UNKNOWN: u64 = u64::MAX;

/// What the catch-up may do with the bytes at an offset.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// Before recovery's start: the catch-up checks the CRCs itself.
    BeforeRecovery,
    /// Recovery checked them.
    Yes,
    /// Past the end of the valid log.
    PastEnd,
}

impl Default for Verified {
    fn default() -> Self {
        Verified {
            from: AtomicU64::new(UNKNOWN),
            to: AtomicU64::new(0),
            end: AtomicU64::new(UNKNOWN),
        }
    }
}

impl Verified {
    /// Recovery's scan starts at `from`.
    pub(crate) fn start(&self, from: u64) {
        self.to.store(from, Ordering::Release);
        self.from.store(from, Ordering::Release);
    }

    /// Recovery checked the records up to `to`.
    pub(crate) fn advance(&self, to: u64) {
        self.to.store(to, Ordering::Release);
    }

    /// The valid log ends at `end` (0: recovery failed, the catch-up stops); the first call
    /// counts.
    pub(crate) fn finish(&self, end: u64) {
        let _ = self
            .end
            .compare_exchange(UNKNOWN, end, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Waits until recovery has checked the bytes at `pos` or knows the end.
    fn wait(&self, pos: u64) -> Checked {
        loop {
            let from = self.from.load(Ordering::Acquire);
            if from != UNKNOWN && pos < from {
                return Checked::BeforeRecovery;
            }
            // `end` is set after the last `to`: read in this order, `to` is final once `end`
            // is known.
            let end = self.end.load(Ordering::Acquire);
            if pos < self.to.load(Ordering::Acquire) {
                return Checked::Yes;
            }
            if end != UNKNOWN {
                return Checked::PastEnd;
            }
            std::thread::yield_now();
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
    let (index, load) = IndexService::open(
        args.fs,
        args.dir,
        &args.config.index,
        args.unclean,
        args.durable_ts,
        u64::MAX,
    )?;
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
                    return Err(Error::corrupted(
                        args.dir.join("commitlog"),
                        pos,
                        "a record recovery checked does not decode",
                    ));
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
