//! Making clients: producers, pull and push consumers.

use crate::client::producer::{Producer, ProducerOptions};
use crate::client::pull::PullConsumer;
use crate::client::push::PushConsumerBuilder;
use crate::client::transaction::{TransactionProducer, TransactionState};
use crate::message::MessageExt;

use super::Store;

impl Store {
    /// A producer in `group`. The group name is checked at the first send.
    pub fn producer(&self, group: &str) -> Producer {
        Producer::new(self.rt.clone(), group, ProducerOptions::default())
    }
}

impl Store {
    /// A pull consumer in `group` (checked when offsets are used).
    pub fn pull_consumer(&self, group: &str) -> PullConsumer {
        PullConsumer::new(self.rt.clone(), group)
    }
}

impl Store {
    /// A push consumer in `group`, to configure and start.
    pub fn push_consumer(&self, group: &str) -> PushConsumerBuilder {
        PushConsumerBuilder::new(self.rt.clone(), group)
    }
}

impl Store {
    /// A transactional producer in `group`, with `checker` answering the store's check-backs
    /// of the group's transactions left unknown (see [`TransactionProducer`]). The checker
    /// runs on the store's check service thread; one that panics counts as `Unknown`. A
    /// later `transaction_producer` of the same group replaces the checker; it is removed
    /// when the last clone of its producer is dropped. A checker that holds a `Store` handle
    /// keeps the store open until [`Store::close`] (dropping the other handles does not).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let tx = store.transaction_producer("order-service", |msg: &mqlite::MessageExt| {
    ///     if msg.keys().any(|k| k == "ORDER-1") {
    ///         mqlite::TransactionState::Commit
    ///     } else {
    ///         mqlite::TransactionState::Rollback
    ///     }
    /// });
    /// assert_eq!(tx.group(), "order-service");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction_producer<F>(&self, group: &str, checker: F) -> TransactionProducer
    where
        F: Fn(&MessageExt) -> TransactionState + Send + Sync + 'static,
    {
        TransactionProducer::new(self.rt.clone(), group, std::sync::Arc::new(checker))
    }
}
