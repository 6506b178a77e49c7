//! One preallocated, memory-mapped segment file. The only `unsafe` code of the crate lives
//! here: the mapping and the few system calls std does not wrap (`posix_fallocate`, `lseek`
//! for holes, `sync_file_range`, `statvfs`, `sched_setscheduler`).
//!
//! # The mapping contract
//! A segment's file must not be truncated or written by anything else while the store has it
//! mapped; the directory lock keeps other mqlite instances out, and the file is preallocated
//! with `fallocate` before it is mapped, so a full disk shows up as an error at creation instead
//! of a `SIGBUS` on a later write.
//!
//! # Concurrency
//! Each segment has a *published* length. Shared readers ([`Segment::read`]) only see bytes below
//! it, and bytes below it never change while the segment is shared. Bytes at or above it are
//! written only through the segment's single [`SegmentWriter`], which publishes them with a
//! release store once written. Operations that rewrite published bytes (recovery truncation,
//! warming) take `&mut Segment`, i.e. happen before the segment is shared. The one exception
//! writing a shared segment besides its writer is [`Segment::zero_ahead`], which only touches
//! bytes well past the published length and makes the writer wait rather than overlap it.
//!
//! # Read-only segments
//! A store opened read-only ([`Segment::new_read_only`]) maps files that another process may
//! own and append to, with `PROT_READ` only: nothing in this process writes them (every
//! writing method refuses a read-only segment). The owner never changes bytes below the end
//! it has published, and the reader publishes only bytes it has checked (CRC) to be complete
//! records, so published bytes of a read-only segment do not change while they are borrowed
//! either. Bytes past that are copied out ([`Segment::copy_out`]), never borrowed: the owner
//! may be writing them at that very moment, and the copy is checked before anything trusts
//! it. The file must keep the length it had when it was mapped (mqlite never truncates a
//! segment file, it only removes whole files; a removed file stays mapped until unmapped).
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memmap2::MmapRaw;

use super::fs::Fs;
use super::segment_set::PAGE_SIZE as PAGE;
use crate::error::{Error, Result};

/// Appends longer than this announce their end before writing ([`SegmentWriter::append`]).
pub(crate) const ANNOUNCE_ABOVE: usize = 4 << 10;
/// A writer issues a SeqCst fence every this many appends, so what [`Segment::zero_ahead`]
/// sees published is never more than this many (unannounced) appends behind the writer.
pub(crate) const FENCE_EVERY: usize = 16;
/// The least `gap` [`Segment::zero_ahead`] needs for a writer whose unannounced appends are
/// at most `longest` bytes.
pub(crate) const fn zero_ahead_min_gap(longest: usize) -> usize {
    (FENCE_EVERY + 1) * longest
}

/// How [`Segment::zero_ahead`] writes its zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroAhead {
    /// Through the mapping, then flushed (warming, `FlushPolicy::Sync`).
    Durable,
    /// With `pwrite`, into the page cache only.
    PageCache,
}

/// A fixed-size segment file mapped into memory.
#[derive(Debug)]
pub(crate) struct Segment {
    fs: Fs,
    path: PathBuf,
    base: u64,
    size: usize,
    map: MmapRaw,
    published: AtomicUsize,
    writer_taken: AtomicBool,
    /// Start of the range [`Segment::zero_ahead`] is writing right now (`usize::MAX`: none).
    zeroing_from: AtomicUsize,
    /// End of the last append longer than [`ANNOUNCE_ABOVE`], stored before it writes anything
    /// ([`SegmentWriter::append`]), so [`Segment::zero_ahead`] keeps clear of it.
    announced_end: AtomicUsize,
    /// The whole segment was zero-filled and flushed before use ([`Segment::warm`]).
    warmed: AtomicBool,
    /// Mapped read-only (a read-only store): nothing is ever written through the mapping.
    read_only: bool,
    /// The segment is accessed as 32-bit atomic words ([`Segment::words`]): no writer, no
    /// byte slices.
    word_mode: AtomicBool,
}

/// The next offset at or after `from` where the file `fd` holds data (`SEEK_DATA`), or
/// `None` past the last data. File systems that cannot tell report everything as data.
pub(crate) fn seek_data(fd: std::os::fd::RawFd, from: u64) -> std::io::Result<Option<u64>> {
    seek(fd, from, libc::SEEK_DATA)
}

