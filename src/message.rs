//! Messages: [`Message`] (what producers build) and [`MessageExt`] (what reads return).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::format::msg_id::{MessageId, OffsetMessageId};
use crate::format::properties::{self, keys};
use crate::format::record::{RecordMeta, RecordView, sys_flag};

/// A queue of a topic: the unit of ordering, consumption and offset tracking.
///
/// ```
/// let q = mqlite::MessageQueue::new("orders", 3);
/// assert_eq!(q.to_string(), "orders:3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    /// The topic.
    pub topic: String,
    /// The queue id, below the topic's queue count.
    pub queue_id: u32,
}

impl MessageQueue {
    /// A queue of `topic`.
    pub fn new(topic: impl Into<String>, queue_id: u32) -> Self {
        MessageQueue {
            topic: topic.into(),
            queue_id,
        }
    }
}

impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.topic, self.queue_id)
    }
}

/// A message to store: topic, body, optional tag, business keys and user properties.
///
/// ```
/// use mqlite::Message;
/// let msg = Message::new("orders", b"{\"id\":1}".to_vec())
///     .with_tags("created")
///     .with_keys(["ORDER-1"])
///     .with_property("region", "eu");
/// assert_eq!(msg.tags(), Some("created"));
/// assert_eq!(msg.property("region"), Some("eu"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) topic: String,
    pub(crate) body: Vec<u8>,
    pub(crate) tags: Option<String>,
    pub(crate) keys: Vec<String>,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) flag: i32,
    pub(crate) delay: Delay,
}

/// When a message becomes visible to consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Delay {
    /// At once.
    #[default]
    None,
    /// After the delay of a level of the store's delay table (1-based).
    Level(u32),
    /// At a time, ms since the Unix epoch.
    At(u64),
}

impl Message {
    /// A message for `topic` with `body`.
    pub fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            tags: None,
            keys: Vec::new(),
            properties: Vec::new(),
            flag: 0,
            delay: Delay::None,
        }
    }

    /// Delivers the message after the delay of `level` in the store's delay table (RocketMQ's
    /// delay levels; by default 1 = 1 s, 2 = 5 s, 3 = 10 s, … 18 = 2 h; levels past the table
    /// are clamped to its last level, 0 means no delay).
    ///
    /// ```
    /// let m = mqlite::Message::new("orders", "reminder").with_delay_level(3);
    /// assert_eq!(m.delay_level(), Some(3));
    /// ```
    pub fn with_delay_level(mut self, level: u32) -> Self {
        self.delay = if level == 0 {
            Delay::None
        } else {
            Delay::Level(level)
        };
        self
    }

    /// Delivers the message at `time` (a time in the past delivers at once). Precision: 1 ms;
    /// the store delivers due messages within milliseconds of their time.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let at = SystemTime::now() + Duration::from_secs(90);
    /// let m = mqlite::Message::new("orders", "reminder").with_deliver_at(at);
    /// assert!(m.deliver_at().is_some());
    /// ```
    pub fn with_deliver_at(mut self, time: std::time::SystemTime) -> Self {
        let ms = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.delay = Delay::At(ms);
        self
    }

    /// The delay level, if one is set.
    pub fn delay_level(&self) -> Option<u32> {
        match self.delay {
            Delay::Level(l) => Some(l),
            _ => None,
        }
    }

    /// The delivery time, if one is set.
    pub fn deliver_at(&self) -> Option<std::time::SystemTime> {
        match self.delay {
            Delay::At(ms) => Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
            _ => None,
        }
    }

    /// Sets the tag (stored as the `TAGS` property; its hash is the consume queue tag code).
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// Sets the business keys (stored space-separated as the `KEYS` property).
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a user property; a later value for the same name replaces an earlier one.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let value = value.into();
        if let Some(slot) = self.properties.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            self.properties.push((name, value));
        }
        self
    }

    /// Sets the application flag (RocketMQ `Message.flag`), opaque to the store.
    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out of the message.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.tags.as_deref()
    }

    /// The business keys, in order (the same shape as [`MessageExt::keys`]).
    ///
    /// ```
    /// let m = mqlite::Message::new("t", "x").with_keys(["A", "B"]);
    /// assert_eq!(m.keys().collect::<Vec<_>>(), ["A", "B"]);
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// A user property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All user properties in insertion order.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The application flag.
    pub fn flag(&self) -> i32 {
        self.flag
    }
}

