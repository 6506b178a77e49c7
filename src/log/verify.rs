//! A full consistency check of the stored data (what `mqlite verify` runs): every CommitLog
//! record from the start of the log to the end of its data, CRCs included, every consume
//! queue unit in the files against the record it points at, and every index file entry
//! against the record's keys. Reads only; works on a store
//! opened read-only while another process writes (what it has not finished writing shows up
//! as the end of the data, not as damage).

use std::sync::Arc;

use super::index::check::{RecordAt, check_read_only};
use crate::format::index::key_hash;
use crate::format::properties::{get_many, keys};

use super::Engine;
use crate::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use crate::format::record::{self, BLANK_LEN, BLANK_MAGIC, Decoded};
use crate::storage::Segment;
use crate::storage::segment_set::find_in;

/// One problem found by [`Engine::verify`]: the file, the byte offset in it, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) file: std::path::PathBuf,
    pub(crate) offset: u64,
    pub(crate) reason: String,
}

/// What [`Engine::verify`] checked and found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verified {
    pub(crate) records: u64,
    pub(crate) units: u64,
    pub(crate) index_entries: u64,
    pub(crate) log_end: u64,
    pub(crate) problems: Vec<Problem>,
}

/// The part of a store a verification (`Store::verify_with_progress`) is checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyStage {
    /// The CommitLog records (progress in bytes).
    CommitLog,
    /// The consume queues (progress in queues).
    ConsumeQueues,
    /// The index files (progress in files).
    Index,
}

/// How far a check has come: `done` of `total` in the stage's unit. Reported every few
/// megabytes of CommitLog, after every queue and after every index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyProgress {
    /// What is being checked.
    pub stage: VerifyStage,
    /// How much of it is checked.
    pub done: u64,
    /// How much there is.
    pub total: u64,
}

/// CommitLog bytes between two progress reports.
const PROGRESS_EVERY: u64 = 8 << 20;

impl Engine {
    /// Checks the whole log, every queue and every index file; never stops at the first
    /// problem of a queue or file.
    pub(crate) fn verify(
        &self,
        progress: &mut dyn FnMut(VerifyProgress),
    ) -> crate::error::Result<Verified> {
        self.refresh(true)?;
        let mut out = Verified::default();
        let set = self.log.segments();
        let seg_size = set.segment_size();
        let segs = set.mapped_snapshot();
        let mut pos = self.log.min_offset();
        let log_start = pos;
        let log_total = self.log.written().saturating_sub(pos);
        let mut reported = pos;
        let mut report = |stage, done, total| {
            progress(VerifyProgress { stage, done, total });
        };
        report(VerifyStage::CommitLog, 0, log_total);
        while let Some(seg) = find_in(&segs, seg_size, pos) {
            if pos - reported >= PROGRESS_EVERY {
                reported = pos;
                report(
                    VerifyStage::CommitLog,
                    pos - log_start,
                    log_total.max(pos - log_start),
                );
            }
            let rel = (pos - seg.base()) as usize;
            let problem = |reason: String| Problem {
                file: seg.path().to_path_buf(),
                offset: rel as u64,
                reason,
            };
            let Some(head) = seg.copy_out(rel, BLANK_LEN) else {
                break;
            };
            if head.iter().all(|&b| b == 0) {
                // The end of the data; anything written after a run of zeros is damage.
                // Checked a piece at a time: segments are 1 GiB by default.
                const PIECE: usize = 1 << 20;
                let mut at = rel;
                while at < seg.size() {
                    let n = PIECE.min(seg.size() - at);
                    let piece = seg.copy_out(at, n).unwrap_or_default();
                    if let Some(i) = piece.iter().position(|&b| b != 0) {
                        out.problems.push(Problem {
                            file: seg.path().to_path_buf(),
                            offset: (at + i) as u64,
                            reason: format!(
                                "data after the end of the log (which ends at commitlog offset {pos})"
                            ),
                        });
                        break;
                    }
                    at += n;
                }
                break;
            }
            let total = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let magic = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let total = usize::try_from(total).unwrap_or(0);
            if total < BLANK_LEN || total > seg.size() - rel {
                out.problems.push(problem(format!(
                    "record at commitlog offset {pos}: bad TOTALSIZE {total}"
                )));
                break;
            }
            if magic == BLANK_MAGIC {
                pos = seg.base() + seg_size;
                continue;
            }
            let bytes = seg.copy_out(rel, total).unwrap_or_default();
            match record::decode(&bytes, true) {
                Ok(Decoded::Message(rec)) if rec.meta.physical_offset == pos => {
                    out.records += 1;
                    pos += total as u64;
                }
                Ok(Decoded::Message(rec)) => {
                    out.problems.push(problem(format!(
                        "record at commitlog offset {pos} says it is at {}",
                        rec.meta.physical_offset
                    )));
                    break;
                }
                Ok(Decoded::Blank { .. }) => break,
                Err(e) => {
                    out.problems
                        .push(problem(format!("record at commitlog offset {pos}: {e}")));
                    break;
                }
            }
        }
        out.log_end = pos;
        let log_done = pos - log_start;
        report(VerifyStage::CommitLog, log_done, log_total.max(log_done));
        let queues = self.all_queues();
        report(VerifyStage::ConsumeQueues, 0, queues.len() as u64);
        for (i, cq) in queues.iter().enumerate() {
            self.verify_queue(cq, &segs, seg_size, &mut out)?;
            report(
                VerifyStage::ConsumeQueues,
                i as u64 + 1,
                queues.len() as u64,
            );
        }
        let (min, end) = (self.log.min_offset(), out.log_end);
        let mut record_at = |phys: u64| {
            if phys < min || phys >= end {
                // Deleted, or past what this check read (a live owner's newer records:
                // an index file past a crashed log's end is dropped at recovery).
                return RecordAt::Unknown;
            }
            record_keys(&segs, seg_size, phys)
        };
        let mut files = |done, total| report(VerifyStage::Index, done, total);
        out.index_entries = match self.index() {
            Some(index) => index.check(&mut record_at, &mut out.problems, &mut files),
            None if self.is_read_only() => check_read_only(
                self.fs_handle(),
                self.dir(),
                &self.config().index,
                &mut record_at,
                &mut out.problems,
                &mut files,
            )?,
            None => 0,
        };
        Ok(out)
    }

