//! Transactional messages, stored as RocketMQ's broker stores them.
//!
//! - A **half message** goes to `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with the transaction type
//!   of its sys flag reset to NOT (so it has a consume queue unit in the half topic, and none
//!   in its real topic), and the properties `TRAN_MSG=true`, `PGROUP`, `__transactionId__`
//!   (= `UNIQ_KEY`), `REAL_TOPIC` and `REAL_QID` (RocketMQ `TransactionalMessageBridge.
//!   parseHalfMessageInner`).
//! - A **commit** writes the real message to `REAL_TOPIC` / `REAL_QID` with the transaction
//!   type COMMIT and `preparedTransactionOffset` = the half record's CommitLog offset; its
//!   stored properties are the half message's (the broker's `endMessageTransaction` clears
//!   `REAL_TOPIC`, `REAL_QID` and `TRAN_MSG` from the property map only after the properties
//!   string it stores was built, so a RocketMQ-committed record keeps them too).
//! - A commit or a rollback then "deletes" the half message with an **op message** in
//!   `RMQ_SYS_TRANS_OP_HALF_TOPIC`, queue = the half message's queue, tag `d`, body = the half
//!   queue offset followed by a comma (`"12,"`; RocketMQ batches several, `"12,13,"`, and this
//!   store reads either).
//! - The **check service** reads the half and op queues from the consumer offsets of the
//!   internal group `CID_RMQ_SYS_TRANS` (in `config/consumerOffset.json`, as RocketMQ keeps
//!   them). A half message with no op, older than `transaction_timeout` (or its
//!   `CHECK_IMMUNITY_TIME_IN_SECONDS`), is re-appended to the half queue with
//!   `TRANSACTION_CHECK_TIMES` bumped, and the copy is checked back through its group's
//!   checker; after `transaction_check_max` checks it is copied to
//!   `TRANS_CHECK_MAX_TIME_TOPIC` and left.
//!
//! Exactly once: a transaction ended in this process is remembered (by its transaction id,
//! shared by every re-appended copy), so neither a second end nor a check of a stale copy can
//! commit it twice. Ends, and the check service's decision to copy a half message, hold one
//! lock, so an end racing a check either is seen by it or comes after the copy it made. A commit's real message is written before its op, so a crash between the
//! two leaves a half message without an op whose commit is stored: before a half message
//! written by an earlier process is checked back or ended, its real queue is searched for a
//! COMMIT record with the same id, and if one is found only the missing op is written.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Broker;
use super::put::{PutOptions, PutResult};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::properties::{self, keys};
use crate::format::record::sys_flag;
use crate::format::system::{TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};
use crate::message::{Delay, Message, MessageExt, MessageQueue};

/// The internal consumer group whose offsets on the half and op topics are the check
/// service's progress (RocketMQ `MixAll.CID_SYS_RMQ_TRANS`).
pub const SYS_TRANS_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of op messages (RocketMQ `TransactionalMessageUtil.REMOVE_TAG`).
pub const REMOVE_TAG: &str = "d";
/// Property counting the checks of a half message.
pub const CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// Property: seconds before the first check of a half message.
pub const CHECK_IMMUNITY_TIME: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Property of an immune half message's copy: the queue offset of the half message it stands
/// for.
pub const PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";

/// Properties of a stored record a copy does not inherit (written afresh).
const NOT_COPIED: &[&str] = &[keys::RECORD_CRC, keys::WAIT];

/// The state of a local transaction (RocketMQ `LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionState {
    /// Deliver the message (`COMMIT_MESSAGE`).
    Commit,
    /// Drop the message (`ROLLBACK_MESSAGE`).
    Rollback,
    /// Not known yet: the store checks back later (`UNKNOW`).
    Unknown,
}

/// A producer group's check-back listener.
pub(crate) type Checker = Arc<dyn Fn(&MessageExt) -> TransactionState + Send + Sync>;

/// What the broker keeps about transactions.
#[derive(Default)]
pub(crate) struct Transactions {
    /// Check-back listeners by producer group.
    checkers: Mutex<HashMap<String, Checker>>,
    /// Groups warned about having no checker.
    warned: Mutex<HashSet<String>>,
    /// Transactions ended in this process: id → CommitLog end when ended (forgotten once the
    /// check service has passed every copy made before).
    ended: Mutex<HashMap<String, u64>>,
    /// Held while a transaction is ended (the ended check, the real message, the op).
    end_lock: Mutex<()>,
    /// CommitLog end when the store opened: half messages before it may have been committed
    /// by an earlier process that crashed before writing the op.
    opened_at: AtomicU64,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions").finish_non_exhaustive()
    }
}

