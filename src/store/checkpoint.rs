//! The `checkpoint` file on disk: read at open, rewritten in place and synced periodically.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::checkpoint::{CHECKPOINT_FILE_SIZE, Checkpoint};

/// The open checkpoint file.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    path: PathBuf,
    file: File,
}

impl CheckpointFile {
    /// Opens (creating) `{dir}/checkpoint` and decodes it; `None` when missing, short or
    /// garbled.
    pub(crate) fn open(dir: &Path) -> Result<(CheckpointFile, Option<Checkpoint>)> {
        let path = dir.join("checkpoint");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open checkpoint", &path, e))?;
        let mut buf = vec![0u8; CHECKPOINT_FILE_SIZE];
        let mut read = 0;
        while read < buf.len() {
            match file.read_at(&mut buf[read..], read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read checkpoint", &path, e)),
            }
        }
        let cp = if read == CHECKPOINT_FILE_SIZE {
            Checkpoint::decode(&buf).ok()
        } else {
            None
        };
        Ok((CheckpointFile { path, file }, cp))
    }

    /// Rewrites the file and syncs it.
    pub(crate) fn write(&self, cp: &Checkpoint) -> Result<()> {
        self.file
            .write_all_at(&cp.encode(), 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("write checkpoint", &self.path, e))
    }
}
