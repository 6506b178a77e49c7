//! The queue of consume tasks between a push consumer's fetch thread and its consume threads.
//!
//! A mutex-guarded FIFO with a condition variable: an idle consume thread blocks at once (no
//! spinning, no `sched_yield`) and is woken only when there is a task for it. (A channel whose
//! receivers spin and yield before blocking had the idle consume threads take turns on the
//! CPU the fetch thread needs: milliseconds of delivery latency at a steady message rate on a
//! busy machine.)

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

/// A multi-producer, multi-consumer FIFO that can be closed.
pub(super) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// Threads blocked in [`WorkQueue::pop`].
    idle: usize,
    closed: bool,
}

impl<T> WorkQueue<T> {
    pub(super) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues `item`, waking one idle thread if there is one; `false` (and `item` dropped)
    /// once closed.
    pub(super) fn push(&self, item: T) -> bool {
        let mut st = self.state.lock();
        if st.closed {
            return false;
        }
        st.items.push_back(item);
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// The oldest item, waiting for one; `None` once the queue is closed and empty.
    pub(super) fn pop(&self) -> Option<T> {
        let mut st = self.state.lock();
        loop {
            if let Some(item) = st.items.pop_front() {
                return Some(item);
            }
            if st.closed {
                return None;
            }
            st.idle += 1;
            self.ready.wait(&mut st);
            st.idle -= 1;
        }
    }

    /// Refuses further items and wakes every thread: they drain what is queued, then
    /// [`WorkQueue::pop`] returns `None`.
    pub(super) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::WorkQueue;
    use std::sync::Arc;

    #[test]
    fn every_item_is_taken_once_and_close_ends_the_takers() {
        let q = Arc::new(WorkQueue::new());
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(i) = q.pop() {
                        got.push(i);
                    }
                    got
                })
            })
            .collect();
        for i in 0..10_000u32 {
            assert!(q.push(i));
        }
        q.close();
        assert!(!q.push(10_000));
        let mut all: Vec<u32> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn items_queued_before_close_are_still_taken() {
        let q = WorkQueue::new();
        q.push(1);
        q.push(2);
        q.close();
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }
}