impl Transactions {
    pub(crate) fn new(opened_at: u64) -> Transactions {
        Transactions {
            opened_at: AtomicU64::new(opened_at),
            ..Transactions::default()
        }
    }
}

/// COMMIT records read by [`Broker::committed_before`], per real queue.
#[derive(Default)]
struct CommitScan {
    queues: HashMap<(String, u32), Scanned>,
}

/// The ids of the COMMIT records (written before the open) at queue offsets `from..to`.
struct Scanned {
    from: u64,
    to: u64,
    ids: HashSet<String>,
}

/// A half message read back.
struct Half {
    msg: MessageExt,
    /// Its content as a message to store again (properties parsed once), in the half topic.
    copy: Message,
    /// The stored body when compressed (copies keep it as stored).
    raw_body: Option<Vec<u8>>,
    /// The compression bits of the sys flag.
    flags: i32,
}

impl Half {
    fn id(&self) -> String {
        self.prop(keys::TRANSACTION_ID)
            .map_or_else(|| self.msg.msg_id().to_string(), str::to_owned)
    }

    fn opts(&self) -> PutOptions<'_> {
        PutOptions {
            body: self.raw_body.as_deref(),
            sys_flag: self.flags,
            reconsume_times: self.msg.reconsume_times(),
            born_timestamp: Some(self.msg.born_timestamp().max(0) as u64),
            no_wait: true,
            create_topic: true,
            ..PutOptions::default()
        }
    }

    fn prop(&self, name: &str) -> Option<&str> {
        self.copy.property(name)
    }

    fn prop_u64(&self, name: &str) -> Option<u64> {
        self.prop(name).and_then(|v| v.parse().ok())
    }
}

impl Broker {
    /// Registers `checker` as the check-back listener of `group` (replacing an earlier one).
    pub(crate) fn register_checker(&self, group: &str, checker: Checker) {
        self.transactions
            .checkers
            .lock()
            .insert(group.to_owned(), checker);
        self.transactions.warned.lock().remove(group);
    }

    /// Removes `checker` from `group` if it is still the registered one.
    pub(crate) fn unregister_checker(&self, group: &str, checker: &Checker) {
        let mut c = self.transactions.checkers.lock();
        if c.get(group).is_some_and(|r| Arc::ptr_eq(r, checker)) {
            c.remove(group);
        }
    }

    /// Stores `msg` as a half message of producer group `group`, bound for queue `queue_id`
    /// of its topic. `body` and `flags` are the stored body and its compression bits when the
    /// producer compressed it.
    pub(crate) fn put_half(
        &self,
        msg: &Message,
        queue_id: u32,
        group: &str,
        body: Option<&[u8]>,
        flags: i32,
    ) -> Result<PutResult> {
        let id = match msg.property(keys::UNIQ_KEY) {
            Some(id) => id.to_owned(),
            None => self.ids.next(now_ms()).to_string(),
        };
        let mut half = msg.clone();
        half.delay = Delay::None;
        half.topic = TRANS_HALF_TOPIC.to_owned();
        half = half
            .with_property(keys::TRANSACTION_PREPARED, "true")
            .with_property(keys::PRODUCER_GROUP, group)
            .with_property(keys::UNIQ_KEY, id.clone())
            .with_property(keys::TRANSACTION_ID, id)
            .with_property(keys::REAL_TOPIC, msg.topic.clone())
            .with_property(keys::REAL_QUEUE_ID, queue_id.to_string());
        let opts = PutOptions {
            body,
            sys_flag: (flags & !sys_flag::TRANSACTION_MASK) | sys_flag::TRANSACTION_NOT,
            create_topic: true,
            ..PutOptions::default()
        };
        self.put_with(&half, 0, opts)
    }

    fn read_half(&self, offset: u64) -> Result<Half> {
        let compression = sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK;
        let half = self.with_record(offset, |rec, _| {
            (rec.topic == TRANS_HALF_TOPIC).then(|| {
                let flags = rec.meta.sys_flag & compression;
                let msg = MessageExt::from_record(rec, Arc::from(rec.topic));
                Half {
                    copy: msg.copy_to(TRANS_HALF_TOPIC.to_owned(), |k| !NOT_COPIED.contains(&k)),
                    msg,
                    raw_body: (flags != 0).then(|| rec.body.to_vec()),
                    flags,
                }
            })
        })?;
        half.ok_or_else(|| {
            Error::InvalidMessage(format!(
                "the record at commitlog offset {offset} is not a half message"
            ))
        })
    }

