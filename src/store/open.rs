//! Opening a store: lock, load, decide between the clean reopen (no scan) and recovery
//! (CRC-checked scan from the checkpoint, torn tail truncated, consume queues re-dispatched and
//! trimmed), then start writing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use parking_lot::{Mutex, RwLock};

use super::checkpoint::CheckpointFile;
use super::topics::TopicTable;
use super::{Core, QueueSlot, WriteState, validate};
use crate::commitlog::recovery::{self, ScanPolicy};
use crate::commitlog::{CommitLog, Preparer};
use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::consume_queue::recovery::{Loaded, load};
use crate::error::{Error, Result};
use crate::flush::group_commit::GroupCommit;
use crate::format::checkpoint::Checkpoint;
use crate::format::cq_unit::CqUnit;
use crate::format::msg_id::MessageIdGenerator;
use crate::format::properties;
use crate::format::record::{Decoded, RecordView, decode, sys_flag};
use crate::storage::Segment;
use crate::storage::fs::{create_dir_all, sync_dir};
use crate::storage::lock::DirLock;

type QueueKey = (Arc<str>, u32);

struct Loading<'a> {
    dir: &'a Path,
    config: &'a StoreConfig,
    topics: &'a TopicTable,
    queues: BTreeMap<QueueKey, ConsumeQueue>,
    /// The delay table, for schedule-topic tag codes.
    delay_levels: Vec<u64>,
    /// Deliveries of the schedule service found by the recovery scan.
    schedule_seen: Vec<super::schedule::Source>,
    /// Some queue had damaged units cut from its tail.
    trimmed: bool,
    /// The recovery scan starts after the log's first record: a queue without files whose
    /// first record seen is not its first may have lost files.
    partial_scan: bool,
}

