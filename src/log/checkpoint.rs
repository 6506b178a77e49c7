//! The `checkpoint` file on disk: read at open, rewritten in place and synced periodically.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::checkpoint::{CHECKPOINT_FILE_SIZE, Checkpoint};
use crate::storage::Fs;

/// The checkpoint file.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    fs: Fs,
    path: PathBuf,
}

impl CheckpointFile {
    /// Reads `{dir}/checkpoint`; `None` when missing, short or garbled. Nothing is created
    /// until the first [`CheckpointFile::write`].
    pub(crate) fn open(fs: &Fs, dir: &Path) -> Result<(CheckpointFile, Option<Checkpoint>)> {
        let path = dir.join("checkpoint");
        let cp = fs
            .read(&path)?
            .filter(|b| b.len() >= CHECKPOINT_FILE_SIZE)
            .and_then(|b| Checkpoint::decode(&b[..CHECKPOINT_FILE_SIZE]).ok());
        Ok((
            CheckpointFile {
                fs: fs.clone(),
                path,
            },
            cp,
        ))
    }

    /// Rewrites the file in place and syncs it.
    pub(crate) fn write(&self, cp: &Checkpoint) -> Result<()> {
        self.fs.overwrite(&self.path, &cp.encode())
    }
}
