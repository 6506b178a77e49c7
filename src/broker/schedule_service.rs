//! The schedule service thread: walks the delay-level queues and the timer queue, delivering
//! what is due to the real topic, and sleeps until the next delivery time or a new delayed
//! message.

use std::cmp::Reverse;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::Broker as Core;
use super::put::{PutOptions, SCHEDULE_TOPIC, TIMER_TOPIC};
use super::schedule::{SCHEDULE_SRC, Source};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::cq_unit::CqUnit;
use crate::format::properties::keys;
use crate::format::record::sys_flag;
use crate::message::MessageExt;

/// Longest sleep between passes.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Properties of a delay level's scheduled copy that the delivered message does not keep
/// (RocketMQ's `messageTimeUp` clears the first three and keeps REAL_TOPIC / REAL_QID; the
/// others are written afresh).
const DROPPED_LEVEL: &[&str] = &[
    keys::DELAY,
    keys::TIMER_DELIVER_MS,
    keys::TIMER_DELAY_SEC,
    keys::WAIT,
    SCHEDULE_SRC,
    keys::RECORD_CRC,
];
/// Properties of a timer record that the delivered message does not keep (RocketMQ's
/// `TimerMessageStore.convertMessage` clears REAL_TOPIC / REAL_QID and keeps the `TIMER_*`
/// ones; the others are written afresh).
const DROPPED_TIMER: &[&str] = &[
    keys::REAL_TOPIC,
    keys::REAL_QUEUE_ID,
    keys::WAIT,
    SCHEDULE_SRC,
    keys::RECORD_CRC,
];

/// Starts the service; it stops when the returned sender sends or is dropped.
pub(crate) fn start(
    core: Arc<Core>,
    wake: Receiver<()>,
) -> std::io::Result<(Sender<()>, JoinHandle<()>)> {
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name("mqlite-schedule".into())
        .spawn(move || {
            loop {
                let next = core.schedule_pass();
                let wait = next
                    .map_or(MAX_SLEEP, |at| {
                        Duration::from_millis(at.saturating_sub(now_ms()))
                    })
                    .min(MAX_SLEEP);
                crossbeam_channel::select! {
                    recv(stop_rx) -> _ => return,
                    recv(wake) -> msg => if msg.is_err() { return },
                    default(wait) => {}
                }
                if matches!(
                    stop_rx.try_recv(),
                    Ok(()) | Err(crossbeam_channel::TryRecvError::Disconnected)
                ) {
                    return;
                }
            }
        })?;
    Ok((stop_tx, thread))
}

impl Core {
    /// One pass over every delay queue; returns the next delivery time known to be pending.
    pub(crate) fn schedule_pass(&self) -> Option<u64> {
        if self.is_poisoned() || self.check_open().is_err() {
            return None;
        }
        let now = now_ms();
        let written_before = self.log().written();
        let mut next: Option<u64> = None;
        let mut note = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for level in 1..=self.delay_table().len() as u32 {
            let Some(cq) = self.queue(SCHEDULE_TOPIC, level - 1) else {
                continue;
            };
            let delay = self.delay_table()[level as usize - 1];
            let mut off = {
                let p = self.schedule.progress.lock();
                p.levels.get(&level).copied().unwrap_or(0)
            }
            .max(cq.min_offset());
            let start = off;
            while let Some(unit) = cq.get(off) {
                // RocketMQ's clock-skew guard: a time further out than the level's delay is due now.
                let due = (unit.tag_code.max(0) as u64).min(now + delay);
                if due > now {
                    note(due);
                    break;
                }
                if self.deliver(&unit, Source::Level(level, off)).is_err() {
                    note(now + MAX_SLEEP.as_millis() as u64);
                    break;
                }
                off += 1;
            }
            if off != start {
                let mut p = self.schedule.progress.lock();
                let e = p.levels.entry(level).or_default();
                *e = (*e).max(off);
                self.schedule.mark_dirty();
            }
        }
        if let Some(t) = self.timer_pass(now) {
            note(t);
        }
        // Deliveries do not wait for the flush one by one; under Sync, one flush makes them
        // all durable and visible now.
        let written = self.log().written();
        if written > written_before {
            let _ = self.wait_durable(written);
        }
        next
    }

    fn timer_pass(&self, now: u64) -> Option<u64> {
        let cq = self.queue(TIMER_TOPIC, 0)?;
        self.load_timer_entries(&cq);
        let mut p = self.schedule.progress.lock();
        loop {
            let &Reverse((due, off)) = p.heap.peek()?;
            if due > now {
                return Some(due);
            }
            let Some(unit) = cq.get(off) else {
                p.heap.pop();
                continue;
            };
            drop(p);
            let ok = self.deliver(&unit, Source::Timer(off)).is_ok();
            p = self.schedule.progress.lock();
            if !ok {
                return Some(now + MAX_SLEEP.as_millis() as u64);
            }
            p.heap.pop();
            p.delivered(Source::Timer(off));
            self.schedule.mark_dirty();
        }
    }

    /// Puts the scheduled message at `unit` to its real topic and queue, as RocketMQ does:
    /// the stored body and its compression flags as they are, `WAIT=false`; a delay level's
    /// copy keeps REAL_TOPIC / REAL_QID, a timer's does not.
    fn deliver(&self, unit: &CqUnit, src: Source) -> Result<()> {
        let compression = sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK;
        let (m, raw_body, flags) = self.with_record(unit.physical_offset, |rec, _| {
            let m = MessageExt::from_record(rec, std::sync::Arc::from(rec.topic));
            let flags = rec.meta.sys_flag & compression;
            (m, (flags != 0).then(|| rec.body.to_vec()), flags)
        })?;
        let Some(topic) = m.property(keys::REAL_TOPIC).map(str::to_owned) else {
            // Nothing to deliver to: skip it rather than block the queue.
            return Ok(());
        };
        let queue_id: u32 = m
            .property(keys::REAL_QUEUE_ID)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        let dropped = match src {
            Source::Level(..) => DROPPED_LEVEL,
            Source::Timer(_) => DROPPED_TIMER,
        };
        let msg = m.copy_to(topic, |k| !dropped.contains(&k));
        let src = src.encode();
        let extra = [(keys::WAIT, "false"), (SCHEDULE_SRC, src.as_str())];
        let opts = PutOptions {
            body: raw_body.as_deref(),
            sys_flag: flags,
            extra_properties: &extra,
            reconsume_times: m.reconsume_times(),
            born_timestamp: Some(m.born_timestamp().max(0) as u64),
            no_wait: true,
            create_topic: true,
            ..PutOptions::default()
        };
        let queues = self
            .topic_config(&msg.topic)
            .map_or(queue_id + 1, |c| c.write_queue_nums.max(1));
        match self.put_with(&msg, queue_id % queues, opts) {
            Ok(_) => Ok(()),
            Err(e @ (Error::InvalidTopic { .. } | Error::InvalidMessage(_))) => {
                // It can never be delivered; do not block the queue behind it.
                let _ = e;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
