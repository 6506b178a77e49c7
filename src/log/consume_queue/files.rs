//! A consume queue's files while it loads: the ones that may be written or are read unit by
//! unit are mapped, the others are read a unit at a time with `pread` and left for the queue
//! to map on first use.

use std::path::PathBuf;

use super::UNIT;
use crate::error::Result;
use crate::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use crate::storage::{Fs, Segment};

/// A queue's files while it loads. The files that may be written (the last one), or are read
/// unit by unit (the last few after an unclean shutdown, a first file of pre-blank units) are
/// mapped; the others are read a unit at a time with `pread` and stay unmapped, for the queue
/// to map on first use: opening a store with many queue files does not map (and closing it
/// unmap) files nobody reads.
pub(super) struct Files<'a> {
    pub(super) fs: &'a Fs,
    pub(super) file_size: u64,
    pub(super) entries: Vec<Entry>,
}

pub(super) struct Entry {
    pub(super) base: u64,
    pub(super) path: PathBuf,
    pub(super) seg: Option<Segment>,
    /// The first unit's bytes, read when the file was checked (unmapped files).
    pub(super) first: [u8; CQ_UNIT_SIZE],
}

impl Files<'_> {
    /// The index of the file holding byte `byte` (the files are contiguous).
    fn index_of(&self, byte: u64) -> Option<usize> {
        let first = self.entries.first()?.base;
        let i = (byte.checked_sub(first)? / self.file_size) as usize;
        (i < self.entries.len()).then_some(i)
    }

    /// The raw bytes of unit `off`; `None` past the files.
    pub(super) fn unit_bytes(&self, off: u64) -> Result<Option<[u8; CQ_UNIT_SIZE]>> {
        let byte = off * UNIT;
        let Some(e) = self.index_of(byte).map(|i| &self.entries[i]) else {
            return Ok(None);
        };
        let rel = byte - e.base;
        let mut out = [0u8; CQ_UNIT_SIZE];
        match &e.seg {
            Some(seg) => match seg.read(rel as usize, CQ_UNIT_SIZE) {
                Some(b) => out.copy_from_slice(b),
                None => return Ok(None),
            },
            None if rel == 0 => out = e.first,
            None => {
                self.fs.read_at(&e.path, rel, &mut out)?;
            }
        }
        Ok(Some(out))
    }

    /// Unit `off`, `None` past the files or where it does not decode (zero or damaged).
    pub(super) fn unit(&self, off: u64) -> Result<Option<CqUnit>> {
        Ok(self
            .unit_bytes(off)?
            .and_then(|b| CqUnit::decode(&b).ok().flatten()))
    }

    /// Whether unit `off` is all zeros (or past the files).
    pub(super) fn is_zero(&self, off: u64) -> Result<bool> {
        Ok(self
            .unit_bytes(off)?
            .is_none_or(|b| b.iter().all(|&x| x == 0)))
    }

    /// Maps file `i` (if it is not mapped already).
    fn map(&mut self, i: usize) -> Result<()> {
        let e = &mut self.entries[i];
        if e.seg.is_none() {
            e.seg = Some(self.fs.open_segment(&e.path, e.base, self.file_size)?);
        }
        Ok(())
    }

    /// Maps the file holding unit `off` (nothing past the files).
    pub(super) fn map_at(&mut self, off: u64) -> Result<()> {
        match self.index_of(off * UNIT) {
            Some(i) => self.map(i),
            None => Ok(()),
        }
    }

    /// Maps the last `n` files.
    pub(super) fn map_last(&mut self, n: usize) -> Result<()> {
        (self.entries.len().saturating_sub(n)..self.entries.len()).try_for_each(|i| self.map(i))
    }

    /// The offset of the last file's first unit.
    pub(super) fn last_first_unit(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.base / UNIT)
    }
}
