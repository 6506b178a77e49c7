//! The broker's put path: validate a message, turn a delayed one into its schedule-topic
//! copy, size and encode its record for the engine's append, and wait for the flush under
//! `Sync`.

use super::{Broker, validate};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::hash::tag_code;
use crate::format::msg_id::{MessageId, OffsetMessageId};
use crate::format::properties::{self, keys};
use crate::format::record::{self, RecordMeta, sys_flag};
use crate::log::group_commit::Durability;
use crate::log::{Placement, Record, Region};
use crate::message::{Delay, Message};

pub(crate) use crate::format::system::{SCHEDULE_TOPIC, TIMER_TOPIC};

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
    /// PREPARED_TRANSACTION_OFFSET: for a committed transactional message, the CommitLog
    /// offset of its half message.
    pub(crate) prepared_offset: i64,
}

/// A message checked and sized, ready to be encoded.
struct Prepared<'a> {
    msg: &'a Message,
    /// The topic written: the message's, or a schedule topic for a delayed message.
    topic: &'a str,
    /// The queue written.
    queue_id: u32,
    /// Properties a delayed message gets (DELAY, or TIMER_DELIVER_MS and TIMER_OUT_MS; then
    /// REAL_TOPIC, REAL_QID).
    delay_props: Vec<(&'static str, String)>,
    /// For a delay level: the delay added to the store time to make the tag code.
    schedule_delay: Option<u64>,
    opts: PutOptions<'a>,
    msg_id: MessageId,
    keys_joined: Option<String>,
    /// The encoded properties, rendered once.
    props: PropBuf,
    len: usize,
    tag: i64,
    born: u64,
    record_crc: bool,
    store_host: std::net::SocketAddr,
}

/// Encoded properties: on the stack when they are short (the usual case: UNIQ_KEY, maybe
/// TAGS, KEYS and the record CRC), so a put renders them once without allocating.
struct PropBuf {
    inline: [u8; PropBuf::INLINE],
    len: usize,
    heap: Vec<u8>,
}

