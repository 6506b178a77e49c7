//! Verbs that look at a store as a whole: topics, topic, groups, progress, stats, verify.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::Path;

use mqlite::{MessageQueue, Store, VerifyProgress, VerifyStage};
use serde_json::{Value, json};

use crate::output::{bytes, dash, iso, print_json, table};
use crate::{Fail, Res};

/// Each queue of `topic` with its min and max offset.
pub(crate) fn topic_queues(store: &Store, topic: &str) -> Res<Vec<(MessageQueue, u64, u64)>> {
    let mut out = Vec::new();
    for q in store.queues(topic)? {
        let min = store.min_offset(&q)?;
        let max = store.max_offset(&q)?;
        out.push((q, min, max));
    }
    Ok(out)
}

/// Store time of the message at `offset` of `q`, if it is still stored.
fn store_time_at(store: &Store, q: &MessageQueue, offset: u64) -> Res<Option<u64>> {
    if offset < store.min_offset(q)? || offset >= store.max_offset(q)? {
        return Ok(None);
    }
    let got = store.get_messages(q, offset, 1)?;
    Ok(got
        .messages
        .first()
        .map(|m| m.store_timestamp().max(0) as u64))
}

pub(crate) fn topics(json: bool, store: &Store) -> Res {
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for t in store.topics() {
        let qs = topic_queues(store, &t.name)?;
        let messages: u64 = qs.iter().map(|(_, min, max)| max - min).sum();
        js.push(json!({"topic": t.name, "read_queues": t.read_queue_nums,
            "write_queues": t.write_queue_nums, "perm": t.perm, "messages": messages}));
        rows.push(vec![
            t.name.clone(),
            t.read_queue_nums.to_string(),
            messages.to_string(),
        ]);
    }
    if json {
        return print_json(&Value::Array(js));
    }
    table(&["TOPIC", "QUEUES", "MESSAGES"], &rows);
    Ok(())
}

pub(crate) fn topic(json: bool, store: &Store, name: &str) -> Res {
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for (q, min, max) in topic_queues(store, name)? {
        let last = match max.checked_sub(1) {
            Some(last) => store_time_at(store, &q, last)?,
            None => None,
        };
        js.push(
            json!({"queue_id": q.queue_id, "min_offset": min, "max_offset": max,
            "last_store_timestamp": last}),
        );
        rows.push(vec![
            q.queue_id.to_string(),
            min.to_string(),
            max.to_string(),
            last.map_or_else(|| "-".to_owned(), iso),
        ]);
    }
    if json {
        return print_json(&json!({"topic": name, "queues": js}));
    }
    table(&["QUEUE", "MIN_OFFSET", "MAX_OFFSET", "LAST_STORED"], &rows);
    Ok(())
}

pub(crate) fn groups(json: bool, store: &Store) -> Res {
    let mut by: BTreeMap<(String, String), ()> = BTreeMap::new();
    for o in store.consumer_offsets() {
        by.insert((o.group, o.topic), ());
    }
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for (group, topic) in by.keys() {
        let lag = store.consumer_lag(group, topic).ok();
        js.push(json!({"group": group, "topic": topic, "lag": lag}));
        rows.push(vec![group.clone(), topic.clone(), dash(lag)]);
    }
    if json {
        return print_json(&Value::Array(js));
    }
    table(&["GROUP", "TOPIC", "LAG"], &rows);
    Ok(())
}

pub(crate) fn progress(json: bool, store: &Store, only: Option<&str>) -> Res {
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for o in store.consumer_offsets() {
        if only.is_some_and(|g| g != o.group) {
            continue;
        }
        let q = MessageQueue::new(o.topic.as_str(), o.queue_id);
        let broker = store.max_offset(&q).ok();
        let lag = broker.map(|b| b.saturating_sub(o.offset));
        // mqadmin's "LastTime": the store time of the last message consumed.
        let last = match o.offset.checked_sub(1) {
            Some(at) => store_time_at(store, &q, at).ok().flatten(),
            None => None,
        };
        js.push(
            json!({"group": o.group, "topic": o.topic, "queue_id": o.queue_id,
            "broker_offset": broker, "consumer_offset": o.offset, "lag": lag,
            "last_consumed_store_timestamp": last}),
        );
        rows.push(vec![
            o.group,
            o.topic,
            o.queue_id.to_string(),
            dash(broker),
            o.offset.to_string(),
            dash(lag),
            last.map_or_else(|| "-".to_owned(), iso),
        ]);
    }
    if json {
        return print_json(&Value::Array(js));
    }
    let header = [
        "GROUP",
        "TOPIC",
        "QUEUE",
        "BROKER_OFFSET",
        "CONSUMER_OFFSET",
        "LAG",
        "LAST_CONSUMED",
    ];
    table(&header, &rows);
    Ok(())
}

