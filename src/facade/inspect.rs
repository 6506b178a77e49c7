//! Inspection: committed offsets of every group and the full consistency check (what the
//! `mqlite` command line tool shows).

use std::path::PathBuf;

use crate::broker::stats::StoreStats;
use crate::error::Result;
use crate::log::verify::VerifyProgress;

use super::Store;

/// A committed consumer offset ([`Store::consumer_offsets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerOffset {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The queue id.
    pub queue_id: u32,
    /// The next offset the group consumes.
    pub offset: u64,
}

/// One problem [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The damaged file.
    pub file: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.reason
        )
    }
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyReport {
    /// CommitLog records read and CRC-checked.
    pub records: u64,
    /// Consume queue units checked against their records.
    pub units: u64,
    /// Index file entries checked against their records' keys.
    pub index_entries: u64,
    /// Where the CommitLog's valid data ends.
    pub log_end: u64,
    /// Everything found wrong (empty: the store is consistent).
    pub problems: Vec<Damage>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// The store's statistics (RocketMQ's broker stats for one store): per topic, messages
    /// stored, and messages and bytes put since the open with their rates over the last
    /// minute; per group and topic, messages and bytes its pull, lite pull and push consumers
    /// got, with rates, and its lag. Producers' and consumers' own figures (send and consume
    /// times, failures) are on the clients, e.g. `PushConsumer::stats`.
    ///
    /// ```
    /// use mqlite::{Message, MessageQueue};
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 1)?;
    /// let producer = store.producer("p")?;
    /// for i in 0..3 {
    ///     producer.send(Message::new("orders", format!("order {i}")))?;
    /// }
    /// let consumer = store.pull_consumer("billing")?;
    /// let got = consumer.pull(&MessageQueue::new("orders", 0), "*", 0, 2)?;
    /// consumer.commit_offset(&MessageQueue::new("orders", 0), got.next_begin_offset)?;
    ///
    /// let stats = store.stats();
    /// let orders = stats.topics.iter().find(|t| t.topic == "orders").unwrap();
    /// assert_eq!((orders.messages, orders.put_messages), (3, 3));
    /// assert!(orders.put_tps > 0.0);
    /// let billing = &stats.groups[0];
    /// assert_eq!((billing.group.as_str(), billing.get_messages, billing.lag), ("billing", 2, Some(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> StoreStats {
        self.core().stats()
    }

    /// Every committed offset in `config/consumerOffset.json` (as loaded at open, plus the
    /// commits since): sorted by group, topic and queue.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = mqlite::Store::open(dir.path())?;
    /// store.create_topic("orders", 1)?;
    /// store.pull_consumer("billing")?.commit_offset(&mqlite::MessageQueue::new("orders", 0), 0)?;
    /// let offsets = store.consumer_offsets();
    /// assert_eq!((offsets[0].group.as_str(), offsets[0].offset), ("billing", 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer_offsets(&self) -> Vec<ConsumerOffset> {
        self.core()
            .all_committed_offsets()
            .into_iter()
            .map(|(group, topic, queue_id, offset)| ConsumerOffset {
                group,
                topic,
                queue_id,
                offset,
            })
            .collect()
    }

    /// Checks the whole store: every CommitLog record from the first to the end of the data
    /// (CRCs included, and nothing but zeros after the end), every consume queue unit
    /// against the record it points at (topic, queue, queue offset, size, CRC), and every
    /// index file's header, hash slots and entries (each entry's key hash against the keys of
    /// the record it points at), and the committed offsets against the queues' ends. Config
    /// files were parsed when the store was opened. Reads only; on a store opened read-only
    /// while its owner writes, a record still being written counts as the end of the data.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.put(&mqlite::Message::new("orders", "x").with_keys(["K1"]), 0)?;
    /// let report = store.verify()?;
    /// assert!(report.is_ok());
    /// assert_eq!((report.records, report.units), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with_progress(|_| {})
    }

    /// [`Store::verify`], telling `progress` how far it has come (CommitLog bytes, then
    /// queues, then index files), for a progress bar on a large store.
    ///
    /// ```
    /// use mqlite::VerifyStage;
    /// # let dir = tempfile::tempdir()?;
    /// let store = mqlite::Store::open(dir.path())?;
    /// store.put(&mqlite::Message::new("orders", "x"), 0)?;
    /// let mut last_log = None;
    /// let report = store.verify_with_progress(|p| {
    ///     if p.stage == VerifyStage::CommitLog {
    ///         last_log = Some((p.done, p.total));
    ///     }
    /// })?;
    /// let (done, total) = last_log.unwrap();
    /// assert_eq!((done, total), (report.log_end, report.log_end));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(VerifyProgress),
    ) -> Result<VerifyReport> {
        self.core().check_open()?;
        let v = self.core().verify(&mut progress)?;
        let mut problems: Vec<Damage> = v
            .problems
            .into_iter()
            .map(|p| Damage {
                file: p.file,
                offset: p.offset,
                reason: p.reason,
            })
            .collect();
        // The committed offsets against the queues: past a queue's end means queue data was
        // lost (a crash recovery lowers them, with a warning, before anyone sees them).
        let offsets_file = self.dir().join("config").join("consumerOffset.json");
        for o in self.consumer_offsets() {
            let queue = crate::MessageQueue::new(o.topic.as_str(), o.queue_id);
            if let Ok(max) = self.max_offset(&queue)
                && o.offset > max
            {
                problems.push(Damage {
                    file: offsets_file.clone(),
                    offset: 0,
                    reason: format!(
                        "group {} has committed offset {} of {}:{}, past the queue's end ({max})",
                        o.group, o.offset, o.topic, o.queue_id
                    ),
                });
            }
        }
        Ok(VerifyReport {
            records: v.records,
            units: v.units,
            index_entries: v.index_entries,
            log_end: v.log_end,
            problems,
        })
    }
}
