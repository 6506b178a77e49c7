//! The 20-byte ConsumeQueue unit.
//!
//! ```text
//! off size field
//!   0    8 CommitLog physical offset of the record (i64)
//!   8    4 record size, TOTALSIZE (i32)
//!  12    8 tag code (i64): Java hash of TAGS, or the delivery time for SCHEDULE_TOPIC_XXXX
//! ```

use super::{DecodeError, Reader};

/// Size of one unit (`CQ_STORE_UNIT_SIZE`).
pub const CQ_UNIT_SIZE: usize = 20;
/// Byte offset of the physical offset.
pub const PHYSICAL_OFFSET_POS: usize = 0;
/// Byte offset of the record size.
pub const SIZE_POS: usize = PHYSICAL_OFFSET_POS + 8;
/// Byte offset of the tag code.
pub const TAG_CODE_POS: usize = SIZE_POS + 4;

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CqUnit {
    /// CommitLog offset of the record.
    pub physical_offset: u64,
    /// TOTALSIZE of the record.
    pub size: u32,
    /// Tag code.
    pub tag_code: i64,
}

impl CqUnit {
    /// Encodes the unit.
    pub fn encode(&self) -> [u8; CQ_UNIT_SIZE] {
        let mut out = [0u8; CQ_UNIT_SIZE];
        out[PHYSICAL_OFFSET_POS..SIZE_POS]
            .copy_from_slice(&(self.physical_offset as i64).to_be_bytes());
        out[SIZE_POS..TAG_CODE_POS].copy_from_slice(&(self.size as i32).to_be_bytes());
        out[TAG_CODE_POS..].copy_from_slice(&self.tag_code.to_be_bytes());
        out
    }

    /// Decodes a unit. `Ok(None)` is an unused slot: RocketMQ's validity rule is
    /// `offset >= 0 && size > 0`, and zero-filled space marks the end of a queue.
    pub fn decode(buf: &[u8]) -> Result<Option<CqUnit>, DecodeError> {
        let mut r = Reader::new(buf);
        let physical_offset = r.i64()?;
        let size = r.i32()?;
        let tag_code = r.i64()?;
        if physical_offset < 0 || size <= 0 {
            return Ok(None);
        }
        Ok(Some(CqUnit {
            physical_offset: physical_offset as u64,
            size: size as u32,
            tag_code,
        }))
    }

    /// The "pre-blank" unit RocketMQ writes before the first real unit of a queue whose first
    /// file does not start at 0.
    pub const PRE_BLANK: CqUnit = CqUnit {
        physical_offset: 0,
        size: i32::MAX as u32,
        tag_code: 0,
    };
}