/// The next offset at or after `from` where a hole starts (`SEEK_HOLE`; the file's end counts
/// as one).
pub(crate) fn seek_hole(fd: std::os::fd::RawFd, from: u64) -> std::io::Result<Option<u64>> {
    seek(fd, from, libc::SEEK_HOLE)
}

fn seek(fd: std::os::fd::RawFd, from: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    let off =
        libc::off_t::try_from(from).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain FFI call on a file descriptor the caller keeps open; no memory is passed.
    let rc = unsafe { libc::lseek(fd, off, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(err)
    }
}

/// Writes the dirty pages of `[from, from + len)` of the file `fd` back and waits for them
/// (`sync_file_range` with `WAIT_BEFORE | WRITE | WAIT_AFTER`): no metadata, no disk cache
/// flush; a later `msync`/`fdatasync` makes the range durable cheaply.
pub(crate) fn write_back(fd: std::os::fd::RawFd, from: u64, len: u64) -> std::io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    sync_file_range(fd, from, len, flags)
}

/// Starts writing the dirty pages of `[from, from + len)` of the file `fd` back without
/// waiting for them (`sync_file_range` with `WRITE` only); [`write_back`] of the range later
/// waits for them.
pub(crate) fn start_write_back(fd: std::os::fd::RawFd, from: u64, len: u64) -> std::io::Result<()> {
    sync_file_range(fd, from, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// Drops this process's page-table entries for `[from, from + len)` of `map`, a shared
/// mapping of a file (`MADV_DONTNEED`). The bytes do not change: the pages stay in the page
/// cache, dirty ones stay dirty, and the next access maps them again. Writing the range back
/// afterwards finds no writable entry to write-protect, so it costs one TLB shootdown for the
/// whole range instead of one interrupt of the writer's CPU per page.
pub(crate) fn drop_page_tables(map: &MmapRaw, from: usize, len: usize) -> std::io::Result<()> {
    if from.checked_add(len).is_none_or(|end| end > map.len()) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: every `MmapRaw` the file backend makes maps its file `MAP_SHARED`. For a shared
    // file mapping, `MADV_DONTNEED` only removes page-table entries (transferring their dirty
    // bits to the page cache); a later access maps the same page-cache page again, so the
    // bytes any borrowed slice of the range sees never change. The range lies inside the
    // mapping (checked above; memmap2 checks `from` and `len` only one at a time), so no
    // other mapping (say, anonymous memory, which the advice would zero) is touched.
    unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, len) }
}

