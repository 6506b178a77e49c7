//! The dispatcher: the only writer of consume queue units in steady state.
//!
//! Under `FlushPolicy::Async` a record's unit is dispatched right after the append; under
//! `Sync` it waits in the pending list until its record is durable, and whoever finds the log
//! flushed (a group-commit leader, the flush thread, `Store::flush`, close) dispatches what is
//! ready. Either way one lock orders every write of units: drained units are written before the
//! next drain starts, so two flushers can never write one queue's units out of order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::consume_queue::ConsumeQueue;
use crate::error::Result;
use crate::format::cq_unit::CqUnit;

/// A consume queue unit waiting for its record to become durable (`FlushPolicy::Sync`).
#[derive(Debug)]
pub(crate) struct PendingUnit {
    pub(crate) cq: Arc<ConsumeQueue>,
    pub(crate) queue_offset: u64,
    pub(crate) unit: CqUnit,
    pub(crate) store_ts: u64,
}

impl PendingUnit {
    fn end(&self) -> u64 {
        self.unit.physical_offset + u64::from(self.unit.size)
    }
}

/// The dispatcher.
#[derive(Debug, Default)]
pub(crate) struct Dispatcher {
    /// Units waiting for durability, in append order.
    pending: Mutex<VecDeque<PendingUnit>>,
    /// Held while units are written: one dispatch at a time, in order.
    writing: Mutex<()>,
    /// Store time of the last record dispatched.
    logics_ts: AtomicU64,
}

impl Dispatcher {
    pub(crate) fn new(logics_ts: u64) -> Dispatcher {
        Dispatcher {
            logics_ts: AtomicU64::new(logics_ts),
            ..Dispatcher::default()
        }
    }

    /// Store time of the last record dispatched.
    pub(crate) fn logics_ts(&self) -> u64 {
        self.logics_ts.load(Ordering::Relaxed)
    }

    /// Writes the unit of a record just appended (`Async`: a record is visible as soon as it
    /// is appended). Only the appender calls this, holding the engine's write lock, which
    /// orders these writes; under `Async` nothing is ever deferred, so no other dispatch runs.
    pub(crate) fn dispatch_appended(
        &self,
        cq: &ConsumeQueue,
        queue_offset: u64,
        unit: CqUnit,
        store_ts: u64,
    ) -> Result<()> {
        cq.put(queue_offset, unit)?;
        cq.puts().add_exclusive(store_ts, 1, u64::from(unit.size));
        self.logics_ts.fetch_max(store_ts, Ordering::Relaxed);
        Ok(())
    }

    /// Queues a unit until its record is durable (`Sync`). Called by the appender, in append
    /// order.
    pub(crate) fn defer(&self, p: PendingUnit) {
        self.pending.lock().push_back(p);
    }

    /// Writes the pending units whose records end at or before `durable`. Returns whether any
    /// was written.
    pub(crate) fn dispatch_durable(&self, durable: u64) -> Result<bool> {
        let _writing = self.writing.lock();
        let ready: Vec<PendingUnit> = {
            let mut pending = self.pending.lock();
            let n = pending.iter().take_while(|p| p.end() <= durable).count();
            pending.drain(..n).collect()
        };
        let any = !ready.is_empty();
        for p in ready {
            p.cq.put(p.queue_offset, p.unit)?;
            p.cq.puts()
                .add_exclusive(p.store_ts, 1, u64::from(p.unit.size));
            self.logics_ts.fetch_max(p.store_ts, Ordering::Relaxed);
        }
        Ok(any)
    }
}
