//! [`Fs`]: the store's handle on its [`Storage`] backend, with the file-level operations built
//! on it (segment names and listings, directory creation with parent sync, atomic replacement
//! of config files with a `.bak`, reads falling back to the `.bak`). Every error names the
//! operation and the path.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::{DirEntry, FileStorage, Storage};
use super::mmap::Segment;
use crate::error::{Error, Result};

/// Width of segment file names (`UtilAll.offset2FileName`).
pub(crate) const NAME_LEN: usize = 20;

/// The 20-digit zero-padded name of a segment starting at `offset`.
pub(crate) fn segment_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Parses a segment name; `None` for anything that is not exactly 20 decimal digits.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() == NAME_LEN && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The `.bak` companion of a config file.
pub(crate) fn bak_path(path: &Path) -> PathBuf {
    with_suffix(path, ".bak")
}

/// A cheap, cloneable handle on the storage backend.
#[derive(Debug, Clone)]
pub(crate) struct Fs {
    storage: Arc<dyn Storage>,
}

impl Default for Fs {
    fn default() -> Self {
        Fs::new(Arc::new(FileStorage))
    }
}

impl Fs {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Fs {
        Fs { storage }
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Creates a new segment file of `size` bytes, fully allocated, and maps it. The caller
    /// makes its directory entry durable ([`Fs::sync_dir`]) before relying on it.
    pub(crate) fn create_segment(&self, path: &Path, base: u64, size: u64) -> Result<Segment> {
        let map = self
            .storage
            .create_mapped(path, size)
            .map_err(|e| Error::io("create segment", path, e))?;
        Segment::new(self.clone(), path, base, size, map, 0)
    }

    /// Maps an existing segment file, which must be exactly `size` bytes long. All of it
    /// starts out published; recovery sets the real end.
    pub(crate) fn open_segment(&self, path: &Path, base: u64, size: u64) -> Result<Segment> {
        let (map, len) = self
            .storage
            .open_mapped(path)
            .map_err(|e| Error::io("open segment", path, e))?;
        if len != size {
            return Err(Error::corrupted(
                path,
                0,
                format!("segment is {len} bytes, expected {size}"),
            ));
        }
        Segment::new(self.clone(), path, base, size, map, size as usize)
    }

    /// Maps an existing segment file read-only. It must be exactly `size` bytes long (a file
    /// another process is still creating is not mapped: reading past a file's end through a
    /// mapping raises `SIGBUS`). Nothing of it is published yet: the read-only open publishes
    /// what it has CRC-checked ([`Segment::advance_published`]).
    pub(crate) fn open_segment_read_only(
        &self,
        path: &Path,
        base: u64,
        size: u64,
    ) -> Result<Segment> {
        let (map, len) = self
            .storage
            .open_mapped_read_only(path)
            .map_err(|e| Error::io("open segment read-only", path, e))?;
        if len != size {
            return Err(Error::corrupted(
                path,
                0,
                format!("segment is {len} bytes, expected {size}"),
            ));
        }
        Segment::new_read_only(self.clone(), path, base, size, map)
    }

    /// The entries of `dir`; empty when it does not exist.
    pub(crate) fn list(&self, dir: &Path) -> Result<Vec<DirEntry>> {
        match self.storage.list(dir) {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("list directory", dir, e)),
        }
    }

