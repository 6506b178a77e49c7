//! The transactional producer: RocketMQ's `TransactionMQProducer` over an in-process store.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::producer::{Producer, ProducerOptions, SendError, SendResult, SendStatus};
use crate::broker::runtime::Runtime;
use crate::broker::transaction::{CHECK_IMMUNITY_TIME, Checker};
use crate::error::{Error, Result};
use crate::format::msg_id::{MessageId, OffsetMessageId};
use crate::message::{Delay, Message, MessageQueue};

pub use crate::broker::transaction::TransactionState;

/// What [`TransactionProducer::send_in_transaction`] reports (RocketMQ
/// `TransactionSendResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionSendResult {
    /// Durability of the half message.
    pub status: SendStatus,
    /// The client message id (`UNIQ_KEY`, also the transaction id); the committed message
    /// keeps it.
    pub msg_id: MessageId,
    /// The store's id of the half message (pass it to
    /// [`TransactionProducer::end_transaction`] to end the transaction later).
    pub offset_msg_id: OffsetMessageId,
    /// The queue of the message's topic it is delivered to once committed.
    pub queue: MessageQueue,
    /// The half message's offset in the half queue.
    pub queue_offset: u64,
    /// What the local transaction answered.
    pub local_state: TransactionState,
    /// Whether the commit or rollback was recorded. `false` when the local state is
    /// `Unknown`, or when recording it failed (logged): the store's check service then asks
    /// the group's checker.
    pub end_recorded: bool,
}

/// Removes the checker from the store when the last producer clone goes.
struct Registration {
    store: Arc<Runtime>,
    group: String,
    checker: Checker,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.store
            .core()
            .unregister_checker(&self.group, &self.checker);
    }
}

/// Sends transactional messages: a half message that consumers do not see, a local
/// transaction, then a commit (the message is delivered) or a rollback (it never is). A
/// transaction left `Unknown` (or whose producer died) is checked back by the store's check
/// service through the group's checker, every `transaction_check_interval`, once the half
/// message is older than `transaction_timeout`. `Clone + Send + Sync`; the checker stays
/// registered while a clone lives. Obtained from
/// `Store::transaction_producer`.
///
/// ```
/// use mqlite::{Message, TransactionState};
/// # let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// let tx = store.transaction_producer("order-service", |_msg: &mqlite::MessageExt| {
///     TransactionState::Commit // look the order up in the database
/// })?;
/// let r = tx.send_in_transaction(Message::new("orders", "order 1 created"), |_msg| {
///     // insert the order row here
///     TransactionState::Commit
/// })?;
/// assert_eq!(r.local_state, TransactionState::Commit);
/// let read = store.get_messages(&r.queue, 0, 32)?;
/// assert_eq!(read.messages[0].body(), b"order 1 created");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TransactionProducer {
    producer: Producer,
    registration: Arc<Registration>,
}

impl fmt::Debug for TransactionProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionProducer")
            .field("group", &self.registration.group)
            .finish_non_exhaustive()
    }
}

impl TransactionProducer {
    pub(crate) fn new(store: Arc<Runtime>, group: &str, checker: Checker) -> TransactionProducer {
        store.core().register_checker(group, checker.clone());
        TransactionProducer {
            producer: Producer::new(store.clone(), group, ProducerOptions::default()),
            registration: Arc::new(Registration {
                store,
                group: group.to_owned(),
                checker,
            }),
        }
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.registration.group
    }

