//! Opening a store: lock, load, decide between the clean reopen (no scan) and recovery
//! (CRC-checked scan from the checkpoint, torn tail truncated, consume queues re-dispatched and
//! trimmed), then start writing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::{Mutex, RwLock};

use super::checkpoint::CheckpointFile;
use super::commitlog::recovery::{self, ScanPolicy};
use super::commitlog::{CommitLog, Preparer, PreparerConfig, ZERO_AHEAD_GAP, max_append};
use super::consume_queue::ConsumeQueue;
use super::consume_queue::recovery::{Loaded, load};
use super::dispatch::Dispatcher;
use super::group_commit::GroupCommit;
use super::index::IndexService;
use super::index_catch_up::{IndexOpen, Verified, beside_recovery, open_index};
use super::{Engine, QueueMap, WriteState};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::checkpoint::Checkpoint;
use crate::format::cq_unit::CqUnit;
use crate::format::properties::{self, keys};
use crate::format::record::{Decoded, RecordView, decode, sys_flag};
use crate::format::system::SCHEDULE_TOPIC;
use crate::storage::lock::DirLock;
use crate::storage::{Fs, Segment, SegmentSet};

/// The marker file present while a store is open (or after a crash).
pub(crate) const ABORT_FILE: &str = "abort";

/// What the engine's open needs from the layer above it.
pub(crate) trait OpenHooks {
    /// The queues configured for each topic: `(topic, queue count)`.
    fn configured_queues(&self) -> Vec<(String, u32)>;
    /// Whether `topic` is a name the store can hold queues for (found on disk or in the log).
    fn valid_topic(&self, topic: &str) -> bool;
    /// A queue was found on disk or in the log: the topic must know it.
    fn queue_found(&mut self, topic: &str, queue_id: u32) -> Result<()>;
    /// A record re-read by crash recovery.
    fn recovered(&mut self, rec: &RecordView<'_>);
    /// Runs after recovery, before the checkpoint records the recovered end.
    fn before_checkpoint(&mut self) -> Result<()>;
}

type QueueKey = (Arc<str>, u32);

/// What recovery starts from.
struct Recovery {
    checkpoint: Option<Checkpoint>,
    log_min: u64,
    /// Where the consume queues' units end.
    max_cq_end: u64,
    /// Queues to rebuild from the whole log.
    rebuild: BTreeSet<QueueKey>,
}

/// Tells the index catch-up beside recovery that recovery is over, when dropped.
struct StopCatchUp<'a>(&'a Verified);

impl Drop for StopCatchUp<'_> {
    fn drop(&mut self) {
        self.0.finish(0);
    }
}

/// Where recovery's scan found the valid log to end, and data past it.
struct Scanned {
    end: recovery::ScanEnd,
    data_end: u64,
}

struct Loading<'a> {
    fs: &'a Fs,
    dir: &'a Path,
    config: &'a StoreConfig,
    hooks: &'a mut dyn OpenHooks,
    queues: BTreeMap<QueueKey, ConsumeQueue>,
    /// The delay table, for schedule-topic tag codes.
    delay_levels: Vec<u64>,
    /// The store was not closed cleanly (the `abort` marker is there).
    unclean: bool,
    /// Some queue had damaged units cut from its tail.
    trimmed: bool,
    /// The recovery scan starts after the log's first record: a queue without files whose
    /// first record seen is not its first may have lost files.
    partial_scan: bool,
    /// The topic names of the queue keys, so a record's key is built without allocating.
    topic_names: HashMap<Box<str>, Arc<str>>,
}

