//! Opening a store read-only, possibly while another process owns it and appends to it.
//!
//! Nothing is written: no lock, no `abort` marker, no checkpoint, no recovery, no segment
//! created or prepared, no zeroing, no background thread. Files are mapped read-only. What
//! the reader serves is what it has checked itself:
//!
//! - the CommitLog is scanned with CRC checks from the checkpoint's confirmed end (or the
//!   start of the log) to the first record that is not complete; that is the visible end;
//! - consume queue units are taken while they are valid and their record ends at or before
//!   the visible end; later units are ignored (a crashed owner's torn tail, or units the
//!   owner wrote before its record bytes reached this process' view).
//!
//! [`Follower::refresh`] repeats this from where it stopped: it re-lists the directories
//! (new segments, new topics and queues appear), maps files once they have their full size,
//! and moves the visible ends forward. A store that needs recovery (a crashed owner) is read
//! the same way: by scanning, without repair.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::checkpoint::CheckpointFile;
use super::commitlog::{CommitLog, max_append};
use super::consume_queue::ConsumeQueue;
use super::dispatch::Dispatcher;
use super::group_commit::GroupCommit;
use super::{Engine, QueueMap};
use crate::config::{FlushPolicy, StoreConfig};
use crate::error::{Error, Result};
use crate::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use crate::format::record::{self, BLANK_LEN, BLANK_MAGIC, Decoded};
use crate::storage::segment_set::find_in;
use crate::storage::{Fs, Segment, SegmentSet};

const UNIT: u64 = CQ_UNIT_SIZE as u64;

/// How often reads list the directories again for new topics and queues (a forced refresh,
/// as waiting for a message does, lists at once). New records and units in the files already
/// mapped, and the next segment once the last one is full, are looked for on every read.
const LIST_EVERY: Duration = Duration::from_millis(2);

/// The read-only engine's view of the owner's progress.
#[derive(Debug)]
pub(crate) struct Follower {
    state: Mutex<Option<Instant>>,
}

