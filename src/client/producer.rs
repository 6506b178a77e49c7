//! The producer: RocketMQ's `DefaultMQProducer` over an in-process store.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use parking_lot::Mutex;

use super::async_send::AsyncSender;
use crate::broker::put::PutOptions;
use crate::broker::put::{PutResult, PutStatus};
use crate::broker::runtime::Runtime;
use crate::broker::validate;
use crate::error::{Error, Result};
use crate::format::hash::java_string_hash;
use crate::format::msg_id::{MessageId, OffsetMessageId};
use crate::format::record::sys_flag;
use crate::message::{Message, MessageQueue};

/// Outcome of a send (RocketMQ `SendStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendStatus {
    /// Stored (and durable under `FlushPolicy::Sync`).
    SendOk,
    /// Stored, but not flushed within the `Sync` timeout.
    FlushDiskTimeout,
}

impl From<PutStatus> for SendStatus {
    fn from(s: PutStatus) -> Self {
        match s {
            PutStatus::PutOk => SendStatus::SendOk,
            PutStatus::FlushDiskTimeout => SendStatus::FlushDiskTimeout,
        }
    }
}

/// What a successful send reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendResult {
    /// Durability.
    pub status: SendStatus,
    /// The client message id (`UNIQ_KEY`).
    pub msg_id: MessageId,
    /// The store's id of the record (address and CommitLog offset).
    pub offset_msg_id: OffsetMessageId,
    /// The queue the message went to.
    pub queue: MessageQueue,
    /// Its offset in that queue.
    pub queue_offset: u64,
}

impl SendResult {
    fn from_put(topic: &str, r: &PutResult) -> SendResult {
        SendResult {
            status: r.status.into(),
            msg_id: r.msg_id,
            offset_msg_id: r.offset_msg_id,
            queue: MessageQueue::new(topic, r.queue_id),
            queue_offset: r.queue_offset,
        }
    }
}

/// A failed send: the error, and the message that was not stored, handed back.
pub struct SendError<T = Message> {
    inner: Box<(Error, T)>,
}

impl<T> SendError<T> {
    pub(crate) fn new(error: Error, message: T) -> Self {
        SendError {
            inner: Box::new((error, message)),
        }
    }

    /// Why the send failed.
    pub fn error(&self) -> &Error {
        &self.inner.0
    }

    /// The message (or batch) that was not stored.
    pub fn message(&self) -> &T {
        &self.inner.1
    }

    /// Takes the message back.
    pub fn into_message(self) -> T {
        self.inner.1
    }

    /// The error and the message.
    pub fn into_parts(self) -> (Error, T) {
        *self.inner
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("error", self.error())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send failed: {}", self.error())
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error())
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Error {
        e.into_parts().0
    }
}

/// Producer settings, with RocketMQ's defaults.
#[derive(Debug, Clone)]
pub(crate) struct ProducerOptions {
    pub(crate) compress_over: usize,
    pub(crate) compress_level: u32,
    pub(crate) max_in_flight: usize,
    pub(crate) send_timeout: Duration,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            compress_over: 4096,
            compress_level: 5,
            max_in_flight: 10_000,
            send_timeout: Duration::from_secs(3),
        }
    }
}

/// What a producer and its background sender share.
pub(crate) struct Shared {
    pub(crate) store: Arc<Runtime>,
    pub(crate) group: String,
    pub(crate) options: ProducerOptions,
    round_robin: AtomicUsize,
    /// The group name passed its check (done at the first send).
    group_valid: AtomicBool,
}

/// Sends messages to a store. `Clone + Send + Sync`; clones share queue selection and the
/// asynchronous send queue. Obtained from `Store::producer`.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// let producer = store.producer("order-service")?;
/// let r = producer.send(mqlite::Message::new("orders", "order 1 created").with_tags("created"))?;
/// assert_eq!(r.status, mqlite::SendStatus::SendOk);
/// assert_eq!(r.queue.topic, "orders");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Producer {
    pub(crate) inner: Arc<Shared>,
    /// Started on the first `send_async`; its threads stop once every clone is dropped.
    async_sender: Arc<Mutex<Option<AsyncSender>>>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("group", &self.inner.group)
            .finish_non_exhaustive()
    }
}

