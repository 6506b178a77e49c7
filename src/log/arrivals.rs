//! Store-wide arrival signal for push consumers: their fetch threads sleep here when none of
//! their queues has anything new, and the writer wakes them only when someone is asleep.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// The signal.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    seq: AtomicU64,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

/// A registration as a waiter; ends when dropped.
pub(crate) struct Waiting<'a> {
    arrivals: &'a Arrivals,
    seen: u64,
}

impl Arrivals {
    /// Called after new consume queue units were published (behind a SeqCst fence): wakes
    /// sleepers, if any.
    pub(crate) fn notify(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.kick();
        }
    }

    /// Wakes every sleeper unconditionally (stop, flow control released, rebalance).
    pub(crate) fn kick(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        let _g = self.lock.lock();
        self.cv.notify_all();
    }

    /// Registers as a waiter. The caller then re-checks its queues and, if still nothing is
    /// there, calls [`Waiting::sleep`]: an arrival after the registration is never missed.
    pub(crate) fn register(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting {
            arrivals: self,
            seen: self.seq.load(Ordering::SeqCst),
        }
    }
}

impl Waiting<'_> {
    /// Sleeps until something arrives (or a kick) or `deadline`.
    pub(crate) fn sleep(self, deadline: Instant) {
        let a = self.arrivals;
        let mut g = a.lock.lock();
        while a.seq.load(Ordering::SeqCst) == self.seen {
            if a.cv.wait_until(&mut g, deadline).timed_out() {
                break;
            }
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.arrivals.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