/// Opens and recovers the store in `dir`.
pub(crate) fn open(
    dir: PathBuf,
    mut config: StoreConfig,
    schedule_wake: crossbeam_channel::Sender<()>,
) -> Result<Core> {
    config.validate()?;
    create_dir_all(&dir)?;
    let lock = DirLock::acquire(&dir)?;
    let unclean = dir.join("abort").exists();
    let topics = TopicTable::load(&dir.join("config"))?;
    let (cp_file, checkpoint) = CheckpointFile::open(&dir)?;
    let log_dir = dir.join("commitlog");
    create_dir_all(&log_dir)?;
    let seg_size = config.commitlog_segment_size;
    let segs = recovery::load_segments(&log_dir, seg_size)?;
    let log_min = segs.first().map_or(0, Segment::base);
    let capacity = segs.last().map_or(0, |s| s.base() + seg_size);
    let checkpoint = checkpoint.filter(|cp| plausible(cp, capacity));

    let mut loading = Loading {
        dir: &dir,
        config: &config,
        topics: &topics,
        queues: BTreeMap::new(),
        trimmed: false,
        partial_scan: false,
        delay_levels: config.delay_levels()?,
        schedule_seen: Vec::new(),
    };
    let rebuild = loading.load_queues(&segs, log_min)?;
    let max_cq_end = loading
        .queues
        .values()
        .map(ConsumeQueue::max_phys_end)
        .max()
        .unwrap_or(0)
        .max(log_min);
    let clean = match checkpoint {
        Some(cp) if !unclean && rebuild.is_empty() && !loading.trimmed => {
            clean_end(&segs, seg_size, cp.confirm_phy_offset, max_cq_end, log_min)
                .filter(|&end| loading.tail_is_intact(&segs, end))
        }
        _ => None,
    };

    let (segs, end, last_ts) = match clean {
        Some(end) => {
            let segs = recovery::truncate(&log_dir, segs, seg_size, end, false)?;
            let ts = checkpoint.map_or(0, |c| c.physic_msg_timestamp);
            (segs, end, ts)
        }
        None => loading.recover(&log_dir, segs, checkpoint, log_min, rebuild)?,
    };
    for q in loading.queues.values_mut() {
        q.truncate_past(end)?;
    }

    let recovered = clean.is_none();
    let log = CommitLog::new(log_dir.clone(), seg_size, segs, end, last_ts);
    if recovered {
        // What recovery kept may still be only in the page cache (a killed process leaves it
        // there): make it durable before the checkpoint below says it is.
        log.sync_all()?;
    }
    // Writing zeros through a segment ahead of time pays off only where every append waits for
    // a flush; under Async the prefault thread keeps page faults off the writer.
    let warm =
        config.warm_segments && matches!(config.flush_policy, crate::FlushPolicy::Sync { .. });
    // Under Sync, pages faulted in ahead stay clean, so no flush waits behind their writeback.
    let populate_write = !matches!(config.flush_policy, crate::FlushPolicy::Sync { .. });
    // Larger than any single append (a batch is at most the max message size plus 64 KiB).
    let zero_gap = config.max_message_size + (128 << 10);
    let preparer = Preparer::start(log_dir.clone(), seg_size, warm, populate_write, zero_gap)
        .map_err(|e| Error::io("spawn segment preparer", &log_dir, e))?;
    let fresh = log.written() == 0 && log.min_offset() == 0;
    let writer = log.writer(Some(preparer))?;
    if warm && fresh {
        // A new store's first segment was not prepared ahead: zero-fill its start now (a few
        // MiB), the prefault thread keeps ahead from there.
        writer.zero_start(zero_gap)?;
    }

    let mut queue_map: HashMap<Arc<str>, Vec<Option<Arc<ConsumeQueue>>>> = HashMap::new();
    let mut slots = super::SlotMap::default();
    for ((topic, qid), cq) in loading.queues {
        let cq = Arc::new(cq);
        let idx = qid as usize;
        let v = queue_map.entry(topic.clone()).or_default();
        v.resize_with(v.len().max(idx + 1), || None);
        v[idx] = Some(cq.clone());
        let s = slots.entry(topic).or_default();
        s.resize_with(s.len().max(idx + 1), || None);
        s[idx] = Some(QueueSlot {
            next_offset: cq.max_offset(),
            cq,
        });
    }
    for v in queue_map.values() {
        for q in v.iter().flatten() {
            q.flush()?;
        }
    }
    let schedule = super::schedule::ScheduleState::load(&dir.join("config"))?;
    if !loading.schedule_seen.is_empty() {
        let mut p = schedule.progress.lock();
        for src in &loading.schedule_seen {
            p.delivered(*src);
        }
        drop(p);
        schedule.mark_dirty();
        // Before the checkpoint moves past them, so a second crash cannot lose track of
        // deliveries made before the first.
        schedule.persist_if_dirty()?;
    }
    write_abort(&dir)?;
    cp_file.write(&Checkpoint {
        physic_msg_timestamp: last_ts,
        logics_msg_timestamp: last_ts,
        index_msg_timestamp: 0,
        master_flushed_offset: end,
        confirm_phy_offset: end,
    })?;
    let ids = MessageIdGenerator::new(config.store_host.ip());
    let offsets = super::offsets::ConsumerOffsets::load(&dir.join("config"))?;
    offsets.clamp(|topic, q| {
        queue_map
            .get(topic)
            .and_then(|v| v.get(q as usize))
            .and_then(|c| c.as_ref().map(|c| c.max_offset()))
            .unwrap_or(0)
    });
    Ok(Core {
        log,
        write: Mutex::new(WriteState {
            log: writer,
            slots,
            last_store_ts: last_ts,
        }),
        queues: RwLock::new(queue_map),
        topics,
        group: GroupCommit::new(end),
        pending: Mutex::new(VecDeque::new()),
        poisoned: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        ids,
        checkpoint: cp_file,
        logics_ts: AtomicU64::new(last_ts),
        offsets,
        delay_levels: config.delay_levels()?,
        schedule,
        schedule_wake,
        arrivals: Default::default(),
        groups: Default::default(),
        locks: Default::default(),
        broadcast_offsets: super::offsets::ConsumerOffsets::load_file(
            &dir.join("config"),
            "broadcastOffset.json",
        )?,
        lock: Mutex::new(Some(lock)),
        dir,
        config,
    })
}

