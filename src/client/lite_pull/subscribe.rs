//! Choosing what to consume: subscribing to topics (the group shares their queues out) or
//! assigning queues by hand (no group), and the queues a topic has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::LitePullConsumer;
use super::state::{Lite, Mode};
use crate::broker::group::Member;
use crate::broker::validate;
use crate::error::{Error, Result};
use crate::filter::MessageSelector;
use crate::message::MessageQueue;

fn exclusive(have: &str) -> Error {
    Error::InvalidConfig(format!(
        "subscribe and assign are mutually exclusive: this consumer already uses {have}"
    ))
}

impl Lite {
    fn subscribe(self: &Arc<Self>, topic: &str, filter: MessageSelector) -> Result<()> {
        validate::client_topic(topic)?;
        self.check_usable()?;
        let previous = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if let Mode::Assigned = st.mode {
                return Err(exclusive("assign"));
            }
            if let Mode::Idle = st.mode {
                st.mode = Mode::Subscribed(BTreeMap::new());
            }
            let Mode::Subscribed(topics) = &mut st.mode else {
                return Err(exclusive("assign"));
            };
            let previous = topics.insert(topic.to_owned(), filter.clone());
            for (_, owned) in st.owned.iter_mut().filter(|(q, _)| q.topic == topic) {
                owned.filter = filter.clone();
            }
            previous
        };
        if self.core().topic_config(topic).is_none() {
            // As a push consumer: subscribing never creates the topic; its queues are taken
            // when it is created.
            ::log::warn!(
                "group {}: subscribed topic {topic:?} does not exist (yet); its queues are taken when it is created",
                self.group()
            );
        }
        let core = self.core().clone();
        let mut joined = self.membership.lock();
        if *joined {
            core.groups.rebalance(&core, self.group());
            return Ok(());
        }
        let member: Arc<dyn Member> = self.clone();
        if let Err(e) = core.groups.join(&core, self.group(), member) {
            // Not in the group: forget the subscription, so nothing looks subscribed.
            let mut st = self.state.lock();
            if let Mode::Subscribed(topics) = &mut st.mode {
                match previous {
                    Some(f) => topics.insert(topic.to_owned(), f),
                    None => topics.remove(topic),
                };
                if topics.is_empty() {
                    st.mode = Mode::Idle;
                }
            }
            return Err(e);
        }
        *joined = true;
        Ok(())
    }

    fn unsubscribe(self: &Arc<Self>, topic: &str) -> Result<()> {
        self.check_usable()?;
        let mut first = Ok(());
        {
            let mut st = self.state.lock();
            let Mode::Subscribed(topics) = &mut st.mode else {
                return Ok(());
            };
            if topics.remove(topic).is_none() {
                return Ok(());
            }
            let gone: Vec<MessageQueue> = st
                .owned
                .keys()
                .filter(|q| q.topic == topic)
                .cloned()
                .collect();
            for q in gone {
                if let Some(owned) = st.owned.remove(&q)
                    && let Err(e) = self.release_queue(&q, owned)
                    && first.is_ok()
                {
                    first = Err(e);
                }
            }
        }
        if *self.membership.lock() {
            // The rest of the group takes the topic's queues over.
            let core = self.core().clone();
            core.groups.rebalance(&core, self.group());
        }
        first
    }

    fn assign(&self, queues: &[MessageQueue]) -> Result<()> {
        self.check_usable()?;
        let core = self.core();
        for q in queues {
            if !core.queues_of(&q.topic)?.contains(q) {
                return Err(Error::QueueNotFound {
                    topic: q.topic.clone(),
                    queue_id: q.queue_id,
                });
            }
        }
        let wanted: BTreeSet<&MessageQueue> = queues.iter().collect();
        let mut st = self.state.lock();
        if let Mode::Subscribed(_) = st.mode {
            return Err(exclusive("subscribe"));
        }
        st.mode = Mode::Assigned;
        let mut first = Ok(());
        let gone: Vec<MessageQueue> = st
            .owned
            .keys()
            .filter(|q| !wanted.contains(q))
            .cloned()
            .collect();
        for q in gone {
            if let Some(owned) = st.owned.remove(&q)
                && let Err(e) = self.release_queue(&q, owned)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        for q in wanted {
            if !st.owned.contains_key(q) {
                let owned = self.open_queue(q, MessageSelector::ALL)?;
                st.owned.insert(q.clone(), owned);
            }
        }
        drop(st);
        self.wake();
        first
    }
}

