//! The running store: the broker plus its background threads (flusher, schedule service).
//! Every `Store` handle and client handle shares one; dropping the last one closes the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::{Broker, schedule_service};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::storage::Fs;

#[derive(Debug)]
struct Background {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// The broker and its threads.
#[derive(Debug)]
pub(crate) struct Runtime {
    core: Arc<Broker>,
    background: Mutex<Vec<Background>>,
}

impl Runtime {
    /// Opens the store and starts its threads.
    pub(crate) fn open(fs: Fs, dir: PathBuf, config: StoreConfig) -> Result<Arc<Runtime>> {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let core = Arc::new(Broker::open(fs, dir, config, wake_tx)?);
        let mut background = Vec::new();
        let spawned = crate::log::flusher::start(core.clone())
            .map(|(stop, thread)| background.push(Background { stop, thread }))
            .and_then(|()| schedule_service::start(core.clone(), wake_rx))
            .map(|(stop, thread)| background.push(Background { stop, thread }));
        let rt = Arc::new(Runtime {
            core,
            background: Mutex::new(background),
        });
        if let Err(e) = spawned {
            let _ = rt.shutdown();
            return Err(Error::io("spawn background thread", rt.dir(), e));
        }
        Ok(rt)
    }

    pub(crate) fn core(&self) -> &Arc<Broker> {
        &self.core
    }

    pub(crate) fn dir(&self) -> &Path {
        self.core.dir()
    }

    /// Stops the threads (the schedule service, last started, first: it writes through the
    /// store) and closes the broker.
    pub(crate) fn shutdown(&self) -> Result<()> {
        let threads: Vec<Background> = self.background.lock().drain(..).rev().collect();
        for bg in threads {
            let _ = bg.stop.send(());
            let _ = bg.thread.join();
        }
        self.core.shutdown()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