/// Opens and recovers the engine of the store in `dir` (the directory exists and is locked
/// by `lock`; `config` is validated).
pub(crate) fn open(
    fs: Fs,
    dir: PathBuf,
    config: StoreConfig,
    lock: DirLock,
    hooks: &mut dyn OpenHooks,
) -> Result<Engine> {
    let unclean = fs.exists(&dir.join(ABORT_FILE))?;
    let (cp_file, checkpoint) = CheckpointFile::open(&fs, &dir, !unclean)?;
    let log_dir = dir.join("commitlog");
    fs.create_dir_all(&log_dir)?;
    let seg_size = config.commitlog_segment_size;
    let segs = recovery::load_segments(&fs, &log_dir, seg_size)?;
    let log_min = segs.first().map_or(0, Segment::base);
    let capacity = segs.last().map_or(0, |s| s.base() + seg_size);
    let checkpoint = checkpoint.filter(|cp| plausible(cp, capacity));

    let mut loading = Loading {
        fs: &fs,
        dir: &dir,
        config: &config,
        hooks,
        queues: BTreeMap::new(),
        trimmed: false,
        partial_scan: false,
        delay_levels: config.delay_levels()?,
        unclean,
        topic_names: HashMap::new(),
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
            // A RocketMQ broker that served the store and shut down cleanly may leave the
            // checkpoint behind the end its consume queues reach: the queues, flushed at
            // shutdown, say where the log ends.
            let claimed = cp.confirm_phy_offset.max(max_cq_end);
            match clean_end(&segs, seg_size, claimed, max_cq_end, log_min) {
                Some(end) if loading.tail_is_intact(&segs, end)? => Some(end),
                _ => None,
            }
        }
        _ => None,
    };

    let index_open = IndexOpen {
        fs: &fs,
        dir: &dir,
        config: &config,
        unclean,
        durable_ts: checkpoint.map_or(0, |c| c.index_msg_timestamp),
    };
    let (segs, end, last_ts, index) = match clean {
        Some(end) => {
            let segs = recovery::truncate(&fs, &log_dir, segs, seg_size, end, None)?;
            let ts = checkpoint.map_or(0, |c| c.physic_msg_timestamp);
            let index = config
                .index
                .enabled
                .then(|| open_index(index_open, &segs, end))
                .transpose()?;
            (segs, end, ts, index)
        }
        None => {
            let recovery = Recovery {
                checkpoint,
                log_min,
                max_cq_end,
                rebuild,
            };
            loading.recover_with_index(&log_dir, segs, recovery, index_open)?
        }
    };
    for q in loading.queues.values_mut() {
        q.truncate_past(end)?;
    }

    let recovered = clean.is_none();
    let max_append = max_append(config.max_message_size);
    let set = SegmentSet::new(fs.clone(), log_dir.clone(), seg_size, segs);
    let log = CommitLog::new(set, max_append, end, last_ts);
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
    let preparer = Preparer::new(PreparerConfig {
        fs: fs.clone(),
        dir: log_dir.clone(),
        segment_size: seg_size,
        warm,
        populate_write,
        zero_gap: ZERO_AHEAD_GAP,
    });
    let fresh = log.written() == 0 && log.min_offset() == 0;
    let writer = log.writer(Some(preparer))?;
    if warm && fresh {
        // A new store's first segment was not prepared ahead: zero-fill its start now (the
        // gap the prefault thread keeps), the prefault thread keeps ahead from there.
        writer.zero_start(ZERO_AHEAD_GAP)?;
    }

    let mut queue_map = QueueMap::default();
    for ((topic, qid), cq) in std::mem::take(&mut loading.queues) {
        let idx = qid as usize;
        let v = queue_map.entry(topic).or_default();
        v.resize_with(v.len().max(idx + 1), || None);
        v[idx] = Some(Arc::new(cq));
    }
    for v in queue_map.values() {
        for q in v.iter().flatten() {
            q.flush()?;
        }
    }
    loading.hooks.before_checkpoint()?;
    // The marker's bytes do not matter, its entry does: the directory sync below makes it
    // durable before anything is appended (and a new checkpoint's entry with it).
    fs.write_marker(
        &dir.join(ABORT_FILE),
        std::process::id().to_string().as_bytes(),
    )?;
    // (Skipped after a clean close when nothing changed: the file holds it durably.)
    cp_file.write(&Checkpoint {
        physic_msg_timestamp: last_ts,
        logics_msg_timestamp: last_ts,
        index_msg_timestamp: index.as_ref().map_or(0, IndexService::durable_ts),
        master_flushed_offset: end,
        confirm_phy_offset: end,
    })?;
    fs.sync_dir(&dir)?;
    Ok(Engine {
        crash_recovered: recovered,
        log,
        write: Mutex::new(Some(WriteState {
            log: writer,
            queue_files: Default::default(),
            slots: Default::default(),
            last_store_ts: last_ts,
        })),
        queues: RwLock::new(queue_map),
        dispatcher: Dispatcher::new(last_ts),
        group: GroupCommit::new(end),
        poisoned: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        checkpoint: cp_file,
        index,
        disk_full: Default::default(),
        delay_levels: config.delay_levels()?,
        arrivals: Default::default(),
        lock: Mutex::new(Some(lock)),
        read_only: None,
        fs,
        dir,
        config,
    })
}

