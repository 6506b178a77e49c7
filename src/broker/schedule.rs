//! The schedule service: delivers delayed messages to their real topic when they fall due.
//!
//! Delay levels use RocketMQ's `SCHEDULE_TOPIC_XXXX` (queue = level − 1, delivery time as the
//! consume queue tag code); every queue is in delivery order, so each level keeps one offset,
//! persisted in `config/delayOffset.json` (`{"offsetTable":{"1":0,…}}`, keyed by level).
//!
//! Arbitrary delivery times use the timer topic (`rmq_sys_wheel_timer`, queue 0), which is in
//! arrival order: pending entries are kept in a min-heap by delivery time, and progress is a
//! watermark (every entry below it delivered) plus the delivered offsets above it, persisted in
//! the same file under `"timer"`.
//!
//! Never twice: each delivered record carries a `SCHEDULE_SRC` property naming its source entry.
//! Progress is persisted only after the deliveries it counts are flushed, and after a crash the
//! recovery scan (which covers everything written since the last persist) reads the
//! `SCHEDULE_SRC` of deliveries made after it, so they are not made again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::Path;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::json_file::JsonFile;
use super::topics::{data_version, parse_lenient_json};
use crate::error::Result;
use crate::storage::Fs;

/// Property naming the schedule entry a delivered message came from: `L{level}:{offset}` or
/// `T:{offset}` (timer).
pub(crate) use crate::format::properties::keys::SCHEDULE_SRC;

/// Where a delivered message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A delay level's queue, at an offset.
    Level(u32, u64),
    /// The timer queue, at an offset.
    Timer(u64),
}

impl Source {
    pub(crate) fn encode(&self) -> String {
        match self {
            Source::Level(l, o) => format!("L{l}:{o}"),
            Source::Timer(o) => format!("T:{o}"),
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Source> {
        let (kind, off) = s.split_once(':')?;
        let off = off.parse().ok()?;
        match kind {
            "T" => Some(Source::Timer(off)),
            _ => Some(Source::Level(kind.strip_prefix('L')?.parse().ok()?, off)),
        }
    }
}

/// Progress of the schedule service.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Next offset to deliver, per level.
    pub(crate) levels: BTreeMap<u32, u64>,
    /// Every timer entry below this was delivered.
    pub(crate) timer_watermark: u64,
    /// Timer entries at or above the watermark already delivered.
    pub(crate) timer_delivered: BTreeSet<u64>,
    /// Next timer entry to load into the heap (not persisted).
    pub(crate) timer_loaded: u64,
    /// Pending timer entries: (delivery time, offset).
    pub(crate) heap: BinaryHeap<Reverse<(u64, u64)>>,
    counter: u64,
}

impl Progress {
    /// Records a delivery (from the recovery scan or the service).
    pub(crate) fn delivered(&mut self, src: Source) {
        match src {
            Source::Level(l, o) => {
                let e = self.levels.entry(l).or_default();
                *e = (*e).max(o + 1);
            }
            Source::Timer(o) => {
                if o >= self.timer_watermark {
                    self.timer_delivered.insert(o);
                }
                while self.timer_delivered.remove(&self.timer_watermark) {
                    self.timer_watermark += 1;
                }
            }
        }
    }

    pub(crate) fn timer_done(&self, offset: u64) -> bool {
        offset < self.timer_watermark || self.timer_delivered.contains(&offset)
    }
}

/// The progress table and its file.
#[derive(Debug)]
pub(crate) struct ScheduleState {
    file: JsonFile,
    pub(crate) progress: Mutex<Progress>,
}

fn parse(bytes: &[u8]) -> Option<Progress> {
    let v = parse_lenient_json(bytes)?;
    let mut p = Progress::default();
    for (k, off) in v.get("offsetTable")?.as_object()? {
        if let (Ok(level), Some(off)) = (k.parse::<u32>(), off.as_u64()) {
            p.levels.insert(level, off);
        }
    }
    if let Some(t) = v.get("timer") {
        p.timer_watermark = t.get("watermark").and_then(Value::as_u64).unwrap_or(0);
        p.timer_delivered = t
            .get("delivered")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
    }
    p.counter = v
        .pointer("/dataVersion/counter")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(p)
}

impl ScheduleState {
    pub(crate) fn load(fs: &Fs, config_dir: &Path) -> Result<ScheduleState> {
        let path = config_dir.join("delayOffset.json");
        let progress = fs.read_with_backup(&path, parse)?.unwrap_or_default();
        Ok(ScheduleState {
            file: JsonFile::new(fs.clone(), path),
            progress: Mutex::new(progress),
        })
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.file.is_dirty()
    }

    pub(crate) fn mark_dirty(&self) {
        self.file.mark_dirty();
    }

    /// Writes the file if the progress changed. The caller flushes the log first, so the
    /// file never counts a delivery that a crash could take back.
    pub(crate) fn persist_if_dirty(&self) -> Result<()> {
        self.file.persist_if_dirty(|| {
            let mut p = self.progress.lock();
            p.counter += 1;
            let table: Map<String, Value> = p
                .levels
                .iter()
                .map(|(l, o)| (l.to_string(), json!(o)))
                .collect();
            json!({
                "offsetTable": Value::Object(table),
                "timer": {
                    "watermark": p.timer_watermark,
                    "delivered": p.timer_delivered.iter().collect::<Vec<_>>(),
                },
                "dataVersion": data_version(p.counter),
            })
        })
    }
}