    /// Ends the transaction of the half message at CommitLog offset `offset`: a commit stores
    /// the real message, a commit or a rollback writes the op; `Unknown` does nothing. When
    /// `group` is given it must be the half message's producer group. A transaction already
    /// ended is left as it is. Returns the real message's put on a commit that wrote one.
    pub(crate) fn end_transaction(
        &self,
        offset: u64,
        group: Option<&str>,
        state: TransactionState,
    ) -> Result<Option<PutResult>> {
        if state == TransactionState::Unknown {
            return Ok(None);
        }
        self.check_writable()?;
        let half = self.read_half(offset)?;
        if let Some(g) = group
            && half.prop(keys::PRODUCER_GROUP) != Some(g)
        {
            return Err(Error::InvalidMessage(format!(
                "the half message at commitlog offset {offset} belongs to producer group {:?}, not {g:?}",
                half.prop(keys::PRODUCER_GROUP).unwrap_or("")
            )));
        }
        let id = half.id();
        let guard = self.transactions.end_lock.lock();
        if self.transactions.ended.lock().contains_key(&id) {
            return Ok(None);
        }
        let mut put = None;
        if !self.committed_before(&half, &id, &mut CommitScan::default())?
            && state == TransactionState::Commit
        {
            put = Some(self.put_commit(&half, offset)?);
        }
        let op = self.put_op(half.msg.queue_id(), half.msg.queue_offset())?;
        let written = self.log().written();
        self.transactions.ended.lock().insert(id, written);
        drop(guard);
        let status = self.wait_durable(op.physical_offset + u64::from(op.size))?;
        Ok(put.map(|p| PutResult { status, ..p }))
    }