    /// The segment files of `dir` as `(start offset, path)`, sorted; other names are ignored.
    pub(crate) fn list_segments(&self, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
        let mut out: Vec<(u64, PathBuf)> = self
            .list(dir)?
            .into_iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| parse_segment_name(&e.name).map(|o| (o, dir.join(&e.name))))
            .collect();
        out.sort();
        Ok(out)
    }

    /// `fsync` of a directory, making entries created, renamed or removed in it durable.
    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.storage
            .sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))
    }

    /// The parts of `[from, to)` of `path` that may hold data (see [`Storage::data_ranges`]).
    pub(crate) fn data_ranges(&self, path: &Path, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        self.storage
            .data_ranges(path, from, to)
            .map_err(|e| Error::io("find data", path, e))
    }

    /// The length of the file `path`.
    pub(crate) fn len(&self, path: &Path) -> Result<u64> {
        self.storage
            .len(path)
            .map_err(|e| Error::io("stat", path, e))
    }

    /// Used and available bytes of the file system holding `path` (as `df` shows them).
    pub(crate) fn disk_space(&self, path: &Path) -> Result<(u64, u64)> {
        self.storage
            .disk_space(path)
            .map_err(|e| Error::io("statvfs", path, e))
    }

    /// The modification time of `path`.
    pub(crate) fn modified(&self, path: &Path) -> Result<std::time::SystemTime> {
        self.storage
            .modified(path)
            .map_err(|e| Error::io("stat", path, e))
    }

    /// Whether `path` exists.
    pub(crate) fn exists(&self, path: &Path) -> Result<bool> {
        self.storage
            .exists(path)
            .map_err(|e| Error::io("stat", path, e))
    }

    /// Creates `dir` and its parents, syncing the parent of every directory created, so the
    /// new entries survive a power cut.
    pub(crate) fn create_dir_all(&self, dir: &Path) -> Result<()> {
        if self.exists(dir)? {
            return Ok(());
        }
        let mut missing = vec![dir];
        let mut cur = dir.parent();
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || self.exists(p)? {
                break;
            }
            missing.push(p);
            cur = p.parent();
        }
        self.storage
            .create_dir_all(dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        for d in missing.iter().rev() {
            if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
                self.sync_dir(parent)?;
            }
        }
        Ok(())
    }

    /// Removes a file if it exists.
    pub(crate) fn remove_file_if_exists(&self, path: &Path) -> Result<()> {
        match self.storage.remove(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }

    /// Writes `data` as the whole content of the marker file `path` without syncing anything:
    /// the caller syncs the directory when the marker's existence must be durable.
    pub(crate) fn write_marker(&self, path: &Path, data: &[u8]) -> Result<()> {
        self.storage
            .write_unsynced(path, data)
            .map_err(|e| Error::io("write", path, e))
    }

    /// Rewrites the start of a fixed-size file in place and syncs it (the checkpoint).
    pub(crate) fn overwrite(&self, path: &Path, data: &[u8]) -> Result<()> {
        self.storage
            .overwrite_synced(path, data)
            .map_err(|e| Error::io("write", path, e))
    }

    /// Reads into `buf` from `offset` of the file `path` without mapping it (fewer bytes at
    /// its end) and returns the file's length.
    pub(crate) fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> Result<u64> {
        self.storage
            .read_at(path, offset, buf)
            .map_err(|e| Error::io("read", path, e))
    }

    /// The content of `path`, `None` when missing.
    pub(crate) fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match self.storage.read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Replaces `path` with `contents` atomically: write `path.tmp` and sync it, move the old
    /// file to `path.bak`, rename the new one into place, sync the directory. A crash at any
    /// point leaves the old or the new content under `path` or `path.bak`, never a partial
    /// file.
    pub(crate) fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()> {
        let tmp = with_suffix(path, ".tmp");
        self.storage
            .write_synced(&tmp, contents)
            .map_err(|e| Error::io("write", &tmp, e))?;
        if self.exists(path)? {
            self.storage
                .rename(path, &bak_path(path))
                .map_err(|e| Error::io("rename to .bak", path, e))?;
        }
        self.storage
            .rename(&tmp, path)
            .map_err(|e| Error::io("rename into place", path, e))?;
        match path.parent() {
            Some(dir) => self.sync_dir(dir),
            None => Ok(()),
        }
    }

    /// Reads a config file, falling back to its `.bak` when the main file is missing, empty or
    /// rejected by `parse`. `Ok(None)` when neither holds anything; a file that exists but
    /// cannot be parsed, with no usable `.bak`, is [`Error::Corrupted`] (as a RocketMQ
    /// broker, the store refuses to start rather than silently forget what the file held).
    pub(crate) fn read_with_backup<T>(
        &self,
        path: &Path,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Option<T>> {
        let mut damaged: Option<PathBuf> = None;
        let bak = bak_path(path);
        for candidate in [path.to_path_buf(), bak.clone()] {
            match self.read(&candidate)? {
                Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {}
                Some(bytes) => match parse(&bytes) {
                    Some(v) => {
                        if candidate == bak {
                            ::log::warn!(
                                "{} is missing, empty or damaged: read {} instead",
                                path.display(),
                                bak.display()
                            );
                        }
                        return Ok(Some(v));
                    }
                    None => {
                        damaged.get_or_insert(candidate);
                    }
                },
                None => {}
            }
        }
        match damaged {
            Some(file) => Err(Error::corrupted(
                file,
                0,
                "config file cannot be parsed and has no usable .bak; fix or remove it",
            )),
            None => Ok(None),
        }
    }
}
