//! Making clients: producers, pull and push consumers.

use crate::client::lite_pull::LitePullConsumerBuilder;
use crate::client::producer::{Producer, ProducerOptions};
use crate::client::pull::PullConsumer;
use crate::client::push::PushConsumerBuilder;
use crate::client::transaction::{TransactionProducer, TransactionState};
use crate::message::MessageExt;

use super::Store;

impl Store {
    /// A producer in `group`.
    ///
    /// # Errors
    /// [`Error::InvalidGroup`](crate::Error::InvalidGroup) if the group name is not a valid
    /// RocketMQ group name (checked here, as RocketMQ's producer checks it at start).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// let producer = store.producer("order-service")?;
    /// assert!(store.producer("no spaces").is_err());
    /// # drop(producer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(&self, group: &str) -> crate::Result<Producer> {
        crate::broker::validate::group(group)?;
        Ok(Producer::new(
            self.rt.clone(),
            group,
            ProducerOptions::default(),
        ))
    }
}

impl Store {
    /// A pull consumer in `group`.
    ///
    /// # Errors
    /// [`Error::InvalidGroup`](crate::Error::InvalidGroup) if the group name is not valid.
    pub fn pull_consumer(&self, group: &str) -> crate::Result<PullConsumer> {
        crate::broker::validate::group(group)?;
        Ok(PullConsumer::new(self.rt.clone(), group))
    }
}

impl Store {
    /// A lite pull consumer in `group` (RocketMQ's `DefaultLitePullConsumer`), to configure
    /// and [`build`](LitePullConsumerBuilder::build): the application polls it in its own
    /// loop. The group name is checked by `build`, which fails with
    /// [`Error::InvalidGroup`](crate::Error::InvalidGroup) as [`Store::pull_consumer`] does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("jobs", 2)?;
    /// store.producer("p")?.send(Message::new("jobs", "job 1"))?;
    /// let consumer = store
    ///     .lite_pull_consumer("workers")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.subscribe("jobs", "*")?;
    /// let batch = consumer.poll(Duration::from_secs(5))?;
    /// assert_eq!(batch[0].body(), b"job 1");
    /// consumer.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lite_pull_consumer(&self, group: &str) -> LitePullConsumerBuilder {
        LitePullConsumerBuilder::new(self.rt.clone(), group)
    }
}

impl Store {
    /// A push consumer in `group`, to configure and start (the group name is checked by
    /// `start_*`, before anything runs).
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
    /// })?;
    /// assert_eq!(tx.group(), "order-service");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidGroup`](crate::Error::InvalidGroup) if the group name is not valid;
    /// [`Error::Io`](crate::Error::Io) if the store's transaction check thread (started with
    /// its first transaction producer) cannot be started.
    pub fn transaction_producer<F>(
        &self,
        group: &str,
        checker: F,
    ) -> crate::Result<TransactionProducer>
    where
        F: Fn(&MessageExt) -> TransactionState + Send + Sync + 'static,
    {
        crate::broker::validate::group(group)?;
        self.rt
            .start_transaction_service()
            .map_err(|e| crate::Error::io("spawn transaction check thread", self.rt.dir(), e))?;
        Ok(TransactionProducer::new(
            self.rt.clone(),
            group,
            std::sync::Arc::new(checker),
        ))
    }
}
