//! The storage backend: every file operation of the store goes through a [`Storage`].
//!
//! [`FileStorage`] is the real one (plain files, `posix_fallocate`, `msync`, `fsync`). With the
//! `sim` feature, `SimStorage` (see [`crate::sim`]) wraps it to keep what was written apart from
//! what was made durable, so tests can cut the power at any moment, and to fail the Nth
//! operation of a kind with EIO or ENOSPC.
//!
//! Segment files are memory-mapped by [`Storage::create_mapped`] / [`Storage::open_mapped`]; the
//! store writes and reads them through the mapping (see `storage/mmap.rs`, the only `unsafe`
//! code) and makes ranges durable with [`Storage::flush_mapped`]. Everything else (config
//! JSON, checkpoint, `abort`) is small whole-file I/O.
//!
//! The durability model every backend follows (and the simulator enforces):
//! - bytes written through a mapping are durable once [`Storage::flush_mapped`] covered them;
//! - [`Storage::write_synced`] and [`Storage::overwrite_synced`] make the file's *content*
//!   durable before returning;
//! - a new, renamed or removed *directory entry* (file or subdirectory) is durable only after
//!   [`Storage::sync_dir`] of its parent directory.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::{MmapOptions, MmapRaw};

use super::mmap;

/// The kinds of storage operation, for fault injection and accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(not(feature = "sim"), allow(dead_code))]
pub enum OpKind {
    /// Creating and preallocating a segment file ([`Storage::create_mapped`]).
    Allocate,
    /// Writing a small file ([`Storage::write_synced`], [`Storage::overwrite_synced`],
    /// [`Storage::write_unsynced`]).
    Write,
    /// Making a mapped range durable ([`Storage::flush_mapped`]).
    Flush,
    /// Syncing a directory ([`Storage::sync_dir`]).
    SyncDir,
    /// Renaming or removing a file, creating a directory.
    Metadata,
    /// Opening, mapping, reading or listing.
    Read,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    /// The file name (entries whose names are not UTF-8 are skipped).
    pub(crate) name: String,
    /// Whether it is a directory.
    pub(crate) is_dir: bool,
}

/// The file operations the store performs. Paths are absolute paths inside the store
/// directory. Errors are plain `io::Error`s; callers wrap them with the path and operation.
pub(crate) trait Storage: Send + Sync + fmt::Debug {
    /// Creates the new file `path` (failing if it exists), allocates all `size` bytes of it on
    /// disk, so writes through the mapping cannot run out of space, and maps it.
    fn create_mapped(&self, path: &Path, size: u64) -> io::Result<MmapRaw>;

    /// Maps the whole existing file `path`; returns the mapping and the file's length.
    fn open_mapped(&self, path: &Path) -> io::Result<(MmapRaw, u64)>;

