//! `mqlite`: inspect and operate an mqlite (RocketMQ-format) store directory, like `sqlite3`
//! does a database. Reading verbs open the store read-only (no lock, nothing written), so
//! they work while another process has it open; `send` and `reset` need the lock.
//!
//! ```text
//! mqlite topics DIR                      mqlite topic DIR TOPIC
//! mqlite groups DIR                      mqlite progress DIR [GROUP]
//! mqlite print DIR TOPIC [--queue N] [--from N] [--to N] [--tag EXPR] [--limit N]
//!                        [--body utf8|hex|base64]
//! mqlite get DIR MSG_ID                  mqlite query DIR TOPIC KEY [--begin MS] [--end MS]
//! mqlite tail DIR TOPIC [--tag EXPR] [--from-start] [--count N]
//! mqlite verify DIR                      mqlite stats DIR
//! mqlite send DIR TOPIC [--tag T] [--key K]... (--body TEXT | --file PATH)
//! mqlite reset DIR GROUP TOPIC --time MS|now
//! ```
//!
//! Every verb prints a table, or JSON with `--json`. Errors are one line on stderr (exit 1);
//! `verify` exits 2 when it finds damage.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqlite::{Message, MessageExt, MessageQueue, PullStatus, Store};
use serde_json::{Value, json};

const USAGE: &str = "usage: mqlite [--json] VERB DIR ARGS...
verbs:
  topics DIR                       topics, queue counts, messages
  topic DIR TOPIC                  per queue: min/max offset, last store time
  groups DIR                       consumer groups and their topics
  progress DIR [GROUP]             per queue: broker offset, consumer offset, lag
  print DIR TOPIC [--queue N] [--from N] [--to N] [--tag EXPR] [--limit N] [--body utf8|hex|base64]
  get DIR MSG_ID                   by offset msgId or UNIQ_KEY
  query DIR TOPIC KEY [--begin MS] [--end MS]
  tail DIR TOPIC [--tag EXPR] [--from-start] [--count N]
  verify DIR                       full CRC and consistency check (exit 2 on damage)
  stats DIR
  send DIR TOPIC [--tag T] [--key K]... (--body TEXT | --file PATH)   (takes the lock)
  reset DIR GROUP TOPIC --time MS|now                                 (takes the lock)";

/// A command line failure: a message, and the exit status.
struct Fail(String, u8);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail(e.to_string(), 1)
    }
}

type Res<T = ()> = Result<T, Fail>;

fn usage(msg: &str) -> Fail {
    Fail(format!("{msg}\n{USAGE}"), 1)
}

/// Parsed arguments: positionals and `--name value` options (`--flag` without a value for
/// the flags listed in `FLAGS`).
struct Args {
    json: bool,
    pos: Vec<String>,
    opts: BTreeMap<String, Vec<String>>,
}

const FLAGS: &[&str] = &["json", "from-start", "help"];

