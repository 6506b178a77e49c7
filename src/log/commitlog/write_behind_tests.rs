//! Writing the log back ahead of its flush: appends wake the write-behind at each step, it
//! stays a margin behind the writer, and it never moves the durable end.

use crossbeam_channel::bounded;

use super::{CommitLog, WRITE_BEHIND_MARGIN, WRITE_BEHIND_STEP, max_append};
use crate::storage::page_tables::pages_mapped;
use crate::storage::{Fs, PAGE_SIZE, SegmentSet};

/// An empty log in `dir` with segments of `segment_size` bytes.
fn empty_log(dir: &std::path::Path, segment_size: u64) -> CommitLog {
    let set = SegmentSet::new(Fs::default(), dir.to_path_buf(), segment_size, vec![]);
    CommitLog::new(set, max_append(1 << 20), 0, 0)
}

#[test]
fn appends_wake_each_step_and_write_behind_claims_nothing_durable() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 4 * WRITE_BEHIND_STEP;
    let log = empty_log(dir.path(), segment_size);
    let (wake_tx, wake) = bounded(1);
    log.wake_write_behind(wake_tx);
    let mut w = log.writer(None).unwrap();
    let rec = 100_000;
    let fill = |b: &mut [u8], phys: u64| b.fill((phys % 251) as u8 + 1);
    // Up to just below the first step: no wake.
    while log.written() + rec as u64 <= WRITE_BEHIND_STEP {
        log.append(&mut w, rec, 1, fill).unwrap();
    }
    assert!(wake.try_recv().is_err(), "woken before a step was crossed");
    // Called anyway, it starts what lies a margin behind the writer, page-aligned.
    log.write_behind().unwrap();
    let first_target = (log.written() - WRITE_BEHIND_MARGIN) & !(PAGE_SIZE - 1);
    assert_eq!(log.written_back(), first_target);
    // Crossing the step wakes.
    log.append(&mut w, rec, 1, fill).unwrap();
    assert!(wake.try_recv().is_ok(), "crossing a step did not wake");
    log.write_behind().unwrap();
    let target = (log.written() - WRITE_BEHIND_MARGIN) & !(PAGE_SIZE - 1);
    assert!(target > first_target);
    assert_eq!(log.written_back(), target);
    // Nothing of it is claimed durable; a flush does that, and the bytes are intact.
    assert_eq!(log.flushed(), 0);
    let end = log.written();
    log.flush(crate::storage::FlushScope::All).unwrap();
    assert_eq!(log.flushed(), end);
    let seg = log.segment_for(0).unwrap();
    let bytes = seg.read(0, end as usize).unwrap();
    for (i, chunk) in bytes.chunks(rec).enumerate() {
        let expected = ((i * rec) as u64 % 251) as u8 + 1;
        assert!(chunk.iter().all(|&b| b == expected), "record {i} changed");
    }
}

#[test]
fn write_behind_starts_from_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = empty_log(dir.path(), 4 * WRITE_BEHIND_STEP);
    let mut w = log.writer(None).unwrap();
    let append_to = |end: u64, w: &mut super::LogWriter| {
        while log.written() < end {
            log.append(w, 50_000, 1, |b, _| b.fill(3)).unwrap();
        }
    };
    append_to(3 * WRITE_BEHIND_MARGIN, &mut w);
    log.flush(crate::storage::FlushScope::All).unwrap();
    let flushed = log.flushed();
    // All of it flushed: nothing to write back.
    log.write_behind().unwrap();
    assert_eq!(log.written_back(), 0);
    append_to(flushed + 4 * WRITE_BEHIND_MARGIN, &mut w);
    log.write_behind().unwrap();
    let target = (log.written() - WRITE_BEHIND_MARGIN) & !(PAGE_SIZE - 1);
    assert_eq!(log.written_back(), target);
    // What was flushed stays mapped (the writer mapped it); the write-back started at the
    // durable end: whole pages from there to the target are unmapped.
    let seg = log.segment_for(0).unwrap();
    let page = PAGE_SIZE as usize;
    let mapped = pages_mapped(seg.read(0, log.written() as usize).unwrap());
    let first_whole = (flushed as usize).div_ceil(page);
    assert!(
        mapped[..flushed as usize / page].iter().all(|&m| m),
        "flushed pages were written back again"
    );
    assert!(
        mapped[first_whole..target as usize / page]
            .iter()
            .all(|&m| !m),
        "pages between the durable end and the target still mapped"
    );
    assert!(
        mapped[target as usize / page..].iter().all(|&m| m),
        "pages past the target unmapped"
    );
    assert_eq!(log.flushed(), flushed);
}

#[test]
fn write_behind_stays_in_the_segment_of_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 4 * WRITE_BEHIND_MARGIN;
    let log = empty_log(dir.path(), segment_size);
    let mut w = log.writer(None).unwrap();
    // Into the third segment, nothing flushed.
    while log.written() < 2 * segment_size + 2 * WRITE_BEHIND_MARGIN {
        log.append(&mut w, 50_000, 1, |b, _| b.fill(5)).unwrap();
    }
    log.write_behind().unwrap();
    assert_eq!(
        log.written_back(),
        segment_size,
        "wrote back past the segment of the durable end"
    );
    // The second segment not touched: the pages its writer wrote are all still mapped (its
    // last 50,000 bytes or so are a blank nobody wrote).
    let second = log.segment_for(segment_size).unwrap();
    let bytes = second.read(0, 3 * WRITE_BEHIND_MARGIN as usize).unwrap();
    assert!(pages_mapped(bytes).iter().all(|&m| m));
    // Once the first segments are durable, the write-back moves on into the last one.
    log.flush(crate::storage::FlushScope::All).unwrap();
    let durable = log.flushed();
    while log.written() < durable + 2 * WRITE_BEHIND_MARGIN {
        log.append(&mut w, 50_000, 1, |b, _| b.fill(6)).unwrap();
    }
    log.write_behind().unwrap();
    let target = (log.written() - WRITE_BEHIND_MARGIN) & !(PAGE_SIZE - 1);
    assert_eq!(
        log.written_back(),
        target.min(log.segments().base_of(durable) + segment_size)
    );
    assert!(log.written_back() > durable);
}