/// A checkpoint whose offsets fit the log and whose times are not in the future.
fn plausible(cp: &Checkpoint, capacity: u64) -> bool {
    let horizon = super::put::now_ms() + 86_400_000;
    cp.confirm_phy_offset <= capacity
        && cp.physic_msg_timestamp <= horizon
        && cp.logics_msg_timestamp <= horizon
}

/// The end of the log if the checkpoint's `claimed` end agrees with the consume queues (the
/// last dispatched record ends there, or a blank record bridges to it) and nothing follows it.
fn clean_end(
    segs: &[Segment],
    seg_size: u64,
    claimed: u64,
    max_cq_end: u64,
    log_min: u64,
) -> Option<u64> {
    if segs.is_empty() {
        return (claimed == log_min && max_cq_end == log_min).then_some(claimed);
    }
    let bytes_at = |off: u64| -> Option<&[u8]> {
        let first = segs[0].base();
        let seg = segs.get((off.checked_sub(first)? / seg_size) as usize)?;
        Some(seg.read_from((off - seg.base()) as usize))
    };
    if claimed > max_cq_end {
        match decode(bytes_at(max_cq_end)?, false) {
            Ok(Decoded::Blank { size }) if max_cq_end + u64::from(size) == claimed => {}
            _ => return None,
        }
    } else if claimed < max_cq_end {
        return None;
    }
    // Nothing may follow the end (a segment boundary has nothing to check).
    match bytes_at(claimed) {
        Some(rest) if rest.len() >= 8 && rest[..8].iter().any(|&b| b != 0) => None,
        _ => Some(claimed),
    }
}

fn write_abort(dir: &Path) -> Result<()> {
    let path = dir.join("abort");
    let mut f = std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    f.write_all(std::process::id().to_string().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &path, e))?;
    sync_dir(dir)
}