impl Producer {
    pub(crate) fn new(store: Arc<Runtime>, group: &str, options: ProducerOptions) -> Producer {
        // Start round-robin at a random queue, like RocketMQ's ThreadLocalIndex.
        let start = std::collections::hash_map::RandomState::new();
        let start = std::hash::BuildHasher::hash_one(&start, group) as usize;
        Producer {
            inner: Arc::new(Shared {
                store,
                group: group.to_owned(),
                options,
                round_robin: AtomicUsize::new(start & 0x7FFF_FFFF),
                group_valid: AtomicBool::new(false),
            }),
            async_sender: Arc::new(Mutex::new(None)),
        }
    }

    fn with_options(self, f: impl FnOnce(&mut ProducerOptions)) -> Producer {
        let mut options = self.inner.options.clone();
        f(&mut options);
        Producer::new(self.inner.store.clone(), &self.inner.group, options)
    }

    /// Bodies of at least `bytes` are stored zlib-compressed (RocketMQ
    /// `compressMsgBodyOverHowmuch`, default 4096). Consumers always get the original body.
    pub fn compress_over(self, bytes: usize) -> Producer {
        self.with_options(|o| o.compress_over = bytes)
    }

    /// Most [`Producer::send_async`] calls in flight at once (default 10,000).
    pub fn max_in_flight(self, n: usize) -> Producer {
        self.with_options(|o| o.max_in_flight = n.max(1))
    }

    /// How long [`Producer::send_async`] waits for room in a full in-flight queue (default 3 s).
    pub fn send_timeout(self, timeout: Duration) -> Producer {
        self.with_options(|o| o.send_timeout = timeout)
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    fn send_in(
        &self,
        msg: Message,
        pick: impl FnOnce(&Shared, u32) -> Result<u32>,
    ) -> Result<SendResult, SendError> {
        let queue_id = self
            .inner
            .check(&msg)
            .and_then(|()| self.inner.queue_count_for(&msg))
            .and_then(|n| pick(&self.inner, n));
        let queue_id = match queue_id {
            Ok(q) => q,
            Err(error) => return Err(SendError::new(error, msg)),
        };
        match self.inner.store_in(&msg, queue_id, false) {
            Ok(r) => Ok(SendResult::from_put(&msg.topic, &r)),
            Err(error) => Err(SendError::new(error, msg)),
        }
    }

    /// Sends `msg` to the next queue of its topic (round robin) and returns once it is stored
    /// (under `FlushPolicy::Sync`: durable, or `FlushDiskTimeout`). On failure the message comes
    /// back in the [`SendError`].
    pub fn send(&self, msg: Message) -> Result<SendResult, SendError> {
        self.send_in(msg, |p, n| Ok(p.next_queue(n)))
    }

    /// Sends `msg` to a given queue of its topic.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 4)?;
    /// let q = mqlite::MessageQueue::new("orders", 2);
    /// let r = store.producer("p")?.send_to(mqlite::Message::new("orders", "x"), &q)?;
    /// assert_eq!(r.queue, q);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_to(&self, msg: Message, queue: &MessageQueue) -> Result<SendResult, SendError> {
        if queue.topic != msg.topic {
            let error = Error::InvalidMessage(format!(
                "queue {queue} is not a queue of the message's topic {:?}",
                msg.topic
            ));
            return Err(SendError::new(error, msg));
        }
        let wanted = queue.queue_id;
        let topic = msg.topic.clone();
        self.send_in(msg, move |_, n| {
            if wanted < n {
                Ok(wanted)
            } else {
                Err(Error::QueueNotFound {
                    topic,
                    queue_id: wanted,
                })
            }
        })
    }

    /// Sends `msg` to the queue `selector` picks among the topic's queues (an index into the
    /// slice; out of range is an error).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let p = store.producer("p")?;
    /// let r = p.send_with_selector(mqlite::Message::new("t", "x"), |queues, _msg| queues.len() - 1)?;
    /// assert_eq!(r.queue.queue_id, 3); // auto-created topics have 4 queues
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_with_selector<F>(&self, msg: Message, selector: F) -> Result<SendResult, SendError>
    where
        F: FnOnce(&[MessageQueue], &Message) -> usize,
    {
        let sel_msg = msg.clone();
        self.send_in(msg, move |_, n| {
            let queues: Vec<MessageQueue> = (0..n)
                .map(|q| MessageQueue::new(sel_msg.topic.clone(), q))
                .collect();
            let i = selector(&queues, &sel_msg);
            queues
                .get(i)
                .map(|q| q.queue_id)
                .ok_or(Error::QueueNotFound {
                    topic: sel_msg.topic.clone(),
                    queue_id: i as u32,
                })
        })
    }

