//! The shared state of a lite pull consumer: the queues it owns with their poll positions,
//! how it consumes (subscribed or assigned), and the offset bookkeeping every operation uses.
//!
//! One mutex guards the state. Polls hold it while they read their queues (in-memory reads),
//! never while they wait; rebalances (run by whichever thread joins, leaves or polls) take it
//! to release and take queues, so a queue is never read after it was released.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::builder::Options;
use crate::broker::Broker;
use crate::broker::runtime::{Attached, ClientKind, Runtime};
use crate::client::pull::ConsumeFrom;
use crate::error::{Error, Result};
use crate::filter::MessageSelector;
use crate::message::MessageQueue;

/// How the consumer picks its queues; the two ways exclude each other, as in RocketMQ.
#[derive(Debug)]
pub(super) enum Mode {
    /// Neither yet.
    Idle,
    /// Topics with their filters; the group shares their queues out.
    Subscribed(BTreeMap<String, MessageSelector>),
    /// Queues chosen by the user; no group membership.
    Assigned,
}

/// One owned queue.
#[derive(Debug)]
pub(super) struct Owned {
    pub(super) filter: MessageSelector,
    /// The next offset to poll: everything before it was returned (or skipped by the filter).
    pub(super) position: u64,
    /// The group's committed offset as far as this consumer knows (read when the queue was
    /// taken, then what it committed); a commit is due when it differs from `position`.
    pub(super) committed: Option<u64>,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) mode: Mode,
    pub(super) owned: BTreeMap<MessageQueue, Owned>,
    /// Paused queues, kept across rebalances until resumed.
    pub(super) paused: BTreeSet<MessageQueue>,
    /// The last queue a poll took messages from: the next poll starts after it.
    pub(super) resume_after: Option<MessageQueue>,
    pub(super) next_auto_commit: Instant,
    pub(super) last_rebalance: Instant,
    /// Queues dropped by an offset reset in progress, with their filters.
    pub(super) resetting: Vec<(MessageQueue, MessageSelector)>,
}

/// A lite pull consumer's shared state; the group registry and the store hold it too.
pub(crate) struct Lite {
    pub(super) store: Arc<Runtime>,
    pub(super) options: Options,
    pub(super) id: String,
    pub(super) state: Mutex<State>,
    /// Whether the consumer is in its group (taken while joining and leaving).
    pub(super) membership: Mutex<bool>,
    /// Set when shutdown starts (by the user, a drop or the store's close): every later call
    /// fails with [`Error::Closed`].
    pub(super) shut: AtomicBool,
    /// Set once shutdown has committed and left the group.
    pub(super) gone: AtomicBool,
    /// Serialises shutdowns: a second one returns once the first has finished.
    pub(super) stopping: Mutex<()>,
    /// The group registry's topic epoch at this consumer's last rebalance.
    pub(super) epoch: AtomicU64,
    /// The user's allocation strategy panicked (reported once).
    pub(super) strategy_panicked: AtomicBool,
}

impl std::fmt::Debug for Lite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lite")
            .field("id", &self.id)
            .field("group", &self.options.group)
            .finish_non_exhaustive()
    }
}

/// `now + d`, or a year from now when that overflows (`Duration::MAX` waits "for ever").
pub(super) fn after(now: Instant, d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(YEAR))
        .unwrap_or(now)
}

impl Lite {
    /// Makes the consumer and registers it with the store, which stops it at close.
    pub(super) fn start(store: Arc<Runtime>, options: Options) -> Result<Arc<Lite>> {
        if store.is_closing() {
            return Err(Error::Closed);
        }
        let core = store.core().clone();
        core.check_open()?;
        let id = crate::client::consumer_id(
            core.config().store_host.ip(),
            options.instance_name.as_deref(),
        );
        let now = Instant::now();
        let lite = Arc::new(Lite {
            state: Mutex::new(State {
                mode: Mode::Idle,
                owned: BTreeMap::new(),
                paused: BTreeSet::new(),
                resume_after: None,
                next_auto_commit: after(now, options.auto_commit_interval),
                last_rebalance: now,
                resetting: Vec::new(),
            }),
            store,
            options,
            id,
            membership: Mutex::new(false),
            shut: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            stopping: Mutex::new(()),
            epoch: AtomicU64::new(core.groups.topic_epoch()),
            strategy_panicked: AtomicBool::new(false),
        });
        let me: Arc<dyn Attached> = lite.clone();
        lite.store.attach(ClientKind::Reader, Arc::downgrade(&me))?;
        Ok(lite)
    }

    pub(super) fn core(&self) -> &Arc<Broker> {
        self.store.core()
    }

    pub(super) fn group(&self) -> &str {
        &self.options.group
    }

    /// [`Error::Closed`] once the consumer was shut down or the store closed.
    pub(super) fn check_usable(&self) -> Result<()> {
        if self.shut.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.core().check_open()
    }

    /// Whether this consumer commits at all (not on a read-only store).
    pub(super) fn can_commit(&self) -> bool {
        !self.core().is_read_only()
    }

    /// Takes up `queue`: from the group's committed offset, else where `consume_from` says.
    pub(super) fn open_queue(
        &self,
        queue: &MessageQueue,
        filter: MessageSelector,
    ) -> Result<Owned> {
        let core = self.core();
        let committed = core.committed_offset(self.group(), queue)?;
        let position = match committed {
            Some(c) => c,
            None => match self.options.consume_from {
                ConsumeFrom::LastOffset => core.max_offset(queue)?,
                ConsumeFrom::FirstOffset => core.min_offset(queue)?,
                ConsumeFrom::Timestamp(ms) => core.offset_by_time(queue, ms)?,
            },
        };
        Ok(Owned {
            filter,
            position,
            committed,
        })
    }

    /// Commits `owned`'s position through the broker's commit path if it moved.
    pub(super) fn commit_queue(&self, queue: &MessageQueue, owned: &mut Owned) -> Result<()> {
        if owned.committed == Some(owned.position) {
            return Ok(());
        }
        self.core()
            .commit_offset(self.group(), queue, owned.position)?;
        owned.committed = Some(owned.position);
        Ok(())
    }

    /// Commits every owned queue whose position moved; returns the first failure (the other
    /// queues are still committed).
    pub(super) fn commit_owned(&self, state: &mut State) -> Result<()> {
        let mut first = Ok(());
        for (q, owned) in &mut state.owned {
            if let Err(e) = self.commit_queue(q, owned) {
                ::log::warn!(
                    "lite pull consumer {} of group {}: cannot commit {q} at {}: {e}",
                    self.id,
                    self.group(),
                    owned.position
                );
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// A queue leaves this consumer (rebalance, unsubscribe, a new assignment): with
    /// auto-commit, its position is committed, so whoever takes it next starts there.
    pub(super) fn release_queue(&self, queue: &MessageQueue, mut owned: Owned) -> Result<()> {
        if self.options.auto_commit && self.can_commit() {
            self.commit_queue(queue, &mut owned)?;
        }
        Ok(())
    }

    /// Wakes a poll waiting on another thread (new queues, a seek, a resume, a shutdown).
    pub(super) fn wake(&self) {
        self.core().arrivals().kick();
    }
}
