//! The index files (`index/yyyyMMddHHmmssSSS`, RocketMQ's `IndexService`): a hash index from
//! `topic#key` (every `UNIQ_KEY` and every space-separated `KEYS` entry) to CommitLog offsets.
//! Byte layout in [`crate::format::index`].
//!
//! - Entries are written by the index writer ([`crate::log::Engine::index_pending`]), which
//!   reads visible records back from the CommitLog as RocketMQ's reput service does: the
//!   store's `mqlite-indexer` thread runs it as records arrive (an append only signals it),
//!   and a query runs it first, so a lookup sees every record visible when it starts.
//! - Files are written in place through their mapping as 32-bit atomic words
//!   ([`Segment::words`]), so queries read a file while the writer adds to it.
//! - A file that fills is flushed (in the background) and its end time becomes the
//!   checkpoint's `indexMsgTimestamp`; the file being written is flushed at close.
//! - After a crash, every file ending after `indexMsgTimestamp` (not known durable) is
//!   deleted, as RocketMQ does, and open re-indexes the CommitLog from the end of what is left
//!   ([`IndexService::indexed_through`]), going on past damage at the next segment. Open
//!   and close flush the file being written, when it holds entries the checkpoint does not
//!   cover, and advance `indexMsgTimestamp` to its end, so a failed open or a crash right
//!   after one does not cost a rebuild. (Entries added later within the same millisecond as
//!   such a flush would survive a power cut only if their pages did; a lost entry makes a
//!   lookup miss its record, never return a wrong one, since every hit is checked against the
//!   record.)
//! - A message's keys all go to one file (a file rolls early rather than split a message), so
//!   "indexed through offset X" is exact and a replay never indexes a message twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::format::index::{
    self as fmt, ENTRY_KEY_HASH, ENTRY_PHY_OFFSET, ENTRY_PREV, ENTRY_TIME_DIFF, HEADER_SIZE,
    IndexHeader,
};
use crate::format::properties::{get_many, keys};
use crate::format::record::{RecordView, sys_flag};
use crate::storage::{Fs, Segment};

pub(crate) mod check;

/// How far (CommitLog bytes) the index may fall behind before an append wakes its writer.
pub(crate) const KICK_BEHIND: u64 = 1 << 20;

/// The index directory under the store root.
pub(crate) const INDEX_DIR: &str = "index";

/// One index file.
#[derive(Debug)]
struct IndexFile {
    seg: Segment,
    name: u64,
    slots: u32,
    entries: u32,
    begin_ts: AtomicI64,
    end_ts: AtomicI64,
    begin_phy: AtomicI64,
    end_phy: AtomicI64,
    slot_count: AtomicI32,
    /// The next entry number (1 when empty); stored last on a put (release).
    count: AtomicI32,
}

/// The position of the newest file holding entries, if it indexes a record at or past
/// `log_end` (then it and every later file go).
fn newest_past<F: std::borrow::Borrow<IndexFile>>(files: &[F], log_end: u64) -> Option<usize> {
    let i = files.iter().rposition(|f| f.borrow().used() > 1)?;
    (files[i].borrow().end_phy.load(Ordering::Acquire) as u64 >= log_end).then_some(i)
}

impl IndexFile {
    fn new(seg: Segment, name: u64, slots: u32, entries: u32, h: IndexHeader) -> IndexFile {
        IndexFile {
            seg,
            name,
            slots,
            entries,
            begin_ts: AtomicI64::new(h.begin_timestamp),
            end_ts: AtomicI64::new(h.end_timestamp),
            begin_phy: AtomicI64::new(h.begin_phy_offset),
            end_phy: AtomicI64::new(h.end_phy_offset),
            slot_count: AtomicI32::new(h.hash_slot_count),
            count: AtomicI32::new(h.index_count),
        }
    }

    fn words(&self) -> &[AtomicU32] {
        self.seg.words().unwrap_or(&[])
    }

    fn load(&self, pos: u64) -> Option<u32> {
        load(self.words(), pos)
    }

    fn store(&self, pos: u64, v: u32) {
        store(self.words(), pos, v);
    }

    fn load_i64(&self, pos: u64) -> Option<i64> {
        load_i64(self.words(), pos)
    }

