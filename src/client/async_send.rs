//! Asynchronous sends: a bounded queue feeding an appender thread, whose results go to a
//! completion thread that waits for durability once per batch and runs the callbacks.
//!
//! The caller only enqueues. The appender appends without waiting for the flush, so under
//! `FlushPolicy::Sync` many in-flight messages share one flush, awaited by the completion thread.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded, unbounded};

use super::producer::{SendError, SendResult, Shared};
use crate::error::Error;
use crate::message::{Message, MessageQueue};

/// The callback of an asynchronous send.
pub(crate) type Callback = Box<dyn FnOnce(crate::Result<SendResult>) + Send>;

struct Job {
    msg: Message,
    callback: Callback,
}

#[allow(clippy::large_enum_variant)] // short-lived, moved once through a channel
enum Done {
    Stored {
        result: SendResult,
        end: u64,
        /// Kept to hand back if the flush fails.
        msg: Message,
        callback: Callback,
    },
    Failed {
        error: SendError,
        callback: Callback,
    },
}

/// The running sender of one producer (and its clones).
pub(crate) struct AsyncSender {
    jobs: Sender<Job>,
    /// A counting semaphore: one token per send in flight, taken when it is queued and given
    /// back after its callback ran.
    permits: Sender<()>,
    capacity: usize,
    timeout: Duration,
}

/// A cheap handle to submit through.
pub(crate) struct Handle {
    jobs: Sender<Job>,
    permits: Sender<()>,
    capacity: usize,
    timeout: Duration,
}

impl AsyncSender {
    pub(crate) fn start(shared: Arc<Shared>) -> std::io::Result<AsyncSender> {
        let capacity = shared.options.max_in_flight;
        let timeout = shared.options.send_timeout;
        let (jobs_tx, jobs_rx) = unbounded::<Job>();
        let (done_tx, done_rx) = unbounded::<Done>();
        let (permits_tx, permits_rx) = bounded::<()>(capacity);
        let appender_shared = shared.clone();
        std::thread::Builder::new()
            .name("mqlite-async-send".into())
            .spawn(move || append_loop(&appender_shared, &jobs_rx, &done_tx))?;
        std::thread::Builder::new()
            .name("mqlite-async-complete".into())
            .spawn(move || complete_loop(&shared, &done_rx, &permits_rx))?;
        Ok(AsyncSender {
            jobs: jobs_tx,
            permits: permits_tx,
            capacity,
            timeout,
        })
    }

    pub(crate) fn handle(&self) -> Handle {
        Handle {
            jobs: self.jobs.clone(),
            permits: self.permits.clone(),
            capacity: self.capacity,
            timeout: self.timeout,
        }
    }
}

impl Handle {
    /// Queues a send; waits for room for at most the send timeout.
    pub(crate) fn submit(&self, msg: Message, callback: Callback) -> Result<(), SendError> {
        match self.permits.send_timeout((), self.timeout) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(())) => {
                return Err(SendError::new(Error::Busy(self.capacity), msg));
            }
            Err(SendTimeoutError::Disconnected(())) => {
                return Err(SendError::new(Error::Closed, msg));
            }
        }
        self.jobs
            .send(Job { msg, callback })
            .map_err(|e| SendError::new(Error::Closed, e.into_inner().msg))
    }
}

fn append_loop(shared: &Shared, jobs: &Receiver<Job>, done: &Sender<Done>) {
    for Job { msg, callback } in jobs {
        let stored = shared
            .pick_round_robin(&msg)
            .and_then(|q| shared.store_in(&msg, q, true));
        let d = match stored {
            Ok(put) => Done::Stored {
                result: SendResult {
                    status: put.status.into(),
                    msg_id: put.msg_id,
                    offset_msg_id: put.offset_msg_id,
                    queue: MessageQueue::new(msg.topic(), put.queue_id),
                    queue_offset: put.queue_offset,
                },
                end: put.physical_offset + u64::from(put.size),
                msg,
                callback,
            },
            Err(error) => Done::Failed {
                error: SendError::new(error, msg),
                callback,
            },
        };
        if done.send(d).is_err() {
            return;
        }
    }
}

/// Takes whatever completed, waits once for the furthest record to be durable, then runs the
/// callbacks in order.
fn complete_loop(shared: &Shared, done: &Receiver<Done>, permits: &Receiver<()>) {
    let core = shared.store.core();
    while let Ok(first) = done.recv() {
        let mut batch = vec![first];
        batch.extend(done.try_iter().take(4096));
        let end = batch
            .iter()
            .filter_map(|d| match d {
                Done::Stored { end, .. } => Some(*end),
                Done::Failed { .. } => None,
            })
            .max();
        let durability = end.map(|end| core.wait_durable(end));
        // A panicking callback must not take the other callbacks down with it.
        let run = |callback: Callback, r: Result<SendResult, SendError>| {
            let r = r.map_err(Error::from);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || callback(r)));
            // The send is over: its permit goes back.
            let _ = permits.try_recv();
        };
        for d in batch {
            match d {
                Done::Failed { error, callback } => run(callback, Err(error)),
                Done::Stored {
                    mut result,
                    msg,
                    callback,
                    ..
                } => match &durability {
                    Some(Ok(status)) => {
                        result.status = (*status).into();
                        run(callback, Ok(result));
                    }
                    // A failed flush poisons the store: the message may be in the log, but it
                    // is not known durable, so it is reported as not stored.
                    Some(Err(e)) => {
                        let error = if matches!(e, Error::Closed) {
                            Error::Closed
                        } else {
                            Error::Poisoned
                        };
                        run(callback, Err(SendError::new(error, msg)));
                    }
                    None => run(callback, Ok(result)),
                },
            }
        }
    }
}