/// A checkpoint whose offsets fit the log and whose times are not in the future.
fn plausible(cp: &Checkpoint, capacity: u64) -> bool {
    let horizon = crate::clock::now_ms() + 86_400_000;
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

impl Loading<'_> {
    /// Loads every consume queue found on disk or configured. Returns the queues that must be
    /// rebuilt from the start of the log (damaged beyond trimming, or missing although
    /// configured while the log holds data).
    fn load_queues(&mut self, segs: &[Segment], log_min: u64) -> Result<BTreeSet<QueueKey>> {
        let seg_size = self.config.commitlog_segment_size;
        let cq_size = self.config.consume_queue_segment_size;
        let root = self.dir.join("consumequeue");
        let mut found: BTreeSet<(String, u32)> = BTreeSet::new();
        for t in self.fs.list(&root)? {
            if !t.is_dir {
                continue;
            }
            if !self.hooks.valid_topic(&t.name) {
                return Err(Error::corrupted(
                    root.join(&t.name),
                    0,
                    "a consume queue directory whose name cannot be a topic",
                ));
            }
            for q in self.fs.list(&root.join(&t.name))? {
                // Anything else in a topic's directory is not a queue, and is left alone.
                let Some(qid) = q.name.parse::<u32>().ok().filter(|_| q.is_dir) else {
                    continue;
                };
                if qid >= crate::config::MAX_QUEUES_PER_TOPIC {
                    return Err(Error::corrupted(
                        root.join(&t.name).join(&q.name),
                        0,
                        format!(
                            "queue id {qid} of topic {} is beyond the {} queues a topic can have",
                            t.name,
                            crate::config::MAX_QUEUES_PER_TOPIC
                        ),
                    ));
                }
                found.insert((t.name.clone(), qid));
            }
        }
        let mut rebuild = BTreeSet::new();
        let mut suspects = Vec::new();
        for (topic, qid) in &found {
            let name: Arc<str> = Arc::from(topic.as_str());
            let loaded = self.load_queue(segs, &name, *qid, log_min, self.unclean)?;
            let cq = match loaded {
                Loaded::Ready(cq) => cq,
                Loaded::Trimmed(cq) => {
                    ::log::warn!(
                        "consume queue {name}:{qid}: units past offset {} do not match the commitlog and were cut; re-dispatched from the log",
                        cq.max_offset()
                    );
                    self.trimmed = true;
                    if cq.max_offset() == cq.min_offset() {
                        rebuild.insert((name.clone(), *qid));
                    }
                    cq
                }
                Loaded::Rebuild(cq) => {
                    ::log::warn!(
                        "consume queue {name}:{qid}: files damaged beyond repair were removed; rebuilding it from the commitlog"
                    );
                    rebuild.insert((name.clone(), *qid));
                    cq
                }
                Loaded::Suspect {
                    kept_end,
                    claimed_end,
                } => {
                    suspects.push((name, *qid, kept_end, claimed_end));
                    continue;
                }
            };
            self.queues.insert((name, *qid), cq);
            self.hooks.queue_found(topic, *qid)?;
        }
        if !suspects.is_empty() {
            // A cleanly closed store whose queues' last units do not match the log: if the
            // log holds intact records up to where the units say, the units were damaged and
            // are trimmed (then re-dispatched); otherwise the log lost records its queues
            // reference, which is not a torn tail.
            let capacity = segs.last().map_or(0, |s| s.base() + seg_size);
            let referenced = suspects
                .iter()
                .map(|s| s.3)
                .filter(|&e| e <= capacity)
                .max()
                .unwrap_or(0);
            let from = suspects.iter().map(|s| s.2).min().unwrap_or(0).max(log_min);
            let policy = ScanPolicy {
                durable: None,
                mode: crate::RecoveryMode::TruncateAtDamage,
                tail_tolerance: 0,
                referenced: 0,
            };
            let end = recovery::scan(segs, seg_size, from, &policy, |_| Ok(()))?.end;
            if end < referenced
                && self.config.recovery_mode != crate::RecoveryMode::TruncateAtDamage
            {
                let seg = crate::storage::segment_set::find_in(segs, seg_size, end)
                    .or(segs.last())
                    .ok_or_else(|| {
                        Error::corrupted(self.dir.join("commitlog"), end, "no segments")
                    })?;
                return Err(Error::corrupted(
                    seg.path(),
                    end - seg.base(),
                    format!(
                        "commitlog offset {end}: damaged record, and the consume queues of this cleanly closed store reference records up to {referenced}"
                    ),
                ));
            }
            for (name, qid, _, _) in suspects {
                let (Loaded::Ready(cq) | Loaded::Trimmed(cq) | Loaded::Rebuild(cq)) =
                    self.load_queue(segs, &name, qid, log_min, true)?
                else {
                    // A load that may trim never reports a suspect tail.
                    continue;
                };
                self.trimmed = true;
                if cq.max_offset() == cq.min_offset() {
                    rebuild.insert((name.clone(), qid));
                }
                self.hooks.queue_found(&name, qid)?;
                self.queues.insert((name, qid), cq);
            }
        }
        // Configured queues without a directory: created now; if the log holds data they may
        // have lost their files, so they are rebuilt.
        let log_has_data = segs
            .iter()
            .any(|s| s.read_from(0).iter().take(8).any(|&b| b != 0));
        for (topic, count) in self.hooks.configured_queues() {
            for qid in 0..count {
                if found.contains(&(topic.clone(), qid)) {
                    continue;
                }
                let name: Arc<str> = Arc::from(topic.as_str());
                let cq = ConsumeQueue::create(self.fs, self.dir, name.clone(), qid, cq_size)?;
                if log_has_data {
                    rebuild.insert((name.clone(), qid));
                }
                self.queues.insert((name, qid), cq);
            }
        }
        Ok(rebuild)
    }

    /// Loads one queue's files, verifying its units against the loaded log.
    fn load_queue(
        &self,
        segs: &[Segment],
        topic: &Arc<str>,
        qid: u32,
        log_min: u64,
        trim: bool,
    ) -> Result<Loaded> {
        let seg_size = self.config.commitlog_segment_size;
        let dir = ConsumeQueue::queue_dir(self.dir, topic, qid);
        let verify = |qoff: u64, unit: &CqUnit| {
            recovery::unit_matches(segs, seg_size, topic, qid, qoff, unit)
        };
        load(
            self.fs,
            &dir,
            topic.clone(),
            qid,
            self.config.consume_queue_segment_size,
            log_min,
            self.unclean,
            trim,
            &verify,
        )
    }

    fn queue_for(&mut self, topic: &str, qid: u32) -> Result<Option<&ConsumeQueue>> {
        let name = match self.topic_names.get(topic) {
            Some(name) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(topic);
                self.topic_names.insert(Box::from(topic), name.clone());
                name
            }
        };
        let key: QueueKey = (name, qid);
        if !self.queues.contains_key(&key) {
            if !self.hooks.valid_topic(topic) || qid >= crate::config::MAX_QUEUES_PER_TOPIC {
                // Never skipped silently: the record would be stored but never served.
                return Err(Error::corrupted(
                    self.dir.join("commitlog"),
                    0,
                    format!(
                        "a record for topic {topic:?} queue {qid}, which the store cannot serve (queue ids stop at {})",
                        crate::config::MAX_QUEUES_PER_TOPIC
                    ),
                ));
            }
            let cq = ConsumeQueue::create(
                self.fs,
                self.dir,
                key.0.clone(),
                qid,
                self.config.consume_queue_segment_size,
            )?;
            self.hooks.queue_found(topic, qid)?;
            self.queues.insert(key.clone(), cq);
        }
        Ok(self.queues.get(&key))
    }

    /// On a clean reopen, re-checks the records in the last `tail_tolerance` bytes of the log
    /// (CRCs included) and that they end exactly at `end`: damage there after the close sends
    /// the open down the recovery path. A queue file that cannot be read is an error.
    fn tail_is_intact(&self, segs: &[Segment], end: u64) -> Result<bool> {
        let from = end.saturating_sub(self.config.tail_tolerance.max(1));
        let mut start = end;
        for q in self.queues.values() {
            if let Some(u) = q.first_unit_from(from)? {
                start = start.min(u.physical_offset);
            }
        }
        let policy = ScanPolicy {
            durable: Some(end),
            mode: crate::RecoveryMode::TruncateAtDamage,
            tail_tolerance: 0,
            referenced: 0,
        };
        let seg_size = self.config.commitlog_segment_size;
        // Every record there must also be in its queue.
        let mut dispatched = true;
        let mut failed = None;
        let scanned = recovery::scan(segs, seg_size, start, &policy, |rec| {
            let tx = rec.meta.sys_flag & sys_flag::TRANSACTION_MASK;
            if tx == sys_flag::TRANSACTION_NOT || tx == sys_flag::TRANSACTION_COMMIT {
                let key: QueueKey = (Arc::from(rec.topic), rec.meta.queue_id);
                let present = match self.queues.get(&key) {
                    Some(q) => q.try_get(rec.meta.queue_offset).unwrap_or_else(|e| {
                        failed.get_or_insert(e);
                        None
                    }),
                    None => None,
                };
                dispatched &=
                    present.is_some_and(|u| u.physical_offset == rec.meta.physical_offset);
            }
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(dispatched && matches!(scanned, Ok(e) if e.end == end))
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
        if only.is_none() {
            self.hooks.recovered(rec);
        }
        // The key is built only when there is a set to look it up in (an allocation per
        // record otherwise).
        if only.is_some() || !gaps.is_empty() {
            let key: QueueKey = (Arc::from(rec.topic), rec.meta.queue_id);
            if only.is_some_and(|o| !o.contains(&key)) || gaps.contains(&key) {
                return Ok(());
            }
        }
        let unit = CqUnit {
            physical_offset: rec.meta.physical_offset,
            size: rec.total_size,
            tag_code: dispatch_tag_code(rec, &self.delay_levels),
        };
        let partial = self.partial_scan;
        let Some(cq) = self.queue_for(rec.topic, rec.meta.queue_id)? else {
            return Ok(());
        };
        if partial && !cq.has_files() && rec.meta.queue_offset > 0 {
            // Its earlier records lie before the scan: rebuild it from the whole log.
            gaps.insert((Arc::from(rec.topic), rec.meta.queue_id));
            return Ok(());
        }
        // A record past the queue's end leaves a gap: the queue is rebuilt from the whole log.
        // Anything else (no space, an I/O error) fails the open as it is.
        match cq.put(rec.meta.queue_offset, unit) {
            Ok(()) => Ok(()),
            Err(Error::Corrupted { .. }) => {
                gaps.insert((Arc::from(rec.topic), rec.meta.queue_id));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The recovery path ([`Loading::recover_scan`], then the torn tail truncated), with the
    /// index brought up to the recovered end: on a second thread beside the scan when the index
    /// is on ([`beside_recovery`]).
    fn recover_with_index(
        &mut self,
        log_dir: &Path,
        segs: Vec<Segment>,
        recovery: Recovery,
        index_open: IndexOpen<'_>,
    ) -> Result<(Vec<Segment>, u64, u64, Option<IndexService>)> {
        let checkpoint = recovery.checkpoint;
        if !self.config.index.enabled {
            let scanned = self.recover_scan(&segs, recovery, None)?;
            let (segs, end, ts) = self.truncate_recovered(log_dir, segs, scanned, checkpoint)?;
            return Ok((segs, end, ts, None));
        }
        let verified = Verified::default();
        let (scanned, beside) = std::thread::scope(|s| {
            let catch_up = std::thread::Builder::new()
                .name("mqlite-open-index".into())
                .spawn_scoped(s, || beside_recovery(index_open, &segs, &verified));
            // Ends the catch-up however the scan ends (an error, even a panic unwinding through
            // here, which would otherwise wait for it forever); a no-op when the scan got as
            // far as publishing the end.
            let stop = StopCatchUp(&verified);
            let scanned = self.recover_scan(&segs, recovery, catch_up.is_ok().then_some(&verified));
            drop(stop);
            let beside = catch_up.ok().map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        "index catch-up at open",
                        self.dir,
                        std::io::Error::other("the thread panicked"),
                    ))
                })
            });
            (scanned, beside)
        });
        let (segs, end, ts) = self.truncate_recovered(log_dir, segs, scanned?, checkpoint)?;
        let index = match beside {
            Some(beside) => beside?.complete(index_open, &segs, end)?,
            // The thread could not be started: the same work after recovery.
            None => open_index(index_open, &segs, end)?,
        };
        Ok((segs, end, ts, Some(index)))
    }

    /// Recovery's scan: from the checkpoint (or earlier, for lagging or rebuilt queues) with CRC
    /// checks, re-dispatching every record; finds the end of the valid log and where data lies
    /// past it. Publishes its progress to `verified`.
    fn recover_scan(
        &mut self,
        segs: &[Segment],
        recovery: Recovery,
        verified: Option<&Verified>,
    ) -> Result<Scanned> {
        let Recovery {
            checkpoint,
            log_min,
            max_cq_end,
            mut rebuild,
        } = recovery;
        let seg_size = self.config.commitlog_segment_size;
        let crc_from = checkpoint.map_or(log_min, |cp| {
            recovery::start_by_timestamp(segs, cp.min_timestamp())
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
            // After a clean close (by mqlite or a RocketMQ broker) every unit was flushed with
            // its record: a record they reference is data, never a torn tail. After a crash
            // the queues' pages may have reached the disk before the log's.
            referenced: if self.unclean { 0 } else { max_cq_end },
        };
        ::log::info!(
            "{}: {}; recovering: CRC-checked scan of the commitlog from offset {from}",
            self.dir.display(),
            if self.unclean {
                "the store was not closed cleanly"
            } else {
                "the checkpoint or the consume queues disagree with the log"
            }
        );
        let mut gaps = BTreeSet::new();
        self.partial_scan = from > log_min;
        if let Some(v) = verified {
            v.start(from);
        }
        let end = recovery::scan(segs, seg_size, from, &policy, |rec| {
            self.dispatch(rec, None, &mut gaps)?;
            if let Some(v) = verified {
                v.advance(rec.meta.physical_offset + u64::from(rec.total_size));
            }
            Ok(())
        })?;
        if let Some(v) = verified {
            v.finish(end.end);
        }
        // What lies past the end must be a torn tail (unless the operator chose to cut at any
        // damage); it is zeroed below, and only where it holds data.
        let limit = (policy.mode != crate::RecoveryMode::TruncateAtDamage).then(|| {
            self.config
                .tail_tolerance
                .max(max_append(self.config.max_message_size) as u64)
        });
        let data_end = recovery::check_past_end(self.fs, segs, seg_size, end.end, limit)?;
        // Queues that turned out inconsistent are emptied and rebuilt from the whole log.
        if !gaps.is_empty() {
            for key in &gaps {
                let cq = ConsumeQueue::queue_dir(self.dir, &key.0, key.1);
                ::log::warn!(
                    "consume queue {}:{} does not match the commitlog: rebuilding it from the whole log",
                    key.0,
                    key.1
                );
                for (_, p) in self.fs.list_segments(&cq)? {
                    self.fs.remove_file_if_exists(&p)?;
                }
                self.queues.remove(key);
            }
            rebuild = std::mem::take(&mut gaps);
            self.partial_scan = false;
            recovery::scan(segs, seg_size, log_min, &policy, |rec| {
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
        Ok(Scanned { end, data_end })
    }

    /// Truncates the log at the end recovery's scan found (zeroing the torn tail where it holds
    /// data); returns the segments, the end and the last store time.
    fn truncate_recovered(
        &self,
        log_dir: &Path,
        segs: Vec<Segment>,
        scanned: Scanned,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(Vec<Segment>, u64, u64)> {
        let Scanned { end, data_end } = scanned;
        let seg_size = self.config.commitlog_segment_size;
        let last_ts = if end.last_store_ts > 0 {
            end.last_store_ts
        } else {
            checkpoint.map_or(0, |c| c.physic_msg_timestamp)
        };
        let segs = recovery::truncate(self.fs, log_dir, segs, seg_size, end.end, Some(data_end))?;
        ::log::info!(
            "{}: recovered; the commitlog ends at offset {}",
            self.dir.display(),
            end.end
        );
        Ok((segs, end.end, last_ts))
    }
}

/// The consume queue tag code of a stored record, as dispatch computes it: the delivery time
/// for the schedule topic (RocketMQ does that only there), the tag's hash otherwise, the
/// timer topic included (a timer message's delivery time is its record's `TIMER_OUT_MS`).
pub(crate) fn dispatch_tag_code(rec: &RecordView<'_>, delay_levels: &[u64]) -> i64 {
    if rec.topic == SCHEDULE_TOPIC {
        let level = (rec.meta.queue_id as usize).min(delay_levels.len().saturating_sub(1));
        let delay = delay_levels.get(level).copied().unwrap_or(1000);
        return rec.meta.store_timestamp.saturating_add(delay as i64);
    }
    crate::format::hash::tag_code(properties::get(rec.properties, keys::TAGS))
}
