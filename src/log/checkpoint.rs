//! The `checkpoint` file on disk: read at open, rewritten in place and synced periodically.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::Result;
use crate::format::checkpoint::{CHECKPOINT_FILE_SIZE, Checkpoint};
use crate::storage::Fs;

/// The checkpoint file.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    fs: Fs,
    path: PathBuf,
    /// The file exists (with a full checkpoint once written).
    present: AtomicBool,
    /// What the file durably holds, when known: a write of the same checkpoint is skipped
    /// (a clean close after a clean open syncs nothing). Held across a write, so concurrent
    /// writers keep the file and this in step.
    durable: Mutex<Option<Checkpoint>>,
}

impl CheckpointFile {
    /// Reads `{dir}/checkpoint`; `None` when missing, short or garbled. Nothing is created
    /// until the first [`CheckpointFile::write`]. `synced` says the content read is durable
    /// (the store was closed cleanly, and its close synced the file); otherwise the first
    /// write syncs even an unchanged checkpoint.
    pub(crate) fn open(
        fs: &Fs,
        dir: &Path,
        synced: bool,
    ) -> Result<(CheckpointFile, Option<Checkpoint>)> {
        let path = dir.join("checkpoint");
        let bytes = fs.read(&path)?;
        let present = AtomicBool::new(bytes.is_some());
        let cp = bytes
            .filter(|b| b.len() >= CHECKPOINT_FILE_SIZE)
            .and_then(|b| Checkpoint::decode(&b[..CHECKPOINT_FILE_SIZE]).ok());
        Ok((
            CheckpointFile {
                fs: fs.clone(),
                path,
                present,
                durable: Mutex::new(cp.filter(|_| synced)),
            },
            cp,
        ))
    }

    /// Rewrites the file in place and syncs it, unless it durably holds `cp` already. A first
    /// write that fails leaves no file behind (an empty or partial checkpoint would outlive the
    /// failed open).
    pub(crate) fn write(&self, cp: &Checkpoint) -> Result<()> {
        let mut durable = self.durable.lock();
        if durable.as_ref() == Some(cp) {
            return Ok(());
        }
        // Unknown until the write below succeeds.
        *durable = None;
        let result = self.fs.overwrite(&self.path, &cp.encode());
        if result.is_ok() {
            *durable = Some(*cp);
        }
        if self.present.load(Ordering::Relaxed) {
            return result;
        }
        match result {
            Ok(()) => {
                self.present.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if let Err(cleanup) = self.fs.remove_file_if_exists(&self.path) {
                    ::log::warn!("could not remove the unwritten checkpoint: {cleanup}");
                }
                Err(e)
            }
        }
    }
}
