//! RocketMQ 5's timer checkpoint, `{root}/config/timercheck` (`TimerCheckpoint`): a mapped
//! 4096-byte page whose first 56 bytes hold seven big-endian `long`s.
//!
//! ```text
//! off size field
//!   0    8 lastReadTimeMs          time slot the timer wheel was read up to
//!   8    8 lastTimerLogFlushPos    `timerlog/` position known flushed
//!  16    8 lastTimerQueueOffset    next `rmq_sys_wheel_timer` queue offset to read
//!  24    8 masterTimerQueueOffset  the same as seen by the master (a broker starts reading
//!                                  the timer queue at the smaller of the two)
//!  32    8 dataVersion.stateVersion
//!  40    8 dataVersion.timestamp
//!  48    8 dataVersion.counter
//! rest     zero
//! ```
//!
//! mqlite writes this file for a RocketMQ broker that takes the store over: it has no
//! `timerlog/` or `timerwheel`, so a broker reading this file re-reads the timer queue from
//! `lastTimerQueueOffset`, the lowest queue offset mqlite has not delivered yet.

use super::{DecodeError, Reader};

/// Size of the file RocketMQ maps (`OS_PAGE_SIZE`).
pub const TIMER_CHECKPOINT_FILE_SIZE: usize = 4096;
/// Bytes the fields take.
pub const TIMER_CHECKPOINT_LEN: usize = 56;

/// The timer checkpoint's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerCheckpoint {
    /// Time slot (ms) the timer wheel was read up to.
    pub last_read_time_ms: u64,
    /// Position in `timerlog/` known flushed.
    pub last_timer_log_flush_pos: u64,
    /// Next timer queue offset to read.
    pub last_timer_queue_offset: u64,
    /// Next timer queue offset to read, as seen by the master.
    pub master_timer_queue_offset: u64,
    /// `DataVersion.stateVersion`.
    pub state_version: u64,
    /// `DataVersion.timestamp` (ms).
    pub version_timestamp: u64,
    /// `DataVersion.counter`.
    pub version_counter: u64,
}

impl TimerCheckpoint {
    fn fields(&self) -> [u64; 7] {
        [
            self.last_read_time_ms,
            self.last_timer_log_flush_pos,
            self.last_timer_queue_offset,
            self.master_timer_queue_offset,
            self.state_version,
            self.version_timestamp,
            self.version_counter,
        ]
    }

    /// Encodes the full 4096-byte file image.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; TIMER_CHECKPOINT_FILE_SIZE];
        for (i, v) in self.fields().iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Decodes a timer checkpoint. The data version (the last three fields, added later in
    /// RocketMQ) reads as 0 when the buffer ends after the first four; negative values are
    /// refused.
    pub fn decode(buf: &[u8]) -> Result<TimerCheckpoint, DecodeError> {
        let mut r = Reader::new(buf);
        let mut f = [0u64; 7];
        for (i, slot) in f.iter_mut().enumerate() {
            let v = match r.i64() {
                Ok(v) => v,
                Err(_) if i >= 4 => 0,
                Err(e) => return Err(e),
            };
            if v < 0 {
                return Err(DecodeError::BadLength {
                    field: "timer checkpoint field",
                    value: v,
                });
            }
            *slot = v as u64;
        }
        Ok(TimerCheckpoint {
            last_read_time_ms: f[0],
            last_timer_log_flush_pos: f[1],
            last_timer_queue_offset: f[2],
            master_timer_queue_offset: f[3],
            state_version: f[4],
            version_timestamp: f[5],
            version_counter: f[6],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let c = TimerCheckpoint {
            last_read_time_ms: 1_700_000_000_000,
            last_timer_log_flush_pos: 0,
            last_timer_queue_offset: 42,
            master_timer_queue_offset: 42,
            state_version: 0,
            version_timestamp: 7,
            version_counter: 3,
        };
        let b = c.encode();
        assert_eq!(b.len(), TIMER_CHECKPOINT_FILE_SIZE);
        assert_eq!(&b[16..24], &42u64.to_be_bytes());
        assert_eq!(&b[24..32], &42u64.to_be_bytes());
        assert!(b[TIMER_CHECKPOINT_LEN..].iter().all(|&x| x == 0));
        assert_eq!(TimerCheckpoint::decode(&b), Ok(c));
        // An old file without the data version.
        let old = TimerCheckpoint::decode(&b[..32]).unwrap();
        assert_eq!(old.last_timer_queue_offset, 42);
        assert_eq!(old.version_counter, 0);
        assert!(TimerCheckpoint::decode(&b[..20]).is_err());
        let mut neg = b.clone();
        neg[16] = 0x80;
        assert!(TimerCheckpoint::decode(&neg).is_err());
    }
}
