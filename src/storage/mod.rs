//! Files: the storage backend, mapped segments, ordered segment sets, the directory lock and
//! small-file helpers. Depends only on `format`-free basics (errors); everything above reaches
//! the disk through here.

pub(crate) mod backend;
pub(crate) mod fs;
pub(crate) mod lock;
pub(crate) mod mmap;
#[cfg(test)]
pub(crate) mod page_tables;
pub(crate) mod segment_set;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(test)]
mod write_behind_tests;
#[cfg(test)]
mod zero_ahead_tests;

pub(crate) use fs::Fs;
pub(crate) use mmap::{Segment, SegmentWriter, yield_to_application_threads};
pub(crate) use segment_set::{FlushScope, PAGE_SIZE, SegmentSet, WriteBehindMark};
