//! The `checkpoint` file on disk: read at open, rewritten in place and synced periodically.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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
}

impl CheckpointFile {
    /// Reads `{dir}/checkpoint`; `None` when missing, short or garbled. Nothing is created
    /// until the first [`CheckpointFile::write`].
    pub(crate) fn open(fs: &Fs, dir: &Path) -> Result<(CheckpointFile, Option<Checkpoint>)> {
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
            },
            cp,
        ))
    }

    /// Rewrites the file in place and syncs it. A first write that fails leaves no file
    /// behind (an empty or partial checkpoint would outlive the failed open).
    pub(crate) fn write(&self, cp: &Checkpoint) -> Result<()> {
        let result = self.fs.overwrite(&self.path, &cp.encode());
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
