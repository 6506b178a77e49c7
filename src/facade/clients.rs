//! Making clients: producers, pull and push consumers.

use crate::client::producer::{Producer, ProducerOptions};
use crate::client::pull::PullConsumer;
use crate::client::push::PushConsumerBuilder;

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
