//! Consumer offsets per (group, topic, queue), persisted in `config/consumerOffset.json` in
//! RocketMQ's `ConsumerOffsetManager` shape: `{"offsetTable":{"topic@group":{"0":123}}}`, the
//! value being the next offset to consume.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::json_file::JsonFile;
use super::topics::{data_version, parse_lenient_json};
use crate::error::Result;
use crate::storage::Fs;

/// topic → group → queue id → next offset. Nested, so lookups borrow `&str` keys and a commit
/// allocates nothing once its entry exists.
type Table = BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>;

/// The offset table and its file.
#[derive(Debug)]
pub(crate) struct ConsumerOffsets {
    file: JsonFile,
    table: Mutex<(Table, u64)>,
}

fn parse(bytes: &[u8]) -> Option<(Table, u64)> {
    let v = parse_lenient_json(bytes)?;
    let offsets = v.get("offsetTable")?.as_object()?;
    let mut table = Table::new();
    for (key, queues) in offsets {
        let Some((topic, group)) = key.split_once('@') else {
            continue;
        };
        let Some(queues) = queues.as_object() else {
            continue;
        };
        let entry = table
            .entry(topic.to_owned())
            .or_default()
            .entry(group.to_owned())
            .or_default();
        for (q, off) in queues {
            if let (Ok(q), Some(off)) = (q.parse::<u32>(), off.as_i64())
                && off >= 0
            {
                entry.insert(q, off as u64);
            }
        }
    }
    let counter = v
        .pointer("/dataVersion/counter")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some((table, counter))
}

/// Which table a committed offset belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetScope {
    /// The group's offsets (`config/consumerOffset.json`): clustering consumers.
    Group,
    /// One consumer instance's offsets (`config/broadcastOffset.json`): broadcasting.
    Instance,
}

impl ConsumerOffsets {
    /// Loads the table (falling back to `.bak`); missing or unreadable files give an empty
    /// table, which means consumers start over by their `ConsumeFrom` rule (redelivery, never a
    /// skip).
    pub(crate) fn load(fs: &Fs, config_dir: &Path) -> Result<ConsumerOffsets> {
        Self::load_file(fs, config_dir, "consumerOffset.json")
    }

    /// Loads a table of the same shape from another file.
    pub(crate) fn load_file(fs: &Fs, config_dir: &Path, name: &str) -> Result<ConsumerOffsets> {
        let path = config_dir.join(name);
        let loaded = fs.read_with_backup(&path, parse)?.unwrap_or_default();
        Ok(ConsumerOffsets {
            file: JsonFile::new(fs.clone(), path),
            table: Mutex::new(loaded),
        })
    }

    pub(crate) fn get(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        let t = self.table.lock();
        t.0.get(topic)
            .and_then(|g| g.get(group))
            .and_then(|q| q.get(&queue_id))
            .copied()
    }

    pub(crate) fn set(&self, group: &str, topic: &str, queue_id: u32, offset: u64) {
        let mut t = self.table.lock();
        let queues = match t.0.get_mut(topic).and_then(|g| g.get_mut(group)) {
            Some(q) => q,
            None => {
                t.0.entry(topic.to_owned())
                    .or_default()
                    .entry(group.to_owned())
                    .or_default()
            }
        };
        if queues.insert(queue_id, offset) != Some(offset) {
            self.file.mark_dirty();
        }
    }

    /// Every stored offset: `(group, topic, queue id, offset)`, sorted.
    pub(crate) fn all(&self) -> Vec<(String, String, u32, u64)> {
        let t = self.table.lock();
        let mut out: Vec<_> =
            t.0.iter()
                .flat_map(|(topic, groups)| {
                    groups.iter().flat_map(move |(group, queues)| {
                        queues
                            .iter()
                            .map(move |(q, off)| (group.clone(), topic.clone(), *q, *off))
                    })
                })
                .collect();
        out.sort();
        out
    }

    /// The groups whose offset on `topic`/`queue_id` is below `below`, with that offset.
    pub(crate) fn behind(&self, topic: &str, queue_id: u32, below: u64) -> Vec<(String, u64)> {
        self.table
            .lock()
            .0
            .get(topic)
            .into_iter()
            .flatten()
            .filter_map(|(g, qs)| {
                qs.get(&queue_id)
                    .filter(|&&o| o < below)
                    .map(|&o| (g.clone(), o))
            })
            .collect()
    }

    /// Every stored offset of `group` on `topic`.
    pub(crate) fn of(&self, group: &str, topic: &str) -> BTreeMap<u32, u64> {
        self.table
            .lock()
            .0
            .get(topic)
            .and_then(|g| g.get(group))
            .cloned()
            .unwrap_or_default()
    }

    /// Lowers offsets that point past a queue's end (the log lost its tail in a crash), so
    /// consumers re-read what gets written there instead of skipping it.
    /// Returns how many were lowered.
    pub(crate) fn clamp(&self, max_offset: impl Fn(&str, u32) -> u64) -> usize {
        let mut lowered = 0;
        let mut t = self.table.lock();
        for (topic, groups) in t.0.iter_mut() {
            for (q, off) in groups.values_mut().flat_map(|g| g.iter_mut()) {
                let max = max_offset(topic, *q);
                if *off > max {
                    *off = max;
                    lowered += 1;
                    self.file.mark_dirty();
                }
            }
        }
        lowered
    }

    /// Writes the file if anything changed since the last write.
    pub(crate) fn persist_if_dirty(&self) -> Result<()> {
        self.file.persist_if_dirty(|| {
            let mut t = self.table.lock();
            t.1 += 1;
            let mut table = Map::new();
            for (topic, group, queues) in
                t.0.iter()
                    .flat_map(|(t, gs)| gs.iter().map(move |(g, q)| (t, g, q)))
            {
                let q: Map<String, Value> = queues
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                table.insert(format!("{topic}@{group}"), Value::Object(q));
            }
            json!({"offsetTable": Value::Object(table), "dataVersion": data_version(t.1)})
        })
    }
}
