//! Prepares the next CommitLog segment on a background thread (RocketMQ's
//! `AllocateMappedFileService`): create, preallocate, map, optionally warm, and sync the
//! directory, so a roll only swaps a pointer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::Result;
use crate::storage::fs::segment_name;
use crate::storage::mmap::ZeroAhead;
use crate::storage::{Fs, Segment};

/// How far ahead of the writer pages are faulted in.
pub(crate) const POPULATE_LEAD: usize = 8 << 20;
/// How much one populate request covers.
pub(crate) const POPULATE_CHUNK: usize = 256 << 10;
/// How much the prefault thread zeroes or maps at a time before it offers its CPU to any
/// thread waiting for one: a waking consumer does not preempt it (it is an ordinary thread,
/// as the writer may wait for it), and a whole request at once kept a tailing consumer off
/// its CPU for ~0.2 ms every 20 ms at 50,000 messages/s (the p99 latency).
const POPULATE_PIECE: usize = 32 << 10;

type PopulateRequest = (Arc<Segment>, usize, usize);

/// What the preparer's threads work with.
#[derive(Debug, Clone)]
pub(crate) struct PreparerConfig {
    pub(crate) fs: Fs,
    /// The CommitLog directory.
    pub(crate) dir: PathBuf,
    pub(crate) segment_size: u64,
    /// Zero-fill and flush each new segment before use, and zero-fill ahead of the writer
    /// durably (`FlushPolicy::Sync` with warming on).
    pub(crate) warm: bool,
    /// Map the pages ahead of the writer writable (zeroed into the page cache first), not
    /// only readable (`Async`: dirty pages ahead are no flush's concern).
    pub(crate) populate_write: bool,
    /// How close to the writer zero-filling may start ([`super::ZERO_AHEAD_GAP`]).
    pub(crate) zero_gap: usize,
}

/// The running threads and their channels.
#[derive(Debug)]
struct Threads {
    requests: Option<Sender<u64>>,
    results: Receiver<(u64, Result<Segment>)>,
    thread: Option<JoinHandle<()>>,
    populate: Option<Sender<PopulateRequest>>,
    populate_thread: Option<JoinHandle<()>>,
}

/// Handle to the preparer thread and the prefault thread. They start with the first request
/// (a store opened and closed without appending starts neither); should they fail to start,
/// the writer creates its segments itself and takes its page faults.
#[derive(Debug)]
pub(crate) struct Preparer {
    config: PreparerConfig,
    threads: Option<Threads>,
    /// Starting the threads failed once: not tried again.
    start_failed: bool,
    pending: Option<u64>,
    /// Tells the prefault thread to drop the work still queued: a close does not wait for
    /// pages to be prepared that nobody will write.
    stopping: Arc<AtomicBool>,
    /// How far ahead of the writer pages are prepared.
    pub(crate) lead: usize,
}

impl Preparer {
    pub(crate) fn new(config: PreparerConfig) -> Preparer {
        // Zeroing ahead stays a gap past the writer.
        let lead = if config.warm || config.populate_write {
            config.zero_gap + POPULATE_LEAD
        } else {
            POPULATE_LEAD
        };
        Preparer {
            config,
            threads: None,
            start_failed: false,
            pending: None,
            stopping: Arc::new(AtomicBool::new(false)),
            lead,
        }
    }

    /// The threads, started on first use.
    fn threads(&mut self) -> Option<&mut Threads> {
        if self.threads.is_none() && !self.start_failed {
            match spawn(self.config.clone(), self.stopping.clone()) {
                Ok(t) => self.threads = Some(t),
                Err(e) => {
                    self.start_failed = true;
                    ::log::warn!(
                        "{}: cannot start the segment preparer threads ({e}); the writer prepares its segments itself",
                        self.config.dir.display()
                    );
                }
            }
        }
        self.threads.as_mut()
    }

    /// Asks for `[from, to)` of `seg` to be prepared; dropped if the thread is behind.
    pub(crate) fn populate(&mut self, seg: &Arc<Segment>, from: usize, to: usize) {
        if let Some(tx) = self.threads().and_then(|t| t.populate.as_ref()) {
            let _ = tx.try_send((seg.clone(), from, to));
        }
    }

    /// Asks for the segment starting at `base` (ignored if one is already pending).
    pub(crate) fn request(&mut self, base: u64) {
        if self.pending.is_some_and(|p| p >= base) {
            return;
        }
        if self.pending.is_some() {
            // A stale request (for an earlier segment); collect and discard it first.
            let _ = self.take(u64::MAX);
        }
        if let Some(tx) = self.threads().and_then(|t| t.requests.as_ref())
            && tx.send(base).is_ok()
        {
            self.pending = Some(base);
        }
    }

