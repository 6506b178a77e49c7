//! Faulting in a queue's pages ahead of its writer: the ranges asked for, and units written
//! while the ranges are zeroed and mapped on another thread.

use std::sync::Arc;

use super::{ConsumeQueue, PREFAULT_GAP, PREFAULT_PIECE, UNIT};
use crate::format::cq_unit::CqUnit;
use crate::storage::Fs;

/// A file of 1,000 pieces' worth of units, not a multiple of the piece size.
const FILE: u64 = 1_000 * UNIT * 50;

fn queue(dir: &std::path::Path) -> Arc<ConsumeQueue> {
    Arc::new(ConsumeQueue::create(&Fs::default(), dir, Arc::from("t"), 0, FILE).unwrap())
}

fn unit(offset: u64) -> CqUnit {
    CqUnit {
        physical_offset: offset * 1000,
        size: 100 + (offset % 7) as u32,
        tag_code: offset as i64,
    }
}

#[test]
fn ranges_are_asked_once_ahead_of_the_writer_inside_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let cq = queue(dir.path());
    let mut asked: Vec<(u64, u64)> = Vec::new();
    for last in 0..(3 * FILE / UNIT) {
        if let Some((from, to)) = cq.wants_prefault(last) {
            let byte_end = (last + 1) * UNIT;
            assert!(
                from >= byte_end + PREFAULT_GAP,
                "{from} too close to {byte_end}"
            );
            assert!(to <= byte_end + 3 * PREFAULT_PIECE);
            assert_eq!(from / FILE, (to - 1) / FILE, "{from}..{to} spans two files");
            if let Some(&(_, prev_to)) = asked.last() {
                assert!(from >= prev_to, "{from}..{to} asked again");
            }
            asked.push((from, to));
        }
        cq.reserve(last).unwrap();
        cq.put(last, unit(last)).unwrap();
    }
    // Everything but the start of each file (where the writer is too close, or the file does
    // not exist yet) was asked for.
    let covered: u64 = asked.iter().map(|(f, t)| t - f).sum();
    assert!(
        covered > 3 * (FILE - 2 * PREFAULT_PIECE),
        "covered {covered}"
    );
}

#[test]
fn units_survive_being_faulted_in_ahead_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let cq = queue(dir.path());
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, u64)>();
    let ahead = {
        let cq = cq.clone();
        std::thread::spawn(move || {
            for (from, to) in rx {
                cq.prefault(from, to);
            }
        })
    };
    let n = 2 * FILE / UNIT + 123;
    for offset in 0..n {
        cq.reserve(offset).unwrap();
        if let Some(r) = cq.wants_prefault(offset) {
            tx.send(r).unwrap();
        }
        cq.put(offset, unit(offset)).unwrap();
    }
    drop(tx);
    ahead.join().unwrap();
    for offset in 0..n {
        assert_eq!(cq.get(offset), Some(unit(offset)), "unit {offset}");
    }
    assert_eq!(cq.get(n), None);
}

#[test]
fn units_written_back_early_read_the_same_and_stay_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let cq = queue(dir.path());
    // Across a file boundary, with a write-back every so often behind the writer.
    let n = 2 * FILE / UNIT + 77;
    for off in 0..n {
        cq.reserve(off).unwrap();
        cq.put(off, unit(off)).unwrap();
        if off % 5_000 == 0 {
            cq.write_behind().unwrap();
        }
    }
    cq.write_behind().unwrap();
    let started = cq.written_back.get();
    assert!(started >= n * UNIT - super::WRITE_BEHIND_MARGIN - crate::storage::PAGE_SIZE);
    assert!(started <= n * UNIT - super::WRITE_BEHIND_MARGIN);
    // Nothing claimed durable by it.
    assert_eq!(cq.flushed.load(std::sync::atomic::Ordering::Acquire), 0);
    for off in 0..n {
        assert_eq!(cq.get(off), Some(unit(off)), "unit {off}");
    }
    cq.flush().unwrap();
    assert_eq!(
        cq.flushed.load(std::sync::atomic::Ordering::Acquire),
        n * UNIT
    );
}