impl Args {
    fn parse(raw: Vec<String>) -> Res<Args> {
        let mut pos = Vec::new();
        let mut opts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                    None => (name.to_owned(), None),
                };
                let value = if FLAGS.contains(&name.as_str()) {
                    String::new()
                } else {
                    match inline.or_else(|| it.next()) {
                        Some(v) => v,
                        None => return Err(usage(&format!("option --{name} needs a value"))),
                    }
                };
                opts.entry(name).or_default().push(value);
            } else {
                pos.push(a);
            }
        }
        Ok(Args {
            json: opts.contains_key("json"),
            pos,
            opts,
        })
    }

    fn pos(&self, i: usize, what: &str) -> Res<&str> {
        self.pos
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| usage(&format!("missing {what}")))
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.opts
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn num(&self, name: &str) -> Res<Option<u64>> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| usage(&format!("--{name}: {v:?} is not a number"))),
        }
    }

    fn check_known(&self, verb: &str, known: &[&str]) -> Res {
        for k in self.opts.keys() {
            if k != "json" && !known.contains(&k.as_str()) {
                return Err(usage(&format!("{verb}: unknown option --{k}")));
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let result = Args::parse(raw).and_then(|args| run(&args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg, code)) => {
            if code != 0 {
                eprintln!("mqlite: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args) -> Res {
    if args.opts.contains_key("help") || args.pos.is_empty() {
        println!("{USAGE}");
        return Ok(());
    }
    let verb = args.pos[0].as_str();
    let dir = args.pos(1, "store directory")?;
    match verb {
        "topics" => topics(args, &open_ro(dir)?),
        "topic" => topic(args, &open_ro(dir)?),
        "groups" => groups(args, &open_ro(dir)?),
        "progress" => progress(args, &open_ro(dir)?),
        "print" => print(args, &open_ro(dir)?),
        "get" => get(args, &open_ro(dir)?),
        "query" => query(args, &open_ro(dir)?),
        "tail" => tail(args, &open_ro(dir)?),
        "verify" => verify(args, &open_ro(dir)?),
        "stats" => stats(args, &open_ro(dir)?),
        "send" => send(args, dir),
        "reset" => reset(args, dir),
        other => Err(usage(&format!("unknown verb {other:?}"))),
    }
}

/// Opens the store for writing (taking the lock), with the segment sizes its files have.
fn open_rw(dir: &str) -> Res<Store> {
    if !std::path::Path::new(dir).join("commitlog").is_dir() {
        // A new store.
        return Ok(Store::open(dir)?);
    }
    let config = open_ro(dir)?.config().clone();
    Ok(Store::builder(dir).config(config).open()?)
}

fn open_ro(dir: &str) -> Res<Store> {
    let path = std::path::Path::new(dir);
    if !path.join("commitlog").is_dir() && !path.join("config").is_dir() {
        return Err(Fail(
            format!("{dir}: not an mqlite store (no commitlog/ or config/)"),
            1,
        ));
    }
    Ok(Store::open_read_only(dir)?)
}

/// Prints `rows` under `header`, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_json(v: &Value) -> Res {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `2026-12-02T14:03:05.123Z` for ms since the epoch.
fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn body_text(body: &[u8], how: &str) -> Res<String> {
    Ok(match how {
        "utf8" => String::from_utf8_lossy(body).into_owned(),
        "hex" => body.iter().map(|b| format!("{b:02x}")).collect(),
        "base64" => base64(body),
        other => {
            return Err(usage(&format!(
                "--body: {other:?} is not utf8, hex or base64"
            )));
        }
    })
}

fn message_json(m: &MessageExt, how: &str) -> Res<Value> {
    let props: BTreeMap<&str, &str> = m.properties().collect();
    Ok(json!({
        "topic": m.topic(),
        "queue_id": m.queue_id(),
        "queue_offset": m.queue_offset(),
        "msg_id": m.msg_id().as_str(),
        "offset_msg_id": m.offset_msg_id().to_string(),
        "commitlog_offset": m.physical_offset(),
        "store_timestamp": m.store_timestamp(),
        "store_time": iso(m.store_timestamp().max(0) as u64),
        "born_timestamp": m.born_timestamp(),
        "tags": m.tags(),
        "keys": m.keys().collect::<Vec<_>>(),
        "reconsume_times": m.reconsume_times(),
        "properties": props,
        "body": body_text(m.body(), how)?,
        "body_len": m.body().len(),
    }))
}

fn message_row(m: &MessageExt, how: &str) -> Res<Vec<String>> {
    Ok(vec![
        m.queue_id().to_string(),
        m.queue_offset().to_string(),
        iso(m.store_timestamp().max(0) as u64),
        m.tags().unwrap_or("").to_owned(),
        m.keys().collect::<Vec<_>>().join(" "),
        m.msg_id().to_string(),
        body_text(m.body(), how)?,
    ])
}

const MESSAGE_HEADER: &[&str] = &[
    "QUEUE", "OFFSET", "STORED", "TAGS", "KEYS", "MSG_ID", "BODY",
];

fn print_messages(args: &Args, msgs: &[MessageExt], how: &str) -> Res {
    if args.json {
        let v: Res<Vec<Value>> = msgs.iter().map(|m| message_json(m, how)).collect();
        return print_json(&Value::Array(v?));
    }
    let rows: Res<Vec<Vec<String>>> = msgs.iter().map(|m| message_row(m, how)).collect();
    table(MESSAGE_HEADER, &rows?);
    Ok(())
}

fn topic_queues(store: &Store, topic: &str) -> Res<Vec<(MessageQueue, u64, u64)>> {
    let mut out = Vec::new();
    for q in store.queues(topic)? {
        let min = store.min_offset(&q)?;
        let max = store.max_offset(&q)?;
        out.push((q, min, max));
    }
    Ok(out)
}

fn topics(args: &Args, store: &Store) -> Res {
    args.check_known("topics", &[])?;
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for t in store.topics() {
        let qs = topic_queues(store, &t.name)?;
        let messages: u64 = qs.iter().map(|(_, min, max)| max - min).sum();
        js.push(json!({"topic": t.name, "read_queues": t.read_queue_nums,
            "write_queues": t.write_queue_nums, "messages": messages}));
        rows.push(vec![
            t.name.clone(),
            t.read_queue_nums.to_string(),
            messages.to_string(),
        ]);
    }
    if args.json {
        return print_json(&Value::Array(js));
    }
    table(&["TOPIC", "QUEUES", "MESSAGES"], &rows);
    Ok(())
}

fn last_store_time(store: &Store, q: &MessageQueue, max: u64, min: u64) -> Res<Option<u64>> {
    if max == min {
        return Ok(None);
    }
    let got = store.get_messages(q, max - 1, 1)?;
    Ok(got
        .messages
        .first()
        .map(|m| m.store_timestamp().max(0) as u64))
}

fn topic(args: &Args, store: &Store) -> Res {
    args.check_known("topic", &[])?;
    let name = args.pos(2, "topic")?;
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for (q, min, max) in topic_queues(store, name)? {
        let last = last_store_time(store, &q, max, min)?;
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
    if args.json {
        return print_json(&json!({"topic": name, "queues": js}));
    }
    table(&["QUEUE", "MIN_OFFSET", "MAX_OFFSET", "LAST_STORED"], &rows);
    Ok(())
}

fn groups(args: &Args, store: &Store) -> Res {
    args.check_known("groups", &[])?;
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    for o in store.consumer_offsets() {
        by.entry((o.group, o.topic)).or_default();
    }
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for (group, topic) in by.keys() {
        let lag = store.consumer_lag(group, topic).ok();
        js.push(json!({"group": group, "topic": topic, "lag": lag}));
        rows.push(vec![
            group.clone(),
            topic.clone(),
            lag.map_or_else(|| "-".to_owned(), |l| l.to_string()),
        ]);
    }
    if args.json {
        return print_json(&Value::Array(js));
    }
    table(&["GROUP", "TOPIC", "LAG"], &rows);
    Ok(())
}

fn progress(args: &Args, store: &Store) -> Res {
    args.check_known("progress", &[])?;
    let only = args.pos.get(2).map(String::as_str);
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for o in store.consumer_offsets() {
        if only.is_some_and(|g| g != o.group) {
            continue;
        }
        let q = MessageQueue::new(o.topic.as_str(), o.queue_id);
        let broker = store.max_offset(&q).ok();
        let lag = broker.map(|b| b.saturating_sub(o.offset));
        js.push(
            json!({"group": o.group, "topic": o.topic, "queue_id": o.queue_id,
            "broker_offset": broker, "consumer_offset": o.offset, "lag": lag}),
        );
        let dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        rows.push(vec![
            o.group,
            o.topic,
            o.queue_id.to_string(),
            dash(broker),
            o.offset.to_string(),
            dash(lag),
        ]);
    }
    if args.json {
        return print_json(&Value::Array(js));
    }
    table(
        &[
            "GROUP",
            "TOPIC",
            "QUEUE",
            "BROKER_OFFSET",
            "CONSUMER_OFFSET",
            "LAG",
        ],
        &rows,
    );
    Ok(())
}

fn print(args: &Args, store: &Store) -> Res {
    args.check_known("print", &["queue", "from", "to", "tag", "limit", "body"])?;
    let name = args.pos(2, "topic")?;
    let how = args.opt("body").unwrap_or("utf8");
    body_text(b"", how)?;
    let expr = args.opt("tag").unwrap_or("*");
    let limit = args.num("limit")?.unwrap_or(u64::MAX);
    let queue = args.num("queue")?;
    let pull = store.pull_consumer("mqlite-cli")?;
    let mut out = Vec::new();
    'queues: for (q, min, max) in topic_queues(store, name)? {
        if queue.is_some_and(|n| n != u64::from(q.queue_id)) {
            continue;
        }
        let mut off = args.num("from")?.unwrap_or(min).max(min);
        let to = args.num("to")?.map_or(max, |t| t.min(max));
        while off < to {
            let r = pull.pull(&q, expr, off, ((to - off).min(256)) as usize)?;
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
    if let Some(n) = queue
        && store.queues(name)?.len() as u64 <= n
    {
        return Err(Fail(format!("topic {name:?} has no queue {n}"), 1));
    }
    print_messages(args, &out, how)
}

fn get(args: &Args, store: &Store) -> Res {
    args.check_known("get", &["body"])?;
    let id = args.pos(2, "message id")?;
    let how = args.opt("body").unwrap_or("utf8");
    let msg = match store.view_message(id) {
        Ok(m) => m,
        Err(mqlite::Error::Decode(_)) => {
            // Not an offset msgId: look the UNIQ_KEY up in every topic.
            let mut found = None;
            for t in store.topics() {
                if let Some(m) = store
                    .query_by_key(&t.name, id, 0, u64::MAX, 64)?
                    .into_iter()
                    .find(|m| m.msg_id() == id)
                {
                    found = Some(m);
                    break;
                }
            }
            found.ok_or_else(|| Fail(format!("no message with msgId or UNIQ_KEY {id}"), 1))?
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        return print_json(&message_json(&msg, how)?);
    }
    let v = message_json(&msg, how)?;
    if let Value::Object(map) = v {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            println!("{k:<16} {text}");
        }
    }
    Ok(())
}

fn query(args: &Args, store: &Store) -> Res {
    args.check_known("query", &["begin", "end", "body"])?;
    let name = args.pos(2, "topic")?;
    let key = args.pos(3, "key")?;
    let how = args.opt("body").unwrap_or("utf8");
    let begin = args.num("begin")?.unwrap_or(0);
    let end = args.num("end")?.unwrap_or(u64::MAX);
    let found = store.query_by_key(name, key, begin, end, 64)?;
    print_messages(args, &found, how)
}

fn tail(args: &Args, store: &Store) -> Res {
    args.check_known("tail", &["tag", "count", "body", "from-start"])?;
    let name = args.pos(2, "topic")?;
    let how = args.opt("body").unwrap_or("utf8");
    body_text(b"", how)?;
    let expr = args.opt("tag").unwrap_or("*");
    let count = args.num("count")?;
    let from_start = args.opts.contains_key("from-start");
    let pull = store.pull_consumer("mqlite-cli")?;
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let mut any = false;
        // Queues may be added while we follow the topic.
        let queues = store.queues(name).unwrap_or_default();
        for q in queues {
            let off = match next.get(&q.queue_id) {
                Some(&o) => o,
                None if from_start => store.min_offset(&q)?,
                None => store.max_offset(&q)?,
            };
            let r = pull.pull(&q, expr, off, 64)?;
            next.insert(q.queue_id, r.next_begin_offset.max(off));
            for m in &r.messages {
                any = true;
                let mut out = stdout.lock();
                let line = if args.json {
                    serde_json::to_string(&message_json(m, how)?)?
                } else {
                    message_row(m, how)?.join("  ")
                };
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
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn verify(args: &Args, store: &Store) -> Res {
    args.check_known("verify", &[])?;
    let r = store.verify()?;
    if args.json {
        let problems: Vec<Value> = r
            .problems
            .iter()
            .map(|p| json!({"file": p.file, "offset": p.offset, "reason": p.reason}))
            .collect();
        print_json(
            &json!({"ok": r.is_ok(), "records": r.records, "units": r.units,
            "log_end": r.log_end, "problems": problems}),
        )?;
    } else {
        println!(
            "{} records, {} consume queue units checked; the log ends at offset {}",
            r.records, r.units, r.log_end
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

fn stats(args: &Args, store: &Store) -> Res {
    args.check_known("stats", &[])?;
    let topics = store.topics();
    let mut queues = 0u64;
    let mut messages = 0u64;
    for t in &topics {
        for (_, min, max) in topic_queues(store, &t.name)? {
            queues += 1;
            messages += max - min;
        }
    }
    let offsets = store.consumer_offsets();
    let groups: std::collections::BTreeSet<&str> =
        offsets.iter().map(|o| o.group.as_str()).collect();
    let v = json!({
        "dir": store.dir(),
        "commitlog_min_offset": store.commitlog_min_offset(),
        "commitlog_max_offset": store.commitlog_max_offset(),
        "commitlog_segment_size": store.config().commitlog_segment_size,
        "topics": topics.len(),
        "queues": queues,
        "messages": messages,
        "groups": groups.len(),
        "open_elsewhere": store.dir().join("abort").exists(),
    });
    if args.json {
        return print_json(&v);
    }
    if let Value::Object(map) = v {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            println!("{k:<24} {text}");
        }
    }
    Ok(())
}

fn send(args: &Args, dir: &str) -> Res {
    args.check_known("send", &["tag", "key", "body", "file"])?;
    let name = args.pos(2, "topic")?;
    let body = match (args.opt("body"), args.opt("file")) {
        (Some(b), None) => b.as_bytes().to_vec(),
        (None, Some(f)) => std::fs::read(f).map_err(|e| Fail(format!("read {f}: {e}"), 1))?,
        _ => return Err(usage("send needs exactly one of --body and --file")),
    };
    let store = open_rw(dir)?;
    let mut msg = Message::new(name, body);
    if let Some(t) = args.opt("tag") {
        msg = msg.with_tags(t);
    }
    if let Some(keys) = args.opts.get("key") {
        msg = msg.with_keys(keys.iter().map(String::as_str));
    }
    let r = store
        .producer("mqlite-cli")?
        .send(msg)
        .map_err(|e| Fail(e.error().to_string(), 1))?;
    store.close()?;
    let v = json!({"status": format!("{:?}", r.status), "msg_id": r.msg_id.to_string(),
        "offset_msg_id": r.offset_msg_id.to_string(), "queue_id": r.queue.queue_id,
        "queue_offset": r.queue_offset});
    if args.json {
        return print_json(&v);
    }
    println!(
        "{:?} {} queue {} offset {} (offset msgId {})",
        r.status, r.msg_id, r.queue.queue_id, r.queue_offset, r.offset_msg_id
    );
    Ok(())
}

fn reset(args: &Args, dir: &str) -> Res {
    args.check_known("reset", &["time"])?;
    let group = args.pos(2, "group")?;
    let name = args.pos(3, "topic")?;
    let ms = match args.opt("time") {
        Some("now") => now_ms(),
        Some(t) => t
            .parse()
            .map_err(|_| usage(&format!("--time: {t:?} is not ms since the epoch or now")))?,
        None => return Err(usage("reset needs --time")),
    };
    let store = open_rw(dir)?;
    store.reset_offset_by_time(group, name, ms)?;
    let mut js = Vec::new();
    let mut rows = Vec::new();
    for o in store.consumer_offsets() {
        if o.group == group && o.topic == name {
            js.push(json!({"queue_id": o.queue_id, "offset": o.offset}));
            rows.push(vec![o.queue_id.to_string(), o.offset.to_string()]);
        }
    }
    store.close()?;
    if args.json {
        return print_json(&json!({"group": group, "topic": name, "offsets": js}));
    }
    table(&["QUEUE", "OFFSET"], &rows);
    Ok(())
}
