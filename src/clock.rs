//! The store clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock ms since the Unix epoch (precise, so a time read before a put is never later
/// than the put's store time).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
