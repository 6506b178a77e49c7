//! Lookups by key, by message id and by time: through the index files when they are on
//! (RocketMQ's `queryMessage`), by scanning the queues' time range otherwise.

use super::Broker;
use crate::error::{Error, Result};
use crate::filter::MessageSelector;
use crate::format::properties::{self, keys};
use crate::message::MessageExt;

/// RocketMQ's `maxMsgsNumBatch`: the most messages one query returns.
pub(crate) const MAX_QUERY_RESULTS: usize = 64;

impl Broker {
    /// Messages of `topic` whose KEYS include `key` or whose msgId (`UNIQ_KEY`) is `key`,
    /// stored in `[begin, end]`, newest first (the order RocketMQ's index walk yields), at
    /// most `max` (and at most 64).
    pub(crate) fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin: u64,
        end: u64,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        self.check_open()?;
        let queues = self.read_queues(topic)?;
        let max = max.min(MAX_QUERY_RESULTS);
        if max == 0 || begin > end {
            return Ok(Vec::new());
        }
        let Some(index) = self.index() else {
            return self.scan_by_key(&queues, key, begin, end, max);
        };
        // Everything visible now is indexed before the lookup (the writer thread is usually
        // there already).
        if let Err(e) = self.index_pending() {
            ::log::warn!("index files cannot catch up with the commitlog ({e}); scanning instead");
            return self.scan_by_key(&queues, key, begin, end, max);
        }
        // Key hashes collide: each entry's record is read and checked.
        let mut io_error = None;
        let mut accept = |phys: u64| match self.with_record(phys, |rec, _| {
            let ts = rec.meta.store_timestamp.max(0) as u64;
            rec.topic == topic && ts >= begin && ts <= end && record_has_key(rec, key)
        }) {
            Ok(ok) => ok,
            // Not visible yet (under Sync), or already deleted by retention.
            Err(Error::MessageNotFound(_) | Error::Corrupted { .. }) => false,
            Err(e) => {
                io_error.get_or_insert(e);
                false
            }
        };
        let offsets = index.query(topic, key, begin, end, max, &mut accept);
        if let Some(e) = io_error {
            return Err(e);
        }
        offsets.into_iter().map(|o| self.message_at(o)).collect()
    }

    /// The same answer as the index gives, by reading every queue's time range.
    fn scan_by_key(
        &self,
        queues: &[crate::message::MessageQueue],
        key: &str,
        begin: u64,
        end: u64,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        let mut found = Vec::new();
        for q in queues {
            let Some(cq) = self.queue(&q.topic, q.queue_id) else {
                continue;
            };
            let mut off = self.offset_by_time(q, begin)?;
            let stop = self.offset_by_time(q, end.saturating_add(1))?;
            while off < stop {
                let read = self.read_queue(
                    &cq,
                    off,
                    (stop - off).min(256) as usize,
                    &MessageSelector::ALL,
                )?;
                if read.messages.is_empty() {
                    break;
                }
                off = read.scanned_to;
                found.extend(read.messages.into_iter().filter(|m| {
                    m.keys().any(|k| k == key) || m.property(keys::UNIQ_KEY) == Some(key)
                }));
            }
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.physical_offset()));
        found.truncate(max);
        Ok(found)
    }

    /// Starts the index writer thread (when the index is on): it indexes records as they
    /// arrive, reading them back from the CommitLog (RocketMQ's reput), so appends do not
    /// wait for the index.
    #[allow(clippy::type_complexity)]
    pub(crate) fn start_indexer(
        self: &std::sync::Arc<Self>,
    ) -> std::io::Result<Option<(crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>)>> {
        let Some(index) = self.index() else {
            return Ok(None);
        };
        let kick = index.kick_receiver().clone();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let broker = std::sync::Arc::downgrade(self);
        let idle = self.config().idle_housekeeping;
        let thread = std::thread::Builder::new()
            .name("mqlite-indexer".into())
            .spawn(move || {
                if idle {
                    crate::storage::yield_to_application_threads();
                }
                let mut failing = false;
                loop {
                    crossbeam_channel::select! {
                        recv(stop_rx) -> _ => return,
                        recv(kick) -> _ => {}
                        default(std::time::Duration::from_millis(200)) => {}
                    }
                    let Some(b) = broker.upgrade() else { return };
                    if b.check_open().is_err() {
                        return;
                    }
                    if let Some(index) = b.index() {
                        index.kick_taken();
                    }
                    match b.index_pending() {
                        Ok(()) if failing => {
                            failing = false;
                            ::log::info!("index files caught up with the commitlog again");
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            failing = true;
                            ::log::warn!("index writer: {e}; retrying");
                        }
                        Err(_) => {}
                    }
                }
            })?;
        Ok(Some((stop_tx, thread)))
    }

    /// The message of `topic` whose msgId (`UNIQ_KEY`) is `msg_id` (RocketMQ's
    /// `queryMessageByUniqKey`); the newest if there are several (a resend).
    pub(crate) fn view_message_by_id(&self, topic: &str, msg_id: &str) -> Result<MessageExt> {
        self.query_by_key(topic, msg_id, 0, u64::MAX, 32)?
            .into_iter()
            .find(|m| m.property(keys::UNIQ_KEY) == Some(msg_id))
            .ok_or_else(|| Error::MessageIdNotFound {
                topic: topic.to_owned(),
                msg_id: msg_id.to_owned(),
            })
    }

    /// Messages of `topic` stored in `[begin, end]`, oldest first (by store time, then
    /// CommitLog offset), at most `max`: each queue's range is found by binary search on
    /// store times.
    pub(crate) fn messages_between(
        &self,
        topic: &str,
        begin: u64,
        end: u64,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        self.check_open()?;
        let mut found = Vec::new();
        if begin > end {
            return Ok(found);
        }
        for q in self.read_queues(topic)? {
            let Some(cq) = self.queue(&q.topic, q.queue_id) else {
                continue;
            };
            let mut off = self.offset_by_time(&q, begin)?;
            let stop = self.offset_by_time(&q, end.saturating_add(1))?;
            // Each queue contributes at most `max`: the oldest `max` overall are among them.
            let mut taken = 0;
            while off < stop && taken < max {
                let n = (stop - off).min(256).min((max - taken) as u64) as usize;
                let read = self.read_queue(&cq, off, n, &MessageSelector::ALL)?;
                if read.messages.is_empty() {
                    break;
                }
                off = read.scanned_to;
                taken += read.messages.len();
                found.extend(read.messages);
            }
        }
        found.sort_by_key(|m| (m.store_timestamp(), m.physical_offset()));
        found.truncate(max);
        Ok(found)
    }
}

/// Whether a record's KEYS include `key` or its UNIQ_KEY is `key`.
fn record_has_key(rec: &crate::format::record::RecordView<'_>, key: &str) -> bool {
    properties::get(rec.properties, keys::UNIQ_KEY) == Some(key)
        || properties::get(rec.properties, keys::KEYS)
            .is_some_and(|ks| ks.split(' ').any(|k| k == key))
}