fn sync_file_range(
    fd: std::os::fd::RawFd,
    from: u64,
    len: u64,
    flags: libc::c_uint,
) -> std::io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off64_t::try_from(from), libc::off64_t::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain FFI call on a file descriptor the caller keeps open; no memory is passed.
    let rc = unsafe { libc::sync_file_range(fd, off, n, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts the calling thread in the `SCHED_IDLE` scheduling class (Linux): it then runs only
/// when no ordinary thread wants the CPU, and an ordinary thread that wakes up preempts it at
/// once. The store's housekeeping threads (background flush, prefaulting, indexing, cleaning)
/// call it so that they never delay the application's own threads. Best effort: an error
/// (another OS, a seccomp filter) leaves the thread as it was.
pub(crate) fn yield_to_application_threads() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain FFI call; `param` is a valid `sched_param` that outlives the call, and
        // pid 0 means the calling thread.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc == 0 {
            IN_IDLE_CLASS.with(|c| c.set(true));
        } else {
            ::log::debug!(
                "could not lower the priority of a housekeeping thread: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

thread_local! {
    /// Whether [`yield_to_application_threads`] moved this thread to `SCHED_IDLE`.
    static IN_IDLE_CLASS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread runs in `SCHED_IDLE` ([`yield_to_application_threads`]). Such a
/// thread keeps its system calls short: a waking application thread takes its CPU only
/// between them.
pub(crate) fn in_idle_class() -> bool {
    IN_IDLE_CLASS.with(std::cell::Cell::get)
}

/// `posix_fallocate` of the first `len` bytes of the open file `fd`.
pub(crate) fn fallocate(fd: std::os::fd::RawFd, len: libc::off_t) -> std::io::Result<()> {
    // SAFETY: plain FFI call on a file descriptor the caller keeps open; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(fd, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Used and available (to unprivileged users) bytes of the file system holding `path`
/// (`statvfs`): `df`'s "Used" and "Avail"; `df`'s "Use%" is `used / (used + avail)`.
#[allow(clippy::unnecessary_cast)] // the field types differ between platforms
pub(crate) fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory of the right
    // type; statvfs fills it on success, which is checked before it is read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64);
    Ok((
        used.saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}

impl Segment {
    /// Wraps the mapping `map` of the `size`-byte file `path` (made by the storage backend).
    pub(crate) fn new(
        fs: Fs,
        path: &Path,
        base: u64,
        size: u64,
        map: MmapRaw,
        published: usize,
    ) -> Result<Segment> {
        let size = usize::try_from(size)
            .map_err(|_| Error::InvalidConfig(format!("segment size {size} too large")))?;
        if map.len() < size {
            return Err(Error::corrupted(
                path,
                0,
                "mapping shorter than the segment",
            ));
        }
        Ok(Segment {
            fs,
            path: path.to_path_buf(),
            base,
            size,
            map,
            published: AtomicUsize::new(published.min(size)),
            writer_taken: AtomicBool::new(false),
            zeroing_from: AtomicUsize::new(usize::MAX),
            announced_end: AtomicUsize::new(0),
            warmed: AtomicBool::new(false),
            read_only: false,
            word_mode: AtomicBool::new(false),
        })
    }

    /// Wraps the read-only mapping `map` of the `size`-byte file `path` (a read-only store):
    /// nothing is published until [`Segment::advance_published`], and every writing method
    /// refuses the segment.
    pub(crate) fn new_read_only(
        fs: Fs,
        path: &Path,
        base: u64,
        size: u64,
        map: MmapRaw,
    ) -> Result<Segment> {
        let mut seg = Segment::new(fs, path, base, size, map, 0)?;
        seg.read_only = true;
        Ok(seg)
    }

    /// Moves the published length of a read-only segment up to `pos` (never down), once the
    /// bytes below it were checked to be complete. Does nothing on a writable segment (its
    /// writer publishes).
    pub(crate) fn advance_published(&self, pos: usize) {
        if self.read_only {
            self.published
                .fetch_max(pos.min(self.size), Ordering::AcqRel);
        }
    }

    /// A copy of the `len` bytes at `pos`: of a read-only segment published or not (the owner
    /// may be writing them: the caller checks the copy before trusting it), of a writable one
    /// only published bytes. `None` past the end of the segment (or the published bytes).
    pub(crate) fn copy_out(&self, pos: usize, len: usize) -> Option<Vec<u8>> {
        let end = pos.checked_add(len)?;
        if !self.read_only {
            return self.read(pos, len).map(<[u8]>::to_vec);
        }
        if end > self.size {
            return None;
        }
        let mut out = vec![0u8; len];
        // SAFETY: `[pos, end)` lies inside the mapping (`end <= size`, and the mapping covers
        // `size` bytes of a file that is that long: see "Read-only segments"), which lives as
        // long as `self`. No reference to these bytes is created: they are copied through raw
        // pointers into our own buffer, which does not overlap the mapping. Another process
        // may be writing them meanwhile; the copy may then mix old and new bytes, which is why
        // the caller validates it (CRC) before use.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(pos), out.as_mut_ptr(), len) };
        Some(out)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Absolute offset of the segment's first byte.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Bytes readers may see.
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// `len` published bytes at `pos`, or `None` if the range is not (yet) published.
    pub(crate) fn read(&self, pos: usize, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len)?;
        if end > self.published() {
            return None;
        }
        // SAFETY: `end <= published <= size`, so the range is inside the mapping, which lives as
        // long as `self`. Published bytes are never written while the segment is shared (see the
        // module docs), so no `&mut` aliases this slice; the acquire load above orders the
        // writer's stores before our reads.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) })
    }

    /// All published bytes from `pos` on (empty if `pos` is past them).
    pub(crate) fn read_from(&self, pos: usize) -> &[u8] {
        let published = self.published();
        let pos = pos.min(published);
        self.read(pos, published - pos).unwrap_or(&[])
    }

    /// Hints the CPU to start loading `len` bytes at `pos` (clamped to the mapping) into its
    /// caches: sequential readers call it for data a few records ahead, so that memory loads
    /// overlap with the work on the current record instead of stalling it.
    #[inline]
    pub(crate) fn prefetch(&self, pos: usize, len: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let end = pos.saturating_add(len).min(self.size);
            let base = self.map.as_ptr();
            let mut p = pos;
            while p < end {
                // SAFETY: SSE, which `_mm_prefetch` needs, is part of the x86_64 baseline; a
                // prefetch only hints the cache and never faults or reads into the program,
                // and `p` stays inside the mapping anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(p).cast()) };
                p += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (pos, len);
    }

    /// The whole mapping, for exclusive use (recovery, warming); empty for a read-only segment.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        if self.read_only {
            return &mut [];
        }
        // SAFETY: `&mut self` guarantees no reader slice or writer of this segment exists (both
        // borrow the segment), and the mapping covers exactly `size` bytes.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.size) }
    }

    /// Sets the published length (recovery, before the segment is shared).
    pub(crate) fn set_published(&mut self, pos: usize) {
        self.published.store(pos.min(self.size), Ordering::Release);
    }

    /// Zeroes `[from, to)`, e.g. a torn tail that recovery cut off.
    pub(crate) fn zero(&mut self, from: usize, to: usize) -> Result<()> {
        let to = to.min(self.size);
        if from >= to {
            return Ok(());
        }
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Only dirty pages that hold something: the region is usually mostly zeros already.
        let bytes = &mut self.bytes_mut()[from..to];
        for chunk in bytes.chunks_mut(4096) {
            if chunk.iter().any(|&b| b != 0) {
                chunk.fill(0);
            }
        }
        self.flush(from, to)
    }

    /// Writes zeros through every page of the (unshared) segment and flushes them, so the first
    /// real write neither faults in a page nor converts an unwritten extent on flush.
    pub(crate) fn warm(&mut self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let len = self.size;
        self.bytes_mut().fill(0);
        self.flush(0, len)?;
        self.warmed.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether [`Segment::warm`] ran on this segment.
    pub(crate) fn is_warmed(&self) -> bool {
        self.warmed.load(Ordering::Acquire)
    }

    /// Writes zeros over `[from, to)` of a segment in use, ahead of its writer: with
    /// [`ZeroAhead::Durable`] through the mapping and flushed (the writer's own flushes then do
    /// not pay for converting unwritten extents), with [`ZeroAhead::PageCache`] with `pwrite`
    /// (the writer then finds the pages in memory, with no page fault that zero-fills them).
    /// Skipped (returns false) unless the range starts at least `gap` bytes past both the
    /// published length and the end of the last append the writer announced: the writer never
    /// writes there meanwhile, and should it get close it waits ([`SegmentWriter::append`]).
    /// `gap` must be at least [`zero_ahead_min_gap`] of the longest append the segment's
    /// writer makes without announcing it (at most [`ANNOUNCE_ABOVE`] bytes), and appends
    /// before the writer's publication must stay below `from` (a queue's first units are
    /// written before their publication, but callers ask for ranges past them).
    pub(crate) fn zero_ahead(
        &self,
        from: usize,
        to: usize,
        gap: usize,
        how: ZeroAhead,
    ) -> Result<bool> {
        let to = to.min(self.size);
        if from >= to || self.read_only {
            return Ok(false);
        }
        if self.word_mode.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.zeroing_from.store(from, Ordering::SeqCst);
        // Where the writer may be writing now. Its publications are Release stores, so the
        // value read here may be stale, but not beyond the writer's last SeqCst fence before
        // this load (it fences every `FENCE_EVERY` appends): every append after that fence
        // either checked `zeroing_from` before the store above (at most `FENCE_EVERY` of
        // them, unannounced ones short, hence the gap) or sees it and waits. An announced
        // append ends at `announced_end`: either the announcement is seen here, or the writer
        // sees `zeroing_from` (both SeqCst: one of the two stores precedes the other's load).
        let reach = self
            .published
            .load(Ordering::SeqCst)
            .max(self.announced_end.load(Ordering::SeqCst));
        if reach.saturating_add(gap) > from {
            self.zeroing_from.store(usize::MAX, Ordering::SeqCst);
            return Ok(false);
        }
        let done = match how {
            ZeroAhead::Durable => {
                // SAFETY: `[from, to)` lies inside the mapping. It starts at least `gap` bytes
                // past the published length and past the end of the last announced append, and
                // appends in flight that were not announced never reach further than that (at
                // most `FENCE_EVERY` short ones, the caller's promise on `gap`), so neither
                // the writer nor any reader touches these bytes now; a later append that would
                // reach `from` sees `zeroing_from` (stored above, SeqCst) and waits until it is
                // cleared below. The bytes are zero already (never written), so writing zeros
                // changes no content either.
                unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(from), 0, to - from) };
                self.flush(from, to)
            }
            // The same argument: nobody reads or writes these bytes meanwhile, and they stay
            // zero.
            ZeroAhead::PageCache => self
                .fs
                .storage()
                .write_zeros(&self.path, from as u64, (to - from) as u64)
                .map_err(|e| Error::io("zero ahead", &self.path, e)),
        };
        self.zeroing_from.store(usize::MAX, Ordering::SeqCst);
        done.map(|()| true)
    }

    /// Faults `[from, to)` in ahead of the writer, so appends there find the pages in memory.
    /// `write` maps them writable too (`MADV_POPULATE_WRITE`: no fault at all on append, but
    /// the pages count as dirty); otherwise readable (`MADV_POPULATE_READ`: pages stay clean, so
    /// a flush never waits behind their writeback). The bytes are not changed. Advisory: errors
    /// (an older kernel, memory pressure) are ignored.
    pub(crate) fn populate(&self, from: usize, to: usize, write: bool) {
        let to = to.min(self.size);
        if from < to && !self.read_only {
            let advice = if write {
                memmap2::Advice::PopulateWrite
            } else {
                memmap2::Advice::PopulateRead
            };
            let _ = self.map.advise_range(advice, from, to - from);
        }
    }

    /// Starts writing published bytes back to disk, from the page holding `from` to the last
    /// page that ends at or before `to`, without waiting and without making them durable
    /// ([`Segment::flush`] still must): a later flush then finds them written or in flight.
    /// A hint: a backend may do nothing.
    pub(crate) fn start_write_back(&self, from: usize, to: usize) -> Result<()> {
        // Whole pages only: the page the writer is in stays mapped.
        let to = to.min(self.published()) & !(PAGE as usize - 1);
        if from >= to || self.read_only || self.word_mode.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.fs
            .storage()
            .start_write_back(&self.path, &self.map, from, to - from)
            .map_err(|e| Error::io("start writing back", &self.path, e))
    }

    /// Flushes `[from, to)` to disk with `msync(MS_SYNC)` (on Linux this also writes the file
    /// metadata needed to read the data back, like `fdatasync`).
    pub(crate) fn flush(&self, from: usize, to: usize) -> Result<()> {
        let to = to.min(self.size);
        if from >= to || self.read_only {
            return Ok(());
        }
        self.fs
            .storage()
            .flush_mapped(&self.path, &self.map, from, to - from)
            .map_err(|e| Error::io("flush segment", &self.path, e))
    }

    /// The whole segment as 32-bit words that any number of threads may read and write at
    /// once (index files: hash slots and entries are updated in place while queries read
    /// them). Store big-endian values with `u32::to_be` and read them with `u32::from_be`.
    /// `None` unless the segment publishes no bytes (so [`Segment::read`] hands out no slice
    /// of it), has no writer, and its size is a multiple of 4; once this returns `Some`, the
    /// segment never gets a writer and is never zeroed ahead.
    pub(crate) fn words(&self) -> Option<&[std::sync::atomic::AtomicU32]> {
        use std::sync::atomic::AtomicU32;
        if self.published() != 0
            || !self.size.is_multiple_of(size_of::<AtomicU32>())
            || !(self.map.as_ptr() as usize).is_multiple_of(align_of::<AtomicU32>())
        {
            return None;
        }
        if !self.word_mode.load(Ordering::Relaxed) {
            self.word_mode.store(true, Ordering::SeqCst);
        }
        if self.writer_taken.load(Ordering::SeqCst) {
            return None;
        }
        // SAFETY: the mapping covers `size` bytes, is aligned for `AtomicU32` (checked above)
        // and lives as long as `self`. No non-atomic access to these bytes can happen while
        // the slice exists: readers get no byte slices (nothing is published, and publishing
        // needs a writer or `&mut self`), no writer exists or can be created (`word_mode` is
        // set before `writer_taken` is checked, and `into_writer` checks `word_mode` first),
        // zero-ahead skips word-mode segments, and `bytes_mut` needs `&mut self`, which the
        // returned borrow excludes. All access through the slice is atomic, so concurrent
        // readers and writers do not race.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().cast::<AtomicU32>(),
                self.size / size_of::<AtomicU32>(),
            )
        })
    }

    /// Allows a new [`Segment::into_writer`] after the previous writer is gone (`&mut self`
    /// proves it is: a writer holds a reference to the segment).
    pub(crate) fn reclaim_writer(&mut self) {
        self.writer_taken.store(false, Ordering::Release);
    }

    /// The unique writer of this segment, appending from the published length on; `None` if
    /// one was already handed out.
    pub(crate) fn into_writer(self: Arc<Self>) -> Option<SegmentWriter> {
        if self.read_only
            || self.word_mode.load(Ordering::SeqCst)
            || self.writer_taken.swap(true, Ordering::SeqCst)
        {
            return None;
        }
        let pos = self.published();
        // Ahead of the writer there is nothing to read around: without this, a page fault
        // there makes the kernel "read around" it (read_ahead_kb, 8 MiB here), zero-filling
        // megabytes of an unwritten extent under folio locks while a tailing reader that
        // touches one of those pages waits: 10 ms stalls every 8 MiB of log.
        let from = pos & !(PAGE as usize - 1);
        let _ = self
            .map
            .advise_range(memmap2::Advice::Random, from, self.size - from);
        Some(SegmentWriter {
            seg: self,
            pos,
            unfenced: 0,
        })
    }
}

/// The single writer of a shared [`Segment`]: appends at and above the published length.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    seg: Arc<Segment>,
    pos: usize,
    /// Appends since the last SeqCst fence ([`FENCE_EVERY`]).
    unfenced: usize,
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        // The segment is sealed (or the store closes): readers scanning it sequentially,
        // say after a restart, should get read-ahead again.
        let _ = self.seg.map.advise(memmap2::Advice::Normal);
    }
}