/// Bytes allocated on disk under `path` (sparse files count what they use), and files.
fn disk_use(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    if meta.is_file() {
        return (meta.blocks() * 512, 1);
    }
    if !meta.is_dir() {
        return (0, 0);
    }
    let mut total = (0, 0);
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let (b, f) = disk_use(&e.path());
            total = (total.0 + b, total.1 + f);
        }
    }
    total
}

/// Windows the throughput is shown for, in minutes.
const WINDOWS: [u64; 3] = [1, 5, 15];

pub(crate) fn stats(json: bool, store: &Store) -> Res {
    let now = crate::time::now_ms();
    let topics = store.topics();
    let (mut queues, mut messages) = (0u64, 0u64);
    let mut totals = [0u64; WINDOWS.len()];
    let mut per_topic = Vec::new();
    for t in &topics {
        let mut t_messages = 0;
        let mut t_windows = [0u64; WINDOWS.len()];
        let mut last: Option<u64> = None;
        for (q, min, max) in topic_queues(store, &t.name)? {
            queues += 1;
            t_messages += max - min;
            if max > min {
                last = last.max(store_time_at(store, &q, max - 1)?);
            }
            for (i, w) in WINDOWS.iter().enumerate() {
                let since = now.saturating_sub(w * 60_000);
                t_windows[i] += max - store.offset_by_time(&q, since)?.clamp(min, max);
            }
        }
        messages += t_messages;
        for i in 0..WINDOWS.len() {
            totals[i] += t_windows[i];
        }
        per_topic.push((t.name.clone(), t_messages, t_windows, last));
    }
    let rate = |n: u64, minutes: u64| n as f64 / (minutes * 60) as f64;
    let offsets = store.consumer_offsets();
    let groups: BTreeSet<&str> = offsets.iter().map(|o| o.group.as_str()).collect();
    let dir = store.dir();
    let mut disk = serde_json::Map::new();
    for sub in ["commitlog", "consumequeue", "index", "config"] {
        let (b, files) = disk_use(&dir.join(sub));
        disk.insert(sub.to_owned(), json!({"bytes": b, "files": files}));
    }
    let (all_bytes, _) = disk_use(dir);
    let windows: Vec<Value> = WINDOWS
        .iter()
        .zip(totals)
        .map(|(w, n)| json!({"minutes": w, "messages": n, "per_second": rate(n, *w)}))
        .collect();
    if json {
        let topics_js: Vec<Value> = per_topic
            .iter()
            .map(|(name, n, w, last)| {
                json!({"topic": name, "messages": n,
                    "stored_last_1m": w[0], "stored_last_5m": w[1], "stored_last_15m": w[2],
                    "last_store_timestamp": last})
            })
            .collect();
        return print_json(&json!({
            "dir": dir,
            "commitlog_min_offset": store.commitlog_min_offset(),
            "commitlog_max_offset": store.commitlog_max_offset(),
            "commitlog_segment_size": store.config().commitlog_segment_size,
            "disk_bytes": all_bytes,
            "disk": disk,
            "topics": topics.len(),
            "queues": queues,
            "messages": messages,
            "groups": groups.len(),
            "open_elsewhere": dir.join("abort").exists(),
            "throughput": windows,
            "per_topic": topics_js,
            "per_group": group_lags(store),
        }));
    }
    let disk_text: Vec<String> = disk
        .iter()
        .map(|(k, v)| format!("{k} {}", bytes(v["bytes"].as_u64().unwrap_or(0))))
        .collect();
    let tput: Vec<String> = WINDOWS
        .iter()
        .zip(totals)
        .map(|(w, n)| format!("{n} in {w}m ({:.2}/s)", rate(n, *w)))
        .collect();
    let fields = [
        ("dir", dir.display().to_string()),
        (
            "commitlog",
            format!(
                "offsets {}..{}, {} segments",
                store.commitlog_min_offset(),
                store.commitlog_max_offset(),
                bytes(store.config().commitlog_segment_size)
            ),
        ),
        (
            "disk",
            format!("{} ({})", bytes(all_bytes), disk_text.join(", ")),
        ),
        ("topics", topics.len().to_string()),
        ("queues", queues.to_string()),
        ("messages", messages.to_string()),
        ("groups", groups.len().to_string()),
        ("stored", tput.join(", ")),
        ("open_elsewhere", dir.join("abort").exists().to_string()),
    ];
    for (k, v) in fields {
        println!("{k:<16} {v}");
    }
    println!();
    let rows: Vec<Vec<String>> = per_topic
        .iter()
        .map(|(name, n, w, last)| {
            vec![
                name.clone(),
                n.to_string(),
                w[0].to_string(),
                w[1].to_string(),
                w[2].to_string(),
                format!("{:.2}", rate(w[0], 1)),
                last.map_or_else(|| "-".to_owned(), iso),
            ]
        })
        .collect();
    table(
        &[
            "TOPIC",
            "MESSAGES",
            "LAST_1M",
            "LAST_5M",
            "LAST_15M",
            "MSG/S_1M",
            "LAST_STORED",
        ],
        &rows,
    );
    let lags = group_lags(store);
    if !lags.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = lags
            .iter()
            .map(|g| {
                vec![
                    g["group"].as_str().unwrap_or("").to_owned(),
                    g["topic"].as_str().unwrap_or("").to_owned(),
                    dash(g["lag"].as_u64()),
                ]
            })
            .collect();
        table(&["GROUP", "TOPIC", "LAG"], &rows);
    }
    Ok(())
}