    /// Sends `msg` to the queue chosen by `key`: the same key always maps to the same queue
    /// while the topic's queue count does not change (RocketMQ `SelectMessageQueueByHash`:
    /// `|javaHash(key)| % queues`), so messages of one key stay in order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let p = store.producer("p")?;
    /// let a = p.send_ordered(mqlite::Message::new("orders", "created"), "ORDER-7")?;
    /// let b = p.send_ordered(mqlite::Message::new("orders", "paid"), "ORDER-7")?;
    /// assert_eq!(a.queue, b.queue);
    /// assert_eq!(b.queue_offset, a.queue_offset + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_ordered(
        &self,
        msg: Message,
        key: impl AsRef<str>,
    ) -> Result<SendResult, SendError> {
        let hash = i64::from(java_string_hash(key.as_ref())).abs();
        self.send_in(msg, move |_, n| Ok((hash % i64::from(n)) as u32))
    }

    /// Stores `msg` without waiting for the flush, even under `FlushPolicy::Sync` (RocketMQ's
    /// oneway send; nothing is reported but errors found before storing).
    pub fn send_oneway(&self, msg: Message) -> Result<(), SendError> {
        let result = self
            .inner
            .pick_round_robin(&msg)
            .and_then(|q| self.inner.store_in(&msg, q, true));
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(SendError::new(error, msg)),
        }
    }

    /// Sends messages of one topic as one batch: all go to one queue with consecutive queue
    /// offsets, appended as a single region; every message is checked before anything is
    /// written. Batches are never compressed (as in RocketMQ). Returns one result per message.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let p = store.producer("p")?;
    /// let msgs = (0..3).map(|i| mqlite::Message::new("t", format!("m{i}"))).collect();
    /// let rs = p.send_batch(msgs)?;
    /// assert_eq!(rs[2].queue_offset, rs[0].queue_offset + 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_batch(
        &self,
        msgs: Vec<Message>,
    ) -> Result<Vec<SendResult>, SendError<Vec<Message>>> {
        let checked = (|| {
            let first = msgs
                .first()
                .ok_or_else(|| Error::InvalidMessage("empty batch".into()))?;
            if msgs.iter().any(|m| m.topic != first.topic) {
                return Err(Error::InvalidMessage("a batch must have one topic".into()));
            }
            if first
                .topic
                .starts_with(crate::format::system::RETRY_GROUP_TOPIC_PREFIX)
            {
                return Err(Error::InvalidMessage(
                    "a batch cannot go to a retry topic".into(),
                ));
            }
            let core = self.inner.store.core();
            let missing = core.write_queue_count(&first.topic).is_none();
            for m in &msgs {
                self.inner.check(m)?;
                // A batch that would be refused must not create its topic first.
                if missing {
                    core.check_storable(m)?;
                }
            }
            let n = self.inner.queue_count(&first.topic)?;
            Ok((first.topic.clone(), self.inner.next_queue(n)))
        })();
        let (topic, queue_id) = match checked {
            Ok(v) => v,
            Err(error) => return Err(SendError::new(error, msgs)),
        };
        match self
            .inner
            .store
            .core()
            .put_batch(&msgs, queue_id, PutOptions::default())
        {
            Ok(rs) => Ok(rs.iter().map(|r| SendResult::from_put(&topic, r)).collect()),
            Err(error) => Err(SendError::new(error, msgs)),
        }
    }

    /// Sends `msg` in the background and calls `callback` with the result on another thread
    /// once it is known (under `FlushPolicy::Sync`, once the message is durable). The caller
    /// never waits for the disk; it waits only when [`Producer::max_in_flight`] sends are
    /// in flight (queued, or stored but not yet called back), and then for at most the send
    /// timeout, after which the message comes back with [`Error::Busy`] and the callback is
    /// not called. Errors found in the background reach the callback as `mqlite::Error`.
    ///
    /// `Store::close` drains the sends accepted before it: each is
    /// stored (or refused) and its callback gets its real result before the store closes.
    /// Sends made once the store is closing fail at the call with [`Error::Closed`] (the
    /// message comes back and the callback is not called).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// store.producer("p")?.send_async(mqlite::Message::new("t", "x"), move |r: mqlite::Result<mqlite::SendResult>| {
    ///     tx.send(r.map(|r| r.queue_offset).map_err(|e| e.to_string())).unwrap();
    /// })?;
    /// assert_eq!(rx.recv().unwrap(), Ok(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_async<F>(&self, msg: Message, callback: F) -> Result<(), SendError>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let mut slot = self.async_sender.lock();
        if slot.is_none() {
            match AsyncSender::start(self.inner.clone()) {
                Ok(s) => *slot = Some(s),
                Err(error) => return Err(SendError::new(error, msg)),
            }
        }
        let handle = slot.as_ref().map(AsyncSender::handle);
        drop(slot);
        match handle {
            Some(h) => h.submit(msg, Box::new(callback)),
            None => Err(SendError::new(Error::Closed, msg)),
        }
    }
}