    fn store_i64(&self, pos: u64, v: i64) {
        store_i64(self.words(), pos, v);
    }

    fn header(&self) -> IndexHeader {
        IndexHeader {
            begin_timestamp: self.begin_ts.load(Ordering::Acquire),
            end_timestamp: self.end_ts.load(Ordering::Acquire),
            begin_phy_offset: self.begin_phy.load(Ordering::Acquire),
            end_phy_offset: self.end_phy.load(Ordering::Acquire),
            hash_slot_count: self.slot_count.load(Ordering::Acquire),
            index_count: self.count.load(Ordering::Acquire),
        }
    }

    /// Writes the in-memory header into the mapping.
    fn write_header(&self) {
        let h = self.header();
        self.store_i64(fmt::BEGIN_TIMESTAMP as u64, h.begin_timestamp);
        self.store_i64(fmt::END_TIMESTAMP as u64, h.end_timestamp);
        self.store_i64(fmt::BEGIN_PHY_OFFSET as u64, h.begin_phy_offset);
        self.store_i64(fmt::END_PHY_OFFSET as u64, h.end_phy_offset);
        self.store(fmt::HASH_SLOT_COUNT as u64, h.hash_slot_count as u32);
        self.store(fmt::INDEX_COUNT as u64, h.index_count as u32);
    }

    /// The header as stored in the mapping.
    fn read_header(&self) -> Option<IndexHeader> {
        let mut buf = [0u8; HEADER_SIZE];
        for (i, chunk) in buf.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.load(i as u64 * 4)?.to_be_bytes());
        }
        IndexHeader::decode(&buf).ok()
    }

    fn used(&self) -> u32 {
        self.count.load(Ordering::Acquire).max(1) as u32
    }

    fn is_full(&self) -> bool {
        self.used() >= self.entries
    }

    /// Room for `n` more entries.
    fn has_room(&self, n: u32) -> bool {
        u64::from(self.used()) + u64::from(n) <= u64::from(self.entries)
    }

    /// Adds one entry (the caller checked there is room). Only the index writer calls this.
    fn put(&self, key_hash: i32, phys: u64, store_ts: i64) {
        let w = self.words();
        let n = self.used();
        let slot_pos = fmt::slot_pos(fmt::slot_of(key_hash, self.slots));
        let prev = match load(w, slot_pos) {
            Some(v) if v as i32 > 0 && v <= n => v,
            _ => 0,
        };
        if n <= 1 {
            // The first entry sets the begin values before its time difference is taken, so
            // it reads back its own store time.
            self.begin_ts.store(store_ts, Ordering::Release);
            self.begin_phy.store(phys as i64, Ordering::Release);
            store_i64(w, fmt::BEGIN_TIMESTAMP as u64, store_ts);
            store_i64(w, fmt::BEGIN_PHY_OFFSET as u64, phys as i64);
        }
        let diff = fmt::time_diff(store_ts, self.begin_ts.load(Ordering::Relaxed));
        let at = fmt::entry_pos(self.slots, n);
        store(w, at + ENTRY_KEY_HASH as u64, key_hash as u32);
        store_i64(w, at + ENTRY_PHY_OFFSET as u64, phys as i64);
        store(w, at + ENTRY_TIME_DIFF as u64, diff as u32);
        store(w, at + ENTRY_PREV as u64, prev);
        // The entry is complete before the slot points at it (release).
        store(w, slot_pos, n);
        if prev == 0 {
            // Only the index writer changes the counters: no read-modify-write needed.
            let used = self.slot_count.load(Ordering::Relaxed) + 1;
            self.slot_count.store(used, Ordering::Release);
            store(w, fmt::HASH_SLOT_COUNT as u64, used as u32);
        }
        self.end_ts.store(store_ts, Ordering::Release);
        self.end_phy.store(phys as i64, Ordering::Release);
        store_i64(w, fmt::END_TIMESTAMP as u64, store_ts);
        store_i64(w, fmt::END_PHY_OFFSET as u64, phys as i64);
        store(w, fmt::INDEX_COUNT as u64, n + 1);
        self.count.store(n as i32 + 1, Ordering::Release);
    }

    /// RocketMQ's `isTimeMatched`.
    fn time_matched(&self, begin: i64, end: i64) -> bool {
        let (b, e) = (
            self.begin_ts.load(Ordering::Acquire),
            self.end_ts.load(Ordering::Acquire),
        );
        (begin < b && end > e) || (begin >= b && begin <= e) || (end >= b && end <= e)
    }

    /// RocketMQ's `selectPhyOffset`: walks the slot chain of `key_hash` newest first and hands
    /// each entry of that hash stored in `[begin, end]` to `accept`, which checks the record
    /// and says whether it counts; stops at `max` accepted. Times are whole seconds from the
    /// file's begin, so `begin` is widened by one second here and the caller checks exactly.
    fn select(
        &self,
        key_hash: i32,
        begin: i64,
        end: i64,
        max: usize,
        out: &mut Vec<u64>,
        accept: &mut dyn FnMut(u64) -> bool,
    ) {
        let count = self.used();
        let Some(mut cur) = self.load(fmt::slot_pos(fmt::slot_of(key_hash, self.slots))) else {
            return;
        };
        let begin_file = self.begin_ts.load(Ordering::Acquire);
        let widened = begin.saturating_sub(999);
        let mut steps = 0u32;
        while out.len() < max && cur as i32 > 0 && cur < count && steps < count {
            steps += 1;
            let at = fmt::entry_pos(self.slots, cur);
            let (Some(hash), Some(phys), Some(diff), Some(prev)) = (
                self.load(at + ENTRY_KEY_HASH as u64),
                self.load_i64(at + ENTRY_PHY_OFFSET as u64),
                self.load(at + ENTRY_TIME_DIFF as u64),
                self.load(at + ENTRY_PREV as u64),
            ) else {
                return;
            };
            let diff = diff as i32;
            if diff < 0 {
                return;
            }
            let time = begin_file.saturating_add(i64::from(diff) * 1000);
            // A RocketMQ broker takes the first entry's time difference before it sets the
            // file's begin time: that entry's time is not trusted, the record's is checked.
            let in_time = cur == 1 || (time >= widened && time <= end);
            if hash as i32 == key_hash && in_time && phys >= 0 && accept(phys as u64) {
                out.push(phys as u64);
            }
            if prev as i32 <= 0 || prev >= cur || (cur != 1 && time < widened) {
                return;
            }
            cur = prev;
        }
    }

    fn flush(&self) -> Result<()> {
        self.seg.flush(0, self.seg.size())
    }
}

