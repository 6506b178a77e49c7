//! The running store: the broker plus its background threads (flusher, cleaner, indexer;
//! the schedule and transaction check services once needed), and the clients started from
//! it that [`Runtime::shutdown`] stops first.
//! Every `Store` handle and client handle shares one; dropping the last one closes the store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::{Broker, schedule_service, transaction_service};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::storage::Fs;

#[derive(Debug)]
struct Background {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// A client running background work on the store (a push consumer, a producer's
/// asynchronous sender): the store stops it before it closes the engine.
pub(crate) trait Attached: Send + Sync {
    /// Stops the client's background work, finishing what it had accepted (a consumer commits
    /// what its listener consumed; a sender completes the sends it queued).
    fn close(&self) -> Result<()>;
}

/// Which clients are stopped first at close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientKind {
    /// Push consumers: stopped first (they may send retries).
    Consumer,
    /// Asynchronous senders: drained after the consumers.
    Sender,
    /// Lite pull consumers: stopped with the push consumers. They write nothing a read-only
    /// store refuses (they commit only where the store is writable), so they may attach to
    /// one.
    Reader,
}

#[derive(Default)]
struct Clients {
    /// Set when the store starts closing: no client may attach any more.
    closing: bool,
    consumers: Vec<Weak<dyn Attached>>,
    senders: Vec<Weak<dyn Attached>>,
}

/// The broker and its threads.
pub(crate) struct Runtime {
    core: Arc<Broker>,
    background: Mutex<Vec<Background>>,
    clients: Mutex<Clients>,
    /// The transaction check service was started.
    transaction_service: AtomicBool,
    /// The schedule service was started.
    schedule_service: AtomicBool,
    /// What wakes the schedule service (a delayed message was stored).
    schedule_wake: Receiver<()>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Opens the store and starts its threads.
    pub(crate) fn open(fs: Fs, dir: PathBuf, config: StoreConfig) -> Result<Arc<Runtime>> {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let core = Arc::new(Broker::open(fs, dir, config, wake_tx)?);
        let mut background = Vec::new();
        let spawned = crate::log::flusher::start(core.clone())
            .map(|(stop, thread)| background.push(Background { stop, thread }))
            .and_then(|()| core.start_cleaner())
            .map(|(stop, thread)| background.push(Background { stop, thread }))
            .and_then(|()| core.start_indexer())
            .map(|bg| {
                if let Some((stop, thread)) = bg {
                    background.push(Background { stop, thread });
                }
            });
        let rt = Arc::new(Runtime {
            core,
            background: Mutex::new(background),
            clients: Mutex::new(Clients::default()),
            transaction_service: AtomicBool::new(false),
            schedule_service: AtomicBool::new(false),
            schedule_wake: wake_rx,
        });
        // The first delayed or timer message starts the schedule service.
        let weak = Arc::downgrade(&rt);
        rt.core.set_schedule_starter(Box::new(move || {
            weak.upgrade()
                .map_or(Ok(()), |rt| rt.start_schedule_service())
        }));
        // Half messages, delayed and timer messages from an earlier run are served from the
        // start.
        let spawned = spawned
            .and_then(
                |()| match rt.core.queue(crate::format::system::TRANS_HALF_TOPIC, 0) {
                    Some(_) => rt.start_transaction_service(),
                    None => Ok(()),
                },
            )
            .and_then(|()| match rt.core.holds_scheduled_messages() {
                true => rt.start_schedule_service(),
                false => Ok(()),
            });
        if let Err(e) = spawned {
            let _ = rt.shutdown();
            return Err(Error::io("spawn background thread", rt.dir(), e));
        }
        Ok(rt)
    }

    /// Starts the schedule service unless it runs already: at open when the store holds
    /// delayed or timer messages, else with the first one stored (a store that never sees
    /// one runs no schedule thread).
    pub(crate) fn start_schedule_service(&self) -> std::io::Result<()> {
        self.start_once(&self.schedule_service, || {
            schedule_service::start(self.core.clone(), self.schedule_wake.clone())
        })
    }

    /// Starts the transaction check service unless it runs already: at open when the store
    /// holds half messages, else with the first transaction producer (a store that never
    /// sees a transaction runs no check thread).
    pub(crate) fn start_transaction_service(&self) -> std::io::Result<()> {
        self.start_once(&self.transaction_service, || {
            transaction_service::start(self.core.clone())
        })
    }