impl SegmentWriter {
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Position of the next append, relative to the segment start.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.seg.size - self.pos
    }

    /// Lets `fill` write the next `len` bytes in place and returns their start position, or
    /// `None` if they do not fit. The bytes become visible to readers at the next
    /// [`SegmentWriter::publish`].
    pub(crate) fn append(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Option<usize> {
        if len > self.remaining() {
            return None;
        }
        let start = self.pos;
        // A long append tells the zero-ahead pass where it ends before writing; short ones
        // stay inside the gap that pass keeps from the published length, which the fence
        // keeps from going stale by more than `FENCE_EVERY` appends.
        if len > ANNOUNCE_ABOVE {
            self.seg.announced_end.store(start + len, Ordering::SeqCst);
        } else {
            self.unfenced += 1;
            if self.unfenced >= FENCE_EVERY {
                self.unfenced = 0;
                std::sync::atomic::fence(Ordering::SeqCst);
            }
        }
        // Never write where the zero-ahead pass is writing (it stays clear of the writer, so
        // this is only reached if the writer catches up with it).
        while start + len > self.seg.zeroing_from.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // SAFETY: `start >= published` (the writer starts at the published length and only
        // moves forward, and only it publishes), so no reader slice covers these bytes; this
        // writer is unique (`into_writer`) and `&mut self` excludes a second append; the range
        // ends at or before `size`, inside the mapping, which `self.seg` keeps alive.
        let buf =
            unsafe { std::slice::from_raw_parts_mut(self.seg.map.as_mut_ptr().add(start), len) };
        fill(buf);
        self.pos += len;
        Some(start)
    }

    /// Makes everything appended so far visible to readers.
    pub(crate) fn publish(&self) {
        self.seg.published.store(self.pos, Ordering::Release);
    }
}