/// The index files of a store and their single writer.
#[derive(Debug)]
pub(crate) struct IndexService {
    fs: Fs,
    dir: PathBuf,
    slots: u32,
    entries: u32,
    files: RwLock<Vec<Arc<IndexFile>>>,
    /// Held while entries are added (the dispatcher is the only writer; recovery runs first).
    writer: Mutex<Writer>,
    /// `indexMsgTimestamp`: end time of the newest file known durable.
    durable_ts: Arc<AtomicU64>,
    /// CommitLog offset up to which every record is indexed.
    indexed_to: AtomicU64,
    /// Held by whoever brings the index up to the log (the writer thread or a query).
    indexing: Mutex<()>,
    /// Set when the writer thread has been told of new records and not yet started on them.
    kicked: AtomicBool,
    kick_tx: crossbeam_channel::Sender<()>,
    kick_rx: crossbeam_channel::Receiver<()>,
}

#[derive(Debug, Default)]
struct Writer {
    /// Offset of the last record indexed (all its keys).
    indexed_through: Option<u64>,
    /// The newest file (the last of `files`), which entries go to.
    current: Option<Arc<IndexFile>>,
    /// The background flush of the last file that filled.
    flushing: Option<JoinHandle<Result<()>>>,
    /// An empty file left by the last run (created ahead of its writer), used next.
    spare: Option<Arc<IndexFile>>,
    /// Entries were added since the last flush (or the checkpoint does not cover the files):
    /// [`IndexService::flush`] has something to do.
    unflushed: bool,
}

/// What [`IndexService::open`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IndexLoad {
    /// Files deleted because a crash may have left them incomplete.
    pub(crate) dropped: usize,
}