/// A stored message as read back: everything in its CommitLog record.
///
/// Messages read together share one buffer for their bodies and properties, so a batch costs
/// one allocation; cloning a message is cheap.
#[derive(Clone)]
pub struct MessageExt {
    pub(crate) topic: Arc<str>,
    /// Bodies and raw properties strings of a batch of messages.
    data: Arc<Vec<u8>>,
    /// This message's body starts here in `data`; its properties follow it.
    start: usize,
    body_len: usize,
    props_len: usize,
    pub(crate) queue_id: u32,
    pub(crate) queue_offset: u64,
    pub(crate) physical_offset: u64,
    pub(crate) store_size: u32,
    pub(crate) flag: i32,
    pub(crate) sys_flag: i32,
    pub(crate) body_crc: u32,
    pub(crate) born_timestamp: i64,
    pub(crate) born_host: SocketAddr,
    pub(crate) store_timestamp: i64,
    pub(crate) store_host: SocketAddr,
    pub(crate) reconsume_times: i32,
    pub(crate) prepared_transaction_offset: i64,
}

impl PartialEq for MessageExt {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.body() == other.body()
            && self.raw_properties() == other.raw_properties()
            && self.queue_id == other.queue_id
            && self.queue_offset == other.queue_offset
            && self.physical_offset == other.physical_offset
            && self.store_size == other.store_size
            && self.flag == other.flag
            && self.sys_flag == other.sys_flag
            && self.body_crc == other.body_crc
            && self.born_timestamp == other.born_timestamp
            && self.born_host == other.born_host
            && self.store_timestamp == other.store_timestamp
            && self.store_host == other.store_host
            && self.reconsume_times == other.reconsume_times
            && self.prepared_transaction_offset == other.prepared_transaction_offset
    }
}

impl Eq for MessageExt {}

/// The fixed fields of a record, kept while a batch's buffer fills.
struct Pending {
    topic: Arc<str>,
    start: usize,
    body_len: usize,
    props_len: usize,
    total_size: u32,
    body_crc: u32,
    meta: RecordMeta,
}

impl Pending {
    /// Copies the record's body (inflated if compressed) and properties to the end of `buf`.
    fn copy(buf: &mut Vec<u8>, rec: &RecordView<'_>, topic: Arc<str>) -> Pending {
        let start = buf.len();
        buf.reserve(rec.body.len() + rec.properties.len());
        if !inflate_into(rec, buf) {
            buf.truncate(start);
            buf.extend_from_slice(rec.body);
        }
        let body_len = buf.len() - start;
        buf.extend_from_slice(rec.properties);
        Pending {
            topic,
            start,
            body_len,
            props_len: rec.properties.len(),
            total_size: rec.total_size,
            body_crc: rec.body_crc,
            meta: rec.meta,
        }
    }
}

/// Builds the messages of one read into a shared buffer.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    pending: Vec<Pending>,
}

impl Batch {
    pub(crate) fn with_capacity(messages: usize) -> Batch {
        Batch {
            buf: Vec::new(),
            pending: Vec::with_capacity(messages),
        }
    }

    /// Adds a record, inflating a zlib-compressed body.
    pub(crate) fn push(&mut self, rec: &RecordView<'_>, topic: Arc<str>) {
        if self.pending.is_empty() {
            // Room for a batch of messages like the first (growing the buffer a doubling at a
            // time copied each batch several times over).
            let each = rec.body.len() + rec.properties.len();
            self.buf
                .reserve(each.saturating_mul(self.pending.capacity().clamp(1, 64)));
        }
        let p = Pending::copy(&mut self.buf, rec, topic);
        self.pending.push(p);
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn finish(self) -> Vec<MessageExt> {
        let data = Arc::new(self.buf);
        self.pending
            .into_iter()
            .map(|p| MessageExt::build(p, data.clone()))
            .collect()
    }
}

impl MessageExt {
    fn build(p: Pending, data: Arc<Vec<u8>>) -> MessageExt {
        MessageExt {
            topic: p.topic,
            data,
            start: p.start,
            body_len: p.body_len,
            props_len: p.props_len,
            queue_id: p.meta.queue_id,
            queue_offset: p.meta.queue_offset,
            physical_offset: p.meta.physical_offset,
            store_size: p.total_size,
            flag: p.meta.flag,
            sys_flag: p.meta.sys_flag,
            body_crc: p.body_crc,
            born_timestamp: p.meta.born_timestamp,
            born_host: p.meta.born_host,
            store_timestamp: p.meta.store_timestamp,
            store_host: p.meta.store_host,
            reconsume_times: p.meta.reconsume_times,
            prepared_transaction_offset: p.meta.prepared_transaction_offset,
        }
    }

    /// Builds one message from its record, inflating a zlib-compressed body.
    pub(crate) fn from_record(rec: &RecordView<'_>, topic: Arc<str>) -> MessageExt {
        let mut buf = Vec::new();
        let p = Pending::copy(&mut buf, rec, topic);
        MessageExt::build(p, Arc::new(buf))
    }

