//! Verbs that show messages: print, get, query, tail.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use mqlite::{MessageExt, MessageSelector, PullStatus, Store};

use crate::inspect::topic_queues;
use crate::output::{BodyFormat, message_json, message_row, print_json, print_messages};
use crate::{Fail, Res};

/// The consumer group name the CLI reads with (it never commits offsets).
const GROUP: &str = "mqlite-cli";

/// The filter of `--tag` or `--sql`.
pub(crate) fn selector(tag: &str, sql: Option<&str>) -> Res<MessageSelector> {
    Ok(match sql {
        Some(expr) => MessageSelector::by_sql(expr)?,
        None => MessageSelector::by_tag(tag)?,
    })
}

/// Which messages `print` shows.
pub(crate) struct Range {
    pub(crate) queue: Option<u32>,
    pub(crate) from: Option<u64>,
    pub(crate) to: Option<u64>,
    pub(crate) limit: Option<u64>,
}

pub(crate) fn print(
    json: bool,
    store: &Store,
    topic: &str,
    filter: &MessageSelector,
    range: Range,
    how: BodyFormat,
) -> Res {
    let limit = range.limit.unwrap_or(u64::MAX);
    let queues = topic_queues(store, topic)?;
    if let Some(n) = range.queue
        && queues.len() as u64 <= u64::from(n)
    {
        return Err(Fail(
            format!("topic {topic:?} has no queue {n} (it has {})", queues.len()),
            1,
        ));
    }
    let pull = store.pull_consumer(GROUP)?;
    let mut out = Vec::new();
    'queues: for (q, min, max) in queues {
        if range.queue.is_some_and(|n| n != q.queue_id) {
            continue;
        }
        let mut off = range.from.unwrap_or(min).max(min);
        let to = range.to.map_or(max, |t| t.min(max));
        while off < to {
            let r = pull.pull_filtered(&q, filter, off, ((to - off).min(256)) as usize)?;
            for m in r.messages {
                if m.queue_offset() >= to {
                    break;
                }
                if out.len() as u64 >= limit {
                    break 'queues;
                }
                out.push(m);
            }
            if r.status == PullStatus::NoNewMsg || r.next_begin_offset <= off {
                break;
            }
            off = r.next_begin_offset;
        }
    }
    print_messages(json, &out, how)
}

pub(crate) fn get(json: bool, store: &Store, id: &str, how: BodyFormat) -> Res {
    let msg = match store.view_message(id) {
        Ok(m) => m,
        Err(mqlite::Error::Decode(_)) => by_uniq_key(store, id)?,
        Err(e) => return Err(e.into()),
    };
    let v = message_json(&msg, how);
    if json {
        return print_json(&v);
    }
    crate::output::print_fields(&v, 16);
    Ok(())
}

/// Not an offset msgId: the message whose UNIQ_KEY it is, looked up in every topic's index.
fn by_uniq_key(store: &Store, id: &str) -> Res<MessageExt> {
    for t in store.topics() {
        if let Some(m) = store
            .query_by_key(&t.name, id, 0, u64::MAX, 64)?
            .into_iter()
            .find(|m| m.msg_id() == id)
        {
            return Ok(m);
        }
    }
    Err(Fail(
        format!("no message with offset msgId or UNIQ_KEY {id}"),
        1,
    ))
}

pub(crate) fn query(
    json: bool,
    store: &Store,
    topic: &str,
    key: &str,
    (begin, end): (u64, u64),
    max: usize,
    how: BodyFormat,
) -> Res {
    let found = store.query_by_key(topic, key, begin, end, max)?;
    print_messages(json, &found, how)
}

pub(crate) fn tail(
    json: bool,
    store: &Store,
    topic: &str,
    filter: &MessageSelector,
    from_start: bool,
    count: Option<u64>,
    how: BodyFormat,
) -> Res {
    let pull = store.pull_consumer(GROUP)?;
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let mut any = false;
        // Queues may be added while the topic is followed.
        for q in store.queues(topic).unwrap_or_default() {
            let off = match next.get(&q.queue_id) {
                Some(&o) => o,
                None if from_start => store.min_offset(&q)?,
                None => store.max_offset(&q)?,
            };
            let r = pull.pull_filtered(&q, filter, off, 64)?;
            next.insert(q.queue_id, r.next_begin_offset.max(off));
            for m in &r.messages {
                any = true;
                let line = if json {
                    serde_json::to_string(&message_json(m, how))?
                } else {
                    message_row(m, how).join("  ")
                };
                let mut out = stdout.lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(()); // the reader went away (a closed pipe)
                }
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return Ok(());
                }
            }
        }
        if !any {
            // Another process writes: nothing wakes a read-only store, so look again soon.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