    /// Stores `msg` as a half message (durable under `FlushPolicy::Sync`), runs
    /// `local_transaction`, and records its answer: `Commit` delivers the message, `Rollback`
    /// drops it, `Unknown` leaves it to the check service. A local transaction that panics
    /// counts as `Unknown` (as RocketMQ's client treats an exception). A delay level or
    /// delivery time on `msg` is ignored, as RocketMQ's client clears it. On failure to store
    /// the half message, the message comes back in the [`SendError`] and the local transaction
    /// does not run.
    pub fn send_in_transaction<F>(
        &self,
        mut msg: Message,
        local_transaction: F,
    ) -> Result<TransactionSendResult, SendError>
    where
        F: FnOnce(&Message) -> TransactionState,
    {
        msg.delay = Delay::None;
        let shared = &self.producer.inner;
        let core = shared.store.core();
        let stored = (|| {
            shared.check_allowing(&msg, &[CHECK_IMMUNITY_TIME])?;
            let queue_id = shared.next_queue(shared.queue_count_for(&msg)?);
            let compressed = shared.compressed(&msg)?;
            let (body, flags) = match &compressed {
                Some((b, f)) => (Some(b.as_slice()), *f),
                None => (None, 0),
            };
            core.put_half(&msg, queue_id, self.group(), body, flags)
                .map(|r| (r, queue_id))
        })();
        let (put, queue_id) = match stored {
            Ok(v) => v,
            Err(error) => return Err(SendError::new(error, msg)),
        };
        let local_state = match catch_unwind(AssertUnwindSafe(|| local_transaction(&msg))) {
            Ok(s) => s,
            Err(_) => {
                ::log::warn!(
                    "the local transaction of message {} panicked; its state is Unknown",
                    put.msg_id
                );
                TransactionState::Unknown
            }
        };
        let end_recorded = match local_state {
            TransactionState::Unknown => false,
            state => match core.end_transaction(put.physical_offset, Some(self.group()), state) {
                Ok(_) => true,
                Err(e) => {
                    ::log::warn!(
                        "recording {state:?} for transactional message {} failed ({e}); the check service will ask the checker",
                        put.msg_id
                    );
                    false
                }
            },
        };
        Ok(TransactionSendResult {
            status: put.status.into(),
            msg_id: put.msg_id,
            offset_msg_id: put.offset_msg_id,
            queue: MessageQueue::new(msg.topic.clone(), queue_id),
            queue_offset: put.queue_offset,
            local_state,
            end_recorded,
        })
    }

    /// Ends a transaction whose local state was `Unknown` at send time: `Commit` delivers the
    /// message, `Rollback` drops it, `Unknown` does nothing. `half` is the
    /// [`TransactionSendResult::offset_msg_id`] of the send. A transaction already ended (by
    /// an earlier call or a check-back) is left as it is. Returns once the end is stored
    /// (under `Sync`, durable).
    ///
    /// ```
    /// use mqlite::{Message, TransactionState};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let tx = store.transaction_producer("p", |_: &mqlite::MessageExt| TransactionState::Unknown)?;
    /// let r = tx.send_in_transaction(Message::new("t", "x"), |_| TransactionState::Unknown)?;
    /// assert!(store.get_messages(&r.queue, 0, 32)?.messages.is_empty());
    /// tx.end_transaction(&r.offset_msg_id, TransactionState::Commit)?;
    /// assert_eq!(store.get_messages(&r.queue, 0, 32)?.messages.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn end_transaction(&self, half: &OffsetMessageId, state: TransactionState) -> Result<()> {
        self.producer
            .inner
            .store
            .core()
            .end_transaction(half.physical_offset, Some(self.group()), state)
            .map(drop)
    }

    /// Batches cannot be sent in a transaction (RocketMQ refuses them too): always
    /// [`Error::InvalidMessage`], with the messages handed back.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let tx = store.transaction_producer("p", |_: &mqlite::MessageExt| mqlite::TransactionState::Commit)?;
    /// let e = tx.send_batch_in_transaction(vec![mqlite::Message::new("t", "x")]).unwrap_err();
    /// assert!(matches!(e.error(), mqlite::Error::InvalidMessage(_)));
    /// assert_eq!(e.into_message().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_batch_in_transaction(
        &self,
        msgs: Vec<Message>,
    ) -> Result<Vec<SendResult>, SendError<Vec<Message>>> {
        Err(SendError::new(
            Error::InvalidMessage("batch messages cannot be sent in a transaction".into()),
            msgs,
        ))
    }
}
