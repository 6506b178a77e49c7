//! The lite pull consumer as a member of its group (subscribe mode): its topics, its share of
//! their queues, giving queues up and taking them in a rebalance, and offset resets.
//!
//! The registry runs every rebalance under the group's lock, releases before assigns: a queue
//! taken away is committed (with auto-commit) before its next owner reads the committed offset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use super::state::{Lite, Mode, Owned};
use crate::broker::group::Member;
use crate::message::MessageQueue;

impl Member for Lite {
    fn id(&self) -> &str {
        &self.id
    }

    fn topics(&self) -> Vec<String> {
        match &self.state.lock().mode {
            Mode::Subscribed(topics) => topics.keys().cloned().collect(),
            Mode::Idle | Mode::Assigned => Vec::new(),
        }
    }

    fn broadcasting(&self) -> bool {
        false
    }

    /// The user's strategy, guarded against panics (see `Strategy::allocate_guarded`).
    fn allocate(&self, group: &str, queues: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue> {
        self.options.strategy.allocate_guarded(
            "lite pull consumer",
            group,
            &self.id,
            queues,
            cids,
            &self.strategy_panicked,
        )
    }

    fn alive(&self) -> bool {
        // A consumer shutting down keeps its queues until it has committed and left.
        !self.gone.load(Ordering::Acquire)
    }

    fn release(&self, keep: &BTreeSet<MessageQueue>) {
        let mut st = self.state.lock();
        let gone: Vec<MessageQueue> = st
            .owned
            .keys()
            .filter(|q| !keep.contains(*q))
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        ::log::info!(
            "rebalance: lite pull consumer {} of group {} releases {gone:?}",
            self.id,
            self.group()
        );
        for q in gone {
            let Some(owned) = st.owned.remove(&q) else {
                continue;
            };
            let at = owned.position;
            if let Err(e) = self.release_queue(&q, owned) {
                ::log::warn!(
                    "lite pull consumer {} of group {}: cannot commit released queue {q} at {at}: {e}",
                    self.id,
                    self.group()
                );
            }
        }
    }

    fn assign(&self, queues: &BTreeSet<MessageQueue>) {
        if self.shut.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let Mode::Subscribed(topics) = &st.mode else {
            return;
        };
        let mut added = false;
        for q in queues {
            if st.owned.contains_key(q) {
                continue;
            }
            let Some(filter) = topics.get(&q.topic) else {
                continue;
            };
            match self.open_queue(q, filter.clone()) {
                Ok(owned) => {
                    ::log::info!(
                        "rebalance: lite pull consumer {} of group {} takes {q} from offset {}",
                        self.id,
                        self.group(),
                        owned.position
                    );
                    st.owned.insert(q.clone(), owned);
                    added = true;
                }
                Err(e) => ::log::warn!(
                    "lite pull consumer {} of group {}: cannot take queue {q}: {e}",
                    self.id,
                    self.group()
                ),
            }
        }
        drop(guard);
        if added {
            self.wake();
        }
    }

    fn reset_begin(&self, topic: &str) {
        let mut st = self.state.lock();
        let dropped: Vec<MessageQueue> = st
            .owned
            .keys()
            .filter(|q| q.topic == topic)
            .cloned()
            .collect();
        for q in dropped {
            // Dropped without a commit: nothing polled before the reset commits over it.
            if let Some(owned) = st.owned.remove(&q) {
                st.resetting.push((q, owned.filter));
            }
        }
    }

    fn reset_finish(&self, _topic: &str, offsets: &BTreeMap<u32, u64>) {
        let mut st = self.state.lock();
        let dropped = std::mem::take(&mut st.resetting);
        if self.shut.load(Ordering::Acquire) {
            return;
        }
        for (q, filter) in dropped {
            if st.owned.contains_key(&q) {
                continue;
            }
            let owned = match offsets.get(&q.queue_id) {
                Some(&offset) => Owned {
                    filter,
                    position: offset,
                    committed: Some(offset),
                },
                None => match self.open_queue(&q, filter) {
                    Ok(owned) => owned,
                    Err(e) => {
                        ::log::warn!(
                            "lite pull consumer {} of group {}: cannot take queue {q} back \
                             after an offset reset: {e}",
                            self.id,
                            self.group()
                        );
                        continue;
                    }
                },
            };
            st.owned.insert(q, owned);
        }
        drop(st);
        self.wake();
    }
}
