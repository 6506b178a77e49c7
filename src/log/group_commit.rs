//! Group commit for `FlushPolicy::Sync`: leader/follower batching on a condition variable.
//!
//! An appender that needs its bytes durable either finds them flushed already, or becomes the
//! leader (if no flush is running) and flushes everything appended so far, or waits for the
//! running flush to finish and checks again. So concurrent appenders share one flush, and no
//! thread is handed work: the append and its flush stay on the caller's thread.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    flushed: u64,
    leader: bool,
    failed: bool,
}

/// The group commit point.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

/// Releases leadership if the leader's flush unwinds.
struct LeaderGuard<'a>(&'a GroupCommit);

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.leader = false;
        st.failed = true;
        self.0.done.notify_all();
    }
}

/// The outcome of a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The bytes were flushed before the deadline.
    Durable,
    /// The deadline passed first; the bytes are stored but not known durable.
    TimedOut,
}

impl GroupCommit {
    pub(crate) fn new(flushed: u64) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                flushed,
                ..State::default()
            }),
            done: Condvar::new(),
        }
    }

    /// Waits until everything before `end` is durable, leading a flush when none is running.
    /// `flush` flushes all appended data and returns the new durable end; an error from it
    /// fails this and every later wait.
    pub(crate) fn wait(
        &self,
        end: u64,
        deadline: Instant,
        flush: impl Fn() -> Result<u64>,
    ) -> Result<Durability> {
        let mut st = self.state.lock();
        loop {
            if st.failed {
                return Err(Error::Poisoned);
            }
            if st.flushed >= end {
                return Ok(Durability::Durable);
            }
            if !st.leader {
                st.leader = true;
                drop(st);
                // Should `flush` panic, the guard hands leadership back and wakes the
                // followers, so they do not wait for a flush that never ends.
                let guard = LeaderGuard(self);
                let result = flush();
                std::mem::forget(guard);
                st = self.state.lock();
                st.leader = false;
                match result {
                    Ok(flushed) => st.flushed = st.flushed.max(flushed),
                    Err(e) => {
                        st.failed = true;
                        self.done.notify_all();
                        return Err(e);
                    }
                }
                self.done.notify_all();
                if st.flushed >= end {
                    return Ok(if Instant::now() <= deadline {
                        Durability::Durable
                    } else {
                        Durability::TimedOut
                    });
                }
                continue;
            }
            if self.done.wait_until(&mut st, deadline).timed_out() {
                if st.failed {
                    return Err(Error::Poisoned);
                }
                return Ok(if st.flushed >= end {
                    Durability::Durable
                } else {
                    Durability::TimedOut
                });
            }
        }
    }

    /// Marks the group failed (the store was poisoned elsewhere) and wakes every waiter.
    pub(crate) fn fail(&self) {
        self.state.lock().failed = true;
        self.done.notify_all();
    }

    /// Records a flush done outside a wait (e.g. at close).
    pub(crate) fn advance(&self, flushed: u64) {
        let mut st = self.state.lock();
        st.flushed = st.flushed.max(flushed);
        self.done.notify_all();
    }
}