    /// Maps the whole existing file `path` read-only (a store opened read-only, while another
    /// process may own and append to it); returns the mapping and the file's length. Nothing
    /// may be written through the mapping.
    fn open_mapped_read_only(&self, path: &Path) -> io::Result<(MmapRaw, u64)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let map_len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
        if map_len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        Ok((
            MmapOptions::new().len(map_len).map_raw_read_only(&file)?,
            len,
        ))
    }

    /// Makes `len` bytes of the mapping of `path` from `from` on durable.
    fn flush_mapped(&self, path: &Path, map: &MmapRaw, from: usize, len: usize) -> io::Result<()>;

    /// Starts writing the dirty pages of `[from, from + len)` of the mapped file `path` back,
    /// without waiting: a later [`Storage::flush_mapped`] of the range then finds less to
    /// write. It makes nothing durable, so a backend may do nothing (the default).
    fn start_write_back(
        &self,
        path: &Path,
        map: &MmapRaw,
        from: usize,
        len: usize,
    ) -> io::Result<()> {
        let _ = (path, map, from, len);
        Ok(())
    }

    /// The whole content of `path` (`ErrorKind::NotFound` when missing).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Reads into `buf` from `offset` of `path` without mapping it (fewer bytes at the end of
    /// the file, the rest of `buf` untouched) and returns the file's length.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<u64>;

    /// Creates or replaces the content of `path` with `data` and makes the content durable
    /// (not the directory entry of a new file: see [`Storage::sync_dir`]).
    fn write_synced(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// Creates or replaces the content of `path` with `data` and makes nothing durable: after a
    /// crash the file may be missing (unless its directory was synced since) or hold any of
    /// its old or new bytes. For marker files whose existence is what counts (`abort`).
    fn write_unsynced(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// Writes `data` at the start of `path` (created if missing) without truncating it first,
    /// and makes it durable. For small fixed-size files rewritten in place (the checkpoint).
    fn overwrite_synced(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path` (`ErrorKind::NotFound` when missing).
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Creates `path` and any missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Makes the entries of directory `path` durable (`fsync` of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// The entries of directory `path` (`ErrorKind::NotFound` when missing).
    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>>;

    /// Whether `path` exists (as a file or directory).
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// The ranges of `[from, to)` of the file `path` that may hold data: on file systems that
    /// can tell (`SEEK_DATA`), never-written parts of a preallocated file are left out, so
    /// recovery does not read a gigabyte of zeros. The default is the whole range.
    fn data_ranges(&self, path: &Path, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
        let _ = path;
        Ok(if from < to {
            vec![(from, to)]
        } else {
            Vec::new()
        })
    }

    /// Used and available bytes of the file system holding `path` (as `df` shows them).
    fn disk_space(&self, path: &Path) -> io::Result<(u64, u64)> {
        mmap::disk_space(path)
    }

    /// The modification time of the file `path`.
    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        fs::metadata(path)?.modified()
    }

    /// Writes zeros over `[from, from + len)` of the file `path` (through the page cache, not
    /// synced): pages a writer will fill next are then in memory without a page fault
    /// reading them in.
    fn write_zeros(&self, path: &Path, from: u64, len: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let f = OpenOptions::new().write(true).open(path)?;
        let mut pos = from;
        let end = from.saturating_add(len);
        while pos < end {
            let n = (end - pos).min(ZEROS.len() as u64) as usize;
            f.write_all_at(&ZEROS[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// The length of the file `path`.
    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }
}

/// How much of a long flush is written back at a time ([`FileStorage::flush_mapped`]), and
/// how many such pieces are in flight at once (the disk gets the next ones while the oldest
/// is waited for).
const WRITEBACK_PIECE: usize = 256 << 10;
const WRITEBACK_IN_FLIGHT: usize = 4;
/// The same for an idle-class thread (the background flush): a waking application thread
/// takes its CPU only between system calls, and submitting 256 KiB at once held a tailing
/// consumer off its CPU for ~0.1 ms at a time. (Smaller pieces cost a flush the caller waits
/// for ~10% of its throughput, so that one keeps the larger ones.)
const IDLE_WRITEBACK_PIECE: usize = 64 << 10;
const IDLE_WRITEBACK_IN_FLIGHT: usize = 16;

/// Whether `e` says the file system does not support the call (`sync_file_range`).
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// How much [`FileStorage::start_write_back`] submits per system call. Larger than the
/// flush's pieces: W1 (1 M × 100 B) reached its final fdatasync 15-20% sooner with 1 MiB
/// pieces than with 64 KiB ones (this disk takes fewer, larger requests faster), and at a
/// tailing consumer's pace the write-back runs only once per 8 MiB appended.
const WRITE_BEHIND_PIECE: usize = 1 << 20;

/// The real backend: files on the local file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FileStorage;

fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    if len == 0 {
        return Ok(());
    }
    mmap::fallocate(file.as_raw_fd(), len)
}

impl Storage for FileStorage {
    fn create_mapped(&self, path: &Path, size: u64) -> io::Result<MmapRaw> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let mapped = preallocate(&file, size).and_then(|()| {
            let len = usize::try_from(size).map_err(|_| io::Error::other("segment too large"))?;
            MmapOptions::new().len(len).map_raw(&file)
        });
        if mapped.is_err() {
            let _ = fs::remove_file(path);
        }
        mapped
    }

    fn open_mapped(&self, path: &Path) -> io::Result<(MmapRaw, u64)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let map_len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
        if map_len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        Ok((MmapOptions::new().len(map_len).map_raw(&file)?, len))
    }

    fn flush_mapped(&self, path: &Path, map: &MmapRaw, from: usize, len: usize) -> io::Result<()> {
        let (piece, in_flight_max) = if mmap::in_idle_class() {
            (IDLE_WRITEBACK_PIECE, IDLE_WRITEBACK_IN_FLIGHT)
        } else {
            (WRITEBACK_PIECE, WRITEBACK_IN_FLIGHT)
        };
        if len > piece {
            // Write a long range back a piece at a time, waiting for each, before the one
            // `msync` that makes it durable: the page-table work of writeback (write-protecting
            // every page) then never keeps a writer or a tailing reader waiting for
            // milliseconds (p999 at one message per 20 µs: 3-4.5 ms with one whole-range
            // msync, 0.2-0.9 ms in pieces), and the disk cache is still flushed once.
            // Up to `in_flight_max` pieces are submitted before the oldest is waited
            // for, so the disk always has the next piece queued instead of idling between a
            // piece's completion and the next submission.
            let file = File::open(path)?;
            let fd = file.as_raw_fd();
            let pieces = || -> io::Result<()> {
                let mut in_flight = std::collections::VecDeque::with_capacity(in_flight_max);
                let mut pos = from;
                let end = from + len;
                while pos < end || !in_flight.is_empty() {
                    if pos < end && in_flight.len() < in_flight_max {
                        let n = (end - pos).min(piece);
                        mmap::start_write_back(fd, pos as u64, n as u64)?;
                        in_flight.push_back((pos, n));
                        pos += n;
                        continue;
                    }
                    if let Some((at, n)) = in_flight.pop_front() {
                        mmap::write_back(fd, at as u64, n as u64)?;
                    }
                }
                Ok(())
            };
            match pieces() {
                Ok(()) => {}
                // A file system without `sync_file_range`: the `msync` below does it all.
                Err(e) if unsupported(&e) => {}
                Err(e) => return Err(e),
            }
        }
        map.flush_range(from, len)
    }

    fn start_write_back(
        &self,
        path: &Path,
        map: &MmapRaw,
        from: usize,
        len: usize,
    ) -> io::Result<()> {
        // Unmapped first, so that writeback write-protects no page the writer's CPU has in
        // its TLB (one shootdown for the range, not one per page). Only an optimisation: it
        // fails for locked mappings (`mlockall`), and the pages are written back anyway.
        let _ = mmap::drop_page_tables(map, from, len);
        let file = File::open(path)?;
        let mut pos = from;
        while pos < from + len {
            let n = (from + len - pos).min(WRITE_BEHIND_PIECE);
            match mmap::start_write_back(file.as_raw_fd(), pos as u64, n as u64) {
                Ok(()) => {}
                // A file system without `sync_file_range`: the flush writes it all.
                Err(e) if unsupported(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
            pos += n;
            // Between pieces, a waking application thread gets the CPU (idle class).
            std::thread::yield_now();
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<u64> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let n = usize::try_from(len.saturating_sub(offset)).map_or(buf.len(), |n| n.min(buf.len()));
        file.read_exact_at(&mut buf[..n], offset)?;
        Ok(len)
    }

    fn write_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.write_all(data)?;
        f.sync_all()
    }

    fn write_unsynced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        fs::write(path, data)
    }

    fn overwrite_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        f.write_all_at(data, 0)?;
        f.sync_data()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type()?.is_dir();
            out.push(DirEntry { name, is_dir });
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn data_ranges(&self, path: &Path, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
        let file = File::open(path)?;
        let fd = file.as_raw_fd();
        let mut out = Vec::new();
        let mut pos = from;
        while pos < to {
            let Some(start) = mmap::seek_data(fd, pos)? else {
                break;
            };
            if start >= to {
                break;
            }
            let end = mmap::seek_hole(fd, start)?.unwrap_or(to).min(to);
            if end <= start {
                // A file system that does not move forward: treat the rest as data.
                out.push((start, to));
                break;
            }
            out.push((start, end));
            pos = end;
        }
        Ok(out)
    }
}
