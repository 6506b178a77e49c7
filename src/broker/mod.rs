//! The broker layer: what a RocketMQ broker does for one store, on top of the log engine.
//! Topics and their configuration, consumer offsets, the schedule service (delay levels and
//! delivery times), retries and dead letters, queue locks for orderly consumers, and the
//! registry of in-process consumer groups, and transactional messages with their check
//! service. It depends on the engine, never on the clients.

pub(crate) mod group;
mod json_file;
pub(crate) mod locks;
mod offsets;
pub(crate) mod put;
mod query;
pub(crate) mod read;
pub(crate) mod retention;
pub(crate) mod retry;
pub(crate) mod runtime;
pub(crate) mod schedule;
pub(crate) mod schedule_service;
pub(crate) mod stats;
mod timer;
pub(crate) mod topics;
pub(crate) mod transaction;
pub(crate) mod transaction_service;
pub(crate) mod validate;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::msg_id::MessageIdGenerator;
use crate::format::properties;
use crate::format::record::RecordView;
use crate::log::consume_queue::ConsumeQueue;
use crate::log::flusher::Housekeeping;
use crate::log::open::OpenHooks;
use crate::log::{self, Engine};
use crate::storage::Fs;
use crate::storage::lock::DirLock;

pub(crate) use offsets::OffsetScope;
pub use topics::TopicConfig;
use topics::TopicTable;

/// The broker: the engine plus everything a broker keeps about topics and consumers. Engine
/// methods are reachable through `Deref`: the broker is built on the engine, never the other
/// way round.
#[derive(Debug)]
pub(crate) struct Broker {
    engine: Engine,
    topics: TopicTable,
    offsets: offsets::ConsumerOffsets,
    /// Offsets of broadcasting consumers, per consumer instance.
    broadcast_offsets: offsets::ConsumerOffsets,
    ids: MessageIdGenerator,
    schedule: schedule::ScheduleState,
    /// Wakes the schedule service when a delayed message is stored.
    schedule_wake: Sender<()>,
    /// Starts the schedule service (set by the runtime; the first delayed message calls it).
    schedule_starter: Starter,
    /// Queue locks of orderly consumers.
    pub(crate) locks: locks::QueueLocks,
    /// Consumer groups and their members.
    pub(crate) groups: group::Groups,
    /// Transaction checkers and the transactions ended since open.
    transactions: transaction::Transactions,
    /// What consumer groups got, for the store's statistics.
    pub(crate) gets: stats::GetStats,
}

impl Deref for Broker {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// The broker's side of the engine's open: topics learn the queues found, schedule
/// deliveries re-read by recovery are recorded before the checkpoint passes them.
struct Loading<'a> {
    topics: &'a TopicTable,
    schedule: &'a schedule::ScheduleState,
    seen: Vec<schedule::Source>,
}

impl OpenHooks for Loading<'_> {
    fn configured_queues(&self) -> Vec<(String, u32)> {
        self.topics
            .list()
            .into_iter()
            .map(|c| {
                let n = c.queue_count();
                (c.name, n)
            })
            .collect()
    }

    fn valid_topic(&self, topic: &str) -> bool {
        validate::stored_topic(topic)
    }

    fn queue_found(&mut self, topic: &str, queue_id: u32) -> Result<()> {
        if self
            .topics
            .get(topic)
            .is_none_or(|c| c.queue_count() <= queue_id)
        {
            self.topics.ensure(topic, queue_id + 1)?;
        }
        Ok(())
    }

    fn recovered(&mut self, rec: &RecordView<'_>) {
        if let Some(src) = properties::get(rec.properties, schedule::SCHEDULE_SRC)
            .and_then(schedule::Source::parse)
        {
            self.seen.push(src);
        }
    }

    fn before_checkpoint(&mut self) -> Result<()> {
        if self.seen.is_empty() {
            return Ok(());
        }
        let mut p = self.schedule.progress.lock();
        for src in &self.seen {
            p.delivered(*src);
        }
        drop(p);
        self.schedule.mark_dirty();
        // Before the checkpoint moves past them, so a second crash cannot lose track of
        // deliveries made before the first.
        self.schedule.persist_if_dirty()
    }
}

/// Starts the schedule service, which the layer above runs (set by it once).
#[derive(Default)]
struct Starter(std::sync::OnceLock<Box<dyn Fn() -> std::io::Result<()> + Send + Sync>>);

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter").finish_non_exhaustive()
    }
}

