//! Consume queue files created ahead of the writer. A queue's next file is created (allocated
//! in full, its directory entry made durable) on a background thread once the writer is half
//! way through the current one, so the append that crosses into it finds it ready: creating a
//! file on the appending thread costs a `posix_fallocate` and a directory `fsync`, which took
//! the writer off the CPU for 0.5–5 ms every 30,000 messages of a queue.
//!
//! The file is pushed into the queue's segment set as soon as it exists: an empty trailing
//! file is what recovery expects to find after a crash (it ignores and removes it), and a
//! clean close removes it ([`ConsumeQueue::remove_unused_next_file`]).

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError, bounded};

use super::ConsumeQueue;

/// Requests waiting for the thread at most; a request that does not fit is dropped and the
/// writer creates that file itself when it gets there.
const BACKLOG: usize = 64;

/// The thread that creates consume queue files ahead of the writer, started with the first
/// request (a store opened and closed without appending never starts it).
#[derive(Debug, Default)]
pub(crate) struct QueueFilesAhead {
    requests: Option<Sender<Arc<ConsumeQueue>>>,
    thread: Option<JoinHandle<()>>,
    /// Stopped, or the thread could not be started: requests are dropped (the writer creates
    /// the files itself).
    off: bool,
}

impl QueueFilesAhead {
    /// Asks for `cq`'s next file if its writer is past half of its last file and no request
    /// is pending (cheap otherwise: one atomic load).
    pub(crate) fn maybe_request(&mut self, cq: &Arc<ConsumeQueue>, last_queue_offset: u64) {
        if !cq.wants_next_file(last_queue_offset) {
            return;
        }
        if self.requests.is_none() && !self.off {
            match start() {
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
        let Some(tx) = &self.requests else {
            cq.request_dropped();
            return;
        };
        match tx.try_send(cq.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(cq) | TrySendError::Disconnected(cq)) => {
                cq.request_dropped();
            }
        }
    }

    /// Stops the thread after the requests already made; later requests are dropped.
    pub(crate) fn stop(&mut self) {
        self.off = true;
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

fn start() -> std::io::Result<(Sender<Arc<ConsumeQueue>>, JoinHandle<()>)> {
    let (tx, rx) = bounded::<Arc<ConsumeQueue>>(BACKLOG);
    let thread = std::thread::Builder::new()
        .name("mqlite-cq-ahead".into())
        .spawn(move || {
            for cq in rx {
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