    /// A new message for `topic` with this one's body, tag, keys, flag and the properties
    /// `keep` accepts (system ones a copy should not inherit are the caller's to drop).
    pub(crate) fn copy_to(&self, topic: String, keep: impl Fn(&str) -> bool) -> Message {
        let mut msg = Message::new(topic, self.body().to_vec());
        msg.tags = self.tags().map(str::to_owned);
        msg.keys = self.keys().map(str::to_owned).collect();
        msg.flag = self.flag;
        msg.properties = self
            .properties()
            .filter(|(k, _)| *k != keys::TAGS && *k != keys::KEYS && keep(k))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        msg
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The body (inflated if it was stored compressed).
    pub fn body(&self) -> &[u8] {
        &self.data[self.start..self.start + self.body_len]
    }

    /// The client message id: the `UNIQ_KEY` property, or the offset msgId when it is absent
    /// (or, never the case for ids RocketMQ clients write, longer than
    /// [`MessageId::MAX_LEN`] or not ASCII: [`MessageExt::property`] has the raw value). The
    /// same type as [`SendResult::msg_id`](crate::SendResult::msg_id).
    pub fn msg_id(&self) -> MessageId {
        self.property(keys::UNIQ_KEY)
            .and_then(MessageId::from_stored)
            .unwrap_or_else(|| self.offset_msg_id().into())
    }

    /// The store's id of the record: store address and CommitLog offset.
    pub fn offset_msg_id(&self) -> OffsetMessageId {
        OffsetMessageId {
            store_host: self.store_host,
            physical_offset: self.physical_offset,
        }
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.property(keys::TAGS)
    }

    /// The business keys, in order (the same shape as [`Message::keys`]).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.property(keys::KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// A property (user or system).
    pub fn property(&self, name: &str) -> Option<&str> {
        properties::get(self.raw_properties(), name)
    }

    /// All properties, system ones (`UNIQ_KEY`, `TAGS`, `KEYS`, …) included.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        properties::iter(self.raw_properties())
    }

    /// The raw properties string as stored.
    pub fn raw_properties(&self) -> &[u8] {
        let from = self.start + self.body_len;
        &self.data[from..from + self.props_len]
    }

    /// Queue id within the topic.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Position in the queue.
    pub fn queue_offset(&self) -> u64 {
        self.queue_offset
    }

    /// CommitLog offset of the record.
    pub fn physical_offset(&self) -> u64 {
        self.physical_offset
    }

    /// Size of the record in the CommitLog.
    pub fn store_size(&self) -> u32 {
        self.store_size
    }

    /// The application flag.
    pub fn flag(&self) -> i32 {
        self.flag
    }

    /// SYSFLAG bits of the record.
    pub fn sys_flag(&self) -> i32 {
        self.sys_flag
    }

    /// Whether the body is stored compressed (it is returned inflated by [`MessageExt::body`]).
    pub fn is_compressed(&self) -> bool {
        self.sys_flag & sys_flag::COMPRESSED != 0
    }

    /// Masked CRC32 of the stored body.
    pub fn body_crc(&self) -> u32 {
        self.body_crc
    }

    /// Producer clock when the message was created, ms since the Unix epoch.
    pub fn born_timestamp(&self) -> i64 {
        self.born_timestamp
    }

    /// Producer address.
    pub fn born_host(&self) -> SocketAddr {
        self.born_host
    }

    /// Store clock when the record was written, ms since the Unix epoch.
    pub fn store_timestamp(&self) -> i64 {
        self.store_timestamp
    }

    /// Store address.
    pub fn store_host(&self) -> SocketAddr {
        self.store_host
    }

    /// How many times the message was retried.
    pub fn reconsume_times(&self) -> i32 {
        self.reconsume_times
    }

    /// For a transaction commit record, the CommitLog offset of its half message.
    pub fn prepared_transaction_offset(&self) -> i64 {
        self.prepared_transaction_offset
    }
}

impl fmt::Debug for MessageExt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageExt")
            .field("topic", &self.topic)
            .field("queue_id", &self.queue_id)
            .field("queue_offset", &self.queue_offset)
            .field("physical_offset", &self.physical_offset)
            .field("msg_id", &self.msg_id())
            .field("tags", &self.tags())
            .field("body_len", &self.body_len)
            .field("store_timestamp", &self.store_timestamp)
            .finish_non_exhaustive()
    }
}

/// Inflates a compressed (zlib, or the older "compressed, no type") body into `out`. Returns
/// false when the body is not compressed that way or does not inflate; the stored bytes are
/// then used as they are.
pub(crate) fn inflate_into(rec: &RecordView<'_>, out: &mut Vec<u8>) -> bool {
    use std::io::Read;
    let flag = rec.meta.sys_flag;
    if flag & sys_flag::COMPRESSED == 0 {
        return false;
    }
    let kind = flag & sys_flag::COMPRESSION_TYPE_MASK;
    if kind != 0 && kind != sys_flag::COMPRESSION_ZLIB {
        return false;
    }
    // A damaged body must not inflate without bound.
    const LIMIT: u64 = 256 << 20;
    flate2::read::ZlibDecoder::new(rec.body)
        .take(LIMIT + 1)
        .read_to_end(out)
        .is_ok_and(|n| n as u64 <= LIMIT)
}
