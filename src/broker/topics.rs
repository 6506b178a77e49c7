//! Topic configurations, persisted in `config/topics.json` in RocketMQ's `TopicConfigManager`
//! shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::storage::Fs;

/// Read permission bit (`PermName.PERM_READ`).
pub const PERM_READ: u32 = 4;
/// Write permission bit (`PermName.PERM_WRITE`).
pub const PERM_WRITE: u32 = 2;

/// A topic's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicConfig {
    /// The topic name.
    pub name: String,
    /// Queues consumers read.
    pub read_queue_nums: u32,
    /// Queues producers write.
    pub write_queue_nums: u32,
    /// Permission bits (read 4, write 2).
    pub perm: u32,
    /// Whether the topic is marked ordered.
    pub order: bool,
}

impl TopicConfig {
    pub(crate) fn new(name: &str, queues: u32) -> TopicConfig {
        TopicConfig {
            name: name.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PERM_READ | PERM_WRITE,
            order: false,
        }
    }

    /// Queue count (the larger of the read and write counts).
    pub fn queue_count(&self) -> u32 {
        self.read_queue_nums.max(self.write_queue_nums)
    }

    fn to_json(&self) -> Value {
        json!({
            "topicName": self.name,
            "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums,
            "perm": self.perm,
            "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": 0,
            "order": self.order,
            "attributes": {},
        })
    }

    fn from_json(name: &str, v: &Value) -> Option<TopicConfig> {
        let num = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|n| n.min(u64::from(u32::MAX)) as u32)
        };
        Some(TopicConfig {
            name: v
                .get("topicName")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_owned(),
            read_queue_nums: num("readQueueNums")?,
            write_queue_nums: num("writeQueueNums")?,
            perm: num("perm").unwrap_or(PERM_READ | PERM_WRITE),
            order: v.get("order").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

#[derive(Debug)]
struct Table {
    topics: BTreeMap<String, TopicConfig>,
    counter: u64,
}

/// The topic table and its file.
#[derive(Debug)]
pub(crate) struct TopicTable {
    fs: Fs,
    path: PathBuf,
    table: Mutex<Table>,
}

/// Parses JSON that may use Java fastjson's unquoted integer map keys (`{0:5}`).
pub(crate) fn parse_lenient_json(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.trim().is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    // Quote bare integer keys: a digit run right after `{` or `,` (outside strings) and
    // followed by `:`.
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_str = false;
    let mut escaped = false;
    let mut last_sig = ' ';
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        if (c.is_ascii_digit() || c == '-') && (last_sig == '{' || last_sig == ',') {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '-') {
                i += 1;
            }
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let token: String = chars[start..i].iter().collect();
            if j < chars.len() && chars[j] == ':' {
                out.push('"');
                out.push_str(&token);
                out.push('"');
            } else {
                out.push_str(&token);
            }
            last_sig = '0';
            continue;
        }
        if !c.is_whitespace() {
            last_sig = c;
        }
        out.push(c);
        i += 1;
    }
    serde_json::from_str(&out).ok()
}

/// `{"counter":N,"stateVersion":0,"timestamp":ms}`.
pub(crate) fn data_version(counter: u64) -> Value {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({"counter": counter, "stateVersion": 0, "timestamp": ts})
}

impl TopicTable {
    /// Loads `config/topics.json` (or its `.bak`); a missing file is an empty table.
    pub(crate) fn load(fs: &Fs, config_dir: &Path) -> Result<TopicTable> {
        let path = config_dir.join("topics.json");
        let parsed = fs.read_with_backup(&path, |bytes| {
            let v = parse_lenient_json(bytes)?;
            let table = v.get("topicConfigTable")?.as_object()?;
            let topics: BTreeMap<String, TopicConfig> = table
                .iter()
                .filter_map(|(k, v)| TopicConfig::from_json(k, v).map(|t| (k.clone(), t)))
                .collect();
            let counter = v
                .pointer("/dataVersion/counter")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            Some((topics, counter))
        })?;
        let (topics, counter) = parsed.unwrap_or_default();
        Ok(TopicTable {
            fs: fs.clone(),
            path,
            table: Mutex::new(Table { topics, counter }),
        })
    }

    /// Takes the content of `other` (a read-only store re-reading the file).
    pub(crate) fn replace_with(&self, other: TopicTable) {
        let fresh = other.table.into_inner();
        let mut t = self.table.lock();
        t.topics = fresh.topics;
        t.counter = fresh.counter;
    }

    pub(crate) fn get(&self, name: &str) -> Option<TopicConfig> {
        self.table.lock().topics.get(name).cloned()
    }

    /// A topic's queue count, without copying its config (the read path asks on every pull).
    pub(crate) fn queue_count(&self, name: &str) -> Option<u32> {
        self.table
            .lock()
            .topics
            .get(name)
            .map(TopicConfig::queue_count)
    }

    /// A topic's write queue count, without copying its config (asked on every send).
    pub(crate) fn write_queues(&self, name: &str) -> Option<u32> {
        self.table
            .lock()
            .topics
            .get(name)
            .map(|t| t.write_queue_nums)
    }

    pub(crate) fn list(&self) -> Vec<TopicConfig> {
        self.table.lock().topics.values().cloned().collect()
    }

    /// Creates the topic, or raises its queue count to at least `queues`. Returns the
    /// resulting config; persists when anything changed.
    pub(crate) fn ensure(&self, name: &str, queues: u32) -> Result<TopicConfig> {
        let mut t = self.table.lock();
        let changed = match t.topics.get_mut(name) {
            Some(cfg) if cfg.queue_count() >= queues => false,
            Some(cfg) => {
                cfg.read_queue_nums = queues;
                cfg.write_queue_nums = queues;
                true
            }
            None => {
                t.topics
                    .insert(name.to_owned(), TopicConfig::new(name, queues));
                true
            }
        };
        if changed {
            t.counter += 1;
            Self::persist(&self.fs, &self.path, &t)?;
        }
        Ok(t.topics[name].clone())
    }

    fn persist(fs: &Fs, path: &Path, t: &Table) -> Result<()> {
        let mut table = Map::new();
        for (k, v) in &t.topics {
            table.insert(k.clone(), v.to_json());
        }
        let doc = json!({
            "dataVersion": data_version(t.counter),
            "topicConfigTable": Value::Object(table),
        });
        let text = serde_json::to_vec_pretty(&doc)
            .map_err(|e| Error::InvalidConfig(format!("cannot encode topics.json: {e}")))?;
        if let Some(dir) = path.parent() {
            fs.create_dir_all(dir)?;
        }
        fs.write_atomic(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_json_quotes_integer_keys() {
        let v =
            parse_lenient_json(b"{\"offsetTable\":{\"t@g\":{0:5,1:7}},\"x\":\"a,1:b\"}").unwrap();
        assert_eq!(
            v.pointer("/offsetTable/t@g/1").and_then(Value::as_u64),
            Some(7)
        );
        assert_eq!(v.get("x").and_then(Value::as_str), Some("a,1:b"));
    }
}