/// Each (group, topic) with committed offsets and its lag.
fn group_lags(store: &Store) -> Vec<Value> {
    store
        .stats()
        .groups
        .into_iter()
        .map(|g| json!({"group": g.group, "topic": g.topic, "lag": g.lag}))
        .collect()
}

/// Draws `verify`'s progress on stderr.
struct Bar {
    last: Option<(VerifyStage, u64)>,
}

impl Bar {
    fn show(&mut self, p: VerifyProgress) {
        let pct = (p.done.min(p.total) * 100)
            .checked_div(p.total)
            .map_or(100, |v| v as u8);
        if self.last == Some((p.stage, u64::from(pct))) {
            return;
        }
        let new_stage = self.last.is_some_and(|(s, _)| s != p.stage);
        self.last = Some((p.stage, u64::from(pct)));
        let (name, amount) = match p.stage {
            VerifyStage::CommitLog => (
                "commitlog",
                format!("{} of {}", bytes(p.done), bytes(p.total)),
            ),
            VerifyStage::ConsumeQueues => ("consume queues", format!("{} of {}", p.done, p.total)),
            VerifyStage::Index => ("index files", format!("{} of {}", p.done, p.total)),
            _ => ("", String::new()),
        };
        let filled = usize::from(pct) * 30 / 100;
        let mut err = std::io::stderr().lock();
        if new_stage {
            let _ = writeln!(err);
        }
        let _ = write!(
            err,
            "\r{name:<15} [{}{}] {pct:>3}% {amount}",
            "#".repeat(filled),
            " ".repeat(30 - filled)
        );
        let _ = err.flush();
    }
}

pub(crate) fn verify(json: bool, store: &Store, force_progress: bool) -> Res {
    let show = force_progress || std::io::stderr().is_terminal();
    let mut bar = Bar { last: None };
    let r = store.verify_with_progress(|p| {
        if show {
            bar.show(p);
        }
    })?;
    if show {
        eprintln!();
    }
    if json {
        let problems: Vec<Value> = r
            .problems
            .iter()
            .map(|p| json!({"file": p.file, "offset": p.offset, "reason": p.reason}))
            .collect();
        print_json(
            &json!({"ok": r.is_ok(), "records": r.records, "units": r.units,
            "index_entries": r.index_entries, "log_end": r.log_end, "problems": problems}),
        )?;
    } else {
        println!(
            "{} records, {} consume queue units, {} index entries checked; the log ends at offset {}",
            r.records, r.units, r.index_entries, r.log_end
        );
        for p in &r.problems {
            println!("DAMAGE {p}");
        }
        println!("{}", if r.is_ok() { "ok" } else { "DAMAGED" });
    }
    if r.is_ok() {
        Ok(())
    } else {
        Err(Fail(String::new(), 2))
    }
}