impl IndexService {
    /// Loads `{root}/index`. After an unclean exit (`unclean`), files not known durable
    /// (ending after `durable_ts`, the checkpoint's `indexMsgTimestamp`) are deleted,
    /// as are, in any case, the newest files that index records at or past `log_end` (the log
    /// lost its tail) and files whose header contradicts their size. Files of another geometry
    /// than the configured one or RocketMQ's default are left alone and not used.
    pub(crate) fn open(
        fs: &Fs,
        root: &Path,
        config: &IndexConfig,
        unclean: bool,
        durable_ts: u64,
        log_end: u64,
    ) -> Result<(IndexService, IndexLoad)> {
        let dir = root.join(INDEX_DIR);
        fs.create_dir_all(&dir)?;
        let mut names: Vec<(u64, String)> = fs
            .list(&dir)?
            .into_iter()
            .filter(|e| !e.is_dir && fmt::is_file_name(&e.name))
            .filter_map(|e| e.name.parse::<u64>().ok().map(|n| (n, e.name)))
            .collect();
        names.sort();
        let mut files = Vec::new();
        let mut load = IndexLoad::default();
        let drop_file = |path: &Path, why: &str| -> Result<()> {
            ::log::info!("index file {} deleted: {why}", path.display());
            fs.remove_file_if_exists(path)?;
            Ok(())
        };
        for (name, file) in names {
            let path = dir.join(&file);
            let len = fs.len(&path)?;
            let Some((slots, entries)) = geometry(len, config) else {
                ::log::warn!(
                    "index file {} is {len} bytes, which fits neither the configured index size ({}) nor RocketMQ's ({}): left alone, not used",
                    path.display(),
                    fmt::file_size(config.max_hash_slots, config.max_index_entries),
                    fmt::file_size(
                        fmt::ROCKETMQ_MAX_HASH_SLOTS,
                        fmt::ROCKETMQ_MAX_INDEX_ENTRIES
                    ),
                );
                continue;
            };
            let mut seg = fs.open_segment(&path, 0, len)?;
            seg.set_published(0);
            if seg.words().is_none() {
                return Err(Error::corrupted(
                    &path,
                    0,
                    "index file cannot be mapped as words",
                ));
            }
            let probe = IndexFile::new(seg, name, slots, entries, IndexHeader::EMPTY);
            let Some(h) = probe.read_header() else {
                return Err(Error::corrupted(&path, 0, "index header unreadable"));
            };
            let f = IndexFile::new(probe.seg, name, slots, entries, h);
            if h.index_count as u64 > u64::from(entries) || h.hash_slot_count < 0 {
                drop(f);
                drop_file(&path, "its header counts more entries than it holds")?;
                load.dropped += 1;
                continue;
            }
            files.push(f);
        }
        if unclean {
            // RocketMQ: files ending after indexMsgTimestamp were not flushed.
            while let Some(f) = files.last() {
                if f.end_ts.load(Ordering::Acquire) as u64 <= durable_ts {
                    break;
                }
                let path = f.seg.path().to_path_buf();
                files.pop();
                drop_file(
                    &path,
                    "not known durable after an unclean exit; rebuilt from the commitlog",
                )?;
                load.dropped += 1;
            }
        }
        while let Some(i) = newest_past(&files, log_end) {
            for f in files.split_off(i) {
                let path = f.seg.path().to_path_buf();
                drop(f);
                drop_file(&path, "it indexes records past the end of the commitlog")?;
                load.dropped += 1;
            }
        }
        if load.dropped > 0 {
            fs.sync_dir(&dir)?;
        }
        let indexed_through = files
            .iter()
            .rev()
            .find(|f| f.used() > 1)
            .map(|f| f.end_phy.load(Ordering::Acquire) as u64);
        // An empty newest file behind a file with room is the next file created ahead of the
        // last run's writer: it stays the spare.
        let spare = match files.len() {
            n if n >= 2 && files[n - 1].used() <= 1 && !files[n - 2].is_full() => files.pop(),
            _ => None,
        };
        let files: Vec<Arc<IndexFile>> = files.into_iter().map(Arc::new).collect();
        let (kick_tx, kick_rx) = crossbeam_channel::bounded(1);
        let current = files.last().cloned();
        // After a clean close the checkpoint covers every file: nothing to flush until an
        // entry is added.
        let unflushed = current
            .as_ref()
            .is_some_and(|f| f.end_ts.load(Ordering::Acquire).max(0) as u64 > durable_ts);
        Ok((
            IndexService {
                fs: fs.clone(),
                dir,
                slots: config.max_hash_slots,
                entries: config.max_index_entries,
                files: RwLock::new(files),
                writer: Mutex::new(Writer {
                    indexed_through,
                    current,
                    spare: spare.map(Arc::new),
                    unflushed,
                    ..Writer::default()
                }),
                durable_ts: Arc::new(AtomicU64::new(durable_ts)),
                indexed_to: AtomicU64::new(0),
                indexing: Mutex::new(()),
                kicked: AtomicBool::new(false),
                kick_tx,
                kick_rx,
            },
            load,
        ))
    }

