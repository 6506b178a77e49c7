//! The 4096-byte `checkpoint` file (`StoreCheckpoint`).
//!
//! ```text
//! off size field
//!   0    8 physicMsgTimestamp   store time of the last flushed CommitLog record
//!   8    8 logicsMsgTimestamp   store time of the last record dispatched to a consume queue
//!  16    8 indexMsgTimestamp    store time covered by the last flushed index file
//!  24    8 masterFlushedOffset  CommitLog offset known durable
//!  32    8 confirmPhyOffset     CommitLog offset up to which records are valid; on a clean
//!                               close, the end of the log
//!  40    8 zero (read by some implementations)
//! rest     zero
//! ```

use super::{DecodeError, Reader};

/// Size of the checkpoint file.
pub const CHECKPOINT_FILE_SIZE: usize = 4096;

/// The checkpoint's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Store time (ms) of the last flushed CommitLog record.
    pub physic_msg_timestamp: u64,
    /// Store time (ms) of the last record dispatched to a consume queue.
    pub logics_msg_timestamp: u64,
    /// Store time (ms) covered by the index files.
    pub index_msg_timestamp: u64,
    /// CommitLog offset known to be durable.
    pub master_flushed_offset: u64,
    /// CommitLog offset up to which records are valid (the end of the log on a clean close).
    pub confirm_phy_offset: u64,
}

impl Checkpoint {
    /// Encodes the full 4096-byte file image.
    pub fn encode(&self) -> [u8; CHECKPOINT_FILE_SIZE] {
        let mut out = [0u8; CHECKPOINT_FILE_SIZE];
        let fields = [
            self.physic_msg_timestamp,
            self.logics_msg_timestamp,
            self.index_msg_timestamp,
            self.master_flushed_offset,
            self.confirm_phy_offset,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Decodes a checkpoint. Accepts RocketMQ 4.x files (only the first three fields; the
    /// others read as 0) but refuses files shorter than 24 bytes and negative values.
    pub fn decode(buf: &[u8]) -> Result<Checkpoint, DecodeError> {
        let mut r = Reader::new(buf);
        let mut fields = [0u64; 5];
        for (i, f) in fields.iter_mut().enumerate() {
            let v = match r.i64() {
                Ok(v) => v,
                Err(e) if i < 3 => return Err(e),
                Err(_) => 0,
            };
            if v < 0 {
                return Err(DecodeError::BadLength {
                    field: "checkpoint field",
                    value: v,
                });
            }
            *f = v as u64;
        }
        Ok(Checkpoint {
            physic_msg_timestamp: fields[0],
            logics_msg_timestamp: fields[1],
            index_msg_timestamp: fields[2],
            master_flushed_offset: fields[3],
            confirm_phy_offset: fields[4],
        })
    }

    /// RocketMQ's `getMinTimestamp()`: `max(0, min(physic, logics) - 3000)`.
    pub fn min_timestamp(&self) -> u64 {
        self.physic_msg_timestamp
            .min(self.logics_msg_timestamp)
            .saturating_sub(3000)
    }
}
