//! A config JSON file written on change: a dirty flag, and an atomic replace (with `.bak`) done
//! by one writer at a time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::storage::Fs;

/// One config file.
#[derive(Debug)]
pub(crate) struct JsonFile {
    fs: Fs,
    path: PathBuf,
    dirty: AtomicBool,
    write_lock: Mutex<()>,
}

impl JsonFile {
    pub(crate) fn new(fs: Fs, path: PathBuf) -> JsonFile {
        JsonFile {
            fs,
            path,
            dirty: AtomicBool::new(false),
            write_lock: Mutex::new(()),
        }
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Writes the document `doc` builds if the file is dirty; a failed write leaves it dirty.
    pub(crate) fn persist_if_dirty(&self, doc: impl FnOnce() -> Value) -> Result<()> {
        let _one_writer = self.write_lock.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = serde_json::to_vec_pretty(&doc())
            .map_err(|e| {
                Error::InvalidConfig(format!("cannot encode {}: {e}", self.path.display()))
            })
            .and_then(|text| {
                if let Some(dir) = self.path.parent() {
                    self.fs.create_dir_all(dir)?;
                }
                self.fs.write_atomic(&self.path, &text)
            });
        if result.is_err() {
            self.mark_dirty();
        }
        result
    }
}
