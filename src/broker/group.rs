//! The in-process consumer-group registry: which consumers are in which group, and the
//! rebalance that shares each topic's queues out among them.
//!
//! A rebalance runs under the group's lock in two phases: first every member releases the
//! queues it is losing (stops fetching them and commits the offset of the oldest message it
//! has not finished), then every member takes up its new queues (starting from the committed
//! offset). So a queue never has two owners at once, and a queue that moves resumes exactly
//! where its old owner stopped: only messages in flight at that moment can be seen twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Broker;
use crate::error::{Error, Result};
use crate::message::MessageQueue;

/// What the registry needs from a consumer.
pub(crate) trait Member: Send + Sync {
    fn id(&self) -> &str;
    fn topics(&self) -> Vec<String>;
    fn broadcasting(&self) -> bool;
    /// The queues of `queues` (sorted) this member takes among the clustering members
    /// `cids` (sorted), by its allocation strategy.
    fn allocate(&self, group: &str, queues: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue>;
    /// False once the consumer's threads are gone.
    fn alive(&self) -> bool;
    /// Stops consuming every queue not in `keep`, committing where it stopped.
    fn release(&self, keep: &BTreeSet<MessageQueue>);
    /// Starts consuming the queues of `queues` it does not have yet.
    fn assign(&self, queues: &BTreeSet<MessageQueue>);
    /// An offset reset of `topic` is coming: forgets its progress in the topic's queues
    /// (drops their process queues without committing), so nothing it had in flight commits
    /// over the reset.
    fn reset_begin(&self, topic: &str);
    /// The reset offsets (`queue id -> offset`) are committed: consumes the queues dropped by
    /// [`Member::reset_begin`] again, from there.
    fn reset_finish(&self, topic: &str, offsets: &BTreeMap<u32, u64>);
}

/// All groups of a store.
#[derive(Default)]
pub(crate) struct Groups {
    members: Mutex<HashMap<String, Vec<Arc<dyn Member>>>>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Bumped when a topic's queue count changes; consumers rebalance when they see it move.
    topic_epoch: AtomicU64,
    /// The store is closing: no joins, no rebalances (each member stops with what it has).
    closed: AtomicBool,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.members.lock();
        f.debug_map()
            .entries(
                m.iter()
                    .map(|(g, ms)| (g, ms.iter().map(|m| m.id().to_owned()).collect::<Vec<_>>())),
            )
            .finish()
    }
}

impl Groups {
    fn lock_of(&self, group: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .entry(group.to_owned())
            .or_default()
            .clone()
    }

    /// The store is closing: later joins fail with [`Error::Closed`] and rebalances do
    /// nothing, so members stopping one after another do not hand queues to each other.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Wait for a rebalance in progress: take every group's lock once.
        let locks: Vec<Arc<Mutex<()>>> = self.locks.lock().values().cloned().collect();
        for l in locks {
            drop(l.lock());
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Adds a consumer and rebalances its group.
    pub(crate) fn join(&self, core: &Broker, group: &str, member: Arc<dyn Member>) -> Result<()> {
        {
            let mut all = self.members.lock();
            if self.is_closed() {
                return Err(Error::Closed);
            }
            let list = all.entry(group.to_owned()).or_default();
            if list.iter().any(|m| m.id() == member.id()) {
                return Err(Error::InvalidConfig(format!(
                    "consumer id {:?} is already in group {group:?}",
                    member.id()
                )));
            }
            list.push(member);
        }
        self.rebalance(core, group);
        Ok(())
    }

    /// Removes a consumer and rebalances its group.
    pub(crate) fn leave(&self, core: &Broker, group: &str, id: &str) {
        {
            let mut all = self.members.lock();
            if let Some(list) = all.get_mut(group) {
                list.retain(|m| m.id() != id);
            }
        }
        self.rebalance(core, group);
    }

    /// Ids of the live consumers of `group`, sorted.
    pub(crate) fn member_ids(&self, group: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .members
            .lock()
            .get(group)
            .map(|l| {
                l.iter()
                    .filter(|m| m.alive())
                    .map(|m| m.id().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub(crate) fn topic_epoch(&self) -> u64 {
        self.topic_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn topics_changed(&self) {
        self.topic_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// A member died: every consumer rebalances at its next turn (at once, once kicked).
    pub(crate) fn membership_changed(&self) {
        self.topic_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Recomputes the group's allocation and moves queues: releases first, then assigns.
    /// Consumers whose threads died are dropped from the group.
    pub(crate) fn rebalance(&self, core: &Broker, group: &str) {
        let lock = self.lock_of(group);
        let _serial = lock.lock();
        if self.is_closed() {
            return;
        }
        let members: Vec<Arc<dyn Member>> = {
            let mut all = self.members.lock();
            let Some(list) = all.get_mut(group) else {
                return;
            };
            list.retain(|m| m.alive());
            list.clone()
        };
        let mut alloc: BTreeMap<String, BTreeSet<MessageQueue>> = members
            .iter()
            .map(|m| (m.id().to_owned(), BTreeSet::new()))
            .collect();
        let topics: BTreeSet<String> = members.iter().flat_map(|m| m.topics()).collect();
        for topic in topics {
            let Ok(mut queues) = core.read_queues(&topic) else {
                continue;
            };
            queues.sort();
            let subscribed: Vec<&Arc<dyn Member>> = members
                .iter()
                .filter(|m| m.topics().contains(&topic))
                .collect();
            let mut cids: Vec<String> = subscribed
                .iter()
                .filter(|m| !m.broadcasting())
                .map(|m| m.id().to_owned())
                .collect();
            cids.sort();
            // A queue gets one clustering owner even if a user strategy hands it out twice.
            let mut taken = BTreeSet::new();
            for m in subscribed {
                let mine: Vec<MessageQueue> = if m.broadcasting() {
                    queues.clone()
                } else {
                    m.allocate(group, &queues, &cids)
                };
                if let Some(set) = alloc.get_mut(m.id()) {
                    // Only queues that exist: a user strategy cannot invent any.
                    let broadcasting = m.broadcasting();
                    set.extend(mine.into_iter().filter(|q| {
                        queues.binary_search(q).is_ok() && (broadcasting || taken.insert(q.clone()))
                    }));
                }
            }
        }
        for m in &members {
            m.release(&alloc[m.id()]);
        }
        for m in &members {
            m.assign(&alloc[m.id()]);
        }
    }

    /// Resets `group`'s offsets of `topic` while its consumers run (RocketMQ's reset offset,
    /// which notifies the group's consumers): under the group's lock (no rebalance meanwhile),
    /// every member subscribed to `topic` first drops its progress in the topic's queues, then
    /// `commit` writes the new offsets, then the members resume from `offsets`. Nothing a
    /// member had in flight can commit over the reset.
    pub(crate) fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<u32, u64>,
        commit: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let lock = self.lock_of(group);
        let _serial = lock.lock();
        let members: Vec<Arc<dyn Member>> = self
            .members
            .lock()
            .get(group)
            .map(|l| {
                l.iter()
                    .filter(|m| m.topics().iter().any(|t| t == topic))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for m in &members {
            m.reset_begin(topic);
        }
        let committed = commit();
        for m in &members {
            m.reset_finish(topic, offsets);
        }
        committed
    }
}
