//! Verbs that write, taking the store's lock: send, reset.

use std::path::Path;

use mqlite::{Message, Store};
use serde_json::json;

use crate::output::{print_json, table};
use crate::{Fail, Res};

/// Opens the store for writing (taking the lock), with the segment sizes its files have.
fn open_rw(dir: &Path) -> Res<Store> {
    if !dir.join("commitlog").is_dir() {
        // A new store.
        return Ok(Store::open(dir)?);
    }
    let config = crate::open_ro(dir)?.config().clone();
    Ok(Store::builder(dir).config(config).open()?)
}

pub(crate) fn send(
    json: bool,
    dir: &Path,
    topic: &str,
    tag: Option<&str>,
    keys: &[String],
    body: Vec<u8>,
) -> Res {
    let store = open_rw(dir)?;
    let mut msg = Message::new(topic, body);
    if let Some(t) = tag {
        msg = msg.with_tags(t);
    }
    if !keys.is_empty() {
        msg = msg.with_keys(keys.iter().map(String::as_str));
    }
    let r = store
        .producer("mqlite-cli")?
        .send(msg)
        .map_err(|e| Fail(e.error().to_string(), 1))?;
    store.close()?;
    if json {
        return print_json(&json!({"status": format!("{:?}", r.status),
            "msg_id": r.msg_id.to_string(), "offset_msg_id": r.offset_msg_id.to_string(),
            "queue_id": r.queue.queue_id, "queue_offset": r.queue_offset}));
    }
    println!(
        "{:?} {} queue {} offset {} (offset msgId {})",
        r.status, r.msg_id, r.queue.queue_id, r.queue_offset, r.offset_msg_id
    );
    Ok(())
}

pub(crate) fn reset(json: bool, dir: &Path, group: &str, topic: &str, ms: u64) -> Res {
    let store = open_rw(dir)?;
    store.reset_offset_by_time(group, topic, ms)?;
    let mut js = Vec::new();
    let mut rows = Vec::new();
    for o in store.consumer_offsets() {
        if o.group == group && o.topic == topic {
            js.push(json!({"queue_id": o.queue_id, "offset": o.offset}));
            rows.push(vec![o.queue_id.to_string(), o.offset.to_string()]);
        }
    }
    store.close()?;
    if json {
        return print_json(&json!({"group": group, "topic": topic, "offsets": js}));
    }
    table(&["QUEUE", "OFFSET"], &rows);
    Ok(())
}
