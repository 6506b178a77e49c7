//! Consume queue files created ahead of the writer. A queue's next file is created (allocated
//! in full, its directory entry made durable) on a background thread once the writer is half
//! way through the current one, so the append that crosses into it finds it ready: creating a
//! file on the appending thread costs a `posix_fallocate` and a directory `fsync`, which took
//! the writer off the CPU for 0.5–5 ms every 30,000 messages of a queue.
//!
//! The file is pushed into the queue's segment set as soon as it exists: an empty trailing
//! file is what recovery expects to find after a crash (it ignores and removes it), and a
//! clean close removes it ([`ConsumeQueue::remove_unused_next_file`]).
//!
//! The same thread faults in the pages just ahead of each queue's writer
//! ([`ConsumeQueue::wants_prefault`]), so appends do not take the page faults of a fresh file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use super::ConsumeQueue;

/// Requests waiting for the thread at most; a request that does not fit is dropped and the
/// writer creates that file itself when it gets there.
const BACKLOG: usize = 64;

/// What the thread is asked to do.
enum Work {
    /// Create the queue's next file.
    NextFile(Arc<ConsumeQueue>),
    /// Fault in `[from, to)` (absolute byte offsets) of the queue's files.
    Prefault(Arc<ConsumeQueue>, u64, u64),
}

/// The thread that creates consume queue files ahead of the writer, started with the first
/// request (a store opened and closed without appending never starts it).
#[derive(Debug, Default)]
pub(crate) struct QueueFilesAhead {
    requests: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
    /// Stopped, or the thread could not be started: requests are dropped (the writer creates
    /// the files itself).
    off: bool,
    /// Tells the thread to skip the faulting-in still queued: a close does not wait for it.
    stopping: Arc<AtomicBool>,
}

impl QueueFilesAhead {
    /// Asks for `cq`'s next file if its writer is past half of its last file and no request
    /// is pending, and for the pages just ahead of its writer if they were not asked for yet
    /// (cheap otherwise: a few atomic loads).
    pub(crate) fn maybe_request(&mut self, cq: &Arc<ConsumeQueue>, last_queue_offset: u64) {
        if cq.wants_next_file(last_queue_offset) {
            let queued = self
                .sender()
                .is_some_and(|tx| tx.try_send(Work::NextFile(cq.clone())).is_ok());
            if !queued {
                cq.request_dropped();
            }
        }
        if let Some((from, to)) = cq.wants_prefault(last_queue_offset)
            && let Some(tx) = self.sender()
            // Files come first: faulting in is dropped when the thread is behind (the writer
            // then takes the page faults), before it could crowd out a file request.
            && tx.len() < BACKLOG / 2
        {
            let _ = tx.try_send(Work::Prefault(cq.clone(), from, to));
        }
    }

    /// The request channel, starting the thread on first use.
    fn sender(&mut self) -> Option<&Sender<Work>> {
        if self.requests.is_none() && !self.off {
            match start(self.stopping.clone()) {
                Ok((tx, thread)) => {
                    self.requests = Some(tx);
                    self.thread = Some(thread);
                }
                Err(e) => {
                    self.off = true;
                    ::log::warn!(
                        "cannot start the consume queue file thread ({e}); writers create their files themselves"
                    );
                }
            }
        }
        self.requests.as_ref()
    }

    /// Stops the thread after the files already requested (the faulting-in still queued is
    /// skipped); later requests are dropped.
    pub(crate) fn stop(&mut self) {
        self.off = true;
        self.stopping.store(true, Ordering::Relaxed);
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for QueueFilesAhead {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start(stopping: Arc<AtomicBool>) -> std::io::Result<(Sender<Work>, JoinHandle<()>)> {
    let (tx, rx) = bounded::<Work>(BACKLOG);
    let thread = std::thread::Builder::new()
        .name("mqlite-cq-ahead".into())
        .spawn(move || {
            for work in rx {
                let cq = match work {
                    Work::NextFile(cq) => cq,
                    Work::Prefault(cq, from, to) => {
                        if !stopping.load(Ordering::Relaxed) {
                            cq.prefault(from, to);
                        }
                        continue;
                    }
                };
                if let Err(e) = cq.create_next_file() {
                    // Not fatal: the writer creates the file when it needs it, and reports the
                    // error then if it persists.
                    ::log::warn!(
                        "creating the next consume queue file of {}:{} ahead failed: {e}",
                        cq.topic(),
                        cq.queue_id()
                    );
                }
            }
        })?;
    Ok((tx, thread))
}
