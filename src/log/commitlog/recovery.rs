//! CommitLog recovery: loading segment files, scanning records with CRC checks, telling a torn
//! tail (truncated) from mid-log damage ([`Error::Corrupted`]), and truncating.

use std::path::Path;

use crate::config::RecoveryMode;
use crate::error::{Error, Result};
use crate::format::cq_unit::CqUnit;
use crate::format::record::{self, BLANK_LEN, Decoded, RecordView};
use crate::storage::segment_set::remove_trailing;
use crate::storage::{Fs, Segment};

/// Opens every segment file in `dir`. Segments must be contiguous and full-size; trailing
/// files of the wrong size that hold no data (a preparation cut short by a crash) are removed.
pub(crate) fn load_segments(fs: &Fs, dir: &Path, segment_size: u64) -> Result<Vec<Segment>> {
    let mut files = fs.list_segments(dir)?;
    // Drop trailing, incompletely created files.
    while let Some((_, path)) = files.last() {
        let len = fs.len(path)?;
        if len == segment_size {
            break;
        }
        let bytes = fs.read(path)?.unwrap_or_default();
        if bytes.iter().any(|&b| b != 0) {
            return Err(Error::corrupted(
                path,
                0,
                format!("segment is {len} bytes, expected {segment_size}"),
            ));
        }
        ::log::info!(
            "removing {}: a segment whose creation was cut short ({len} of {segment_size} bytes, all zero)",
            path.display()
        );
        fs.remove_file_if_exists(path)?;
        files.pop();
    }
    let mut segs = Vec::with_capacity(files.len());
    for (i, (base, path)) in files.iter().enumerate() {
        if base % segment_size != 0 {
            return Err(Error::corrupted(
                path,
                0,
                format!(
                    "segment start {base} is not a multiple of the segment size {segment_size}"
                ),
            ));
        }
        if i > 0 && *base != files[i - 1].0 + segment_size {
            return Err(Error::corrupted(
                path,
                0,
                format!(
                    "gap in the commitlog: previous segment starts at {}",
                    files[i - 1].0
                ),
            ));
        }
        segs.push(fs.open_segment(path, *base, segment_size)?);
    }
    Ok(segs)
}

fn segment_index(segs: &[Segment], segment_size: u64, offset: u64) -> Option<usize> {
    let seg = crate::storage::segment_set::find_in(segs, segment_size, offset)?;
    Some(((seg.base() - segs.first()?.base()) / segment_size) as usize)
}

/// What lies at `offset` of loaded segments, decoded without a CRC check (for bytes a scan
/// already checked): a record (`Some`) or a blank (`None`), and the offset after it. `None`
/// past the segments or where the bytes do not decode as either.
pub(crate) fn step_checked(
    segs: &[Segment],
    segment_size: u64,
    offset: u64,
) -> Option<(Option<RecordView<'_>>, u64)> {
    let seg = &segs[segment_index(segs, segment_size, offset)?];
    match record::decode(seg.read_from((offset - seg.base()) as usize), false) {
        Ok(Decoded::Message(rec)) if rec.meta.physical_offset == offset => {
            let next = offset + u64::from(rec.total_size);
            Some((Some(rec), next))
        }
        Ok(Decoded::Blank { .. }) => Some((None, seg.base() + segment_size)),
        _ => None,
    }
}

/// Whether a consume queue unit points at the record it should: same size, topic, queue id,
/// queue offset and physical offset.
pub(crate) fn unit_matches(
    segs: &[Segment],
    segment_size: u64,
    topic: &str,
    queue_id: u32,
    queue_offset: u64,
    unit: &CqUnit,
) -> bool {
    let rec = step_checked(segs, segment_size, unit.physical_offset).and_then(|(r, _)| r);
    rec.is_some_and(|r| {
        r.total_size == unit.size
            && r.topic == topic
            && r.meta.queue_id == queue_id
            && r.meta.queue_offset == queue_offset
            && r.meta.physical_offset == unit.physical_offset
    })
}

/// Store timestamp of the first record of a segment, if it starts with a valid one.
fn first_record_ts(seg: &Segment) -> Option<u64> {
    match record::decode(seg.read_from(0), true) {
        Ok(Decoded::Message(r)) => Some(r.meta.store_timestamp.max(0) as u64),
        _ => None,
    }
}

/// RocketMQ's abnormal-recovery start: the newest segment whose first record was stored at or
/// before `min_timestamp`; the first segment when none is.
pub(crate) fn start_by_timestamp(segs: &[Segment], min_timestamp: u64) -> u64 {
    segs.iter()
        .rev()
        .find(|s| first_record_ts(s).is_some_and(|ts| ts <= min_timestamp))
        .or(segs.first())
        .map_or(0, |s| s.base())
}