impl Broker {
    /// Sets what starts the schedule service (the runtime, once).
    pub(crate) fn set_schedule_starter(
        &self,
        start: Box<dyn Fn() -> std::io::Result<()> + Send + Sync>,
    ) {
        let _ = self.schedule_starter.0.set(start);
    }

    /// Makes sure the schedule service runs before a delayed or timer message is stored, so
    /// that a failure to start it fails the put instead of leaving the message undelivered.
    /// (While the store closes nothing starts: such a message is delivered after the next
    /// open.) Once it runs, this costs a weak-reference upgrade and an atomic load.
    pub(crate) fn ensure_schedule_service(&self) -> Result<()> {
        match self.schedule_starter.0.get() {
            Some(start) => {
                start().map_err(|e| Error::io("spawn schedule service thread", self.dir(), e))
            }
            None => Ok(()),
        }
    }

    /// Whether the store holds delay-level or timer messages (their queues exist).
    pub(crate) fn holds_scheduled_messages(&self) -> bool {
        self.engine
            .all_queues()
            .iter()
            .any(|q| &**q.topic() == put::SCHEDULE_TOPIC || &**q.topic() == put::TIMER_TOPIC)
    }

    /// Opens the store in `dir`: lock, broker state, then the engine (recovering it).
    pub(crate) fn open(
        fs: Fs,
        dir: PathBuf,
        mut config: StoreConfig,
        schedule_wake: Sender<()>,
    ) -> Result<Broker> {
        config.validate()?;
        fs.create_dir_all(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        log::layout::resolve(&fs, &dir, &mut config)?;
        let config_dir = dir.join("config");
        let topics = TopicTable::load(&fs, &config_dir)?;
        let schedule = schedule::ScheduleState::load(&fs, &config_dir)?;
        let mut loading = Loading {
            topics: &topics,
            schedule: &schedule,
            seen: Vec::new(),
        };
        let engine = log::open::open(fs.clone(), dir, config, lock, &mut loading)?;
        let offsets = offsets::ConsumerOffsets::load(&fs, &config_dir)?;
        if engine.crash_recovered() {
            // The crash may have taken back unflushed messages that consumers had already
            // committed past: lowered to the queue's end, they re-read what gets written there
            // instead of skipping it. After a clean close offsets are kept as stored (a broker
            // keeps them too; a pull past the end answers `OffsetIllegal`).
            let lowered =
                offsets.clamp(|topic, q| engine.queue(topic, q).map_or(0, |c| c.max_offset()));
            if lowered > 0 {
                ::log::warn!(
                    "{lowered} committed consumer offsets pointed past their queue's end after crash recovery; lowered to the end"
                );
            }
        }
        let broadcast_offsets =
            offsets::ConsumerOffsets::load_file(&fs, &config_dir, "broadcastOffset.json")?;
        Ok(Broker {
            ids: MessageIdGenerator::new(engine.config().store_host.ip()),
            transactions: transaction::Transactions::new(engine.log().written()),
            engine,
            topics,
            offsets,
            broadcast_offsets,
            schedule,
            schedule_wake,
            schedule_starter: Starter::default(),
            locks: Default::default(),
            groups: Default::default(),
            gets: Default::default(),
        })
    }

    /// Opens the store in `dir` read-only: no lock, nothing written (see
    /// `log::open_read_only`); topics and offsets are read from `config/` as they are.
    pub(crate) fn open_read_only(fs: Fs, dir: PathBuf, mut config: StoreConfig) -> Result<Broker> {
        config.validate()?;
        let config_dir = dir.join("config");
        let engine = log::open_read_only::open_read_only(fs.clone(), dir, config)?;
        let topics = TopicTable::load(&fs, &config_dir)?;
        let schedule = schedule::ScheduleState::load(&fs, &config_dir)?;
        let offsets = offsets::ConsumerOffsets::load(&fs, &config_dir)?;
        let broadcast_offsets =
            offsets::ConsumerOffsets::load_file(&fs, &config_dir, "broadcastOffset.json")?;
        let (schedule_wake, _) = crossbeam_channel::bounded(1);
        Ok(Broker {
            ids: MessageIdGenerator::new(engine.config().store_host.ip()),
            transactions: transaction::Transactions::new(engine.log().written()),
            engine,
            topics,
            offsets,
            broadcast_offsets,
            schedule,
            schedule_wake,
            schedule_starter: Starter::default(),
            locks: Default::default(),
            groups: Default::default(),
            gets: Default::default(),
        })
    }

    /// A read-only store picks up what the owner wrote since the last look: new records and
    /// queue units, and `config/topics.json` when `topics` is set. Nothing for a writable one.
    pub(crate) fn refresh(&self, force: bool, topics: bool) -> Result<()> {
        if !self.engine.is_read_only() {
            return Ok(());
        }
        self.engine.refresh(force)?;
        if topics {
            let fresh = TopicTable::load(self.engine.fs_handle(), &self.dir().join("config"))?;
            self.topics.replace_with(fresh);
        }
        Ok(())
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The delay table in ms (level n at index n - 1).
    pub(crate) fn delay_table(&self) -> &[u64] {
        self.engine.delay_levels()
    }

    pub(crate) fn topic_config(&self, name: &str) -> Option<TopicConfig> {
        let _ = self.refresh(false, true);
        self.topics.get(name)
    }

    pub(crate) fn topic_list(&self) -> Vec<TopicConfig> {
        let _ = self.refresh(false, true);
        self.topics.list()
    }

    /// The committed offsets of every group: `(group, topic, queue id, offset)`, sorted.
    pub(crate) fn all_committed_offsets(&self) -> Vec<(String, String, u32, u64)> {
        self.offsets.all()
    }

    pub(crate) fn write_queue_count(&self, name: &str) -> Option<u32> {
        self.topics.write_queues(name)
    }

    /// Creates a topic with `queues` queues or raises its queue count, and creates the queue
    /// directories (a configured queue whose directory later goes missing is then known to
    /// need a rebuild).
    pub(crate) fn create_topic(&self, name: &str, queues: u32) -> Result<TopicConfig> {
        self.check_writable()?;
        if queues == 0 || queues > crate::config::MAX_QUEUES_PER_TOPIC {
            return Err(Error::InvalidConfig(format!(
                "queue count {queues} must be between 1 and {}",
                crate::config::MAX_QUEUES_PER_TOPIC
            )));
        }
        let before = self.topics.get(name).map(|c| c.queue_count());
        let cfg = self.topics.ensure(name, queues)?;
        if before != Some(cfg.queue_count()) {
            self.groups.topics_changed();
            self.arrivals().kick();
        }
        for q in 0..cfg.queue_count() {
            self.queue_or_create(name, q)?;
        }
        Ok(cfg)
    }

    /// The queue a put to `topic`/`queue_id` writes, creating the topic when `create` says
    /// so or the store auto-creates topics.
    pub(crate) fn queue_for_put(
        &self,
        topic: &str,
        queue_id: u32,
        create: bool,
    ) -> Result<Arc<ConsumeQueue>> {
        if let Some(cq) = self.queue(topic, queue_id) {
            return Ok(cq);
        }
        let config = self.config();
        let cfg = match self.topics.get(topic) {
            Some(cfg) if queue_id < cfg.write_queue_nums || !create => cfg,
            Some(_) => self.create_topic(topic, queue_id + 1)?,
            None if create => {
                let queues = match topic {
                    put::SCHEDULE_TOPIC => self.delay_table().len() as u32,
                    _ => 1,
                };
                self.create_topic(topic, queues.max(queue_id + 1))?
            }
            None if config.auto_create_topics => {
                self.create_topic(topic, config.default_topic_queues)?
            }
            None => return Err(Error::TopicNotFound(topic.to_owned())),
        };
        if queue_id >= cfg.write_queue_nums {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        self.queue_or_create(topic, queue_id)
    }

    /// Flushes the log, then writes `config/delayOffset.json` if the schedule progressed (so
    /// the file never counts a delivery a crash could take back).
    pub(crate) fn persist_schedule(&self) -> Result<()> {
        if !self.schedule.is_dirty() {
            return Ok(());
        }
        self.flush_log(crate::storage::FlushScope::All)?;
        self.schedule.persist_if_dirty()
    }

    /// Writes `config/consumerOffset.json` (and the broadcast offsets) if offsets changed.
    pub(crate) fn persist_offsets(&self) -> Result<()> {
        self.offsets.persist_if_dirty()?;
        self.broadcast_offsets.persist_if_dirty()
    }

    /// Closes the store: the engine flushes everything, then offsets and schedule progress are
    /// persisted before the store is marked cleanly closed.
    pub(crate) fn shutdown(&self) -> Result<()> {
        self.engine.shutdown(|| {
            self.offsets.persist_if_dirty()?;
            self.broadcast_offsets.persist_if_dirty()?;
            self.schedule.persist_if_dirty()
        })
    }
}

impl Housekeeping for Broker {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn persist_offsets(&self) -> Result<()> {
        Broker::persist_offsets(self)
    }

    fn before_checkpoint(&self) -> Result<()> {
        self.persist_schedule()
    }
}
