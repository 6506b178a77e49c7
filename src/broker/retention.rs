//! Retention and the disk-space guard (RocketMQ's `CleanCommitLogService` and
//! `CleanConsumeQueueService`, in-process). Settings and defaults: [`RetentionConfig`].
//!
//! A run deletes CommitLog segments oldest first, never the one being written:
//! - *expired* segments (modification time older than `file_reserved_time`) when the run is
//!   due: in a `delete_when` hour, with the disk above `disk_max_used_space_ratio`, or asked
//!   for ([`Trigger::Manual`]); it stops at the first segment too young;
//! - *any* segment, consumed or not, while the disk is above `disk_clean_forcibly_ratio` or
//!   the store above `max_store_bytes`.
//!
//! Consume queue and index files that only point into deleted segments go too and each
//! queue's min offset moves past them: consumers behind it get `OffsetIllegal` and move to
//! the min (RocketMQ's pull semantics); how many messages each group never consumed is
//! logged. After a run the guard decides whether puts are refused ([`Error::DiskFull`]).
//!
//! [`RetentionConfig`]: crate::RetentionConfig
//! [`Error::DiskFull`]: crate::Error::DiskFull

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Broker;
use crate::error::Result;

/// What started a retention run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The cleaner's timer: paced, at most `delete_batch_max` deletions.
    Timer,
    /// A CommitLog segment filled: only the forced deletions (size cap, disk ratios), at most
    /// `delete_batch_max`, unpaced.
    Roll,
    /// `Store::cleanup_now`: expired segments are deleted whatever the hour, and forced
    /// deletions run to completion; unpaced.
    Manual,
}

/// What a retention run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// CommitLog segments deleted.
    pub deleted_segments: usize,
    /// The CommitLog's smallest offset after the run.
    pub commitlog_min_offset: u64,
    /// Bytes the store takes after the run (CommitLog, consume queue and index files).
    pub store_bytes: u64,
    /// Whether puts are refused ([`Error::DiskFull`](crate::Error::DiskFull)) after the run.
    pub disk_full: bool,
}

impl Broker {
    /// One retention run, then the guard's check.
    pub(crate) fn run_retention(&self, trigger: Trigger) -> Result<CleanupReport> {
        let cfg = &self.config().retention;
        let hours = cfg.delete_hours().unwrap_or_default();
        let limit = match trigger {
            Trigger::Manual => usize::MAX,
            Trigger::Timer | Trigger::Roll => cfg.delete_batch_max,
        };
        let mut deleted = 0usize;
        // The segment preparer may allocate the next segment while a pass runs, taking the
        // store over its cap after the pass found it under: then a second pass deletes for it
        // rather than let the guard refuse puts.
        self.retention_pass(trigger, &hours, limit, &mut deleted)?;
        let mut disk_full = self.check_guard()?;
        if disk_full {
            self.retention_pass(trigger, &hours, limit, &mut deleted)?;
            disk_full = self.check_guard()?;
        }
        Ok(CleanupReport {
            deleted_segments: deleted,
            commitlog_min_offset: self.log().min_offset(),
            store_bytes: self.store_bytes()?,
            disk_full,
        })
    }

    /// Deletes segments as the settings allow, oldest first, at most `limit` in all.
    fn retention_pass(
        &self,
        trigger: Trigger,
        hours: &[u32],
        limit: usize,
        deleted: &mut usize,
    ) -> Result<()> {
        let cfg = &self.config().retention;
        while *deleted < limit {
            let Some(oldest) = self.oldest_deletable_segment()? else {
                break;
            };
            let usage = self.disk_used_percent()?;
            let size = self.store_bytes()?;
            let over_cap = cfg.max_store_bytes.is_some_and(|cap| size > cap);
            let forced = over_cap || usage > f64::from(cfg.disk_clean_forcibly_ratio);
            let due = match trigger {
                Trigger::Roll => forced,
                Trigger::Manual => true,
                Trigger::Timer => {
                    forced
                        || hours.contains(&utc_hour())
                        || usage > f64::from(cfg.disk_max_used_space_ratio)
                }
            };
            let age = SystemTime::now()
                .duration_since(oldest.modified)
                .unwrap_or(Duration::ZERO);
            let expired = age >= cfg.file_reserved_time;
            let deletable = match trigger {
                Trigger::Roll => forced,
                Trigger::Timer | Trigger::Manual => forced || expired,
            };
            if !due || !deletable {
                break;
            }
            let before = self.queue_mins();
            let Some(min) = self.delete_oldest_segment(oldest.base)? else {
                break;
            };
            *deleted += 1;
            ::log::info!(
                "retention: deleted commitlog segment {:020} ({}; disk {usage:.1}% used, store {size} bytes); commitlog now starts at {min}",
                oldest.base,
                if expired {
                    "expired"
                } else {
                    "forced, unexpired"
                },
            );
            self.log_losses(&before);
            if trigger == Trigger::Timer && !cfg.delete_interval.is_zero() && *deleted < limit {
                std::thread::sleep(cfg.delete_interval);
            }
        }
        Ok(())
    }