    /// Waits for the segment at `base`. `None` if it was never requested (or the thread died):
    /// the caller creates it itself.
    pub(crate) fn take(&mut self, base: u64) -> Option<Result<Segment>> {
        let pending = self.pending.take()?;
        let (got, result) = self.threads.as_ref()?.results.recv().ok()?;
        if pending != base || got != base {
            // Not the one we need: discard it.
            if let Ok(seg) = result {
                let path = seg.path().to_path_buf();
                drop(seg);
                let _ = self.config.fs.remove_file_if_exists(&path);
            }
            return None;
        }
        Some(result)
    }

    /// Stops the threads; a segment prepared but not taken is deleted.
    pub(crate) fn stop(mut self) {
        self.shut(true);
    }

    /// Stops the threads (dropping the prefault work still queued), deleting a segment
    /// prepared but not taken if `delete_prepared`.
    fn shut(&mut self, delete_prepared: bool) {
        self.stopping.store(true, Ordering::Relaxed);
        let Some(mut t) = self.threads.take() else {
            return;
        };
        t.requests = None;
        t.populate = None;
        if let Some(h) = t.populate_thread.take() {
            let _ = h.join();
        }
        if delete_prepared
            && self.pending.take().is_some()
            && let Ok((_, Ok(seg))) = t.results.recv()
        {
            let path = seg.path().to_path_buf();
            drop(seg);
            let _ = self.config.fs.remove_file_if_exists(&path);
        }
        if let Some(h) = t.thread.take() {
            // Unblock the thread if it is waiting to hand over a result.
            while t.results.try_recv().is_ok() {}
            let _ = h.join();
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.shut(false);
    }
}

/// Starts the preparer thread and the prefault thread.
fn spawn(config: PreparerConfig, stopping: Arc<AtomicBool>) -> std::io::Result<Threads> {
    let PreparerConfig {
        fs,
        dir,
        segment_size,
        warm,
        populate_write,
        zero_gap,
    } = config;
    let (req_tx, req_rx) = bounded::<u64>(1);
    let (res_tx, res_rx) = bounded(1);
    let thread = std::thread::Builder::new()
        .name("mqlite-segment-preparer".into())
        .spawn(move || {
            for base in req_rx {
                let path = dir.join(segment_name(base));
                let result = fs
                    .create_segment(&path, base, segment_size)
                    .and_then(|mut seg| {
                        if warm {
                            seg.warm()?;
                        }
                        fs.sync_dir(&dir)?;
                        Ok(seg)
                    });
                if result.is_err() {
                    let _ = fs.remove_file_if_exists(&path);
                }
                if res_tx.send((base, result)).is_err() {
                    break;
                }
            }
        })?;
    // The prefault thread keeps the pages ahead of the writer in memory. Under `Async` it
    // writes zeros there with `pwrite` (into the page cache: the writer's first touch of a
    // page is then a cheap minor fault, and nothing "reads around" an unwritten extent under
    // folio locks, which stalled a tailing reader for 10 ms every 8 MiB); with warming
    // (`Sync`) it zero-fills and flushes; otherwise it faults pages in readable.
    let (pop_tx, pop_rx) = bounded::<PopulateRequest>(64);
    let populate_thread = std::thread::Builder::new()
        .name("mqlite-prefault".into())
        .spawn(move || {
            for (seg, from, to) in pop_rx {
                let how = if warm && !seg.is_warmed() {
                    Some(ZeroAhead::Durable)
                } else if populate_write {
                    Some(ZeroAhead::PageCache)
                } else {
                    None
                };
                // Zeroing for durability is flushed once per request.
                let piece = match how {
                    Some(ZeroAhead::Durable) => to - from,
                    _ => POPULATE_PIECE,
                };
                let mut at = from;
                while at < to && !stopping.load(Ordering::Relaxed) {
                    let end = to.min(at + piece);
                    let zeroed = how
                        .is_some_and(|how| seg.zero_ahead(at, end, zero_gap, how).unwrap_or(false));
                    // Map the (now cached) pages, writable under `Async`: the writer then
                    // takes no page fault at all.
                    if zeroed || !populate_write {
                        seg.populate(at, end, populate_write);
                    }
                    at = end;
                    std::thread::yield_now();
                }
            }
        });
    let populate_thread = match populate_thread {
        Ok(h) => h,
        Err(e) => {
            // The preparer thread ends when its request channel closes.
            drop(req_tx);
            let _ = thread.join();
            return Err(e);
        }
    };
    Ok(Threads {
        requests: Some(req_tx),
        results: res_rx,
        thread: Some(thread),
        populate: Some(pop_tx),
        populate_thread: Some(populate_thread),
    })
}
