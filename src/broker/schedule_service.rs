//! The schedule service thread: walks the delay-level queues and the timer queue, delivering
//! what is due to the real topic, and sleeps until the next delivery time or a new delayed
//! message.
//!
//! A delayed message that cannot be delivered (its record cannot be read, its copy is refused,
//! the store cannot write) is never dropped: it stays pending, its progress does not move past
//! it (a delay level's later messages wait behind it, as the level is delivered in order; other
//! timer entries go on), and it is retried every [`FAILED_RETRY`]. Each such entry is reported
//! once per error through `log::warn!`, and once more (`log::info!`) when it finally goes out.

use std::cmp::Reverse;
use std::collections::BTreeMap;
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
/// How long an entry whose delivery failed waits before the next try.
pub(crate) const FAILED_RETRY: Duration = Duration::from_secs(1);
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
            let mut stuck = Stuck::default();
            loop {
                let next = core.schedule_pass(&mut stuck);
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

/// Entries whose delivery failed: the error last reported and when to try again (ms).
#[derive(Debug, Default)]
pub(crate) struct Stuck {
    entries: BTreeMap<(u32, u64), (String, u64)>,
}

impl Stuck {
    fn key(src: Source) -> (u32, u64) {
        match src {
            Source::Level(level, off) => (level, off),
            Source::Timer(off) => (0, off),
        }
    }

    fn describe(src: Source) -> String {
        match src {
            Source::Level(level, off) => format!("delay level {level} at offset {off}"),
            Source::Timer(off) => format!("timer entry at offset {off}"),
        }
    }

    /// When a failed entry may be tried again (`None`: it has not failed).
    fn retry_at(&self, src: Source) -> Option<u64> {
        self.entries.get(&Self::key(src)).map(|(_, at)| *at)
    }

    /// Records a failed delivery, warning once per entry and error; returns the next try.
    fn failed(&mut self, src: Source, e: &Error, now: u64) -> u64 {
        let at = now + FAILED_RETRY.as_millis() as u64;
        let error = e.to_string();
        let previous = self.entries.insert(Self::key(src), (error.clone(), at));
        if previous.is_none_or(|(before, _)| before != error) && !matches!(e, Error::Closed) {
            log::warn!(
                "schedule service: cannot deliver the delayed message of {}: {error}; it stays \
                 pending and is retried every {FAILED_RETRY:?}",
                Self::describe(src)
            );
        }
        at
    }

    /// A delivery went out: an entry that had failed is reported recovered.
    fn delivered(&mut self, src: Source) {
        if self.entries.is_empty() {
            return;
        }
        if self.entries.remove(&Self::key(src)).is_some() {
            log::info!(
                "schedule service: the delayed message of {} was delivered after failing",
                Self::describe(src)
            );
        }
    }
}

impl Core {
    /// One pass over every delay queue; returns the next delivery time known to be pending.
    pub(crate) fn schedule_pass(&self, stuck: &mut Stuck) -> Option<u64> {
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
                // RocketMQ's clock-skew guard (`correctDeliverTimestamp`): a time further out
                // than the level's delay is due now. Checked against the clock read again: an
                // entry stored after this pass read `now` is legitimately that far out.
                let due = match unit.tag_code.max(0) as u64 {
                    t if t > now.saturating_add(delay) && t > now_ms().saturating_add(delay) => now,
                    t => t,
                };
                if due > now {
                    note(due);
                    break;
                }
                let src = Source::Level(level, off);
                if let Some(at) = stuck.retry_at(src).filter(|&at| at > now) {
                    note(at);
                    break;
                }
                // Not delivered: the level stays at this entry (its later ones wait behind it).
                if let Err(e) = self.deliver(&unit, src) {
                    note(stuck.failed(src, &e, now));
                    break;
                }
                stuck.delivered(src);
                off += 1;
            }
            if off != start {
                let mut p = self.schedule.progress.lock();
                let e = p.levels.entry(level).or_default();
                *e = (*e).max(off);
                self.schedule.mark_dirty();
            }
        }
        if let Some(t) = self.timer_pass(now, stuck) {
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

    fn timer_pass(&self, now: u64, stuck: &mut Stuck) -> Option<u64> {
        let cq = self.queue(TIMER_TOPIC, 0)?;
        self.load_timer_entries(&cq);
        let mut p = self.schedule.progress.lock();
        // Entries that failed stay pending: set aside during the pass, so the entries due
        // after them still go out, and put back at its end.
        let mut failed: Vec<(u64, u64)> = Vec::new();
        let mut next = loop {
            let Some(&Reverse((due, off))) = p.heap.peek() else {
                break None;
            };
            if due > now {
                break Some(due);
            }
            let unit = match cq.try_get(off) {
                Ok(Some(unit)) => unit,
                Ok(None) => {
                    p.heap.pop();
                    continue;
                }
                // Its queue file cannot be mapped now: pending, tried again next pass.
                Err(e) => {
                    ::log::warn!("timer message at {TIMER_TOPIC} offset {off}: {e}");
                    p.heap.pop();
                    failed.push((due, off));
                    continue;
                }
            };
            let src = Source::Timer(off);
            if stuck.retry_at(src).is_some_and(|at| at > now) {
                p.heap.pop();
                failed.push((due, off));
                continue;
            }
            drop(p);
            let delivered = self.deliver(&unit, src);
            p = self.schedule.progress.lock();
            p.heap.pop();
            match delivered {
                Ok(()) => {
                    stuck.delivered(src);
                    p.delivered(src);
                    self.schedule.mark_dirty();
                }
                Err(e) => {
                    stuck.failed(src, &e, now);
                    failed.push((due, off));
                }
            }
        };
        for (due, off) in failed {
            p.heap.push(Reverse((due, off)));
            if let Some(at) = stuck.retry_at(Source::Timer(off)) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
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
            // Not a delayed message this store wrote (every one names its topic): kept, and
            // reported, rather than dropped.
            return Err(Error::InvalidMessage(format!(
                "the scheduled record at commitlog offset {} has no {} property",
                unit.physical_offset,
                keys::REAL_TOPIC
            )));
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
        // A refused copy (say the body exceeds a `max_message_size` lowered since it was
        // sent) stays pending like any other failure: the caller keeps it and retries.
        self.put_with(&msg, queue_id % queues, opts).map(drop)
    }
}
