//! Starting and stopping a push consumer: its threads (counted, so a stop can wait for them
//! with a deadline), joining and leaving the group, and the store's close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::engine::{AliveGuard, Engine};
use super::process_queue::ProcessQueue;
use crate::broker::group::Member;
use crate::broker::runtime::{Attached, ClientKind};
use crate::error::{Error, Result};
use crate::message::MessageQueue;

/// Counts a consumer thread as gone when dropped, even by a panic.
struct LiveGuard(Arc<Engine>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut n = self.0.live.lock();
        *n -= 1;
        self.0.exited.notify_all();
    }
}

impl Engine {
    /// Registers with the store, starts the fetch thread and the consume threads, and joins
    /// the group. On any failure, stops what was started (threads, registration) and returns
    /// the error: nothing keeps running.
    pub(super) fn launch(self: &Arc<Self>) -> Result<()> {
        let launched = self
            .attach()
            .and_then(|()| self.spawn_threads())
            .and_then(|()| {
                let core = self.core().clone();
                let member: Arc<dyn Member> = self.clone();
                core.groups.join(&core, &self.options().group, member)?;
                self.joined.store(true, Ordering::Release);
                Ok(())
            });
        if let Err(e) = launched {
            // Not in the group: stop without leaving (a member with the same id stays).
            let _ = self.shutdown(None);
            return Err(e);
        }
        Ok(())
    }

    fn attach(self: &Arc<Self>) -> Result<()> {
        let me: Arc<dyn Attached> = self.clone();
        self.store.attach(ClientKind::Consumer, Arc::downgrade(&me))
    }

    fn spawn_threads(self: &Arc<Self>) -> Result<()> {
        self.spawn(0, "mqlite-fetch".into(), |e| {
            let _alive = AliveGuard(e);
            e.fetch_loop();
        })?;
        for i in 0..self.options().threads {
            self.spawn(i + 1, format!("mqlite-consume-{i}"), |e| e.consume_loop())?;
        }
        Ok(())
    }

    /// Spawns thread number `index` (0: fetch, then the consume threads).
    fn spawn(
        self: &Arc<Self>,
        index: usize,
        name: String,
        f: impl FnOnce(&Arc<Engine>) + Send + 'static,
    ) -> Result<()> {
        let err = |e| Error::io("spawn consumer thread", self.core().dir(), e);
        if self.options().fail_spawn == Some(index) {
            return Err(err(std::io::Error::other("injected thread spawn failure")));
        }
        *self.live.lock() += 1;
        let e = self.clone();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let guard = LiveGuard(e);
            f(&guard.0);
        });
        match spawned {
            Ok(h) => {
                self.thread_ids.lock().push(h.thread().id());
                self.threads.lock().push(h);
                Ok(())
            }
            Err(e) => {
                *self.live.lock() -= 1;
                Err(err(e))
            }
        }
    }

    /// Waits until at most `allowed` of the consumer's threads run (the caller's own, when it
    /// is one of them), for at most `timeout`; whether they did.
    fn wait_threads(&self, allowed: usize, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut live = self.live.lock();
        while *live > allowed {
            match deadline {
                Some(d) => {
                    if self.exited.wait_until(&mut live, d).timed_out() {
                        return *live <= allowed;
                    }
                }
                None => self.exited.wait(&mut live),
            }
        }
        true
    }

    /// Stops the consumer: no more fetching, tasks not started are handed back, and it waits
    /// for listener calls in flight (at most `timeout`, without limit for `None`). Then it
    /// commits where each queue stopped (the oldest message not finished), releases its queue
    /// locks and leaves the group. Returns whether every listener call finished in time; a call
    /// still running then finishes on its own thread, and what it consumed is not committed
    /// (it is delivered again, to this group's next owner of the queue).
    ///
    /// A second call (say `Store::close` while the user's `shutdown` runs) waits for the
    /// first to finish, within its own timeout, unless it comes from one of the consumer's
    /// threads.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> Result<bool> {
        if self.shut.swap(true, Ordering::AcqRel) {
            return Ok(self.wait_stopped(timeout));
        }
        let result = self.stop(timeout);
        *self.stopped.lock() = true;
        self.stopped_cv.notify_all();
        result
    }

    /// Waits for a shutdown in progress elsewhere; whether it finished in time.
    fn wait_stopped(&self, timeout: Option<Duration>) -> bool {
        if self
            .thread_ids
            .lock()
            .contains(&std::thread::current().id())
        {
            return true;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut stopped = self.stopped.lock();
        while !*stopped {
            match deadline {
                Some(d) => {
                    if self.stopped_cv.wait_until(&mut stopped, d).timed_out() {
                        return *stopped;
                    }
                }
                None => self.stopped_cv.wait(&mut stopped),
            }
        }
        true
    }

    fn stop(&self, timeout: Option<Duration>) -> Result<bool> {
        let core = self.core().clone();
        self.stopping.store(true, Ordering::Release);
        core.arrivals().kick();
        self.tasks.close();
        let me = std::thread::current().id();
        let handles: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        let own = usize::from(handles.iter().any(|h| h.thread().id() == me));
        let finished = self.wait_threads(own, timeout);
        if finished {
            for h in handles {
                if h.thread().id() != me {
                    let _ = h.join();
                }
            }
        }
        // Commit where each queue stopped, then leave: the others resume from there.
        let pqs: Vec<Arc<ProcessQueue>> = std::mem::take(&mut *self.pqs.lock())
            .into_values()
            .collect();
        for pq in &pqs {
            if let Some(offset) = pq.drop_queue() {
                self.commit(&pq.queue, offset);
            }
        }
        if self.orderly() {
            // A queue whose batch is still with the listener keeps its store lock until the
            // listener returns (the consume task gives it back then), so no other consumer
            // takes the queue while it is being consumed.
            let free: Vec<MessageQueue> = pqs
                .iter()
                .filter(|pq| pq.consume_lock.try_lock().is_some())
                .map(|pq| pq.queue.clone())
                .collect();
            core.locks.unlock(&self.options().group, self.id(), &free);
        }
        self.delayed.lock().clear();
        if self.joined.load(Ordering::Acquire) {
            core.groups.leave(&core, &self.options().group, self.id());
        }
        core.persist_offsets()?;
        Ok(finished)
    }

    pub(super) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }
}

impl Attached for Engine {
    /// The store is closing: stop, waiting for every listener call in flight.
    fn close(&self) -> Result<()> {
        self.shutdown(None).map(drop)
    }
}
