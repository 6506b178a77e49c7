//! The store's statistics (RocketMQ's `BrokerStatsManager` figures for one store): per topic,
//! messages and bytes put; per group and topic, messages and bytes got. Totals since the store
//! was opened, and rates over the last minute (`TOPIC_PUT_NUMS`/`TOPIC_PUT_SIZE`,
//! `GROUP_GET_NUMS`/`GROUP_GET_SIZE` "in minute").
//!
//! Puts are counted by the dispatcher, per queue, as units are written (four plain loads and
//! stores per message; under `Async` that is on the appending thread); gets by the clients,
//! per pull.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::Broker;
use crate::clock::now_ms;
use crate::rate::{RateWindow, Rates};

/// Per group, per topic: what the group's consumers got.
#[derive(Debug, Default)]
pub(crate) struct GetStats {
    map: RwLock<BTreeMap<String, BTreeMap<String, Arc<RateWindow>>>>,
}

impl GetStats {
    /// Counts `msgs` messages of `bytes` got by `group` from `topic`. A known (group, topic)
    /// costs a read lock and two lookups by `&str`; only the first pull of a pair allocates.
    pub(crate) fn add(&self, group: &str, topic: &str, msgs: u64, bytes: u64) {
        if msgs == 0 {
            return;
        }
        let now = now_ms();
        if let Some(w) = self.map.read().get(group).and_then(|t| t.get(topic)) {
            w.add(now, msgs, bytes);
            return;
        }
        let w = self
            .map
            .write()
            .entry(group.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_default()
            .clone();
        w.add(now, msgs, bytes);
    }

    fn read(&self, now: u64) -> Vec<((String, String), Rates)> {
        let map = self.map.read();
        let mut out = Vec::new();
        for (group, topics) in map.iter() {
            for (topic, w) in topics {
                out.push(((group.clone(), topic.clone()), w.read(now)));
            }
        }
        out
    }
}

/// One topic's figures in [`StoreStats`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// Messages stored now (every queue's max offset minus its min offset).
    pub messages: u64,
    /// Messages put since the store was opened.
    pub put_messages: u64,
    /// Bytes put since the store was opened (whole CommitLog records).
    pub put_bytes: u64,
    /// Messages put per second, over the last minute.
    pub put_tps: f64,
    /// Bytes put per second, over the last minute.
    pub put_bytes_per_sec: f64,
}

/// One group's figures for one topic in [`StoreStats`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GroupStats {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// Messages the group's consumers got since the store was opened.
    pub get_messages: u64,
    /// Bytes of those messages.
    pub get_bytes: u64,
    /// Messages got per second, over the last minute.
    pub get_tps: f64,
    /// Bytes got per second, over the last minute.
    pub get_bytes_per_sec: f64,
    /// Messages stored past the group's committed offsets (queues it never committed count
    /// from their min offset); `None` when the group has committed nothing in the topic.
    pub lag: Option<u64>,
}

/// The store's statistics (`Store::stats`).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Every topic, sorted by name (system topics included).
    pub topics: Vec<TopicStats>,
    /// Every (group, topic) that pulled since the open or has committed offsets, sorted.
    pub groups: Vec<GroupStats>,
}

impl Broker {
    /// The store's statistics now.
    pub(crate) fn stats(&self) -> StoreStats {
        let now = now_ms();
        let mut topics: BTreeMap<String, TopicStats> = BTreeMap::new();
        for cq in self.all_queues() {
            let r = cq.puts().read(now);
            let t = topics
                .entry(cq.topic().to_string())
                .or_insert_with(|| TopicStats {
                    topic: cq.topic().to_string(),
                    messages: 0,
                    put_messages: 0,
                    put_bytes: 0,
                    put_tps: 0.0,
                    put_bytes_per_sec: 0.0,
                });
            t.messages += cq.max_offset().saturating_sub(cq.min_offset());
            t.put_messages += r.total_count;
            t.put_bytes += r.total_bytes;
            t.put_tps += r.per_sec();
            t.put_bytes_per_sec += r.bytes_per_sec();
        }
        for c in self.topics.list() {
            topics.entry(c.name.clone()).or_insert(TopicStats {
                topic: c.name,
                messages: 0,
                put_messages: 0,
                put_bytes: 0,
                put_tps: 0.0,
                put_bytes_per_sec: 0.0,
            });
        }
        let mut groups: BTreeMap<(String, String), GroupStats> = BTreeMap::new();
        let blank = |group: &str, topic: &str| GroupStats {
            group: group.to_owned(),
            topic: topic.to_owned(),
            get_messages: 0,
            get_bytes: 0,
            get_tps: 0.0,
            get_bytes_per_sec: 0.0,
            lag: None,
        };
        for ((group, topic), r) in self.gets.read(now) {
            let g = groups
                .entry((group.clone(), topic.clone()))
                .or_insert_with(|| blank(&group, &topic));
            g.get_messages = r.total_count;
            g.get_bytes = r.total_bytes;
            g.get_tps = r.per_sec();
            g.get_bytes_per_sec = r.bytes_per_sec();
        }
        for (group, topic, _, _) in self.all_committed_offsets() {
            groups
                .entry((group.clone(), topic.clone()))
                .or_insert_with(|| blank(&group, &topic));
        }
        for g in groups.values_mut() {
            g.lag = self.lag_of(&g.group, &g.topic);
        }
        StoreStats {
            topics: topics.into_values().collect(),
            groups: groups.into_values().collect(),
        }
    }

    /// Messages of `topic` past `group`'s committed offsets; `None` without any.
    fn lag_of(&self, group: &str, topic: &str) -> Option<u64> {
        let committed = self.committed_offsets(group, topic);
        if committed.is_empty() {
            return None;
        }
        let mut lag = 0;
        for cq in self.all_queues() {
            if &**cq.topic() != topic {
                continue;
            }
            let from = committed
                .get(&cq.queue_id())
                .copied()
                .unwrap_or_else(|| cq.min_offset());
            lag += cq.max_offset().saturating_sub(from);
        }
        Some(lag)
    }
}