    /// The real message of a committed half message.
    fn put_commit(&self, half: &Half, offset: u64) -> Result<PutResult> {
        let topic = half
            .prop(keys::REAL_TOPIC)
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::InvalidMessage(format!(
                    "the half message at commitlog offset {offset} has no {} property",
                    keys::REAL_TOPIC
                ))
            })?;
        let queue_id = self.real_queue(half, &topic);
        let mut real = half.copy.clone();
        real.topic = topic;
        let opts = PutOptions {
            sys_flag: half.flags | sys_flag::TRANSACTION_COMMIT,
            prepared_offset: offset as i64,
            ..half.opts()
        };
        self.put_with(&real, queue_id, opts)
    }

    fn real_queue(&self, half: &Half, topic: &str) -> u32 {
        let queue_id = half.prop_u64(keys::REAL_QUEUE_ID).unwrap_or(0) as u32;
        let queues = self
            .topic_config(topic)
            .map_or(queue_id + 1, |c| c.write_queue_nums.max(1));
        queue_id % queues
    }

    /// Writes the op "deleting" the half message at `half_offset` of half queue `queue_id`.
    fn put_op(&self, queue_id: u32, half_offset: u64) -> Result<PutResult> {
        let op = Message::new(TRANS_OP_HALF_TOPIC, format!("{half_offset},")).with_tags(REMOVE_TAG);
        let extra = [(keys::WAIT, "false")];
        let opts = PutOptions {
            extra_properties: &extra,
            no_wait: true,
            create_topic: true,
            ..PutOptions::default()
        };
        self.put_with(&op, queue_id, opts)
    }

    /// For a half message an earlier process wrote: whether its real queue holds a COMMIT
    /// record of the same transaction written before this open (the op may have been lost to
    /// a crash). `scan` caches what was read, for the other half messages of a check pass.
    fn committed_before(&self, half: &Half, id: &str, scan: &mut CommitScan) -> Result<bool> {
        let opened_at = self.transactions.opened_at.load(Ordering::Relaxed);
        if half.msg.physical_offset() >= opened_at {
            return Ok(false);
        }
        let Some(topic) = half.prop(keys::REAL_TOPIC) else {
            return Ok(false);
        };
        let queue_id = self.real_queue(half, topic);
        let Some(cq) = self.queue(topic, queue_id) else {
            return Ok(false);
        };
        let born = half.msg.born_timestamp().max(0) as u64;
        let from = self.offset_by_time(&MessageQueue::new(topic, queue_id), born)?;
        let s = scan
            .queues
            .entry((topic.to_owned(), queue_id))
            .or_insert_with(|| Scanned {
                from,
                to: from,
                ids: HashSet::new(),
            });
        if from < s.from {
            self.collect_commits(&cq, from, s.from, opened_at, &mut s.ids)?;
            s.from = from;
        }
        let end = cq.max_offset();
        if s.to < end {
            self.collect_commits(&cq, s.to, end, opened_at, &mut s.ids)?;
            s.to = end;
        }
        Ok(s.ids.contains(id))
    }

    /// Adds the ids of the COMMIT records at queue offsets `from..to` of `cq` written before
    /// CommitLog offset `before` to `ids`.
    fn collect_commits(
        &self,
        cq: &crate::log::consume_queue::ConsumeQueue,
        from: u64,
        to: u64,
        before: u64,
        ids: &mut HashSet<String>,
    ) -> Result<()> {
        for off in from..to {
            let Some(unit) = cq.try_get(off)? else { break };
            if unit.physical_offset >= before {
                break;
            }
            let id = self.with_record(unit.physical_offset, |rec, _| {
                (rec.meta.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_COMMIT)
                    .then(|| properties::get(rec.properties, keys::UNIQ_KEY).map(str::to_owned))
                    .flatten()
            })?;
            ids.extend(id);
        }
        Ok(())
    }

    /// One pass of the check service over the half queue.
    pub(crate) fn transaction_pass(&self) -> Result<()> {
        if self.is_poisoned() || self.check_open().is_err() {
            return Ok(());
        }
        let Some(half_cq) = self.queue(TRANS_HALF_TOPIC, 0) else {
            return Ok(());
        };
        let start = now_ms();
        let half_end = half_cq.max_offset();
        let half_start = self
            .offsets
            .get(SYS_TRANS_GROUP, TRANS_HALF_TOPIC, 0)
            .unwrap_or(0)
            .max(half_cq.min_offset());
        // The ops not yet passed: (op offset, half offsets it deletes).
        let op_cq = self.queue(TRANS_OP_HALF_TOPIC, 0);
        let op_start = match &op_cq {
            Some(cq) => self
                .offsets
                .get(SYS_TRANS_GROUP, TRANS_OP_HALF_TOPIC, 0)
                .unwrap_or(0)
                .max(cq.min_offset()),
            None => 0,
        };
        let mut ops: Vec<(u64, Vec<u64>)> = Vec::new();
        if let Some(cq) = &op_cq {
            for o in op_start..cq.max_offset() {
                let Some(unit) = cq.try_get(o)? else { break };
                let deleted = self.with_record(unit.physical_offset, |rec, _| {
                    if properties::get(rec.properties, keys::TAGS) != Some(REMOVE_TAG) {
                        return Vec::new();
                    }
                    parse_op_body(rec.body)
                })?;
                ops.push((o, deleted));
            }
        }
        let removed: HashSet<u64> = ops.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let written_before = self.log().written();
        let mut i = half_start;
        let result = self.check_halves(&half_cq, &removed, start, half_end, &mut i);
        // Copies and deliveries made before the progress passes their originals.
        if self.log().written() > written_before {
            self.flush_log(crate::storage::FlushScope::All)?;
        }
        if i != half_start {
            self.offsets.set(SYS_TRANS_GROUP, TRANS_HALF_TOPIC, 0, i);
        }
        let op_next = ops
            .iter()
            .find(|(_, d)| d.iter().any(|&h| h >= i))
            .map_or(op_start + ops.len() as u64, |(o, _)| *o);
        if op_cq.is_some() && op_next != op_start {
            self.offsets
                .set(SYS_TRANS_GROUP, TRANS_OP_HALF_TOPIC, 0, op_next);
        }
        // An ended transaction is forgotten once the pass reaches a half record appended after
        // its end: every copy made before the end has been passed.
        if let Some(next) = half_cq.get(i) {
            self.transactions
                .ended
                .lock()
                .retain(|_, written| *written > next.physical_offset);
        }
        result
    }

    fn check_halves(
        &self,
        half_cq: &crate::log::consume_queue::ConsumeQueue,
        removed: &HashSet<u64>,
        start: u64,
        half_end: u64,
        i: &mut u64,
    ) -> Result<()> {
        let config = self.config();
        let timeout = config.transaction_timeout.as_millis() as u64;
        let mut scan = CommitScan::default();
        while *i < half_end {
            let off = *i;
            if removed.contains(&off) {
                *i += 1;
                continue;
            }
            let Some(unit) = half_cq.try_get(off)? else {
                break;
            };
            let half = self.read_half(unit.physical_offset)?;
            let id = half.id();
            // Held from the ended check to the copy: an end finishing after the check sees
            // (and its record covers) the copy.
            let guard = self.transactions.end_lock.lock();
            if self.transactions.ended.lock().contains_key(&id) {
                *i += 1;
                continue;
            }
            let checks = half.prop_u64(CHECK_TIMES).unwrap_or(0);
            if checks >= u64::from(config.transaction_check_max) {
                self.discard(&half)?;
                *i += 1;
                continue;
            }
            if half.msg.store_timestamp().max(0) as u64 >= start {
                break;
            }
            let age = now_ms() as i64 - half.msg.born_timestamp();
            let immunity = half.prop_u64(CHECK_IMMUNITY_TIME).map(|s| s * 1000);
            match immunity {
                Some(imm) if age >= 0 && (age as u64) <= imm => {
                    // Immune: moved to the queue's end (remembering where it stood), so the
                    // messages behind it are not held up.
                    let original = half.prop_u64(PREPARED_QUEUE_OFFSET).unwrap_or(off);
                    if !removed.contains(&original) {
                        let copy = half
                            .copy
                            .clone()
                            .with_property(PREPARED_QUEUE_OFFSET, original.to_string());
                        self.put_with(&copy, half.msg.queue_id(), half.opts())?;
                    }
                    *i += 1;
                    continue;
                }
                Some(_) => {}
                None if age >= 0 && (age as u64) <= timeout => break,
                None => {}
            }
            if self.committed_before(&half, &id, &mut scan)? {
                self.put_op(half.msg.queue_id(), off)?;
                self.transactions
                    .ended
                    .lock()
                    .insert(id, self.log().written());
                *i += 1;
                continue;
            }
            let group = half.prop(keys::PRODUCER_GROUP).unwrap_or("");
            let checker = self.transactions.checkers.lock().get(group).cloned();
            let copy = half.copy.clone().with_property(
                CHECK_TIMES,
                (checks + u64::from(checker.is_some())).to_string(),
            );
            let put = self.put_with(&copy, half.msg.queue_id(), half.opts())?;
            drop(guard);
            *i += 1;
            let Some(checker) = checker else {
                if self.transactions.warned.lock().insert(group.to_owned()) {
                    ::log::warn!(
                        "transaction check: no checker is registered for producer group {group:?}; its half messages wait until one is"
                    );
                }
                continue;
            };
            self.wait_durable(put.physical_offset + u64::from(put.size))?;
            // The checker sees the real topic and queue, as RocketMQ's check request does
            // (`AbstractTransactionalMessageCheckListener.sendCheckMessage`).
            let real_topic: Arc<str> = Arc::from(
                half.msg
                    .property(keys::REAL_TOPIC)
                    .unwrap_or(TRANS_HALF_TOPIC),
            );
            let real_queue = half.prop_u64(keys::REAL_QUEUE_ID).unwrap_or(0) as u32;
            let copy = self.with_record(put.physical_offset, |rec, _| {
                let mut view = rec.clone();
                view.meta.queue_id = real_queue;
                MessageExt::from_record(&view, real_topic)
            })?;
            let state = match catch_unwind(AssertUnwindSafe(|| checker(&copy))) {
                Ok(s) => s,
                Err(_) => {
                    ::log::warn!(
                        "transaction check: the checker of producer group {group:?} panicked on message {}; counted as Unknown",
                        copy.msg_id()
                    );
                    TransactionState::Unknown
                }
            };
            self.end_transaction(put.physical_offset, None, state)?;
        }
        Ok(())
    }

    /// Copies a half message checked too often to `TRANS_CHECK_MAX_TIME_TOPIC` (RocketMQ's
    /// `DefaultTransactionalMessageCheckListener.resolveDiscardMsg`).
    fn discard(&self, half: &Half) -> Result<()> {
        ::log::warn!(
            "transaction check: half message {} of producer group {:?} reached the maximum of {} checks; moved to {TRANS_CHECK_MAX_TIME_TOPIC}",
            half.msg.msg_id(),
            half.prop(keys::PRODUCER_GROUP).unwrap_or(""),
            self.config().transaction_check_max
        );
        let mut copy = half.copy.clone();
        copy.topic = TRANS_CHECK_MAX_TIME_TOPIC.to_owned();
        self.put_with(&copy, 0, half.opts()).map(drop)
    }
}

/// The half queue offsets an op body lists (`"12,13,"`); unparsable entries are skipped.
pub(crate) fn parse_op_body(body: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(body)
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_op_body;

    #[test]
    fn op_bodies() {
        assert_eq!(parse_op_body(b"12,13,"), vec![12, 13]);
        assert_eq!(parse_op_body(b"7"), vec![7]);
        assert_eq!(parse_op_body(b"x,,3,"), vec![3]);
        assert!(parse_op_body(&[0xff, 0xfe]).is_empty());
    }
}
