//! The append path: validate, encode straight into the mapped segment, dispatch the consume
//! queue unit (or queue it until the record is durable), and wait for the flush under `Sync`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Core, PendingUnit, QueueSlot, SlotMap, Store, validate};
use crate::config::FlushPolicy;
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::flush::group_commit::Durability;
use crate::format::cq_unit::CqUnit;
use crate::format::hash::tag_code;
use crate::format::msg_id::{MessageId, OffsetMessageId};
use crate::format::properties::{self, keys};
use crate::format::record::{self, RecordMeta, sys_flag};
use crate::message::{Delay, Message};

/// Topic of messages waiting for a delay level (queue = level - 1).
pub(crate) const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Topic of messages waiting for an arbitrary delivery time (queue 0).
pub(crate) const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Property holding the delivery time of a timed message, ms since the Unix epoch.
pub(crate) const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";

/// Whether a stored message is known durable (RocketMQ `PutMessageStatus` / `SendStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutStatus {
    /// Stored; under `FlushPolicy::Sync` also durable.
    PutOk,
    /// Stored, but the flush did not complete within the `Sync` timeout: the message is lost
    /// if the machine goes down before the next flush.
    FlushDiskTimeout,
}

/// Where a message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutResult {
    /// Durability of the message.
    pub status: PutStatus,
    /// The client message id (the `UNIQ_KEY` property).
    pub msg_id: MessageId,
    /// The store's id: store address and CommitLog offset.
    pub offset_msg_id: OffsetMessageId,
    /// Queue id the message went to.
    pub queue_id: u32,
    /// Its offset in that queue.
    pub queue_offset: u64,
    /// CommitLog offset of its record.
    pub physical_offset: u64,
    /// Size of its record.
    pub size: u32,
    /// Store time, ms since the Unix epoch.
    pub store_timestamp: u64,
}

/// The store clock: wall-clock ms since the Unix epoch (precise, so a time read before a put
/// is never later than the put's store time).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Store {
    /// Stores `msg` in queue `queue_id` of its topic and returns where it went.
    ///
    /// The topic is created on first use when [`StoreConfig::auto_create_topics`] is on
    /// (the default). Under `FlushPolicy::Sync` this returns once the record is durable, or
    /// with [`PutStatus::FlushDiskTimeout`] after the timeout. Invalid input (bad topic, empty
    /// or oversized body, oversized properties, unknown queue) is refused with nothing written.
    ///
    /// [`StoreConfig::auto_create_topics`]: crate::StoreConfig::auto_create_topics
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let msg = mqlite::Message::new("orders", b"order 1".to_vec()).with_keys(["ORDER-1"]);
    /// let r = store.put(&msg, 2)?;
    /// assert_eq!((r.queue_id, r.queue_offset), (2, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, msg: &Message, queue_id: u32) -> Result<PutResult> {
        validate::user_topic(&msg.topic)?;
        self.core().put(msg, queue_id)
    }
}

/// Record fields beyond what a [`Message`] carries, for puts made by the client layer and
/// the store itself (compressed bodies, retries, scheduled delivery).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PutOptions<'a> {
    /// The body to store instead of the message's (e.g. compressed).
    pub(crate) body: Option<&'a [u8]>,
    /// SYSFLAG bits (compression, transaction type).
    pub(crate) sys_flag: i32,
    /// System properties written after the user properties.
    pub(crate) extra_properties: &'a [(&'a str, &'a str)],
    /// RECONSUMETIMES.
    pub(crate) reconsume_times: i32,
    /// Producer time; now when absent.
    pub(crate) born_timestamp: Option<u64>,
    /// Consume queue tag code instead of the tag's hash.
    pub(crate) tag_code: Option<i64>,
    /// Return without waiting for the flush under `Sync` (RocketMQ's `WAIT=false`).
    pub(crate) no_wait: bool,
    /// Create the topic if it is missing, whatever `auto_create_topics` says (store-internal
    /// puts: deliveries, retries, dead letters).
    pub(crate) create_topic: bool,
}