/// How far ahead of the record being scanned the CPU is asked to load, and how much.
const SCAN_PREFETCH_AHEAD: usize = 4096;
const SCAN_PREFETCH_LEN: usize = 256;

/// Parameters of a scan.
pub(crate) struct ScanPolicy {
    /// Offset known durable before the crash (from the checkpoint), if trusted.
    pub(crate) durable: Option<u64>,
    pub(crate) mode: RecoveryMode,
    pub(crate) tail_tolerance: u64,
    /// Where the consume queues' units end, when they are known to be consistent with the log
    /// (the store was closed cleanly): damage before it is never a torn tail.
    pub(crate) referenced: u64,
}

/// Where the scan stopped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanEnd {
    /// End of the valid records.
    pub(crate) end: u64,
    /// Store time of the last valid record seen, 0 if none.
    pub(crate) last_store_ts: u64,
}

/// Scans records from `from` with CRC checks, calling `visit` for each valid one, and finds
/// the end of the valid log.
pub(crate) fn scan(
    segs: &[Segment],
    segment_size: u64,
    from: u64,
    policy: &ScanPolicy,
    visit: impl FnMut(&RecordView<'_>) -> Result<()>,
) -> Result<ScanEnd> {
    scan_until(segs, segment_size, from, u64::MAX, policy, visit)
}

/// [`scan`] that also stops at the first record starting at or past `until` (its `end` is
/// then that record's offset).
pub(crate) fn scan_until(
    segs: &[Segment],
    segment_size: u64,
    from: u64,
    until: u64,
    policy: &ScanPolicy,
    mut visit: impl FnMut(&RecordView<'_>) -> Result<()>,
) -> Result<ScanEnd> {
    let mut pos = from;
    let mut last_ts = 0;
    loop {
        if pos >= until {
            return Ok(ScanEnd {
                end: pos,
                last_store_ts: last_ts,
            });
        }
        let Some(idx) = segment_index(segs, segment_size, pos) else {
            return Ok(ScanEnd {
                end: pos,
                last_store_ts: last_ts,
            });
        };
        let seg = &segs[idx];
        let rel = (pos - seg.base()) as usize;
        let bytes = seg.read_from(rel);
        if bytes.len() >= BLANK_LEN && bytes[..BLANK_LEN].iter().all(|&b| b == 0) {
            // Clean end of data, unless a later segment holds records (or, in the strict mode,
            // the checkpoint says data should be here).
            let later = segs[idx + 1..].iter().any(|s| first_record_ts(s).is_some());
            let strict = policy.mode == RecoveryMode::AbsoluteConsistency;
            if !later && !strict {
                return Ok(ScanEnd {
                    end: pos,
                    last_store_ts: last_ts,
                });
            }
            return stop(
                segs,
                segment_size,
                pos,
                "zero bytes before later data",
                policy,
                last_ts,
            );
        }
        // Sequential: have the CPU load what comes a few records later meanwhile.
        seg.prefetch(rel + SCAN_PREFETCH_AHEAD, SCAN_PREFETCH_LEN);
        match record::decode(bytes, true) {
            Ok(Decoded::Message(rec)) if rec.meta.physical_offset == pos => {
                visit(&rec)?;
                last_ts = rec.meta.store_timestamp.max(0) as u64;
                pos += u64::from(rec.total_size);
            }
            Ok(Decoded::Message(_)) => {
                return stop(
                    segs,
                    segment_size,
                    pos,
                    "record names another offset",
                    policy,
                    last_ts,
                );
            }
            Ok(Decoded::Blank { size }) if size as usize == bytes.len() => {
                pos = seg.base() + segment_size;
            }
            Ok(Decoded::Blank { .. }) => {
                return stop(
                    segs,
                    segment_size,
                    pos,
                    "blank record of the wrong size",
                    policy,
                    last_ts,
                );
            }
            Err(e) => {
                return stop(segs, segment_size, pos, &e.to_string(), policy, last_ts);
            }
        }
    }
}

/// Decides whether damage at `bad` is a torn tail (the log ends there) or mid-log corruption.
fn stop(
    segs: &[Segment],
    segment_size: u64,
    bad: u64,
    reason: &str,
    policy: &ScanPolicy,
    last_ts: u64,
) -> Result<ScanEnd> {
    let window = match policy.mode {
        RecoveryMode::TolerateCorruptTail => policy.tail_tolerance,
        RecoveryMode::AbsoluteConsistency => 0,
        RecoveryMode::TruncateAtDamage => {
            if policy.durable.is_some_and(|d| d > bad) {
                ::log::warn!(
                    "commitlog offset {bad}: {reason}; the log is cut there (TruncateAtDamage)"
                );
            }
            return Ok(ScanEnd {
                end: bad,
                last_store_ts: last_ts,
            });
        }
    };
    let idx = segment_index(segs, segment_size, bad).unwrap_or(0);
    if bad < policy.referenced {
        let seg = &segs[idx];
        return Err(Error::corrupted(
            seg.path(),
            bad - seg.base(),
            format!(
                "commitlog offset {bad}: {reason} (the consume queues of a cleanly closed store reference records up to {})",
                policy.referenced
            ),
        ));
    }
    // Valid records in a later segment mean the damage is mid-log, even when the checkpoint
    // cannot tell: the furthest such segment is the evidence.
    let later_data = segs[idx + 1..]
        .iter()
        .rev()
        .find(|s| first_record_ts(s).is_some())
        .map(|s| s.base());
    let durable = policy.durable.unwrap_or(0).max(later_data.unwrap_or(0));
    if bad.saturating_add(window) < durable {
        let seg = &segs[idx];
        return Err(Error::corrupted(
            seg.path(),
            bad - seg.base(),
            format!("commitlog offset {bad}: {reason} (log holds data up to at least {durable})"),
        ));
    }
    ::log::warn!(
        "{}: commitlog offset {bad}: {reason}; within {window} bytes of the durable end, so a torn tail: the log ends there",
        segs[idx].path().display()
    );
    Ok(ScanEnd {
        end: bad,
        last_store_ts: last_ts,
    })
}

/// Checks that nothing but a torn tail lies past `end`, the end of the valid log: every
/// non-zero byte there must be within `limit` bytes of `end` or of something that looks like
/// a record header stored at its own offset (what a power cut leaves of writes that had not
/// been flushed). Anything else (a segment overwritten with other data) is
/// [`Error::Corrupted`]: cutting it would destroy data that recovery cannot explain.
///
/// Returns where the non-zero bytes past `end` stop (`end` if there are none), so truncation
/// zeroes only what holds data. Without a `limit`, nothing is refused.
pub(crate) fn check_past_end(
    fs: &Fs,
    segs: &[Segment],
    segment_size: u64,
    end: u64,
    limit: Option<u64>,
) -> Result<u64> {
    let mut anchor = end;
    let mut data_end = end;
    for seg in segs.iter().filter(|s| s.base() + segment_size > end) {
        let from = end.saturating_sub(seg.base());
        let bytes = seg.read_from(0);
        for (a, b) in fs.data_ranges(seg.path(), from, segment_size)? {
            let (a, b) = (a as usize, (b as usize).min(bytes.len()));
            let mut pos = a;
            while pos < b {
                // Whole zero blocks are skipped quickly.
                let block_end = ((pos / 4096 + 1) * 4096).min(b);
                // OR-folding the whole block (no early exit) lets the compiler vectorise it.
                if bytes[pos..block_end].iter().fold(0u8, |acc, &x| acc | x) == 0 {
                    pos = block_end;
                    continue;
                }
                for i in pos..block_end {
                    let abs = seg.base() + i as u64;
                    // The magic codes' first byte, before the full check.
                    if bytes[i] != 0 {
                        data_end = abs + 1;
                    }
                    if bytes.get(i + 4) == Some(&0xDA)
                        && record::looks_like_record_at(&bytes[i..], abs)
                    {
                        anchor = abs;
                    } else if bytes[i] != 0 && limit.is_some_and(|l| abs - anchor > l) {
                        return Err(Error::corrupted(
                            seg.path(),
                            i as u64,
                            format!(
                                "data that is not a torn tail past the end of the log at {end}: \
                                 nothing that looks like a record within {} bytes before it",
                                limit.unwrap_or_default()
                            ),
                        ));
                    }
                }
                pos = block_end;
            }
        }
    }
    Ok(data_end)
}

/// Truncates the loaded log at `end`: zeroes its segment from `end` up to `zero_to`, removes
/// later segments, and publishes exactly the valid data. Returns the remaining segments.
pub(crate) fn truncate(
    fs: &Fs,
    dir: &Path,
    mut segs: Vec<Segment>,
    segment_size: u64,
    end: u64,
    zero_to: Option<u64>,
) -> Result<Vec<Segment>> {
    remove_trailing(fs, dir, &mut segs, end.saturating_add(1), 0)?;
    if let Some(last) = segs.last_mut() {
        let rel = end.saturating_sub(last.base()).min(segment_size) as usize;
        if let Some(to) = zero_to {
            // Only what holds data ([`check_past_end`] found where it stops): writing zeros
            // over zeros would dirty pages for nothing.
            let to = to.saturating_sub(last.base()).min(segment_size) as usize;
            if to > rel {
                ::log::info!(
                    "{}: zeroing {} bytes past the end of the log (offset {rel} on)",
                    last.path().display(),
                    to - rel
                );
                last.zero(rel, to)?;
            }
        }
        last.set_published(rel);
    }
    Ok(segs)
}
