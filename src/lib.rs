//! # mqlite
//!
//! An embeddable, single-node message store with Apache RocketMQ's on-disk format and
//! semantics: durable topics and queues in a directory, no broker, no network, no async
//! runtime. A store directory is byte-compatible with RocketMQ's (CommitLog records,
//! ConsumeQueue units, checkpoint, `config/*.json`, directory layout).
//!
//! ```
//! use mqlite::{FlushPolicy, Message, MessageQueue, Store};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::builder(dir.path())
//!     .flush_policy(FlushPolicy::Sync { timeout: Duration::from_secs(5) })
//!     .commitlog_segment_size(1 << 20)
//!     .open()?;
//! store.create_topic("orders", 4)?;
//! let msg = Message::new("orders", b"order 1 created".to_vec())
//!     .with_tags("created")
//!     .with_keys(["ORDER-1"]);
//! let put = store.put(&msg, 0)?;
//! let read = store.get_messages(&MessageQueue::new("orders", 0), 0, 32)?;
//! assert_eq!(read.messages[0].msg_id(), put.msg_id);
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See the README for the durability contract and the on-disk layout.

// Layers, bottom up: format ← storage ← log (the engine) ← broker ← client ← facade (`Store`).
// Each imports only layers below it and the shared leaves `error`, `config`, `clock`,
// `message`, `view`, `filter` and `rate`.
mod broker;
mod client;
mod facade;
pub mod format;
mod log;
mod storage;

mod clock;
mod condition;
mod config;
mod error;
mod filter;
mod message;
mod rate;
mod view;

#[cfg(feature = "sim")]
pub use storage::sim;

pub use broker::retention::CleanupReport;
pub use broker::stats::{GroupStats, StoreStats, TopicStats};
pub use broker::topics::{PERM_READ, PERM_WRITE};
pub use client::allocate::{AllocateStrategy, Averagely, AveragelyByCircle, ConsistentHash};
pub use client::lite_pull::{LitePullConsumer, LitePullConsumerBuilder};
pub use client::producer::{Producer, SendError, SendResult, SendStatus};
pub use client::pull::{ConsumeFrom, PullConsumer, PullResult, PullStatus};
pub use client::push::{
    ConsumeConcurrentlyContext, ConsumeOrderlyContext, ConsumeStatus, ConsumerQueueStats,
    ConsumerStats, ConsumerTopicStats, CustomizedRetryPolicy, ExponentialRetryPolicy, MessageModel,
    OrderlyStatus, PushConsumer, PushConsumerBuilder, RetryPolicy, StalledQueue,
};
pub use client::transaction::{TransactionProducer, TransactionSendResult, TransactionState};
pub use config::{FlushPolicy, IndexConfig, RecoveryMode, RetentionConfig, StoreConfig};
pub use error::{Error, Result};
pub use facade::{
    ConsumerOffset, Damage, GetResult, PutResult, PutStatus, Store, StoreBuilder,
    ToOffsetMessageId, TopicConfig, VerifyReport,
};
pub use filter::{ExpressionType, MessageSelector, SqlFilter, TagFilter};
pub use format::msg_id::{MessageId, OffsetMessageId};
pub use log::verify::{VerifyProgress, VerifyStage};
pub use message::{Message, MessageExt, MessageQueue};
pub use view::MessageView;

/// The limits and reserved names the store enforces on topics, groups, queues and
/// properties, as RocketMQ's broker and client do.
///
/// ```
/// use mqlite::limits::{MAX_QUEUES_PER_TOPIC, RESERVED_PROPERTIES};
/// assert_eq!(MAX_QUEUES_PER_TOPIC, 1024);
/// assert!(RESERVED_PROPERTIES.contains(&"TAGS"));
/// let msg = mqlite::Message::new("t", "x").with_property("TAGS", "a");
/// let dir = tempfile::tempdir()?;
/// let store = mqlite::Store::open(dir.path())?;
/// assert!(store.put(&msg, 0).is_err()); // a reserved property
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod limits {
    pub use crate::broker::validate::{
        MAX_GROUP_LEN, MAX_SYSTEM_TOPIC_LEN, MAX_TOPIC_LEN, RESERVED_PROPERTIES, RESERVED_TOPICS,
    };
    pub use crate::config::MAX_QUEUES_PER_TOPIC;
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
