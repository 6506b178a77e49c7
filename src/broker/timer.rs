//! Loading the timer queue (`rmq_sys_wheel_timer`, queue 0) into the schedule service's
//! pending heap. The consume queue's tag code is the tag's hash (as in RocketMQ 5), so each
//! entry's delivery time is read from its record's `TIMER_OUT_MS`, once, when the service first
//! sees the entry; loading starts at the persisted watermark (the lowest undelivered offset).

use std::cmp::Reverse;

use super::Broker as Core;
use super::schedule::Source;
use crate::error::Result;
use crate::format::cq_unit::CqUnit;
use crate::format::properties::{self, keys};
use crate::log::consume_queue::ConsumeQueue;

impl Core {
    /// Adds the timer queue's entries not seen yet to the pending heap, each due at the time
    /// its record's `TIMER_OUT_MS` holds (the consume queue's tag code is the tag's hash). The
    /// only caller is the service thread, so nothing else moves `timer_loaded` meanwhile.
    pub(crate) fn load_timer_entries(&self, cq: &ConsumeQueue) {
        let start = {
            let p = self.schedule.progress.lock();
            p.timer_loaded.max(p.timer_watermark).max(cq.min_offset())
        };
        let mut found = Vec::new();
        let mut off = start;
        while let Some(unit) = cq.get(off) {
            match self.timer_due(&unit) {
                Ok(due) => found.push((off, Some(due))),
                Err(_) if unit.physical_offset < self.log().min_offset() => {
                    log::warn!("timer entry {off}: its record was deleted; skipped");
                    found.push((off, None));
                }
                Err(e) => {
                    // Read again on the next pass.
                    log::warn!("timer entry {off}: cannot read its record: {e}");
                    break;
                }
            }
            off += 1;
        }
        if found.is_empty() {
            return;
        }
        let mut p = self.schedule.progress.lock();
        for (off, due) in found {
            match due {
                _ if p.timer_done(off) => {}
                Some(due) => p.heap.push(Reverse((due, off))),
                None => {
                    p.delivered(Source::Timer(off));
                    self.schedule.mark_dirty();
                }
            }
        }
        p.timer_loaded = p.timer_loaded.max(off);
    }

    /// The delivery time a timer record holds: `TIMER_OUT_MS` (records of earlier mqlite
    /// versions only have `TIMER_DELIVER_MS`); a record with neither is due now.
    fn timer_due(&self, unit: &CqUnit) -> Result<u64> {
        self.with_record(unit.physical_offset, |rec, _| {
            let get = |k| properties::get(rec.properties, k).and_then(|v| v.parse().ok());
            get(keys::TIMER_OUT_MS)
                .or_else(|| get(keys::TIMER_DELIVER_MS))
                .unwrap_or_else(|| {
                    log::warn!(
                        "timer record at {} has no delivery time",
                        unit.physical_offset
                    );
                    0
                })
        })
    }
}