/// A message checked and sized, ready to be encoded.
struct Prepared<'a> {
    msg: &'a Message,
    /// The topic written: the message's, or a schedule topic for a delayed message.
    topic: &'a str,
    /// The queue written.
    queue_id: u32,
    /// Properties a delayed message gets (DELAY / TIMER_DELIVER_MS, REAL_TOPIC, REAL_QID).
    delay_props: Vec<(&'static str, String)>,
    /// For a delay level: the delay added to the store time to make the tag code.
    schedule_delay: Option<u64>,
    opts: PutOptions<'a>,
    msg_id: MessageId,
    keys_joined: Option<String>,
    props_len: usize,
    len: usize,
    tag: i64,
    born: u64,
    record_crc: bool,
}

impl<'a> Prepared<'a> {
    /// The properties a record gets: user properties, the extra ones, then TAGS, KEYS and
    /// UNIQ_KEY.
    fn pairs(&'a self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let extra = self.opts.extra_properties;
        let user = self
            .msg
            .properties
            .iter()
            .filter(move |(k, _)| {
                !matches!(
                    k.as_str(),
                    keys::TAGS | keys::KEYS | keys::UNIQ_KEY | record::RECORD_CRC_KEY
                ) && !extra.iter().any(|(e, _)| e == k)
            })
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let delay = self.delay_props.iter().map(|(k, v)| (*k, v.as_str()));
        user.chain(extra.iter().copied())
            .chain(delay)
            .chain(self.msg.tags.as_deref().map(|t| (keys::TAGS, t)))
            .chain(self.keys_joined.as_deref().map(|k| (keys::KEYS, k)))
            .chain(std::iter::once((keys::UNIQ_KEY, self.msg_id.as_str())))
            .chain(
                self.record_crc
                    .then_some((record::RECORD_CRC_KEY, record::RECORD_CRC_PLACEHOLDER)),
            )
    }

    fn body(&self) -> &'a [u8] {
        self.opts.body.unwrap_or(&self.msg.body)
    }

    /// Encodes the record into `buf` (exactly `self.len` bytes).
    fn encode(&self, buf: &mut [u8], meta: &RecordMeta) {
        record::encode_into(buf, meta, self.body(), self.topic, self.props_len, |out| {
            properties::write(out, self.pairs());
        });
        if self.record_crc {
            record::seal_record_crc(buf);
        }
    }

    fn meta(&self, queue_id: u32, store_host: std::net::SocketAddr) -> RecordMeta {
        RecordMeta {
            queue_id,
            flag: self.msg.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: self.opts.sys_flag,
            born_timestamp: self.born as i64,
            born_host: store_host,
            store_timestamp: 0,
            store_host,
            reconsume_times: self.opts.reconsume_times,
            prepared_transaction_offset: 0,
        }
    }
}

/// Checks a message the way RocketMQ's client and broker do; nothing is written on failure.
pub(crate) fn check_message(msg: &Message, max_body: usize) -> Result<()> {
    if msg.body.is_empty() {
        return Err(Error::InvalidMessage("body is empty".into()));
    }
    if msg.body.len() > max_body {
        return Err(Error::InvalidMessage(format!(
            "body of {} bytes exceeds the maximum of {max_body}",
            msg.body.len()
        )));
    }
    if let Some(t) = &msg.tags {
        validate::property_text("tag", t)?;
    }
    for k in &msg.keys {
        validate::property_text("key", k)?;
        if k.contains(' ') {
            return Err(Error::InvalidMessage(format!(
                "key {k:?} contains a space (the key separator)"
            )));
        }
    }
    for (k, v) in &msg.properties {
        if k.is_empty() || v.is_empty() {
            return Err(Error::InvalidMessage(format!(
                "property {k:?} has an empty name or value (RocketMQ drops those)"
            )));
        }
        validate::property_text("property name", k)?;
        validate::property_text("property value", v)?;
    }
    Ok(())
}

/// Where a contiguous run of appended records landed.
struct Region {
    first_queue_offset: u64,
    physical_offset: u64,
    end: u64,
    store_ts: u64,
}

impl Core {
    pub(crate) fn put(&self, msg: &Message, queue_id: u32) -> Result<PutResult> {
        self.put_with(msg, queue_id, PutOptions::default())
    }

