//! The schedule service: delivers delayed messages to their real topic when they fall due.
//!
//! Delay levels use RocketMQ's `SCHEDULE_TOPIC_XXXX` (queue = level − 1, delivery time as the
//! consume queue tag code); every queue is in delivery order, so each level keeps one offset,
//! persisted in `config/delayOffset.json` (`{"offsetTable":{"1":0,…}}`, keyed by level).
//!
//! Arbitrary delivery times use the timer topic (`rmq_sys_wheel_timer`, queue 0), which is in
//! arrival order, and whose consume queue tag code is the tag's hash (as in RocketMQ 5): the
//! delivery time is read from each record's `TIMER_OUT_MS` when the service first sees it, and
//! pending entries are kept in a min-heap by delivery time. Progress is a watermark (the lowest
//! queue offset not yet delivered) plus the delivered offsets above it, persisted in the same
//! file under `"timer"` (`{"watermark":N,"delivered":[…]}`; RocketMQ ignores the field).
//! The watermark also goes to RocketMQ 5's own timer checkpoint, `config/timercheck`, as
//! `lastTimerQueueOffset` (see [`crate::format::timer_checkpoint`]): a RocketMQ broker taking
//! the store over re-reads the timer queue from there, delivering every pending message at
//! least once (those above the watermark already delivered, again). mqlite itself never reads
//! `timercheck`: written by a RocketMQ broker, it counts messages moved into its `timerlog/`,
//! not delivered ones.
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
use crate::clock::now_ms;
use crate::error::Result;
use crate::format::timer_checkpoint::TimerCheckpoint;
use crate::storage::Fs;

/// RocketMQ's timer checkpoint file, in the config directory.
pub(crate) const TIMER_CHECK_FILE: &str = "timercheck";
/// RocketMQ's default `timerPrecisionMs` (the wheel's slot).
const TIMER_PRECISION_MS: u64 = 1000;

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
    fs: Fs,
    timer_check: std::path::PathBuf,
    /// The watermark `timercheck` holds, once written by this process.
    timer_check_written: Mutex<Option<u64>>,
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
        let timer_check = config_dir.join(TIMER_CHECK_FILE);
        // A store written before `timercheck` existed: write it at the next persist.
        let missing = (progress.timer_watermark > 0 || !progress.timer_delivered.is_empty())
            && !fs.exists(&timer_check)?;
        let state = ScheduleState {
            file: JsonFile::new(fs.clone(), path),
            progress: Mutex::new(progress),
            fs: fs.clone(),
            timer_check,
            timer_check_written: Mutex::new(None),
        };
        if missing {
            state.mark_dirty();
        }
        Ok(state)
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
        let mut snapshot = None;
        self.file.persist_if_dirty(|| {
            let mut p = self.progress.lock();
            p.counter += 1;
            snapshot = Some((p.timer_watermark, p.counter));
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
        })?;
        let Some((watermark, counter)) = snapshot else {
            return Ok(());
        };
        let written = self.write_timer_check(watermark, counter);
        if written.is_err() {
            // Try both files again at the next persist.
            self.mark_dirty();
        }
        written
    }

    /// Writes `config/timercheck` with `watermark` as the next timer queue offset to read,
    /// unless it already holds that watermark or a later one.
    fn write_timer_check(&self, watermark: u64, counter: u64) -> Result<()> {
        let mut written = self.timer_check_written.lock();
        if written.is_some_and(|w| w >= watermark) {
            return Ok(());
        }
        let now = now_ms();
        let cp = TimerCheckpoint {
            // Where a broker's wheel would be read up to by now; anything pending before it
            // is delivered at once when the broker re-reads it.
            last_read_time_ms: now / TIMER_PRECISION_MS * TIMER_PRECISION_MS,
            last_timer_log_flush_pos: 0,
            last_timer_queue_offset: watermark,
            // A broker starts at the smaller of the two.
            master_timer_queue_offset: watermark,
            state_version: 0,
            version_timestamp: now,
            version_counter: counter,
        };
        self.fs.write_atomic(&self.timer_check, &cp.encode())?;
        *written = Some(watermark);
        Ok(())
    }
}