    /// CommitLog offset of the last record indexed; records up to it are not indexed again.
    pub(crate) fn indexed_through(&self) -> Option<u64> {
        self.writer.lock().indexed_through
    }

    /// Whether [`IndexService::open`] would have dropped files for indexing records at or
    /// past `log_end` (the newest file holding entries does), for files loaded without
    /// knowing the end of the log (`u64::MAX`).
    pub(crate) fn indexes_past(&self, log_end: u64) -> bool {
        newest_past(&self.files.read(), log_end).is_some()
    }

    /// CommitLog offset up to which every record is indexed.
    pub(crate) fn indexed_to(&self) -> u64 {
        self.indexed_to.load(Ordering::Acquire)
    }

    pub(crate) fn set_indexed_to(&self, offset: u64) {
        self.indexed_to.store(offset, Ordering::Release);
    }

    /// Serialises the catching up of the index with the log.
    pub(crate) fn indexing(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.indexing.lock()
    }

    /// Wakes the index writer thread when the index is [`KICK_BEHIND`] or more behind
    /// `log_end`, the end of the visible log. Below that the thread catches up on its own
    /// timer, so an append rarely pays for a wake-up (a query catches the index up itself
    /// before it looks).
    pub(crate) fn kick(&self, log_end: u64) {
        if log_end.saturating_sub(self.indexed_to()) >= KICK_BEHIND
            && !self.kicked.load(Ordering::Relaxed)
        {
            self.kicked.store(true, Ordering::Relaxed);
            let _ = self.kick_tx.try_send(());
        }
    }

    /// The channel [`IndexService::kick`] signals, for a `select`.
    pub(crate) fn kick_receiver(&self) -> &crossbeam_channel::Receiver<()> {
        &self.kick_rx
    }

    /// Clears the kick after the writer thread received it.
    pub(crate) fn kick_taken(&self) {
        self.kicked.store(false, Ordering::Relaxed);
    }

    /// `indexMsgTimestamp` for the checkpoint.
    pub(crate) fn durable_ts(&self) -> u64 {
        self.durable_ts.load(Ordering::Acquire)
    }

    /// Bytes the index files take on disk (the next file created ahead included).
    pub(crate) fn file_bytes(&self) -> u64 {
        let spare = self
            .writer
            .lock()
            .spare
            .as_ref()
            .map_or(0, |f| f.seg.size() as u64);
        spare
            + self
                .files
                .read()
                .iter()
                .map(|f| f.seg.size() as u64)
                .sum::<u64>()
    }

    /// Indexes a CommitLog record as the reput service does: its `UNIQ_KEY` and `KEYS`
    /// ([`IndexService::put_message`]); a rolled-back transaction record is not indexed.
    pub(crate) fn put_record(&self, rec: &RecordView<'_>) -> Result<()> {
        if rec.meta.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_ROLLBACK {
            return Ok(());
        }
        let [uniq, ks] = get_many(rec.properties, [keys::UNIQ_KEY, keys::KEYS]);
        self.put_message(
            rec.topic,
            rec.meta.physical_offset,
            rec.meta.store_timestamp.max(0) as u64,
            uniq,
            ks,
        )
    }

