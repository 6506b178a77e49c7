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
use crate::message::Message;

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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

/// The properties a record gets: user properties, then TAGS, KEYS and UNIQ_KEY.
struct Props<'a> {
    msg: &'a Message,
    keys_joined: Option<String>,
    uniq: &'a str,
}

impl<'a> Props<'a> {
    fn pairs(&'a self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let user = self
            .msg
            .properties
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), keys::TAGS | keys::KEYS | keys::UNIQ_KEY))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        user.chain(self.msg.tags.as_deref().map(|t| (keys::TAGS, t)))
            .chain(self.keys_joined.as_deref().map(|k| (keys::KEYS, k)))
            .chain(std::iter::once((keys::UNIQ_KEY, self.uniq)))
    }
}

fn check_message(msg: &Message, max_body: usize) -> Result<()> {
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

impl Core {
    pub(crate) fn put(&self, msg: &Message, queue_id: u32) -> Result<PutResult> {
        check_message(msg, self.config.max_message_size)?;
        let now = now_ms();
        let user_uniq = msg
            .property(keys::UNIQ_KEY)
            .map(MessageId::parse)
            .transpose()?;
        let msg_id = user_uniq.unwrap_or_else(|| self.ids.next(now));
        let keys_joined = (!msg.keys.is_empty()).then(|| msg.keys.join(" "));
        let props = Props {
            msg,
            keys_joined,
            uniq: msg_id.as_str(),
        };
        let props_len = properties::encoded_len(props.pairs());
        if props_len > record::MAX_PROPERTIES_LEN {
            return Err(Error::InvalidMessage(format!(
                "properties take {props_len} bytes, more than {}",
                record::MAX_PROPERTIES_LEN
            )));
        }
        let mut meta = RecordMeta {
            queue_id,
            flag: msg.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: sys_flag::TRANSACTION_NOT,
            born_timestamp: now as i64,
            born_host: self.config.store_host,
            store_timestamp: now as i64,
            store_host: self.config.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let len = record::encoded_len(&meta, msg.body.len(), msg.topic.len(), props_len)
            .ok_or_else(|| Error::InvalidMessage("record too large".into()))?;
        let tag = tag_code(msg.tags.as_deref());

        let mut guard = self.write.lock();
        self.check_writable()?;
        let ws = &mut *guard;
        let slot = self.slot(&mut ws.slots, &msg.topic, queue_id)?;
        let queue_offset = slot.next_offset;
        slot.cq.reserve(queue_offset)?;
        // Store timestamps never go backwards, so recovery can rely on their order.
        let store_ts = now.max(ws.last_store_ts);
        meta.queue_offset = queue_offset;
        meta.store_timestamp = store_ts as i64;
        let appended = self.log.append(&mut ws.log, len, store_ts, |buf, phys| {
            meta.physical_offset = phys;
            record::encode_into(buf, &meta, &msg.body, &msg.topic, props_len, |out| {
                properties::write(out, props.pairs());
            });
        })?;
        ws.last_store_ts = store_ts;
        slot.next_offset += 1;
        let cq = &slot.cq;
        let unit = CqUnit {
            physical_offset: appended.physical_offset,
            size: appended.size,
            tag_code: tag,
        };
        let timeout = match self.config.flush_policy {
            FlushPolicy::Sync { timeout } => Some(timeout),
            FlushPolicy::Async { .. } => None,
        };
        if timeout.is_some() {
            self.pending.lock().push_back(PendingUnit {
                cq: cq.clone(),
                queue_offset,
                unit,
                store_ts,
            });
        } else {
            let r = cq.put(queue_offset, unit);
            if let Err(e) = r {
                // The record is in the log but not in its queue: only recovery can mend that.
                self.poison();
                return Err(e);
            }
            self.logics_ts.store(store_ts, Ordering::Relaxed);
        }
        drop(guard);

        let status = match timeout {
            None => PutStatus::PutOk,
            Some(t) => {
                let end = appended.physical_offset + u64::from(appended.size);
                match self
                    .group
                    .wait(end, Instant::now() + t, || self.flush_log())?
                {
                    Durability::Durable => PutStatus::PutOk,
                    Durability::TimedOut => PutStatus::FlushDiskTimeout,
                }
            }
        };
        Ok(PutResult {
            status,
            msg_id,
            offset_msg_id: OffsetMessageId {
                store_host: self.config.store_host,
                physical_offset: appended.physical_offset,
            },
            queue_id,
            queue_offset,
            physical_offset: appended.physical_offset,
            size: appended.size,
            store_timestamp: store_ts,
        })
    }

    /// The writer's slot for a queue, creating the topic (if allowed) and queue on first use.
    fn slot<'w>(
        &self,
        slots: &'w mut SlotMap,
        topic: &str,
        queue_id: u32,
    ) -> Result<&'w mut QueueSlot> {
        let known = slots
            .get(topic)
            .and_then(|v| v.get(queue_id as usize))
            .is_some_and(Option::is_some);
        if !known {
            self.add_slot(slots, topic, queue_id)?;
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

    fn add_slot(&self, slots: &mut SlotMap, topic: &str, queue_id: u32) -> Result<()> {
        let cfg = match self.topics.get(topic) {
            Some(cfg) => cfg,
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
        let cq = match self.queue(topic, queue_id) {
            Some(cq) => cq,
            None => {
                let cq = Arc::new(ConsumeQueue::create(
                    &self.dir,
                    Arc::from(topic),
                    queue_id,
                    self.config.consume_queue_segment_size,
                )?);
                self.register_queue(cq.clone());
                cq
            }
        };
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

    /// Makes a queue visible to readers.
    pub(crate) fn register_queue(&self, cq: Arc<ConsumeQueue>) {
        let mut queues = self.queues.write();
        let v = queues.entry(cq.topic().clone()).or_default();
        let id = cq.queue_id() as usize;
        if v.len() <= id {
            v.resize_with(id + 1, || None);
        }
        v[id] = Some(cq);
    }
}