/// Opens the engine of the store in `dir` read-only. The segment sizes are taken from the
/// files found (the configuration's are used for a store without files).
pub(crate) fn open_read_only(fs: Fs, dir: PathBuf, mut config: StoreConfig) -> Result<Engine> {
    if !fs.exists(&dir)? {
        return Err(Error::io(
            "open store read-only",
            &dir,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    // Reads see everything found complete: the visible end is the end written.
    config.flush_policy = FlushPolicy::default();
    let log_dir = dir.join("commitlog");
    let listed = fs.list_segments(&log_dir)?;
    if let Some((_, first)) = listed.first() {
        let len = fs.len(first)?;
        if len > 0 {
            config.commitlog_segment_size = len;
        }
    }
    if let Some(len) = first_queue_file_len(&fs, &dir)? {
        config.consume_queue_segment_size = len;
    }
    let seg_size = config.commitlog_segment_size;
    let (_, checkpoint) = CheckpointFile::open(&fs, &dir, false)?;
    let log_min = listed.first().map_or(0, |(b, _)| *b);
    let capacity = listed.last().map_or(0, |(b, _)| b + seg_size);
    // Records before the checkpoint's flushed end were durable when the owner wrote it (each
    // read checks its record's CRC again anyway). That end may fall inside a record (flushes
    // stop at page boundaries): the scan starts at the end of the last record a consume queue
    // places before it, which is a record boundary.
    let hint = checkpoint
        .map(|cp| cp.confirm_phy_offset)
        .filter(|&c| c >= log_min && c <= capacity);
    let set = SegmentSet::new(fs.clone(), log_dir.clone(), seg_size, Vec::new());
    let log = CommitLog::new(set, max_append(config.max_message_size), log_min, 0);
    let (cp_file, _) = CheckpointFile::open(&fs, &dir, false)?;
    let engine = Engine {
        crash_recovered: false,
        log,
        write: Mutex::new(None),
        queues: RwLock::new(QueueMap::default()),
        dispatcher: Dispatcher::new(0),
        group: GroupCommit::new(log_min),
        poisoned: Default::default(),
        closed: Default::default(),
        checkpoint: cp_file,
        // Lookups by key scan (the owner writes the index files).
        index: None,
        disk_full: Default::default(),
        delay_levels: config.delay_levels()?,
        arrivals: Default::default(),
        lock: Mutex::new(None),
        read_only: Some(Follower {
            state: Mutex::new(None),
        }),
        fs,
        dir,
        config,
    };
    // Map the files (no unit is taken yet: the visible end is the log's start), then move the
    // start of the scan up to the checkpoint's record boundary.
    follow_log(&engine, true, false)?;
    follow_queues(&engine, true)?;
    if let Some(hint) = hint {
        let start = engine
            .all_queues()
            .iter()
            .filter_map(|cq| last_end_before(cq, hint))
            .max()
            .unwrap_or(log_min);
        engine.log.advance_read_only(start.max(log_min), 0);
    }
    engine.refresh(true)?;
    Ok(engine)
}

/// The end of the last unit of `cq` in its files whose record ends at or before `limit`.
fn last_end_before(cq: &ConsumeQueue, limit: u64) -> Option<u64> {
    let segs = cq.segments().mapped_snapshot();
    let file_size = cq.file_size();
    let last = segs.last()?;
    let unit = |i: u64| -> Option<CqUnit> {
        let seg = find_in(&segs, file_size, i * UNIT)?;
        let bytes = seg.copy_out((i * UNIT - seg.base()) as usize, CQ_UNIT_SIZE)?;
        CqUnit::decode(&bytes)
            .ok()
            .flatten()
            .filter(|u| *u != CqUnit::PRE_BLANK)
    };
    let fits = |i: u64| unit(i).is_some_and(|u| u.physical_offset + u64::from(u.size) <= limit);
    // Units are in log order: find the last one that fits.
    let (mut lo, mut hi) = (cq.min_offset(), (last.base() + file_size) / UNIT);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let u = unit(lo.checked_sub(1)?).filter(|_| lo > cq.min_offset())?;
    Some(u.physical_offset + u64::from(u.size))
}

/// The length of the first consume queue file found (the store's queue file size).
fn first_queue_file_len(fs: &Fs, dir: &std::path::Path) -> Result<Option<u64>> {
    let root = dir.join("consumequeue");
    for t in fs.list(&root)?.into_iter().filter(|t| t.is_dir) {
        for q in fs
            .list(&root.join(&t.name))?
            .into_iter()
            .filter(|q| q.is_dir)
        {
            let qdir = root.join(&t.name).join(&q.name);
            if let Some((_, path)) = fs.list_segments(&qdir)?.into_iter().next() {
                let len = fs.len(&path)?;
                if len > 0 {
                    return Ok(Some(len));
                }
            }
        }
    }
    Ok(None)
}

impl Follower {
    /// Moves the visible ends forward and picks up new files (see the module docs); the
    /// directories of topics and queues are listed again at most every [`LIST_EVERY`] unless
    /// `force`. Skipped when another thread is at it.
    pub(crate) fn refresh(&self, engine: &Engine, force: bool) -> Result<()> {
        let Some(mut last) = self.state.try_lock() else {
            return Ok(());
        };
        let list = force || last.is_none_or(|t| t.elapsed() >= LIST_EVERY);
        if list {
            *last = Some(Instant::now());
        }
        follow_log(engine, list, true)?;
        follow_queues(engine, list)
    }
}

/// Maps the CommitLog segments that appeared (when `list`, or the last one is full) and, when
/// `scan`, scans the records appended since.
fn follow_log(engine: &Engine, list: bool, scan: bool) -> Result<()> {
    let set = engine.log.segments();
    let seg_size = set.segment_size();
    let mut next = set.last().map(|s| s.base() + seg_size);
    let full = next.is_none_or(|n| engine.log.written() >= n);
    let listed = if list || full {
        engine.fs.list_segments(set.dir())?
    } else {
        Vec::new()
    };
    for (base, path) in listed {
        if next.is_some_and(|n| base < n) {
            continue;
        }
        if next.is_some_and(|n| base != n) {
            // A gap: the owner removed or never wrote that segment; stop before it.
            break;
        }
        if engine.fs.len(&path)? != seg_size {
            // Still being created (or damaged): try again at the next refresh.
            break;
        }
        set.push_durable(engine.fs.open_segment_read_only(&path, base, seg_size)?);
        next = Some(base + seg_size);
    }
    if !scan {
        return Ok(());
    }
    let segs = set.mapped_snapshot();
    let from = engine.log.written();
    let (end, last_ts) = scan_complete(&segs, seg_size, from, engine.log_max_append());
    for s in &segs {
        let published = end.saturating_sub(s.base()).min(seg_size);
        s.advance_published(published as usize);
    }
    engine.log.advance_read_only(end, last_ts);
    Ok(())
}

impl Engine {
    fn log_max_append(&self) -> usize {
        max_append(self.config.max_message_size)
    }
}

/// The end of the complete, CRC-valid records from `from` on (blank records bridge to the
/// next segment), and the store time of the last one (0 if none was read).
fn scan_complete(segs: &[Arc<Segment>], seg_size: u64, from: u64, max_len: usize) -> (u64, u64) {
    let mut pos = from;
    let mut last_ts = 0;
    while let Some(seg) = find_in(segs, seg_size, pos) {
        let rel = (pos - seg.base()) as usize;
        let Some(head) = seg.copy_out(rel, BLANK_LEN) else {
            break;
        };
        let total = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let magic = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let Ok(total) = usize::try_from(total) else {
            break;
        };
        if total < BLANK_LEN || total > seg.size() - rel {
            break;
        }
        if magic == BLANK_MAGIC {
            if rel + total != seg.size() {
                break;
            }
            pos = seg.base() + seg_size;
            continue;
        }
        if total > max_len {
            break;
        }
        let Some(bytes) = seg.copy_out(rel, total) else {
            break;
        };
        match record::decode(&bytes, true) {
            Ok(Decoded::Message(rec)) if rec.meta.physical_offset == pos => {
                last_ts = rec.meta.store_timestamp.max(0) as u64;
                pos += total as u64;
            }
            _ => break,
        }
    }
    (pos, last_ts)
}

/// Finds new queues (when `list`) and files and takes the units whose records are visible.
fn follow_queues(engine: &Engine, list: bool) -> Result<()> {
    let root = engine.dir.join("consumequeue");
    let topics = if list {
        engine.fs.list(&root)?
    } else {
        Vec::new()
    };
    for t in topics {
        if !t.is_dir {
            continue;
        }
        for q in engine.fs.list(&root.join(&t.name))? {
            let Some(qid) = q.name.parse::<u32>().ok().filter(|_| q.is_dir) else {
                continue;
            };
            if engine.queue(&t.name, qid).is_some() {
                continue;
            }
            let dir = ConsumeQueue::queue_dir(&engine.dir, &t.name, qid);
            let Some((_, first)) = engine.fs.list_segments(&dir)?.into_iter().next() else {
                continue;
            };
            let file_size = engine.fs.len(&first)?;
            if file_size < UNIT {
                continue;
            }
            let topic: Arc<str> = Arc::from(t.name.as_str());
            let cq = Arc::new(ConsumeQueue::empty(
                engine.fs.clone(),
                topic.clone(),
                qid,
                dir,
                file_size,
            ));
            let mut queues = engine.queues.write();
            let v = queues.entry(topic).or_default();
            let idx = qid as usize;
            if v.len() <= idx {
                v.resize_with(idx + 1, || None);
            }
            v[idx].get_or_insert(cq);
        }
    }
    let log_min = engine.log.min_offset();
    let log_end = engine.log.written();
    for cq in engine.all_queues() {
        follow_queue(&engine.fs, &cq, log_min, log_end, list)?;
    }
    Ok(())
}

/// Maps the queue's new files (when `list`, or its last file is full) and takes its valid
/// units whose records end by `log_end`.
fn follow_queue(fs: &Fs, cq: &ConsumeQueue, log_min: u64, log_end: u64, list: bool) -> Result<()> {
    let set = cq.segments();
    let file_size = cq.file_size();
    let mut next = set.last().map(|s| s.base() + file_size);
    let full = next.is_none_or(|n| cq.max_offset() * UNIT >= n);
    let listed = if list || full {
        fs.list_segments(set.dir())?
    } else {
        Vec::new()
    };
    for (base, path) in listed {
        if next.is_some_and(|n| base < n) {
            continue;
        }
        if (next.is_some_and(|n| base != n)) || fs.len(&path)? != file_size {
            break;
        }
        set.push_durable(fs.open_segment_read_only(&path, base, file_size)?);
        next = Some(base + file_size);
    }
    let Some(first) = set.first_base() else {
        return Ok(());
    };
    let fresh = cq.max_offset() == 0 && cq.min_offset() == 0;
    let mut min = if fresh { first / UNIT } else { cq.min_offset() };
    let mut max = cq.max_offset().max(min);
    let mut phys_end = cq.max_phys_end();
    let segs = set.mapped_snapshot();
    while let Some(seg) = find_in(&segs, file_size, max * UNIT) {
        let rel = (max * UNIT - seg.base()) as usize;
        let Some(bytes) = seg.copy_out(rel, CQ_UNIT_SIZE) else {
            break;
        };
        let Ok(Some(unit)) = CqUnit::decode(&bytes) else {
            break;
        };
        let at_start = max == min;
        if at_start && (unit == CqUnit::PRE_BLANK || unit.physical_offset < log_min) {
            // Pre-blank units, or units of deleted CommitLog segments, before the first real one.
            min += 1;
            max += 1;
            seg.advance_published(rel + CQ_UNIT_SIZE);
            continue;
        }
        let end = unit.physical_offset + u64::from(unit.size);
        if end > log_end {
            break;
        }
        max += 1;
        phys_end = phys_end.max(end);
        seg.advance_published(rel + CQ_UNIT_SIZE);
    }
    cq.advance_read_only(min, max, phys_end);
    Ok(())
}
