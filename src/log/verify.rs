//! A full consistency check of the stored data (what `mqlite verify` runs): every CommitLog
//! record from the start of the log to the end of its data, CRCs included, and every consume
//! queue unit in the files against the record it points at. Reads only; works on a store
//! opened read-only while another process writes (what it has not finished writing shows up
//! as the end of the data, not as damage).

use std::sync::Arc;

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
    pub(crate) log_end: u64,
    pub(crate) problems: Vec<Problem>,
}

impl Engine {
    /// Checks the whole log and every queue; never stops at the first problem of a queue.
    pub(crate) fn verify(&self) -> crate::error::Result<Verified> {
        self.refresh(true)?;
        let mut out = Verified::default();
        let set = self.log.segments();
        let seg_size = set.segment_size();
        let segs = set.snapshot();
        let mut pos = self.log.min_offset();
        while let Some(seg) = find_in(&segs, seg_size, pos) {
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
        for cq in self.all_queues() {
            self.verify_queue(&cq, &segs, seg_size, &mut out);
        }
        Ok(out)
    }

    fn verify_queue(
        &self,
        cq: &super::consume_queue::ConsumeQueue,
        log_segs: &[Arc<Segment>],
        seg_size: u64,
        out: &mut Verified,
    ) {
        let unit_size = CQ_UNIT_SIZE as u64;
        let files = cq.segments().snapshot();
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
            out.units += 1;
            if unit.physical_offset + u64::from(unit.size) > out.log_end {
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
    }
}
