//! The background flush thread: `FlushPolicy::Async` flushes, consume queue flushes and the
//! checkpoint, plus the periodic housekeeping of the layer above (consumer offsets, schedule
//! progress) through [`Housekeeping`].

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TryRecvError, bounded, select};

use super::Engine;
use crate::condition::Condition;
use crate::config::FlushPolicy;
use crate::storage::{FlushScope, PAGE_SIZE};

/// What the flush thread does for the layer above the engine.
pub(crate) trait Housekeeping: Send + Sync + 'static {
    /// The engine to flush.
    fn engine(&self) -> &Engine;
    /// Persists consumer offsets (every `consumer_offset_persist_interval`).
    fn persist_offsets(&self) -> crate::error::Result<()>;
    /// Runs before each periodic checkpoint: persists state that must not get ahead of the
    /// durable log (it may flush the log first).
    fn before_checkpoint(&self) -> crate::error::Result<()>;
}

/// Starts the flush thread; it stops when the returned sender sends or is dropped.
pub(crate) fn start<H: Housekeeping>(
    host: Arc<H>,
) -> std::io::Result<(Sender<()>, JoinHandle<()>)> {
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name("mqlite-flush".into())
        .spawn(move || {
            let core = host.engine();
            let config = core.config().clone();
            if config.idle_housekeeping {
                crate::storage::yield_to_application_threads();
            }
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
            // Under `Async`, appends wake this thread every `WRITE_BEHIND_STEP` bytes to
            // start writing them back, between its periodic flushes. (`wake_tx` lives as long
            // as the thread: the channel never disconnects, so `select!` never spins on it.)
            let (wake_tx, wake_rx) = bounded::<()>(1);
            if min_pages.is_some() {
                core.log().wake_write_behind(wake_tx.clone());
            }
            let mut next_tick = Instant::now() + tick;
            let mut last_thorough = Instant::now();
            let mut last_checkpoint = Instant::now();
            let mut last_offsets = Instant::now();
            let offsets_state = Condition::default();
            let checkpoint_state = Condition::default();
            let write_behind_state = Condition::default();
            loop {
                // A wake ready every time round would keep `select!` from ever taking its
                // timeout: the periodic work below runs once its time has come either way.
                if Instant::now() < next_tick {
                    select! {
                        recv(stop_rx) -> _ => return,
                        recv(wake_rx) -> _ => {
                            if !core.is_poisoned() {
                                // Only a head start for the next flush, which reports any
                                // failure of the writeback itself.
                                let _ = write_behind_state
                                    .track("writing back ahead of the flush", core.write_behind());
                            }
                            continue;
                        }
                        default(next_tick.saturating_duration_since(Instant::now())) => {}
                    }
                } else if !matches!(stop_rx.try_recv(), Err(TryRecvError::Empty)) {
                    return;
                }
                next_tick = Instant::now() + tick;
                if core.is_poisoned() {
                    continue;
                }
                if let Some(min_pages) = min_pages {
                    let written = core.log().written();
                    let flushed = core.log().flushed();
                    let thorough = last_thorough.elapsed() >= config.flush_thorough_interval;
                    let dirty_pages = written / PAGE_SIZE - flushed / PAGE_SIZE;
                    if written > flushed && (thorough || dirty_pages >= min_pages) {
                        let scope = if thorough {
                            FlushScope::All
                        } else {
                            FlushScope::WholePages
                        };
                        if core.flush_log(scope).is_err() {
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
                    if let Ok(durable) = core.flush_log(FlushScope::All) {
                        core.advance_group(durable);
                    }
                }
                if last_offsets.elapsed() >= config.consumer_offset_persist_interval {
                    last_offsets = Instant::now();
                    let _ =
                        offsets_state.track("persisting consumer offsets", host.persist_offsets());
                }
                if last_checkpoint.elapsed() >= config.checkpoint_interval {
                    last_checkpoint = Instant::now();
                    let durable = core.log().flushed();
                    let result = host
                        .before_checkpoint()
                        .and_then(|()| core.flush_queues(durable, FlushScope::WholePages));
                    let _ = checkpoint_state.track("the periodic checkpoint", result);
                }
            }
        })?;
    Ok((stop_tx, thread))
}