impl Default for PropBuf {
    fn default() -> Self {
        PropBuf {
            inline: [0; PropBuf::INLINE],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl PropBuf {
    const INLINE: usize = 160;

    fn render<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> PropBuf {
        let mut buf = PropBuf::default();
        // Internal iteration: a chain of adapters folds much faster than it steps.
        pairs.for_each(|(k, v)| {
            let need = k.len() + v.len() + 2;
            if buf.heap.is_empty() && buf.len + need <= PropBuf::INLINE {
                let out = &mut buf.inline[buf.len..buf.len + need];
                out[..k.len()].copy_from_slice(k);
                out[k.len()] = properties::NAME_VALUE_SEPARATOR;
                out[k.len() + 1..need - 1].copy_from_slice(v);
                out[need - 1] = properties::PROPERTY_SEPARATOR;
                buf.len += need;
            } else {
                if buf.heap.is_empty() {
                    buf.heap.extend_from_slice(&buf.inline[..buf.len]);
                }
                buf.heap.extend_from_slice(k);
                buf.heap.push(properties::NAME_VALUE_SEPARATOR);
                buf.heap.extend_from_slice(v);
                buf.heap.push(properties::PROPERTY_SEPARATOR);
            }
        });
        buf
    }

    fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

impl<'a> Prepared<'a> {
    /// The properties a record gets: user properties, the extra ones, then TAGS, KEYS and
    /// UNIQ_KEY, as the bytes of their names and values.
    fn pairs(&'a self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone + 'a {
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
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            // The id is ASCII by construction: no UTF-8 check on the way.
            .chain(std::iter::once((
                keys::UNIQ_KEY.as_bytes(),
                self.msg_id.as_bytes(),
            )))
            .chain(self.record_crc.then_some((
                record::RECORD_CRC_KEY.as_bytes(),
                record::RECORD_CRC_PLACEHOLDER.as_bytes(),
            )))
    }

    fn body(&self) -> &'a [u8] {
        self.opts.body.unwrap_or(&self.msg.body)
    }

    /// Encodes the record into `buf` (exactly `self.len` bytes).
    fn encode_record(&self, buf: &mut [u8], meta: &RecordMeta) {
        let props = self.props.as_slice();
        record::encode_into(buf, meta, self.body(), self.topic, props.len(), |out| {
            out.copy_from_slice(props);
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
            prepared_transaction_offset: self.opts.prepared_offset,
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

impl Broker {
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
        check_message(msg, self.config().max_message_size)?;
        let tx = opts.sys_flag & sys_flag::TRANSACTION_MASK;
        let delayable = tx == sys_flag::TRANSACTION_NOT || tx == sys_flag::TRANSACTION_COMMIT;
        let (topic, queue_id, delay_props, schedule_delay) = match msg.delay {
            Delay::Level(level) if delayable => {
                // RocketMQ's transformDelayLevelMessage: clamp, keep the real destination.
                let level = level.min(self.delay_table().len() as u32);
                let props = vec![
                    (keys::DELAY, level.to_string()),
                    (keys::REAL_TOPIC, msg.topic.clone()),
                    (keys::REAL_QUEUE_ID, queue_id.to_string()),
                ];
                let delay = self.delay_table()[level as usize - 1];
                (SCHEDULE_TOPIC, level - 1, props, Some(delay))
            }
            Delay::At(at) if delayable && at > now => {
                // RocketMQ 5's transformTimerMessage: the client's TIMER_DELIVER_MS stays, the
                // broker's delivery time goes to TIMER_OUT_MS (kept at mqlite's 1 ms precision
                // rather than rounded down to a wheel slot, so nothing is delivered early), the
                // real destination to REAL_TOPIC / REAL_QID, and the tag code stays the tag's
                // hash.
                let at = at.to_string();
                let props = vec![
                    (keys::TIMER_DELIVER_MS, at.clone()),
                    (keys::TIMER_OUT_MS, at),
                    (keys::REAL_TOPIC, msg.topic.clone()),
                    (keys::REAL_QUEUE_ID, queue_id.to_string()),
                ];
                (TIMER_TOPIC, 0, props, None)
            }
            _ => (msg.topic.as_str(), queue_id, Vec::new(), None),
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
            props: PropBuf::default(),
            len: 0,
            tag: opts
                .tag_code
                .unwrap_or_else(|| tag_code(msg.tags.as_deref())),
            born: opts.born_timestamp.unwrap_or(now),
            record_crc: self.config().record_crc,
            store_host: self.config().store_host,
        };
        p.props = PropBuf::render(p.pairs());
        let props_len = p.props.as_slice().len();
        if props_len > record::MAX_PROPERTIES_LEN {
            return Err(Error::InvalidMessage(format!(
                "properties take {props_len} bytes, more than {}",
                record::MAX_PROPERTIES_LEN
            )));
        }
        let meta = p.meta(0, self.config().store_host);
        p.len = record::encoded_len(&meta, p.body().len(), p.topic.len(), props_len)
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
        let now = now_ms();
        let p = self.prepare(msg, queue_id, opts, now)?;
        let region = self.append_run(std::slice::from_ref(&p), p.queue_id, now)?;
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
        if total > crate::log::commitlog::max_append(self.config().max_message_size) {
            return Err(Error::InvalidMessage(format!(
                "batch of {total} bytes exceeds the maximum message size"
            )));
        }
        let region = self.append_run(&prepared, queue_id, now)?;
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
                store_host: self.config().store_host,
                physical_offset,
            },
            queue_id,
            queue_offset: region.first_queue_offset,
            physical_offset,
            size: p.len as u32,
            store_timestamp: region.store_ts,
        }
    }

    /// Appends prepared records of one topic as one contiguous region of queue `queue_id`
    /// (creating the topic or queue first when allowed).
    fn append_run(&self, prepared: &[Prepared<'_>], queue_id: u32, now: u64) -> Result<Region> {
        let Some(first) = prepared.first() else {
            return Err(Error::InvalidMessage("empty batch".into()));
        };
        let topic = first.topic;
        if prepared[1..].iter().any(|p| p.topic != topic) {
            return Err(Error::InvalidMessage("a batch must have one topic".into()));
        }
        let scheduled = topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC;
        if scheduled {
            self.ensure_schedule_service()?;
        }
        let create = first.opts.create_topic || scheduled;
        let region = self.engine().append(topic, queue_id, prepared, now, || {
            self.queue_for_put(topic, queue_id, create)
        })?;
        if scheduled {
            let _ = self.schedule_wake.try_send(());
        }
        self.after_put_at(region.physical_offset);
        Ok(region)
    }

    /// Under `Sync`, waits (leading a group flush if needed) until `end` is durable.
    pub(crate) fn wait_durable(&self, end: u64) -> Result<PutStatus> {
        Ok(match self.engine().wait_durable(end)? {
            Durability::Durable => PutStatus::PutOk,
            Durability::TimedOut => PutStatus::FlushDiskTimeout,
        })
    }
}

impl Record for Prepared<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn encode(&self, buf: &mut [u8], at: &Placement) {
        let mut meta = self.meta(at.queue_id, self.store_host);
        meta.queue_offset = at.queue_offset;
        meta.physical_offset = at.physical_offset;
        meta.store_timestamp = at.store_ts as i64;
        self.encode_record(buf, &meta);
    }

    fn tag_code(&self, store_ts: u64) -> i64 {
        match self.schedule_delay {
            // The delivery time: store time plus the level's delay.
            Some(d) => (store_ts + d) as i64,
            None => self.tag,
        }
    }
}
