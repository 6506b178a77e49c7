//! The low-level put.

use crate::error::Result;
use crate::message::Message;

use super::{PutResult, Store};

impl Store {
    /// Stores `msg` in queue `queue_id` of its topic and returns where it went.
    ///
    /// The topic is created on first use when [`StoreConfig::auto_create_topics`] is on
    /// (the default). Under `FlushPolicy::Sync` this returns once the record is durable, or
    /// with [`PutStatus::FlushDiskTimeout`](crate::PutStatus::FlushDiskTimeout) after the timeout. Invalid input (bad topic, empty
    /// or oversized body, oversized properties, unknown queue) is refused with nothing written.
    ///
    /// [`StoreConfig::auto_create_topics`]: crate::StoreConfig::auto_create_topics
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// let msg = mqlite::Message::new("orders", b"order 1".to_vec()).with_keys(["ORDER-1"]);
    /// let r = store.put(&msg, 2)?;
    /// assert_eq!((r.queue_id, r.queue_offset), (2, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, msg: &Message, queue_id: u32) -> Result<PutResult> {
        crate::broker::validate::user_topic(&msg.topic)?;
        // Reserved properties (`DELAY`, `REAL_TOPIC`, …) are the store's to set; a client id
        // (`UNIQ_KEY`) may be given, and is checked when the record is built.
        crate::broker::validate::user_properties(
            msg.properties()
                .map(|(k, _)| k)
                .filter(|k| *k != crate::format::properties::keys::UNIQ_KEY),
        )?;
        self.core().put(msg, queue_id)
    }
}
