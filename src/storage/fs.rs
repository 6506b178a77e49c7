//! Small-file helpers: segment names, directory listing and fsync, atomic replacement.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// The segment files of `dir` as `(start offset, path)`, sorted; other names are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("list directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((offset, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `fsync` of a directory, making entries created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Creates `dir` and its parents, syncing the parent of the first one created.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes a file if it exists.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
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

/// Replaces `path` with `contents` atomically: write `path.tmp` and fsync it, move the old file
/// to `path.bak`, rename the new one into place, fsync the directory. A crash at any point
/// leaves the old or the new content under `path` or `path.bak`, never a partial file.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    drop(f);
    if path.exists() {
        fs::rename(path, bak_path(path)).map_err(|e| Error::io("rename to .bak", path, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a config file, falling back to its `.bak` when the main file is missing, empty or
/// rejected by `parse`. `Ok(None)` when neither exists.
pub(crate) fn read_with_backup<T>(
    path: &Path,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Result<Option<T>> {
    for candidate in [path.to_path_buf(), bak_path(path)] {
        match fs::read(&candidate) {
            Ok(bytes) => {
                if let Some(v) = parse(&bytes) {
                    return Ok(Some(v));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &candidate, e)),
        }
    }
    Ok(None)
}
