//! Files: mapped segments, ordered segment sets, the directory lock and small-file helpers.

pub(crate) mod fs;
pub(crate) mod lock;
pub(crate) mod mmap;

pub(crate) use mmap::{Segment, SegmentWriter};