    /// Spawns a service thread that `started` says is not running yet, and hands it to
    /// [`Runtime::shutdown`]. Nothing starts once the store is closing, nor on a read-only
    /// store.
    fn start_once(
        &self,
        started: &AtomicBool,
        spawn: impl FnOnce() -> std::io::Result<(Sender<()>, JoinHandle<()>)>,
    ) -> std::io::Result<()> {
        if started.load(Ordering::Acquire) {
            return Ok(());
        }
        // Held while spawning: a close either sees the thread or keeps it from starting.
        let clients = self.clients.lock();
        if clients.closing
            || started.load(Ordering::Acquire)
            || self.core.check_not_read_only().is_err()
        {
            return Ok(());
        }
        let (stop, thread) = spawn()?;
        self.background.lock().push(Background { stop, thread });
        started.store(true, Ordering::Release);
        Ok(())
    }

    /// Opens the store read-only: no threads, nothing written.
    pub(crate) fn open_read_only(
        fs: Fs,
        dir: PathBuf,
        config: StoreConfig,
    ) -> Result<Arc<Runtime>> {
        Ok(Arc::new(Runtime {
            core: Arc::new(Broker::open_read_only(fs, dir, config)?),
            background: Mutex::new(Vec::new()),
            clients: Mutex::new(Clients::default()),
            transaction_service: AtomicBool::new(false),
            schedule_service: AtomicBool::new(false),
            schedule_wake: crossbeam_channel::never(),
        }))
    }

    pub(crate) fn core(&self) -> &Arc<Broker> {
        &self.core
    }

    pub(crate) fn dir(&self) -> &Path {
        self.core.dir()
    }

    /// Registers a client for [`Runtime::shutdown`] to stop; [`Error::Closed`] once the store
    /// is closing (the client must not start).
    pub(crate) fn attach(&self, kind: ClientKind, client: Weak<dyn Attached>) -> Result<()> {
        let mut c = self.clients.lock();
        if c.closing {
            return Err(Error::Closed);
        }
        // Push consumers commit offsets, asynchronous senders write: not on a read-only store.
        if kind != ClientKind::Reader {
            self.core.check_not_read_only()?;
        }
        let list = match kind {
            ClientKind::Consumer | ClientKind::Reader => &mut c.consumers,
            ClientKind::Sender => &mut c.senders,
        };
        list.retain(|w| w.strong_count() > 0);
        list.push(client);
        Ok(())
    }

    /// Whether the store is closing or closed (no client may start).
    pub(crate) fn is_closing(&self) -> bool {
        self.clients.lock().closing
    }

    /// Closes the store: stops the push and lite pull consumers started from it (no more
    /// rebalancing; each stops fetching, waits for its listener calls and commits), drains the asynchronous
    /// sends (their callbacks get their real results), stops the threads (all told at once,
    /// then joined) and closes the broker, which flushes what they wrote last.
    /// Returns the broker's error if any, else the first client's.
    pub(crate) fn shutdown(&self) -> Result<()> {
        let (consumers, senders) = {
            let mut c = self.clients.lock();
            c.closing = true;
            (
                std::mem::take(&mut c.consumers),
                std::mem::take(&mut c.senders),
            )
        };
        self.core.groups.close();
        let mut first_error = None;
        for client in consumers.iter().chain(&senders).filter_map(Weak::upgrade) {
            if let Err(e) = client.close() {
                log::warn!(
                    "closing {}: a client failed to stop cleanly: {e}",
                    self.dir().display()
                );
                first_error.get_or_insert(e);
            }
        }
        // All are told first, then joined: they wind down side by side. Whatever one still
        // writes after another stopped is flushed by the broker's close below.
        let threads: Vec<Background> = self.background.lock().drain(..).rev().collect();
        for bg in &threads {
            let _ = bg.stop.send(());
        }
        let me = std::thread::current().id();
        for bg in threads {
            // A close from one of them (a transaction checker closing the store) does not
            // wait for itself: that thread ends once its work returns.
            if bg.thread.thread().id() != me {
                let _ = bg.thread.join();
            }
        }
        self.core.shutdown()?;
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