    /// The guard: refuses puts while the disk is above `disk_full_ratio` or the store above
    /// `max_store_bytes`, accepts them again otherwise. Returns whether puts are refused.
    pub(crate) fn check_guard(&self) -> Result<bool> {
        let cfg = &self.config().retention;
        let usage = self.disk_used_percent()?;
        let size = self.store_bytes()?;
        let reason = if usage > f64::from(cfg.disk_full_ratio) {
            Some(format!(
                "the disk holding the store is {usage:.1}% full (limit {}%)",
                cfg.disk_full_ratio
            ))
        } else {
            cfg.max_store_bytes
                .filter(|&cap| size > cap)
                .map(|cap| format!("the store takes {size} bytes, more than max_store_bytes {cap}"))
        };
        let full = reason.is_some();
        self.set_disk_full(reason);
        Ok(full)
    }

    /// After a put: if it started a new CommitLog segment, the forced deletions and the guard
    /// run now (a roll is where the store grows).
    pub(crate) fn after_put_at(&self, physical_offset: u64) {
        if !physical_offset.is_multiple_of(self.config().commitlog_segment_size)
            || physical_offset == 0
        {
            return;
        }
        let r = if self.config().retention.enabled {
            self.run_retention(Trigger::Roll).map(|_| ())
        } else {
            self.check_guard().map(|_| ())
        };
        if let Err(e) = r {
            ::log::warn!("retention at a segment roll failed: {e}");
        }
    }

    /// Starts the cleaner thread: every `check_interval` a retention run (or only the guard's
    /// check when retention is off).
    pub(crate) fn start_cleaner(
        self: &std::sync::Arc<Self>,
    ) -> std::io::Result<(crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>)> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let broker = std::sync::Arc::downgrade(self);
        let interval = self.config().retention.check_interval;
        let enabled = self.config().retention.enabled;
        let idle = self.config().idle_housekeeping;
        let thread = std::thread::Builder::new()
            .name("mqlite-cleaner".into())
            .spawn(move || {
                if idle {
                    crate::storage::yield_to_application_threads();
                }
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(interval)
                {
                    let Some(b) = broker.upgrade() else { return };
                    if b.check_open().is_err() {
                        return;
                    }
                    let r = if enabled {
                        b.run_retention(Trigger::Timer).map(|_| ())
                    } else {
                        b.check_guard().map(|_| ())
                    };
                    if let Err(e) = r {
                        ::log::warn!("retention run failed: {e}");
                    }
                }
            })?;
        Ok((stop_tx, thread))
    }

    /// Each queue's min offset, to see afterwards what a deletion cut.
    fn queue_mins(&self) -> Vec<(std::sync::Arc<str>, u32, u64)> {
        self.all_queues()
            .into_iter()
            .map(|q| (q.topic().clone(), q.queue_id(), q.min_offset()))
            .collect()
    }

    /// Logs, per group, the messages it had not consumed that a deletion removed.
    fn log_losses(&self, before: &[(std::sync::Arc<str>, u32, u64)]) {
        for (topic, qid, old_min) in before {
            let Some(q) = self.queue(topic, *qid) else {
                continue;
            };
            let new_min = q.min_offset();
            if new_min <= *old_min {
                continue;
            }
            for (group, committed) in self.offsets.behind(topic, *qid, new_min) {
                let lost = new_min - committed.max(*old_min);
                ::log::warn!(
                    "retention: group {group} never consumed {lost} message(s) of {topic} queue {qid} (offsets {}..{new_min} deleted); it continues from {new_min}",
                    committed.max(*old_min)
                );
            }
        }
    }
}

/// The current hour of the day, UTC.
fn utc_hour() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs % 86_400 / 3600) as u32
}