    fn prepare<'a>(
        &self,
        msg: &'a Message,
        queue_id: u32,
        opts: PutOptions<'a>,
        now: u64,
    ) -> Result<Prepared<'a>> {
        check_message(msg, self.config.max_message_size)?;
        let tx = opts.sys_flag & sys_flag::TRANSACTION_MASK;
        let delayable = tx == sys_flag::TRANSACTION_NOT || tx == sys_flag::TRANSACTION_COMMIT;
        let (topic, queue_id, delay_props, schedule_delay) = match msg.delay {
            Delay::Level(level) if delayable => {
                // RocketMQ's transformDelayLevelMessage: clamp, keep the real destination.
                let level = level.min(self.delay_levels.len() as u32);
                let props = vec![
                    (keys::DELAY, level.to_string()),
                    (keys::REAL_TOPIC, msg.topic.clone()),
                    (keys::REAL_QUEUE_ID, queue_id.to_string()),
                ];
                let delay = self.delay_levels[level as usize - 1];
                (SCHEDULE_TOPIC, level - 1, props, Some(delay))
            }
            Delay::At(at) if delayable && at > now => {
                let props = vec![
                    (TIMER_DELIVER_MS, at.to_string()),
                    (keys::REAL_TOPIC, msg.topic.clone()),
                    (keys::REAL_QUEUE_ID, queue_id.to_string()),
                ];
                (TIMER_TOPIC, 0, props, None)
            }
            _ => (msg.topic.as_str(), queue_id, Vec::new(), None),
        };
        let timer_tag = match msg.delay {
            Delay::At(at) if topic == TIMER_TOPIC => Some(at as i64),
            _ => None,
        };
        let user_uniq = msg
            .property(keys::UNIQ_KEY)
            .map(MessageId::parse)
            .transpose()?;
        let mut p = Prepared {
            msg,
            topic,
            queue_id,
            delay_props,
            schedule_delay,
            opts,
            msg_id: user_uniq.unwrap_or_else(|| self.ids.next(now)),
            keys_joined: (!msg.keys.is_empty()).then(|| msg.keys.join(" ")),
            props_len: 0,
            len: 0,
            tag: opts
                .tag_code
                .or(timer_tag)
                .unwrap_or_else(|| tag_code(msg.tags.as_deref())),
            born: opts.born_timestamp.unwrap_or(now),
            record_crc: self.config.record_crc,
        };
        p.props_len = properties::encoded_len(p.pairs());
        if p.props_len > record::MAX_PROPERTIES_LEN {
            return Err(Error::InvalidMessage(format!(
                "properties take {} bytes, more than {}",
                p.props_len,
                record::MAX_PROPERTIES_LEN
            )));
        }
        let meta = p.meta(0, self.config.store_host);
        p.len = record::encoded_len(&meta, p.body().len(), p.topic.len(), p.props_len)
            .ok_or_else(|| Error::InvalidMessage("record too large".into()))?;
        Ok(p)
    }

    /// Checks that `msg` could be stored (size, properties, encoding) without storing it.
    pub(crate) fn check_storable(&self, msg: &Message) -> Result<()> {
        self.prepare(msg, 0, PutOptions::default(), now_ms())
            .map(|_| ())
    }

    /// Stores one message with extra record fields.
    pub(crate) fn put_with(
        &self,
        msg: &Message,
        queue_id: u32,
        opts: PutOptions<'_>,
    ) -> Result<PutResult> {
        let p = self.prepare(msg, queue_id, opts, now_ms())?;
        let region = self.append_run(std::slice::from_ref(&p), p.queue_id)?;
        let status = if opts.no_wait {
            PutStatus::PutOk
        } else {
            self.wait_durable(region.end)?
        };
        // Like RocketMQ, a delayed message reports the queue it was sent to (and its offset in
        // the schedule queue).
        Ok(self.result(&p, &region, 0, queue_id, status))
    }

    /// Stores messages of one topic contiguously in one queue, with consecutive queue offsets:
    /// all are checked before anything is written, and they are appended as one region.
    pub(crate) fn put_batch(
        &self,
        msgs: &[Message],
        queue_id: u32,
        opts: PutOptions<'_>,
    ) -> Result<Vec<PutResult>> {
        let now = now_ms();
        if msgs.iter().any(|m| m.delay != Delay::None) {
            return Err(Error::InvalidMessage(
                "a batch cannot hold delayed messages".into(),
            ));
        }
        let prepared = msgs
            .iter()
            .map(|m| self.prepare(m, queue_id, opts, now))
            .collect::<Result<Vec<_>>>()?;
        let total: usize = prepared.iter().map(|p| p.len).sum();
        if total > self.config.max_message_size + 64 * 1024 {
            return Err(Error::InvalidMessage(format!(
                "batch of {total} bytes exceeds the maximum message size"
            )));
        }
        let region = self.append_run(&prepared, queue_id)?;
        let status = if opts.no_wait {
            PutStatus::PutOk
        } else {
            self.wait_durable(region.end)?
        };
        let mut offset = 0;
        Ok(prepared
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = self.result(p, &region, offset, queue_id, status);
                offset += p.len as u64;
                PutResult {
                    queue_offset: region.first_queue_offset + i as u64,
                    ..r
                }
            })
            .collect())
    }

    fn result(
        &self,
        p: &Prepared<'_>,
        region: &Region,
        rel: u64,
        queue_id: u32,
        status: PutStatus,
    ) -> PutResult {
        let physical_offset = region.physical_offset + rel;
        PutResult {
            status,
            msg_id: p.msg_id,
            offset_msg_id: OffsetMessageId {
                store_host: self.config.store_host,
                physical_offset,
            },
            queue_id,
            queue_offset: region.first_queue_offset,
            physical_offset,
            size: p.len as u32,
            store_timestamp: region.store_ts,
        }
    }

    /// Appends prepared records of one topic as one contiguous region of queue `queue_id`,
    /// and dispatches their consume queue units (or queues them until durable under `Sync`).
    fn append_run(&self, prepared: &[Prepared<'_>], queue_id: u32) -> Result<Region> {
        let Some(first) = prepared.first() else {
            return Err(Error::InvalidMessage("empty batch".into()));
        };
        let topic = first.topic;
        if prepared.iter().any(|p| p.topic != topic) {
            return Err(Error::InvalidMessage("a batch must have one topic".into()));
        }
        let total: usize = prepared.iter().map(|p| p.len).sum();
        let now = now_ms();
        let mut guard = self.write.lock();
        self.check_writable()?;
        let ws = &mut *guard;
        let create = first.opts.create_topic || topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC;
        let slot = self.slot(&mut ws.slots, topic, queue_id, create)?;
        let first_queue_offset = slot.next_offset;
        slot.cq
            .reserve(first_queue_offset + prepared.len() as u64 - 1)?;
        // Store timestamps never go backwards, so recovery can rely on their order.
        let store_ts = now.max(ws.last_store_ts);
        let store_host = self.config.store_host;
        let physical_offset = self.log.append(&mut ws.log, total, store_ts, |buf, phys| {
            let mut pos = 0;
            for (i, p) in prepared.iter().enumerate() {
                let mut meta = p.meta(queue_id, store_host);
                meta.queue_offset = first_queue_offset + i as u64;
                meta.physical_offset = phys + pos as u64;
                meta.store_timestamp = store_ts as i64;
                p.encode(&mut buf[pos..pos + p.len], &meta);
                pos += p.len;
            }
        })?;
        ws.last_store_ts = store_ts;
        slot.next_offset += prepared.len() as u64;
        let cq = &slot.cq;
        let mut phys = physical_offset;
        for (i, p) in prepared.iter().enumerate() {
            let unit = CqUnit {
                physical_offset: phys,
                size: p.len as u32,
                tag_code: match p.schedule_delay {
                    // The delivery time: store time plus the level's delay.
                    Some(d) => (store_ts + d) as i64,
                    None => p.tag,
                },
            };
            phys += p.len as u64;
            let queue_offset = first_queue_offset + i as u64;
            if self.is_sync() {
                self.pending.lock().push_back(PendingUnit {
                    cq: cq.clone(),
                    queue_offset,
                    unit,
                    store_ts,
                });
            } else if let Err(e) = cq.put(queue_offset, unit) {
                // The record is in the log but not in its queue: only recovery can mend that.
                self.poison();
                return Err(e);
            }
        }
        if !self.is_sync() {
            self.logics_ts.store(store_ts, Ordering::Relaxed);
        }
        drop(guard);
        if !self.is_sync() {
            self.arrivals.notify();
        }
        if topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC {
            let _ = self.schedule_wake.try_send(());
        }
        Ok(Region {
            first_queue_offset,
            physical_offset,
            end: physical_offset + total as u64,
            store_ts,
        })
    }

    /// Under `Sync`, waits (leading a group flush if needed) until `end` is durable.
    pub(crate) fn wait_durable(&self, end: u64) -> Result<PutStatus> {
        match self.config.flush_policy {
            FlushPolicy::Async { .. } => Ok(PutStatus::PutOk),
            FlushPolicy::Sync { timeout } => {
                match self
                    .group
                    .wait(end, Instant::now() + timeout, || self.flush_log())?
                {
                    Durability::Durable => Ok(PutStatus::PutOk),
                    Durability::TimedOut => Ok(PutStatus::FlushDiskTimeout),
                }
            }
        }
    }

    /// The writer's slot for a queue, creating the topic (if allowed) and queue on first use.
    fn slot<'w>(
        &self,
        slots: &'w mut SlotMap,
        topic: &str,
        queue_id: u32,
        create: bool,
    ) -> Result<&'w mut QueueSlot> {
        let known = slots
            .get(topic)
            .and_then(|v| v.get(queue_id as usize))
            .is_some_and(Option::is_some);
        if !known {
            self.add_slot(slots, topic, queue_id, create)?;
        }
        slots
            .get_mut(topic)
            .and_then(|v| v.get_mut(queue_id as usize))
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            })
    }

    fn add_slot(
        &self,
        slots: &mut SlotMap,
        topic: &str,
        queue_id: u32,
        create: bool,
    ) -> Result<()> {
        let cfg = match self.topics.get(topic) {
            Some(cfg) if queue_id < cfg.write_queue_nums || !create => cfg,
            Some(_) => self.create_topic(topic, queue_id + 1)?,
            None if create => {
                let queues = match topic {
                    SCHEDULE_TOPIC => self.delay_levels.len() as u32,
                    _ => 1,
                };
                self.create_topic(topic, queues.max(queue_id + 1))?
            }
            None if self.config.auto_create_topics => {
                self.create_topic(topic, self.config.default_topic_queues)?
            }
            None => return Err(Error::TopicNotFound(topic.to_owned())),
        };
        if queue_id >= cfg.write_queue_nums {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let cq = self.queue_or_create(topic, queue_id)?;
        let slots = slots.entry(cq.topic().clone()).or_default();
        if slots.len() <= queue_id as usize {
            slots.resize_with(queue_id as usize + 1, || None);
        }
        slots[queue_id as usize] = Some(QueueSlot {
            next_offset: cq.max_offset(),
            cq,
        });
        Ok(())
    }

    /// The queue object of `topic`/`queue_id`, created (and made visible to readers) if
    /// missing. Creation happens under the map's write lock, so there is one object per queue.
    pub(crate) fn queue_or_create(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(cq) = self.queue(topic, queue_id) {
            return Ok(cq);
        }
        let mut queues = self.queues.write();
        if let Some(cq) = queues
            .get(topic)
            .and_then(|v| v.get(queue_id as usize))
            .and_then(Clone::clone)
        {
            return Ok(cq);
        }
        let cq = Arc::new(ConsumeQueue::create(
            &self.dir,
            Arc::from(topic),
            queue_id,
            self.config.consume_queue_segment_size,
        )?);
        let v = queues.entry(cq.topic().clone()).or_default();
        let id = queue_id as usize;
        if v.len() <= id {
            v.resize_with(id + 1, || None);
        }
        v[id] = Some(cq.clone());
        Ok(cq)
    }
}

/// The consume queue tag code of a stored record, as dispatch computes it: the delivery time
/// for the schedule and timer topics, the tag's hash otherwise.
pub(crate) fn dispatch_tag_code(rec: &record::RecordView<'_>, delay_levels: &[u64]) -> i64 {
    if rec.topic == SCHEDULE_TOPIC {
        let level = (rec.meta.queue_id as usize).min(delay_levels.len().saturating_sub(1));
        let delay = delay_levels.get(level).copied().unwrap_or(1000);
        return rec.meta.store_timestamp.saturating_add(delay as i64);
    }
    if rec.topic == TIMER_TOPIC
        && let Some(at) =
            properties::get(rec.properties, TIMER_DELIVER_MS).and_then(|v| v.parse().ok())
    {
        return at;
    }
    tag_code(properties::get(rec.properties, keys::TAGS))
}
