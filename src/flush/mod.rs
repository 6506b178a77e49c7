//! Flushing: the background flush thread (`FlushPolicy::Async` flushes, consume queue flushes
//! and the checkpoint) and group commit for `FlushPolicy::Sync`.

pub(crate) mod group_commit;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use crate::config::FlushPolicy;
use crate::store::Core;

const PAGE: u64 = 4096;

/// Starts the flush thread; it stops when the returned sender sends or is dropped.
pub(crate) fn start(core: Arc<Core>) -> std::io::Result<(Sender<()>, JoinHandle<()>)> {
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name("mqlite-flush".into())
        .spawn(move || {
            let config = core.config().clone();
            let (interval, min_pages) = match config.flush_policy {
                FlushPolicy::Async {
                    interval,
                    min_pages,
                } => (interval, Some(u64::from(min_pages))),
                FlushPolicy::Sync { .. } => (config.checkpoint_interval, None),
            };
            let tick = interval
                .min(config.checkpoint_interval)
                .min(config.consumer_offset_persist_interval)
                .max(Duration::from_millis(1));
            let mut last_thorough = Instant::now();
            let mut last_checkpoint = Instant::now();
            let mut last_offsets = Instant::now();
            loop {
                match stop_rx.recv_timeout(tick) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if core.is_poisoned() {
                    continue;
                }
                if let Some(min_pages) = min_pages {
                    let written = core.log().written();
                    let flushed = core.log().flushed();
                    let thorough = last_thorough.elapsed() >= config.flush_thorough_interval;
                    let dirty_pages = written / PAGE - flushed / PAGE;
                    if written > flushed && (thorough || dirty_pages >= min_pages) {
                        if core.flush_log_upto(!thorough).is_err() {
                            continue;
                        }
                        if thorough {
                            last_thorough = Instant::now();
                        }
                    }
                }
                if min_pages.is_none() && core.log().written() > core.log().flushed() {
                    // Under Sync, records whose puts timed out (or were never waited for) are
                    // flushed and dispatched here if no later put does it.
                    if let Ok(durable) = core.flush_log() {
                        core.advance_group(durable);
                    }
                }
                if last_offsets.elapsed() >= config.consumer_offset_persist_interval {
                    last_offsets = Instant::now();
                    let _ = core.persist_offsets();
                }
                if last_checkpoint.elapsed() >= config.checkpoint_interval {
                    last_checkpoint = Instant::now();
                    let _ = core.persist_schedule();
                    let durable = core.log().flushed();
                    let _ = core.flush_queues_upto(durable, true);
                }
            }
        })?;
    Ok((stop_tx, thread))
}