impl LitePullConsumer {
    /// Subscribes to `topic` with a tag expression (`*`, `a`, `a || b`), or changes the
    /// expression of a topic already subscribed. The consumer joins its group (at its first
    /// subscription) and the group's consumers, push consumers included, share the queues of
    /// their subscribed topics out by their allocation strategy; joins, leaves and queue-count
    /// changes move queues at once. A queue gained starts at the group's committed offset.
    ///
    /// A topic that does not exist yet is fine: its queues are taken when it is created.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] or [`Error::InvalidFilter`] for bad arguments,
    /// [`Error::InvalidConfig`] after [`LitePullConsumer::assign`] (the two exclude each other)
    /// or when another consumer of the group has this one's instance name, [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 4)?;
    /// let consumer = store
    ///     .lite_pull_consumer("billing")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.subscribe("orders", "paid")?;
    /// assert_eq!(consumer.assignment().len(), 4); // alone in its group: every queue
    /// let p = store.producer("p")?;
    /// p.send(Message::new("orders", "created").with_tags("created"))?;
    /// p.send(Message::new("orders", "paid").with_tags("paid"))?;
    /// let got = consumer.poll(Duration::from_secs(5))?;
    /// assert_eq!(got.len(), 1);
    /// assert_eq!(got[0].body(), b"paid");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self, topic: &str, expr: &str) -> Result<()> {
        validate::client_topic(topic)?;
        self.inner.subscribe(topic, MessageSelector::by_tag(expr)?)
    }

    /// [`LitePullConsumer::subscribe`] with a selector: a tag expression or a SQL92
    /// expression over message properties (RocketMQ's `subscribe(topic, MessageSelector)`).
    /// Messages it does not select are skipped, and the positions move past them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageSelector};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 2)?;
    /// let consumer = store
    ///     .lite_pull_consumer("eu")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.subscribe_with("orders", MessageSelector::by_sql("region = 'eu'")?)?;
    /// let p = store.producer("p")?;
    /// p.send(Message::new("orders", "us order").with_property("region", "us"))?;
    /// p.send(Message::new("orders", "eu order").with_property("region", "eu"))?;
    /// let got = consumer.poll(Duration::from_secs(5))?;
    /// assert_eq!(got.len(), 1);
    /// assert_eq!(got[0].body(), b"eu order");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_with(&self, topic: &str, selector: MessageSelector) -> Result<()> {
        self.inner.subscribe(topic, selector)
    }

    /// Stops consuming `topic`: its queues are given up (committed first, with auto-commit)
    /// and the rest of the group takes them over. Not subscribed: nothing happens.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 2)?;
    /// let consumer = store.lite_pull_consumer("billing").build()?;
    /// consumer.subscribe("orders", "*")?;
    /// consumer.unsubscribe("orders")?;
    /// assert!(consumer.assignment().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.inner.unsubscribe(topic)
    }

    /// Consumes exactly `queues` (RocketMQ's `assign`): no group membership, no rebalancing;
    /// offsets are still the group's (committed and read under its name). Replaces the
    /// previous assignment: queues left out are given up (committed first, with auto-commit),
    /// new ones start at the group's committed offset, else where `consume_from` says. An
    /// empty list gives every queue up. Assigned queues are read with no tag filter.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] or [`Error::QueueNotFound`] for a queue that does not exist
    /// (nothing changes then), [`Error::InvalidConfig`] after
    /// [`LitePullConsumer::subscribe`], [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mqlite::{ConsumeFrom, Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 4)?;
    /// store.producer("p")?.send_to(Message::new("orders", "for queue 3"), &MessageQueue::new("orders", 3))?;
    /// let consumer = store
    ///     .lite_pull_consumer("audit")
    ///     .consume_from(ConsumeFrom::FirstOffset)
    ///     .build()?;
    /// consumer.assign(&[MessageQueue::new("orders", 3)])?;
    /// assert_eq!(consumer.poll(Duration::from_secs(5))?[0].body(), b"for queue 3");
    /// assert!(consumer.assign(&[MessageQueue::new("orders", 9)]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn assign(&self, queues: &[MessageQueue]) -> Result<()> {
        self.inner.assign(queues)
    }

    /// The queues of `topic` (its read queues), e.g. to [`assign`](LitePullConsumer::assign).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 2)?;
    /// let consumer = store.lite_pull_consumer("audit").build()?;
    /// assert_eq!(consumer.queues("orders")?.len(), 2);
    /// assert!(consumer.queues("missing").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.inner.check_usable()?;
        self.inner.core().queues_of(topic)
    }

    /// The queues this consumer owns right now, sorted (empty after shutdown).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 3)?;
    /// let a = store.lite_pull_consumer("billing").build()?;
    /// let b = store.lite_pull_consumer("billing").build()?;
    /// a.subscribe("orders", "*")?;
    /// b.subscribe("orders", "*")?;
    /// assert_eq!(a.assignment().len() + b.assignment().len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn assignment(&self) -> Vec<MessageQueue> {
        self.inner.state.lock().owned.keys().cloned().collect()
    }
}
