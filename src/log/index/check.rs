//! The index files' part of `verify`: every file's header, hash slots and entries, each entry
//! against the record it points at.

use std::sync::atomic::Ordering;

use std::path::Path;

use super::{INDEX_DIR, IndexFile, IndexService, geometry};
use crate::config::IndexConfig;
use crate::error::Result;
use crate::format::index::{
    self as fmt, ENTRY_KEY_HASH, ENTRY_PHY_OFFSET, ENTRY_PREV, IndexHeader,
};
use crate::log::verify::Problem;
use crate::storage::Fs;

/// What the caller knows of the record at a CommitLog offset.
pub(crate) enum RecordAt {
    /// A record starts there; its index key hashes (`topic#key` for `UNIQ_KEY` and every key).
    Keys(Vec<i32>),
    /// No record can be read there (why).
    Bad(String),
    /// Outside what was checked (deleted, or written after the log was checked): not judged.
    Unknown,
}

impl IndexService {
    /// Checks every index file; `record_at` judges what an entry points at. `progress` gets
    /// (files done, files) after each file.
    pub(crate) fn check(
        &self,
        record_at: &mut dyn FnMut(u64) -> RecordAt,
        problems: &mut Vec<Problem>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> u64 {
        let files = self.files.read().clone();
        let mut entries = 0;
        for (i, f) in files.iter().enumerate() {
            entries += check_file(f, record_at, problems);
            progress(i as u64 + 1, files.len() as u64);
        }
        entries
    }
}

/// [`IndexService::check`] for a store opened read-only, which has no index service: the
/// files under `root` are mapped read-only for the check. Files of an unknown size are not
/// used by the store and not judged.
pub(crate) fn check_read_only(
    fs: &Fs,
    root: &Path,
    config: &IndexConfig,
    record_at: &mut dyn FnMut(u64) -> RecordAt,
    problems: &mut Vec<Problem>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let dir = root.join(INDEX_DIR);
    if !fs.exists(&dir)? {
        return Ok(0);
    }
    let mut names: Vec<(u64, String)> = fs
        .list(&dir)?
        .into_iter()
        .filter(|e| !e.is_dir && fmt::is_file_name(&e.name))
        .filter_map(|e| e.name.parse::<u64>().ok().map(|n| (n, e.name)))
        .collect();
    names.sort();
    let mut entries = 0;
    for (i, (name, file)) in names.iter().enumerate() {
        let path = dir.join(file);
        let len = fs.len(&path)?;
        if let Some((slots, max)) = geometry(len, config) {
            let mut seg = fs.open_segment_read_only(&path, 0, len)?;
            seg.set_published(0);
            let f = IndexFile::new(seg, *name, slots, max, IndexHeader::EMPTY);
            if let Some(h) = f.read_header() {
                f.count.store(h.index_count, Ordering::Release);
            }
            entries += check_file(&f, record_at, problems);
        }
        progress(i as u64 + 1, names.len() as u64);
    }
    Ok(entries)
}

/// The file's entry count now: the writer's (this process) or the stored header's (another
/// process writes).
fn current_count(f: &IndexFile) -> u32 {
    let stored = f.read_header().map_or(0, |h| h.index_count);
    f.count.load(Ordering::Acquire).max(stored).max(1) as u32
}

/// Whether entry `v` is counted in `f`. A live writer stores a slot pointing at its new entry
/// just before it counts the entry, so a slot may be ahead of the count for an instant: a few
/// looks (giving the CPU away in between) let such a writer finish. A file nobody writes
/// takes them only for a damaged slot.
fn counted_soon(f: &IndexFile, v: u32) -> bool {
    const LOOKS: usize = 64;
    for _ in 0..LOOKS {
        if v < current_count(f) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Checks one file; returns how many entries it checked.
fn check_file(
    f: &IndexFile,
    record_at: &mut dyn FnMut(u64) -> RecordAt,
    problems: &mut Vec<Problem>,
) -> u64 {
    let mut problem = |offset: u64, reason: String| {
        problems.push(Problem {
            file: f.seg.path().to_path_buf(),
            offset,
            reason: format!("index file: {reason}"),
        });
    };
    if f.words().is_empty() {
        problem(0, "cannot be mapped as words".into());
        return 0;
    }
    let Some(header) = f.read_header() else {
        problem(0, "unreadable header".into());
        return 0;
    };
    // The stored count is the next entry number; the in-memory one may be ahead of a header
    // not yet written back, never behind it.
    let count = f
        .count
        .load(Ordering::Acquire)
        .max(header.index_count)
        .max(1) as u32;
    if count > f.entries {
        problem(
            fmt::INDEX_COUNT as u64,
            format!(
                "index count {count} is more than the file's {} entries",
                f.entries
            ),
        );
        return 0;
    }
    for slot in 0..f.slots {
        let pos = fmt::slot_pos(slot);
        match f.load(pos) {
            Some(v) if v < count => {}
            // A writer adds an entry before its slot points at it and counts it afterwards:
            // a slot read after the count was may point at an entry added since, or at the
            // one being counted at this very moment.
            Some(v) if counted_soon(f, v) => {}
            Some(v) => problem(
                pos,
                format!("hash slot {slot} points at entry {v}, past the {count} used"),
            ),
            None => {
                problem(pos, format!("hash slot {slot} cannot be read"));
                return 0;
            }
        }
    }
    let begin = header.begin_phy_offset;
    let mut checked = 0;
    for n in 1..count {
        let at = fmt::entry_pos(f.slots, n);
        let (Some(hash), Some(phys), Some(prev)) = (
            f.load(at + ENTRY_KEY_HASH as u64),
            f.load_i64(at + ENTRY_PHY_OFFSET as u64),
            f.load(at + ENTRY_PREV as u64),
        ) else {
            problem(at, format!("entry {n} cannot be read"));
            return checked;
        };
        checked += 1;
        if prev >= n {
            problem(
                at,
                format!("entry {n} chains to entry {prev}, which is not older"),
            );
        }
        // The header's end may lag its entries (written back later); its begin never moves.
        if phys < 0 || (header.index_count > 1 && phys < begin) {
            problem(
                at,
                format!(
                    "entry {n} points at commitlog offset {phys}, before the file's first ({begin})"
                ),
            );
            continue;
        }
        match record_at(phys as u64) {
            RecordAt::Keys(hashes) if hashes.contains(&(hash as i32)) => {}
            RecordAt::Keys(_) => problem(
                at,
                format!("entry {n}: no key of the record at commitlog offset {phys} has its hash"),
            ),
            RecordAt::Bad(why) => problem(
                at,
                format!("entry {n} points at commitlog offset {phys}: {why}"),
            ),
            RecordAt::Unknown => {}
        }
    }
    checked
}
