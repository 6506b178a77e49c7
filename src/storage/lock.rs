//! The `lock` file: an exclusive `flock` that keeps a second store off the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// How many more times [`DirLock::acquire`] tries a held lock, and the pause between tries.
const LOCK_TRIES: u32 = 10;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Holds the directory lock until dropped (the OS also releases it when the process dies).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `{dir}/lock`, or fails with [`Error::Locked`] if another open file description
    /// (another process, or another store in this process) holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        // A lock released an instant ago can still be held by a child process this process
        // is starting: between its fork and its exec the child shares every open file
        // description, the lock file's included. A few tries over ~50 ms let that pass; a
        // store held by another process or another open store is refused after them.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(TryLockError::WouldBlock) => return Err(Error::Locked(dir.to_path_buf())),
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
            }
        }
        // RocketMQ writes the text "lock"; only after we own the lock do we touch the content.
        // Written in place (a truncate costs a journal commit on every open), cut only when
        // something longer was there.
        file.write_all_at(b"lock", 0)
            .and_then(|()| match file.metadata()?.len() > 4 {
                true => file.set_len(4),
                false => Ok(()),
            })
            .map_err(|e| Error::io("write lock file", &path, e))?;
        Ok(DirLock { _file: file })
    }
}