    /// Indexes one record: `topic#uniq` and `topic#k` for every non-empty space-separated
    /// `k` of `keys`. Records at or before [`IndexService::indexed_through`] are skipped.
    pub(crate) fn put_message(
        &self,
        topic: &str,
        phys: u64,
        store_ts: u64,
        uniq: Option<&str>,
        keys: Option<&str>,
    ) -> Result<()> {
        let mut w = self.writer.lock();
        let bound = fmt::key_count_bound(uniq, keys);
        if w.indexed_through.is_some_and(|t| phys <= t) {
            return Ok(());
        }
        if bound > 0 {
            w.unflushed = true;
            self.writable(&mut w, bound.min(u64::from(u32::MAX)) as u32)?;
            let all = uniq
                .into_iter()
                .chain(keys.into_iter().flat_map(|k| k.split(' ')))
                .filter(|k| !k.is_empty());
            for key in all {
                if w.current.as_ref().is_none_or(|f| f.is_full()) {
                    self.writable(&mut w, 1)?;
                }
                if let Some(file) = &w.current {
                    file.put(fmt::key_hash(topic, key), phys, store_ts as i64);
                }
            }
        }
        w.indexed_through = Some(phys);
        Ok(())
    }

    /// The file to add `n` entries to: the newest, or a new one if it has no room (a message
    /// never straddles two files unless it has more keys than a file holds).
    fn writable(&self, w: &mut Writer, n: u32) -> Result<()> {
        if let Some(f) = &w.current
            && (f.has_room(n) || (f.used() <= 1 && !f.is_full()))
        {
            return Ok(());
        }
        let last = w.current.clone();
        let file = match w.spare.take() {
            Some(f) => f,
            None => self.create_file(last.as_ref().map_or(0, |f| f.name))?,
        };
        if let Some(p) = last.as_ref().map(|f| f.header()) {
            // RocketMQ: a new file starts from the previous one's end.
            file.begin_ts.store(p.end_timestamp, Ordering::Release);
            file.end_ts.store(p.end_timestamp, Ordering::Release);
            file.begin_phy.store(p.end_phy_offset, Ordering::Release);
            file.end_phy.store(p.end_phy_offset, Ordering::Release);
            file.write_header();
        }
        self.files.write().push(file.clone());
        w.current = Some(file);
        if let Some(full) = last {
            self.flush_in_background(w, full)?;
        }
        Ok(())
    }

    /// Creates an empty index file named after the current time (later than `after`), its
    /// directory entry durable.
    fn create_file(&self, after: u64) -> Result<Arc<IndexFile>> {
        let now: u64 = fmt::file_name(crate::clock::now_ms())
            .parse()
            .unwrap_or_default();
        let name = now.max(after + 1);
        let path = self.dir.join(format!("{name:017}"));
        let size = fmt::file_size(self.slots, self.entries);
        let seg = self.fs.create_segment(&path, 0, size)?;
        let file = Arc::new(IndexFile::new(
            seg,
            name,
            self.slots,
            self.entries,
            IndexHeader::EMPTY,
        ));
        if file.seg.words().is_none() {
            return Err(Error::corrupted(
                &path,
                0,
                "index file cannot be mapped as words",
            ));
        }
        file.write_header();
        self.fs.sync_dir(&self.dir)?;
        Ok(file)
    }

    /// Flushes a file that filled up on another thread, then advances `indexMsgTimestamp`.
    fn flush_in_background(&self, w: &mut Writer, full: Arc<IndexFile>) -> Result<()> {
        if let Some(h) = w.flushing.take() {
            join_flush(h)?;
        }
        let ts = self.durable_ts.clone();
        let handle = std::thread::Builder::new()
            .name("mqlite-index-flush".into())
            .spawn(move || {
                full.flush()?;
                ts.fetch_max(full.end_ts.load(Ordering::Acquire) as u64, Ordering::AcqRel);
                Ok(())
            });
        match handle {
            Ok(h) => w.flushing = Some(h),
            Err(e) => {
                ::log::warn!("index flush thread could not start ({e}); flushing inline");
                let f = self.files.read().iter().rev().nth(1).cloned();
                if let Some(f) = f {
                    f.flush()?;
                    self.durable_ts
                        .fetch_max(f.end_ts.load(Ordering::Acquire) as u64, Ordering::AcqRel);
                }
            }
        }
        Ok(())
    }

