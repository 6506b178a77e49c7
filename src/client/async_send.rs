//! Asynchronous sends: a bounded queue feeding an appender thread, whose results go to a
//! completion thread that waits for durability once per batch and runs the callbacks.
//!
//! The caller only enqueues. The appender appends without waiting for the flush, so under
//! `FlushPolicy::Sync` many in-flight messages share one flush, awaited by the completion thread.
//!
//! A [`Gate`] counts the sends accepted and not yet called back; the store's close shuts it
//! (later sends fail with `Error::Closed` at the call) and waits for the count to reach zero,
//! so every accepted send completes with its real result before the engine closes.

use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded, unbounded};
use parking_lot::{Condvar, Mutex};

use super::producer::{SendError, SendResult, Shared};
use crate::broker::runtime::{Attached, ClientKind};
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

/// Sends accepted and not yet called back, and whether new ones are refused.
#[derive(Default)]
struct GateState {
    closed: bool,
    in_flight: usize,
}

/// Admission to the sender: counts sends in flight; closed by the store's close.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    drained: Condvar,
    /// The completion thread (callbacks run there): a close called from a callback cannot
    /// wait for the callbacks after it.
    completer: Mutex<Option<ThreadId>>,
}

impl Gate {
    /// Admits one send; `Error::Closed` once closed.
    fn enter(&self) -> Result<(), Error> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Error::Closed);
        }
        s.in_flight += 1;
        Ok(())
    }

    /// One admitted send is over (called back, or refused after all).
    fn leave(&self) {
        let mut s = self.state.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            self.drained.notify_all();
        }
    }
}

impl Attached for Gate {
    /// Refuses new sends and waits until every accepted one has been called back (unless
    /// called from a callback, which cannot wait for the ones queued behind it).
    fn close(&self) -> crate::Result<()> {
        let mut s = self.state.lock();
        s.closed = true;
        if *self.completer.lock() == Some(std::thread::current().id()) {
            return Ok(());
        }
        while s.in_flight > 0 {
            self.drained.wait(&mut s);
        }
        Ok(())
    }
}

/// The running sender of one producer (and its clones).
pub(crate) struct AsyncSender {
    gate: Arc<Gate>,
    jobs: Sender<Job>,
    /// A counting semaphore: one token per send in flight, taken when it is queued and given
    /// back after its callback ran.
    permits: Sender<()>,
    capacity: usize,
    timeout: Duration,
}

/// A cheap handle to submit through.
pub(crate) struct Handle {
    gate: Arc<Gate>,
    jobs: Sender<Job>,
    permits: Sender<()>,
    capacity: usize,
    timeout: Duration,
}

impl AsyncSender {
    /// Starts the sender's threads, registered with the store so that its close drains them;
    /// `Error::Closed` if the store is closing.
    pub(crate) fn start(shared: Arc<Shared>) -> crate::Result<AsyncSender> {
        let capacity = shared.options.max_in_flight;
        let timeout = shared.options.send_timeout;
        let gate = Arc::new(Gate::default());
        let attached: Arc<dyn Attached> = gate.clone();
        shared
            .store
            .attach(ClientKind::Sender, Arc::downgrade(&attached))?;
        let spawn_error = |e| Error::io("spawn async sender", shared.store.dir(), e);
        let (jobs_tx, jobs_rx) = unbounded::<Job>();
        let (done_tx, done_rx) = unbounded::<Done>();
        let (permits_tx, permits_rx) = bounded::<()>(capacity);
        let appender_shared = shared.clone();
        std::thread::Builder::new()
            .name("mqlite-async-send".into())
            .spawn(move || append_loop(&appender_shared, &jobs_rx, &done_tx))
            .map_err(spawn_error)?;
        let completer_gate = gate.clone();
        let completer_shared = shared.clone();
        let completer = std::thread::Builder::new()
            .name("mqlite-async-complete".into())
            .spawn(move || complete_loop(&completer_shared, &done_rx, &permits_rx, &completer_gate))
            .map_err(spawn_error)?;
        *gate.completer.lock() = Some(completer.thread().id());
        Ok(AsyncSender {
            gate,
            jobs: jobs_tx,
            permits: permits_tx,
            capacity,
            timeout,
        })
    }

    pub(crate) fn handle(&self) -> Handle {
        Handle {
            gate: self.gate.clone(),
            jobs: self.jobs.clone(),
            permits: self.permits.clone(),
            capacity: self.capacity,
            timeout: self.timeout,
        }
    }
}

impl Handle {
    /// Queues a send; waits for room for at most the send timeout. `Error::Closed` once the
    /// store is closing.
    pub(crate) fn submit(&self, msg: Message, callback: Callback) -> Result<(), SendError> {
        if let Err(e) = self.gate.enter() {
            return Err(SendError::new(e, msg));
        }
        let refused = |error, msg| {
            self.gate.leave();
            Err(SendError::new(error, msg))
        };
        match self.permits.send_timeout((), self.timeout) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(())) => return refused(Error::Busy(self.capacity), msg),
            Err(SendTimeoutError::Disconnected(())) => return refused(Error::Closed, msg),
        }
        match self.jobs.send(Job { msg, callback }) {
            Ok(()) => Ok(()),
            Err(e) => refused(Error::Closed, e.into_inner().msg),
        }
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
fn complete_loop(shared: &Shared, done: &Receiver<Done>, permits: &Receiver<()>, gate: &Gate) {
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
            gate.leave();
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