    fn verify_queue(
        &self,
        cq: &super::consume_queue::ConsumeQueue,
        log_segs: &[Arc<Segment>],
        seg_size: u64,
        out: &mut Verified,
    ) -> crate::error::Result<()> {
        let unit_size = CQ_UNIT_SIZE as u64;
        // A file that cannot be mapped is an I/O error, not damage.
        let files = cq.segments().snapshot()?;
        let mut qoff = cq.min_offset();
        while let Some(file) = find_in(&files, cq.file_size(), qoff * unit_size) {
            let rel = (qoff * unit_size - file.base()) as usize;
            let Some(bytes) = file.copy_out(rel, CQ_UNIT_SIZE) else {
                break;
            };
            let this = qoff;
            let problem = |reason: String| Problem {
                file: file.path().to_path_buf(),
                offset: rel as u64,
                reason: format!(
                    "consume queue {}:{} offset {this}: {reason}",
                    cq.topic(),
                    cq.queue_id()
                ),
            };
            let unit = match CqUnit::decode(&bytes) {
                Ok(Some(u)) => u,
                Ok(None) => break,
                Err(e) => {
                    out.problems.push(problem(e.to_string()));
                    break;
                }
            };
            qoff += 1;
            if unit == CqUnit::PRE_BLANK {
                continue;
            }
            let end = unit.physical_offset + u64::from(unit.size);
            if end > out.log_end && end <= self.log.written() {
                // Appended (by this process) after the log was checked: the end of what this
                // check covers, as for the log. Later units of the queue are newer still.
                break;
            }
            out.units += 1;
            if end > out.log_end {
                out.problems.push(problem(format!(
                    "points at commitlog offset {}, past the end of the valid log ({})",
                    unit.physical_offset, out.log_end
                )));
                continue;
            }
            if unit.physical_offset < self.log.min_offset() {
                continue;
            }
            let Some(seg) = find_in(log_segs, seg_size, unit.physical_offset) else {
                out.problems
                    .push(problem("points outside the commitlog".into()));
                continue;
            };
            let at = (unit.physical_offset - seg.base()) as usize;
            let rec_bytes = seg.copy_out(at, unit.size as usize).unwrap_or_default();
            match record::decode(&rec_bytes, true) {
                Ok(Decoded::Message(rec))
                    if rec.topic == &**cq.topic()
                        && rec.meta.queue_id == cq.queue_id()
                        && rec.meta.queue_offset == this
                        && rec.total_size == unit.size => {}
                Ok(_) => out.problems.push(problem(format!(
                    "points at commitlog offset {}, which holds another record",
                    unit.physical_offset
                ))),
                Err(e) => out.problems.push(problem(format!(
                    "its record at commitlog offset {}: {e}",
                    unit.physical_offset
                ))),
            }
        }
        Ok(())
    }
}

/// The index key hashes of the record starting at `phys`.
fn record_keys(segs: &[Arc<Segment>], seg_size: u64, phys: u64) -> RecordAt {
    let Some(seg) = find_in(segs, seg_size, phys) else {
        return RecordAt::Bad("no segment holds it".into());
    };
    let at = (phys - seg.base()) as usize;
    let Some(head) = seg.copy_out(at, BLANK_LEN) else {
        return RecordAt::Bad("past the end of its segment".into());
    };
    let total = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let Some(bytes) = usize::try_from(total)
        .ok()
        .filter(|&t| t >= BLANK_LEN)
        .and_then(|t| seg.copy_out(at, t))
    else {
        return RecordAt::Bad(format!("no record starts there (TOTALSIZE {total})"));
    };
    match record::decode(&bytes, false) {
        Ok(Decoded::Message(rec)) if rec.meta.physical_offset == phys => {
            let [uniq, ks] = get_many(rec.properties, [keys::UNIQ_KEY, keys::KEYS]);
            let hashes = uniq
                .into_iter()
                .chain(ks.into_iter().flat_map(|k| k.split(' ')))
                .filter(|k| !k.is_empty())
                .map(|k| key_hash(rec.topic, k))
                .collect();
            RecordAt::Keys(hashes)
        }
        Ok(_) => RecordAt::Bad("no message record starts there".into()),
        Err(e) => RecordAt::Bad(e.to_string()),
    }
}