impl Loading<'_> {
    /// Loads every consume queue found on disk or configured. Returns the queues that must be
    /// rebuilt from the start of the log (damaged beyond trimming, or missing although
    /// configured while the log holds data).
    fn load_queues(&mut self, segs: &[Segment], log_min: u64) -> Result<BTreeSet<QueueKey>> {
        let seg_size = self.config.commitlog_segment_size;
        let cq_size = self.config.consume_queue_segment_size;
        let root = self.dir.join("consumequeue");
        let mut found: BTreeSet<(String, u32)> = BTreeSet::new();
        if let Ok(topics) = std::fs::read_dir(&root) {
            for t in topics.flatten() {
                let Some(topic) = t.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if validate::topic_syntax(&topic).is_err() || !t.path().is_dir() {
                    continue;
                }
                let Ok(qdirs) = std::fs::read_dir(t.path()) else {
                    continue;
                };
                for q in qdirs.flatten() {
                    if let Some(qid) = q.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                        && qid < crate::config::MAX_QUEUES_PER_TOPIC
                    {
                        found.insert((topic.clone(), qid));
                    }
                }
            }
        }
        let mut rebuild = BTreeSet::new();
        for (topic, qid) in &found {
            let name: Arc<str> = Arc::from(topic.as_str());
            let dir = ConsumeQueue::queue_dir(self.dir, topic, *qid);
            let verify = |qoff: u64, unit: &CqUnit| {
                recovery::unit_matches(segs, seg_size, topic, *qid, qoff, unit)
            };
            let cq = match load(&dir, name.clone(), *qid, cq_size, log_min, &verify)? {
                Loaded::Ready(cq) => cq,
                Loaded::Trimmed(cq) => {
                    self.trimmed = true;
                    if cq.max_offset() == cq.min_offset() {
                        rebuild.insert((name.clone(), *qid));
                    }
                    cq
                }
                Loaded::Rebuild(cq) => {
                    rebuild.insert((name.clone(), *qid));
                    cq
                }
            };
            self.queues.insert((name, *qid), cq);
            if self
                .topics
                .get(topic)
                .is_none_or(|c| c.queue_count() <= *qid)
            {
                self.topics.ensure(topic, qid + 1)?;
            }
        }
        // Configured queues without a directory: created now; if the log holds data they may
        // have lost their files, so they are rebuilt.
        let log_has_data = segs
            .iter()
            .any(|s| s.read_from(0).iter().take(8).any(|&b| b != 0));
        for cfg in self.topics.list() {
            for qid in 0..cfg.queue_count() {
                if found.contains(&(cfg.name.clone(), qid)) {
                    continue;
                }
                let name: Arc<str> = Arc::from(cfg.name.as_str());
                let cq = ConsumeQueue::create(self.dir, name.clone(), qid, cq_size)?;
                if log_has_data {
                    rebuild.insert((name.clone(), qid));
                }
                self.queues.insert((name, qid), cq);
            }
        }
        Ok(rebuild)
    }

    fn queue_for(&mut self, topic: &str, qid: u32) -> Result<Option<&ConsumeQueue>> {
        let key: QueueKey = (Arc::from(topic), qid);
        if !self.queues.contains_key(&key) {
            if validate::topic_syntax(topic).is_err() || qid >= crate::config::MAX_QUEUES_PER_TOPIC
            {
                return Ok(None);
            }
            let cq = ConsumeQueue::create(
                self.dir,
                key.0.clone(),
                qid,
                self.config.consume_queue_segment_size,
            )?;
            if self
                .topics
                .get(topic)
                .is_none_or(|c| c.queue_count() <= qid)
            {
                self.topics.ensure(topic, qid + 1)?;
            }
            self.queues.insert(key.clone(), cq);
        }
        Ok(self.queues.get(&key))
    }

    /// On a clean reopen, re-checks the records in the last `tail_tolerance` bytes of the log
    /// (CRCs included) and that they end exactly at `end`: damage there after the close sends
    /// the open down the recovery path.
    fn tail_is_intact(&self, segs: &[Segment], end: u64) -> bool {
        let from = end.saturating_sub(self.config.tail_tolerance.max(1));
        let start = self
            .queues
            .values()
            .filter_map(|q| q.first_unit_from(from))
            .map(|u| u.physical_offset)
            .min()
            .unwrap_or(end)
            .min(end);
        let policy = ScanPolicy {
            durable: Some(end),
            mode: crate::RecoveryMode::TruncateAtDamage,
            tail_tolerance: 0,
        };
        let seg_size = self.config.commitlog_segment_size;
        // Every record there must also be in its queue.
        let mut dispatched = true;
        let scanned = recovery::scan(segs, seg_size, start, &policy, |rec| {
            let tx = rec.meta.sys_flag & sys_flag::TRANSACTION_MASK;
            if tx == sys_flag::TRANSACTION_NOT || tx == sys_flag::TRANSACTION_COMMIT {
                let key: QueueKey = (Arc::from(rec.topic), rec.meta.queue_id);
                let present = self
                    .queues
                    .get(&key)
                    .and_then(|q| q.get(rec.meta.queue_offset));
                dispatched &=
                    present.is_some_and(|u| u.physical_offset == rec.meta.physical_offset);
            }
            Ok(())
        });
        dispatched && matches!(scanned, Ok(e) if e.end == end)
    }

    /// Dispatches one recovered record to its queue. A record whose queue offset leaves a gap
    /// marks the queue for a rebuild instead.
    fn dispatch(
        &mut self,
        rec: &RecordView<'_>,
        only: Option<&BTreeSet<QueueKey>>,
        gaps: &mut BTreeSet<QueueKey>,
    ) -> Result<()> {
        let tx = rec.meta.sys_flag & sys_flag::TRANSACTION_MASK;
        if tx != sys_flag::TRANSACTION_NOT && tx != sys_flag::TRANSACTION_COMMIT {
            return Ok(());
        }
        if only.is_none()
            && let Some(src) = properties::get(rec.properties, super::schedule::SCHEDULE_SRC)
                .and_then(super::schedule::Source::parse)
        {
            self.schedule_seen.push(src);
        }
        let key: QueueKey = (Arc::from(rec.topic), rec.meta.queue_id);
        if only.is_some_and(|o| !o.contains(&key)) || gaps.contains(&key) {
            return Ok(());
        }
        let unit = CqUnit {
            physical_offset: rec.meta.physical_offset,
            size: rec.total_size,
            tag_code: super::put::dispatch_tag_code(rec, &self.delay_levels),
        };
        let partial = self.partial_scan;
        let Some(cq) = self.queue_for(rec.topic, rec.meta.queue_id)? else {
            return Ok(());
        };
        if partial && !cq.has_files() && rec.meta.queue_offset > 0 {
            // Its earlier records lie before the scan: rebuild it from the whole log.
            gaps.insert(key);
            return Ok(());
        }
        if cq.put(rec.meta.queue_offset, unit).is_err() {
            gaps.insert(key);
        }
        Ok(())
    }

    /// The recovery path: scan from the checkpoint (or earlier, for lagging or rebuilt queues)
    /// with CRC checks, re-dispatch, truncate the torn tail.
    fn recover(
        &mut self,
        log_dir: &Path,
        segs: Vec<Segment>,
        checkpoint: Option<Checkpoint>,
        log_min: u64,
        mut rebuild: BTreeSet<QueueKey>,
    ) -> Result<(Vec<Segment>, u64, u64)> {
        let seg_size = self.config.commitlog_segment_size;
        let crc_from = checkpoint.map_or(log_min, |cp| {
            recovery::start_by_timestamp(&segs, cp.min_timestamp())
        });
        let lagging = self
            .queues
            .values()
            .filter(|q| q.max_offset() > q.min_offset())
            .map(ConsumeQueue::max_phys_end)
            .min()
            .unwrap_or(u64::MAX);
        let from = if rebuild.is_empty() {
            crc_from.min(lagging)
        } else {
            log_min
        }
        .max(log_min);
        let policy = ScanPolicy {
            durable: checkpoint.map(|c| c.confirm_phy_offset),
            mode: self.config.recovery_mode,
            tail_tolerance: self.config.tail_tolerance,
        };
        let mut gaps = BTreeSet::new();
        self.partial_scan = from > log_min;
        let end = recovery::scan(&segs, seg_size, from, &policy, |rec| {
            self.dispatch(rec, None, &mut gaps)
        })?;
        // Queues that turned out inconsistent are emptied and rebuilt from the whole log.
        if !gaps.is_empty() {
            for key in &gaps {
                let cq = ConsumeQueue::queue_dir(self.dir, &key.0, key.1);
                for (_, p) in crate::storage::fs::list_segments(&cq)? {
                    crate::storage::fs::remove_file_if_exists(&p)?;
                }
                self.queues.remove(key);
            }
            rebuild = std::mem::take(&mut gaps);
            self.partial_scan = false;
            recovery::scan(&segs, seg_size, log_min, &policy, |rec| {
                if rec.meta.physical_offset < end.end {
                    self.dispatch(rec, Some(&rebuild), &mut gaps)
                } else {
                    Ok(())
                }
            })?;
            if let Some(key) = gaps.iter().next() {
                return Err(Error::corrupted(
                    ConsumeQueue::queue_dir(self.dir, &key.0, key.1),
                    0,
                    "queue offsets in the commitlog are not dense",
                ));
            }
        }
        let last_ts = if end.last_store_ts > 0 {
            end.last_store_ts
        } else {
            checkpoint.map_or(0, |c| c.physic_msg_timestamp)
        };
        let segs = recovery::truncate(log_dir, segs, seg_size, end.end, true)?;
        Ok((segs, end.end, last_ts))
    }
}