    /// Flushes every file (close, `Store::flush`), waiting for a background flush first.
    /// Nothing to do (no system call) when no entry was added since the last flush.
    pub(crate) fn flush(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if let Some(h) = w.flushing.take() {
            join_flush(h)?;
        }
        if !w.unflushed {
            return Ok(());
        }
        let files = self.files.read().clone();
        if let Some(last) = files.last() {
            last.flush()?;
            // Everything up to the last entry is durable now.
            self.durable_ts.fetch_max(
                last.end_ts.load(Ordering::Acquire).max(0) as u64,
                Ordering::AcqRel,
            );
        }
        w.unflushed = false;
        Ok(())
    }

    /// CommitLog offsets of the records whose keys hash like `topic#key`, stored in
    /// `[begin, end]`, newest first, as RocketMQ's `queryOffset` walks them (newest file
    /// first, each slot chain newest first), each checked by `accept`; at most `max`.
    pub(crate) fn query(
        &self,
        topic: &str,
        key: &str,
        begin: u64,
        end: u64,
        max: usize,
        accept: &mut dyn FnMut(u64) -> bool,
    ) -> Vec<u64> {
        let hash = fmt::key_hash(topic, key);
        let (begin, end) = (
            i64::try_from(begin).unwrap_or(i64::MAX),
            i64::try_from(end).unwrap_or(i64::MAX),
        );
        let files = self.files.read().clone();
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut once = |phys: u64| seen.insert(phys) && accept(phys);
        for f in files.iter().rev() {
            if f.used() > 1 && f.time_matched(begin.saturating_sub(999), end) {
                f.select(hash, begin, end, max, &mut out, &mut once);
            }
            if f.begin_ts.load(Ordering::Acquire) < begin.saturating_sub(999) || out.len() >= max {
                break;
            }
        }
        out
    }

    /// Deletes the index files whose last entry is below `min_phys` (the CommitLog's new
    /// minimum), never the newest. Returns how many went.
    pub(crate) fn delete_before(&self, min_phys: u64) -> Result<usize> {
        let removed: Vec<Arc<IndexFile>> = {
            let mut files = self.files.write();
            let mut removed = Vec::new();
            while files.len() > 1 && (files[0].end_phy.load(Ordering::Acquire) as u64) < min_phys {
                removed.push(files.remove(0));
            }
            removed
        };
        for f in &removed {
            self.fs.remove_file_if_exists(f.seg.path())?;
        }
        if !removed.is_empty() {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(removed.len())
    }
}

/// (hash slots, entries) of an index file of `len` bytes: the configured geometry or
/// RocketMQ's default one.
fn geometry(len: u64, config: &IndexConfig) -> Option<(u32, u32)> {
    [
        (config.max_hash_slots, config.max_index_entries),
        (
            fmt::ROCKETMQ_MAX_HASH_SLOTS,
            fmt::ROCKETMQ_MAX_INDEX_ENTRIES,
        ),
    ]
    .into_iter()
    .find(|&(slots, entries)| fmt::file_size(slots, entries) == len)
}

/// The big-endian word at byte `pos` (a multiple of 4) of `w`.
fn load(w: &[AtomicU32], pos: u64) -> Option<u32> {
    let word = w.get(usize::try_from(pos / 4).ok()?)?;
    Some(u32::from_be(word.load(Ordering::Acquire)))
}

/// Stores `v` big-endian at byte `pos` of `w` (release); out of range is ignored (never the
/// case for positions computed from the file's own geometry).
fn store(w: &[AtomicU32], pos: u64, v: u32) {
    if let Some(word) = usize::try_from(pos / 4).ok().and_then(|i| w.get(i)) {
        word.store(v.to_be(), Ordering::Release);
    }
}

fn load_i64(w: &[AtomicU32], pos: u64) -> Option<i64> {
    let hi = load(w, pos)?;
    let lo = load(w, pos + 4)?;
    Some(((u64::from(hi) << 32) | u64::from(lo)) as i64)
}

fn store_i64(w: &[AtomicU32], pos: u64, v: i64) {
    store(w, pos, ((v as u64) >> 32) as u32);
    store(w, pos + 4, v as u32);
}

fn join_flush(h: JoinHandle<Result<()>>) -> Result<()> {
    match h.join() {
        Ok(r) => r,
        Err(_) => Err(Error::Io {
            op: "flush index file",
            path: PathBuf::from(INDEX_DIR),
            source: std::io::Error::other("the index flush thread panicked"),
        }),
    }
}