impl Shared {
    /// Checks what RocketMQ's client checks before a send.
    pub(crate) fn check(&self, msg: &Message) -> Result<()> {
        self.check_allowing(msg, &[])
    }

    /// [`Shared::check`], letting the reserved property names in `allowed` through.
    pub(crate) fn check_allowing(&self, msg: &Message, allowed: &[&str]) -> Result<()> {
        if !self.group_valid.load(Ordering::Relaxed) {
            validate::group(&self.group)?;
            self.group_valid.store(true, Ordering::Relaxed);
        }
        validate::client_topic(&msg.topic)?;
        validate::user_properties(
            msg.properties
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !allowed.contains(k)),
        )?;
        Ok(())
    }

    /// The body to store for `msg` and its sys-flag bits: zlib-compressed when it is at
    /// least `compress_over` bytes (and not over the size limit), else `None`.
    pub(crate) fn compressed(&self, msg: &Message) -> Result<Option<(Vec<u8>, i32)>> {
        let core = self.store.core();
        if msg.body.len() >= self.options.compress_over
            && msg.body.len() <= core.config().max_message_size
        {
            let body = zlib(&msg.body, self.options.compress_level)?;
            return Ok(Some((
                body,
                sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB,
            )));
        }
        Ok(None)
    }

    /// Write queue count of the message's topic, creating the topic if allowed — but only
    /// for a message that would be stored, so a refused send leaves no topic behind.
    pub(crate) fn queue_count_for(&self, msg: &Message) -> Result<u32> {
        let core = self.store.core();
        match core.write_queue_count(&msg.topic) {
            Some(n) => Ok(n),
            None => {
                core.check_storable(msg)?;
                self.queue_count(&msg.topic)
            }
        }
    }

    /// Write queue count of a topic, creating the topic if allowed.
    pub(crate) fn queue_count(&self, topic: &str) -> Result<u32> {
        let core = self.store.core();
        match core.write_queue_count(topic) {
            Some(n) => Ok(n),
            None if core.config().auto_create_topics => Ok(core
                .create_topic(topic, core.config().default_topic_queues)?
                .write_queue_nums),
            None => Err(Error::TopicNotFound(topic.to_owned())),
        }
    }

    pub(crate) fn next_queue(&self, count: u32) -> u32 {
        (self.round_robin.fetch_add(1, Ordering::Relaxed) % count as usize) as u32
    }

    /// Stores `msg` in queue `queue_id` with compression applied; `no_wait` skips waiting
    /// for the flush.
    pub(crate) fn store_in(
        &self,
        msg: &Message,
        queue_id: u32,
        no_wait: bool,
    ) -> Result<PutResult> {
        let core = self.store.core();
        let mut opts = PutOptions {
            no_wait,
            ..PutOptions::default()
        };
        let compressed = self.compressed(msg)?;
        if let Some((body, flags)) = &compressed {
            opts.body = Some(body);
            opts.sys_flag |= flags;
        }
        core.put_with(msg, queue_id, opts)
    }

    pub(crate) fn pick_round_robin(&self, msg: &Message) -> Result<u32> {
        self.check(msg)?;
        let n = self.queue_count_for(msg)?;
        Ok(self.next_queue(n))
    }
}

/// zlib (RFC 1950) compression at `level`, as Java's `Deflater` with DeflaterOutputStream.
fn zlib(body: &[u8], level: u32) -> Result<Vec<u8>> {
    let mut enc = ZlibEncoder::new(Vec::with_capacity(body.len() / 2), Compression::new(level));
    let mut out = enc
        .write_all(body)
        .and_then(|()| enc.finish())
        .map_err(|e| Error::InvalidMessage(format!("compression failed: {e}")))?;
    // The header's FLEVEL bits as zlib (and so Java's Deflater) sets them for this level; the
    // four values keep the header checksum valid with CMF 0x78.
    if out.len() >= 2 && out[0] == 0x78 {
        out[1] = match level {
            0 | 1 => 0x01,
            2..=5 => 0x5E,
            6 => 0x9C,
            _ => 0xDA,
        };
    }
    Ok(out)
}
