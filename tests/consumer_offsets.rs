//! Consumer offsets per (group, topic, queue): `commit_offset`/`committed_offset`, the
//! `config/consumerOffset.json` file in RocketMQ's `topic@group` shape (after close, and
//! periodically while open at `consumer_offset_persist_interval`), fastjson's unquoted integer
//! keys, `.bak` fallback when the file is damaged (an older offset: redelivery), offsets past a
//! queue's end lowered at open, survival of a reopen and of kill -9 (the child process is this
//! test binary; a lost offset redelivers, never skips), `ConsumeFrom` resolution for a group
//! without an offset, `offset_by_time` (binary search by store time, against a linear oracle),
//! `consumer_lag` and `reset_offset_by_time`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::small;
use mqlite::{ConsumeFrom, Error, Message, MessageQueue, PullStatus, Store, StoreConfig};
use serde_json::Value;

fn open_with_interval(dir: &Path, interval: Duration) -> Store {
    let mut cfg = StoreConfig::default();
    cfg.commitlog_segment_size = 64 * 1024;
    cfg.consume_queue_segment_size = 2000;
    cfg.consumer_offset_persist_interval = interval;
    Store::builder(dir).config(cfg).open().unwrap()
}

fn offsets_file(dir: &Path) -> PathBuf {
    dir.join("config").join("consumerOffset.json")
}

fn offsets_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(offsets_file(dir)).unwrap()).unwrap()
}

/// A store with topic `orders` (4 queues) holding `per_queue` messages in each queue.
fn filled(dir: &Path, per_queue: u64) -> Store {
    let store = small(dir).open().unwrap();
    store.create_topic("orders", 4).unwrap();
    let p = store.producer("p").unwrap();
    for q in 0..4 {
        let mq = MessageQueue::new("orders", q);
        for i in 0..per_queue {
            p.send_to(Message::new("orders", format!("q{q}-{i}")), &mq)
                .unwrap();
        }
    }
    store
}

fn mq(q: u32) -> MessageQueue {
    MessageQueue::new("orders", q)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Spins until the wall clock is past `ms`.
fn clock_past(ms: u64) {
    while now_ms() <= ms {
        std::thread::yield_now();
    }
}

#[test]
fn commit_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = filled(tmp.path(), 10);
    let billing = store.pull_consumer("billing").unwrap();
    let audit = store.pull_consumer("audit").unwrap();
    assert_eq!(billing.group(), "billing");
    assert_eq!(billing.committed_offset(&mq(0)).unwrap(), None);
    billing.commit_offset(&mq(0), 5).unwrap();
    billing.commit_offset(&mq(1), 7).unwrap();
    assert_eq!(billing.committed_offset(&mq(0)).unwrap(), Some(5));
    assert_eq!(billing.committed_offset(&mq(1)).unwrap(), Some(7));
    assert_eq!(billing.committed_offset(&mq(2)).unwrap(), None);
    // Groups and topics are independent.
    assert_eq!(audit.committed_offset(&mq(0)).unwrap(), None);
    audit.commit_offset(&mq(0), 1).unwrap();
    assert_eq!(billing.committed_offset(&mq(0)).unwrap(), Some(5));
    assert_eq!(
        billing
            .committed_offset(&MessageQueue::new("other", 0))
            .unwrap(),
        None
    );
    // Another handle of the same group sees them; a commit may move back (reset).
    let again = store.pull_consumer("billing").unwrap();
    assert_eq!(again.committed_offset(&mq(1)).unwrap(), Some(7));
    again.commit_offset(&mq(1), 2).unwrap();
    assert_eq!(billing.clone().committed_offset(&mq(1)).unwrap(), Some(2));
    // A consumer continues from its committed offset.
    let from = billing
        .consume_offset(&mq(0), ConsumeFrom::LastOffset)
        .unwrap();
    assert_eq!(from, 5);
    let r = billing.pull(&mq(0), "*", from, 32).unwrap();
    assert_eq!(r.messages[0].body(), b"q0-5");
    store.close().unwrap();
}

#[test]
fn offsets_file_has_rocketmqs_shape_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = filled(tmp.path(), 10);
    let billing = store.pull_consumer("billing").unwrap();
    billing.commit_offset(&mq(0), 3).unwrap();
    billing.commit_offset(&mq(3), 10).unwrap();
    store
        .pull_consumer("audit")
        .unwrap()
        .commit_offset(&mq(1), 1)
        .unwrap();
    // Not written at every commit: periodically (default 5 s) and at close.
    assert_eq!(
        StoreConfig::default().consumer_offset_persist_interval,
        Duration::from_secs(5)
    );
    assert!(!offsets_file(tmp.path()).exists());
    store.close().unwrap();

    let json = offsets_json(tmp.path());
    assert!(
        !tmp.path().join("config/consumerOffset.json.tmp").exists(),
        "temporary file left behind"
    );
    let table = json["offsetTable"].as_object().unwrap();
    let keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["orders@audit", "orders@billing"]));
    assert_eq!(table["orders@billing"]["0"], 3);
    assert_eq!(table["orders@billing"]["3"], 10);
    assert_eq!(table["orders@billing"].as_object().unwrap().len(), 2);
    assert_eq!(table["orders@audit"]["1"], 1);
    assert!(json["dataVersion"]["counter"].as_u64().unwrap() >= 1);
    assert!(json["dataVersion"]["timestamp"].as_u64().is_some());

    let store = small(tmp.path()).open().unwrap();
    let billing = store.pull_consumer("billing").unwrap();
    assert_eq!(billing.committed_offset(&mq(0)).unwrap(), Some(3));
    assert_eq!(billing.committed_offset(&mq(3)).unwrap(), Some(10));
    assert_eq!(billing.committed_offset(&mq(1)).unwrap(), None);
    assert_eq!(
        store
            .pull_consumer("audit")
            .unwrap()
            .committed_offset(&mq(1))
            .unwrap(),
        Some(1)
    );
    store.close().unwrap();
}

#[test]
fn offsets_are_persisted_periodically_while_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = filled(tmp.path(), 10);
        s.close().unwrap();
    }
    let interval = Duration::from_millis(100);
    let store = open_with_interval(tmp.path(), interval);
    let c = store.pull_consumer("billing").unwrap();
    let read = |dir: &Path| -> Option<u64> {
        let text = std::fs::read_to_string(offsets_file(dir)).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v.pointer("/offsetTable/orders@billing/2")?.as_u64()
    };
    for off in [4, 9] {
        let t = Instant::now();
        c.commit_offset(&mq(2), off).unwrap();
        // Nothing signals a periodic write: watch the file.
        while read(tmp.path()) != Some(off) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "offset {off} not persisted after {:?} with a {interval:?} interval",
                t.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("offset {off} persisted after {:?}", t.elapsed());
    }
    store.close().unwrap();
}

#[test]
fn fastjson_unquoted_integer_keys_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    filled(tmp.path(), 10).close().unwrap();
    // As RocketMQ's ConfigManager writes it with fastjson: integer map keys unquoted.
    let text = "{\n\t\"offsetTable\":{\n\t\t\"orders@billing\":{0:5,1:7,3:10\n\t\t},\
                \n\t\t\"orders@%RETRY%x\":{2:1}\n\t},\n\t\"dataVersion\":{\"counter\":3,\
                \"stateVersion\":0,\"timestamp\":1726766740123}\n}";
    std::fs::write(offsets_file(tmp.path()), text).unwrap();
    let store = small(tmp.path()).open().unwrap();
    let c = store.pull_consumer("billing").unwrap();
    assert_eq!(c.committed_offset(&mq(0)).unwrap(), Some(5));
    assert_eq!(c.committed_offset(&mq(1)).unwrap(), Some(7));
    assert_eq!(c.committed_offset(&mq(2)).unwrap(), None);
    assert_eq!(c.committed_offset(&mq(3)).unwrap(), Some(10));
    store.close().unwrap();
}

#[test]
fn a_damaged_offsets_file_falls_back_to_the_backup() {
    for (i, damage) in [
        Some(&b"{\"offsetTable\":{\"orders@billing\":{\"0\":"[..]),
        Some(b""),
        Some(b"\0\0\0\0\0\0"),
        Some(b"{\"dataVersion\":{}}"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        let store = filled(tmp.path(), 10);
        store
            .pull_consumer("billing")
            .unwrap()
            .commit_offset(&mq(0), 3)
            .unwrap();
        store.close().unwrap();
        let store = small(tmp.path()).open().unwrap();
        store
            .pull_consumer("billing")
            .unwrap()
            .commit_offset(&mq(0), 8)
            .unwrap();
        store.close().unwrap();
        let file = offsets_file(tmp.path());
        let mut bak = file.clone().into_os_string();
        bak.push(".bak");
        let bak = PathBuf::from(bak);
        let backup: Value = serde_json::from_str(&std::fs::read_to_string(&bak).unwrap()).unwrap();
        assert_eq!(backup["offsetTable"]["orders@billing"]["0"], 3, "backup");
        assert_eq!(
            offsets_json(tmp.path())["offsetTable"]["orders@billing"]["0"],
            8
        );
        match damage {
            Some(d) => std::fs::write(&file, d).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let store = small(tmp.path()).open().unwrap();
        let c = store.pull_consumer("billing").unwrap();
        // The older offset: messages 3..8 come again, nothing is skipped.
        assert_eq!(c.committed_offset(&mq(0)).unwrap(), Some(3), "damage {i}");
        store.close().unwrap();

        // Both damaged: the store refuses to open (as a RocketMQ broker does) instead of
        // forgetting every offset, which would make `LastOffset` consumers skip the backlog.
        std::fs::write(&file, b"garbage").unwrap();
        std::fs::write(&bak, b"garbage").unwrap();
        match small(tmp.path()).open() {
            Err(mqlite::Error::Corrupted { file: f, .. }) => assert_eq!(f, file, "damage {i}"),
            Err(e) => panic!("damage {i}: {e}"),
            Ok(_) => panic!("damage {i}: opened with both offset files damaged"),
        }
        // Removing them is the operator's decision; then the group starts over by its
        // ConsumeFrom rule.
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(&bak).unwrap();
        let store = small(tmp.path())
            .open()
            .unwrap_or_else(|e| panic!("damage {i}: reopen after removing both files: {e:?}"));
        let c = store.pull_consumer("billing").unwrap();
        assert_eq!(c.committed_offset(&mq(0)).unwrap(), None, "damage {i}");
        assert_eq!(
            c.consume_offset(&mq(0), ConsumeFrom::FirstOffset).unwrap(),
            0
        );
        store.close().unwrap();
    }
}

#[test]
fn offsets_past_a_queues_end_are_kept_after_a_clean_close() {
    let tmp = tempfile::tempdir().unwrap();
    filled(tmp.path(), 10).close().unwrap();
    // As a broker may leave them: past the end of queue 0.
    std::fs::write(
        offsets_file(tmp.path()),
        r#"{"offsetTable":{"orders@billing":{"0":1000,"1":4,"2":10}}}"#,
    )
    .unwrap();
    let store = small(tmp.path()).open().unwrap();
    let c = store.pull_consumer("billing").unwrap();
    assert_eq!(c.committed_offset(&mq(0)).unwrap(), Some(1000));
    assert_eq!(c.committed_offset(&mq(1)).unwrap(), Some(4));
    // A pull from there is told where to go on, as RocketMQ answers OFFSET_OVERFLOW_BADLY.
    let r = c.pull(&mq(0), "*", 1000, 32).unwrap();
    assert_eq!(r.status, PullStatus::OffsetIllegal);
    assert_eq!(r.next_begin_offset, 0);
    store.close().unwrap();
    let text = std::fs::read_to_string(offsets_file(tmp.path())).unwrap();
    assert!(text.contains("1000"), "{text}");
}

#[test]
fn offsets_past_a_queues_end_are_lowered_after_crash_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    filled(tmp.path(), 10).close().unwrap();
    std::fs::write(
        offsets_file(tmp.path()),
        r#"{"offsetTable":{"orders@billing":{"0":1000,"1":4,"2":10}}}"#,
    )
    .unwrap();
    // The marker a crash leaves: the open recovers, and unflushed messages consumers had
    // committed past may be gone.
    std::fs::write(tmp.path().join("abort"), b"1").unwrap();
    let store = small(tmp.path()).open().unwrap();
    let c = store.pull_consumer("billing").unwrap();
    assert_eq!(c.committed_offset(&mq(0)).unwrap(), Some(10));
    assert_eq!(c.committed_offset(&mq(1)).unwrap(), Some(4));
    assert_eq!(c.committed_offset(&mq(2)).unwrap(), Some(10));
    // What is written next at offset 10 is delivered.
    store
        .producer("p")
        .unwrap()
        .send_to(Message::new("orders", "new"), &mq(0))
        .unwrap();
    let r = c.pull(&mq(0), "*", 10, 32).unwrap();
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(r.messages[0].body(), b"new");
    store.close().unwrap();
}

const CHILD_ENV: &str = "MQLITE_OFFSETS_KILL_CHILD_DIR";
const CHILD_GROUP: &str = "kill-group";

/// The child of `kill_9_loses_at_most_recent_offsets_and_never_skips`: consumes `orders` and
/// commits after every pull, printing what it consumed and committed. Does nothing unless
/// `MQLITE_OFFSETS_KILL_CHILD_DIR` is set.
#[test]
#[ignore = "child process of kill_9_loses_at_most_recent_offsets_and_never_skips"]
fn offsets_kill_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = open_with_interval(Path::new(&dir), Duration::from_millis(10));
    let c = store.pull_consumer(CHILD_GROUP).unwrap();
    println!("READY");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for q in 0..4 {
            let queue = mq(q);
            let from = c.consume_offset(&queue, ConsumeFrom::FirstOffset).unwrap();
            let r = c.pull(&queue, "*", from, 3).unwrap();
            if r.status == PullStatus::Found {
                let first = r.messages[0].queue_offset();
                let last = r.messages.last().unwrap().queue_offset();
                println!("CONSUMED {q} {first} {last}");
                c.commit_offset(&queue, r.next_begin_offset).unwrap();
                println!("COMMITTED {q} {}", r.next_begin_offset);
            }
            // Pace the consumer so the parent kills it half-way.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Runs one child until it has reported `commits` commits and rewritten the offsets file at
/// least once, SIGKILLs it, and returns every line it printed.
fn run_child_and_kill(dir: &Path, commits: usize) -> Vec<String> {
    let before = std::fs::read(offsets_file(dir)).ok();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "offsets_kill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut seen = 0;
    let t = Instant::now();
    while seen < commits {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => {
                seen += usize::from(l.starts_with("COMMITTED"));
                lines.push(l);
            }
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped reporting ({e:?}) after {lines:?}");
            }
        }
    }
    // Nothing signals a periodic write: watch the file change.
    while std::fs::read(offsets_file(dir)).ok() == before {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "child never persisted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
}

#[test]
fn kill_9_loses_at_most_recent_offsets_and_never_skips() {
    const PER_QUEUE: u64 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    filled(&dir, PER_QUEUE).close().unwrap();
    let mut rng = common::Rng::new(common::seed(0x0FF5_E7C1));
    // Per queue: the end of everything any child consumed, and every offset ever committed.
    let mut consumed_next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut committed: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for cycle in 0..3 {
        let commits = rng.range(10, 120) as usize;
        let lines = run_child_and_kill(&dir, commits);
        for l in &lines {
            let f: Vec<&str> = l.split(' ').collect();
            match f[0] {
                "CONSUMED" if f.len() == 4 => {
                    let (q, last): (u32, u64) = (f[1].parse().unwrap(), f[3].parse().unwrap());
                    let e = consumed_next.entry(q).or_default();
                    *e = (*e).max(last + 1);
                }
                "COMMITTED" if f.len() == 3 => {
                    committed
                        .entry(f[1].parse().unwrap())
                        .or_default()
                        .insert(f[2].parse().unwrap());
                }
                _ => {}
            }
        }
        let store = small(&dir).open().unwrap();
        let c = store.pull_consumer(CHILD_GROUP).unwrap();
        let mut restored = 0;
        let mut redelivered = 0;
        for q in 0..4 {
            let queue = mq(q);
            let consumed = consumed_next.get(&q).copied().unwrap_or(0);
            let stored = c.committed_offset(&queue).unwrap();
            if let Some(off) = stored {
                restored += 1;
                assert!(
                    off <= consumed,
                    "cycle {cycle} queue {q}: offset {off} after the crash, but only {consumed} \
                     consumed: a skip"
                );
                assert!(
                    committed.get(&q).is_some_and(|s| s.contains(&off)),
                    "cycle {cycle} queue {q}: offset {off} was never committed ({:?})",
                    committed.get(&q)
                );
            }
            let from = c.consume_offset(&queue, ConsumeFrom::FirstOffset).unwrap();
            assert_eq!(from, stored.unwrap_or(0));
            redelivered += consumed - from;
            if from < PER_QUEUE {
                let r = c.pull(&queue, "*", from, 32).unwrap();
                assert_eq!(r.status, PullStatus::Found);
                assert_eq!(r.messages[0].queue_offset(), from, "queue {q}: skipped");
                assert_eq!(r.messages[0].body(), format!("q{q}-{from}").as_bytes());
            }
        }
        eprintln!(
            "cycle {cycle}: killed after {commits} commits, {} lines from the child; \
             {restored} queues restored an offset; {redelivered} messages will be delivered again",
            lines.len()
        );
        assert!(
            restored > 0,
            "cycle {cycle}: the persisted file held no offset of the group"
        );
        store.close().unwrap();
    }
}

#[test]
fn consume_from_applies_only_without_a_committed_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("cf", 2).unwrap();
    let q0 = MessageQueue::new("cf", 0);
    let q1 = MessageQueue::new("cf", 1);
    let p = store.producer("p").unwrap();
    let c = store.pull_consumer("fresh").unwrap();
    // An empty queue: everything resolves to 0.
    for from in [
        ConsumeFrom::LastOffset,
        ConsumeFrom::FirstOffset,
        ConsumeFrom::Timestamp(0),
        ConsumeFrom::Timestamp(u64::MAX),
    ] {
        assert_eq!(c.consume_offset(&q1, from).unwrap(), 0, "{from:?}");
    }
    assert_eq!(ConsumeFrom::default(), ConsumeFrom::LastOffset);
    let mut middle = 0;
    for i in 0..400u64 {
        if i == 200 {
            let last =
                store.get_messages(&q0, i - 1, 1).unwrap().messages[0].store_timestamp() as u64;
            clock_past(last);
            middle = now_ms();
        }
        p.send_to(Message::new("cf", vec![b'x'; 1000]), &q0)
            .unwrap();
    }
    assert_eq!(c.consume_offset(&q0, ConsumeFrom::LastOffset).unwrap(), 400);
    assert_eq!(c.consume_offset(&q0, ConsumeFrom::FirstOffset).unwrap(), 0);
    assert_eq!(c.consume_offset(&q0, ConsumeFrom::Timestamp(0)).unwrap(), 0);
    assert_eq!(
        c.consume_offset(&q0, ConsumeFrom::Timestamp(middle))
            .unwrap(),
        200
    );
    assert_eq!(
        c.consume_offset(&q0, ConsumeFrom::Timestamp(now_ms() + 60_000))
            .unwrap(),
        400
    );
    // After old segments are deleted, FIRST is the new min.
    store
        .delete_segments_before(store.commitlog_max_offset())
        .unwrap();
    let min = store.min_offset(&q0).unwrap();
    assert!(min > 0);
    assert_eq!(
        c.consume_offset(&q0, ConsumeFrom::FirstOffset).unwrap(),
        min
    );
    assert_eq!(
        c.consume_offset(&q0, ConsumeFrom::Timestamp(0)).unwrap(),
        min
    );
    // A committed offset always wins.
    c.commit_offset(&q0, 7).unwrap();
    for from in [
        ConsumeFrom::LastOffset,
        ConsumeFrom::FirstOffset,
        ConsumeFrom::Timestamp(middle),
    ] {
        assert_eq!(c.consume_offset(&q0, from).unwrap(), 7, "{from:?}");
    }
    store.close().unwrap();
}

#[test]
fn offset_by_time_finds_the_first_message_at_or_after_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("tt", 2).unwrap();
    let q = MessageQueue::new("tt", 0);
    let p = store.producer("p").unwrap();
    // Runs of 1..6 messages with distinct, increasing store times between runs.
    let mut rng = common::Rng::new(common::seed(0x71_3E01));
    for _ in 0..25 {
        for _ in 0..rng.range(1, 7) {
            p.send_to(Message::new("tt", "x"), &q).unwrap();
        }
        let last = store.max_offset(&q).unwrap() - 1;
        let ts = store.get_messages(&q, last, 1).unwrap().messages[0].store_timestamp();
        clock_past(ts as u64 + rng.range(0, 3));
    }
    let times: Vec<u64> = store
        .get_messages(&q, 0, 1000)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.store_timestamp() as u64)
        .collect();
    let max = times.len() as u64;
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let oracle = |ms: u64| {
        times
            .iter()
            .position(|&t| t >= ms)
            .map_or(max, |i| i as u64)
    };
    let mut probes: BTreeSet<u64> = BTreeSet::new();
    for &t in &times {
        probes.extend([t - 1, t, t + 1]);
    }
    probes.extend([0, u64::MAX]);
    let c = store.pull_consumer("g").unwrap();
    for ms in probes {
        let want = oracle(ms);
        assert_eq!(store.offset_by_time(&q, ms).unwrap(), want, "at {ms}");
        assert_eq!(c.offset_by_time(&q, ms).unwrap(), want, "at {ms}");
    }
    // An empty queue and unknown topics.
    let empty = MessageQueue::new("tt", 1);
    assert_eq!(store.offset_by_time(&empty, 0).unwrap(), 0);
    assert_eq!(store.offset_by_time(&empty, u64::MAX).unwrap(), 0);
    assert!(matches!(
        store.offset_by_time(&MessageQueue::new("nope", 0), 0),
        Err(Error::TopicNotFound(_))
    ));
    store.close().unwrap();
}

#[test]
fn consumer_lag_counts_what_the_group_has_not_consumed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("lag", 3).unwrap();
    let p = store.producer("p").unwrap();
    for (q, n) in [(0, 10), (1, 5)] {
        for i in 0..n {
            p.send_to(
                Message::new("lag", format!("{i}")),
                &MessageQueue::new("lag", q),
            )
            .unwrap();
        }
    }
    assert_eq!(store.consumer_lag("g", "lag").unwrap(), 15);
    let c = store.pull_consumer("g").unwrap();
    c.commit_offset(&MessageQueue::new("lag", 0), 4).unwrap();
    assert_eq!(store.consumer_lag("g", "lag").unwrap(), 11);
    c.commit_offset(&MessageQueue::new("lag", 1), 5).unwrap();
    assert_eq!(store.consumer_lag("g", "lag").unwrap(), 6);
    c.commit_offset(&MessageQueue::new("lag", 0), 10).unwrap();
    assert_eq!(store.consumer_lag("g", "lag").unwrap(), 0);
    assert_eq!(store.consumer_lag("other", "lag").unwrap(), 15);
    assert!(matches!(
        store.consumer_lag("g", "nope"),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        store.consumer_lag("bad group", "lag"),
        Err(Error::InvalidGroup { .. })
    ));
    // Without a committed offset, what is still stored counts.
    store.create_topic("big", 1).unwrap();
    let big = MessageQueue::new("big", 0);
    for _ in 0..300 {
        p.send_to(Message::new("big", vec![b'b'; 1000]), &big)
            .unwrap();
    }
    store
        .delete_segments_before(store.commitlog_max_offset())
        .unwrap();
    let min = store.min_offset(&big).unwrap();
    assert!(min > 0);
    assert_eq!(store.consumer_lag("g", "big").unwrap(), 300 - min);
    store.close().unwrap();
}

#[test]
fn reset_offset_by_time_moves_every_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("rs", 3).unwrap();
    let p = store.producer("p").unwrap();
    let q = |i| MessageQueue::new("rs", i);
    for i in 0..4 {
        p.send_to(Message::new("rs", format!("old{i}")), &q(0))
            .unwrap();
        p.send_to(Message::new("rs", format!("old{i}")), &q(1))
            .unwrap();
    }
    let last = store.get_messages(&q(1), 3, 1).unwrap().messages[0].store_timestamp() as u64;
    clock_past(last);
    let t = now_ms();
    for i in 0..3 {
        p.send_to(Message::new("rs", format!("new{i}")), &q(0))
            .unwrap();
    }
    let c = store.pull_consumer("g").unwrap();
    c.commit_offset(&q(0), 7).unwrap();
    store.reset_offset_by_time("g", "rs", t).unwrap();
    assert_eq!(c.committed_offset(&q(0)).unwrap(), Some(4));
    assert_eq!(c.committed_offset(&q(1)).unwrap(), Some(4));
    assert_eq!(c.committed_offset(&q(2)).unwrap(), Some(0));
    let r = c.pull(&q(0), "*", 4, 32).unwrap();
    assert_eq!(r.messages[0].body(), b"new0");
    store.reset_offset_by_time("g", "rs", 0).unwrap();
    assert_eq!(c.committed_offset(&q(0)).unwrap(), Some(0));
    assert_eq!(c.committed_offset(&q(1)).unwrap(), Some(0));
    store.reset_offset_by_time("g", "rs", u64::MAX).unwrap();
    assert_eq!(c.committed_offset(&q(0)).unwrap(), Some(7));
    assert_eq!(c.committed_offset(&q(1)).unwrap(), Some(4));
    assert_eq!(store.consumer_lag("g", "rs").unwrap(), 0);
    assert!(matches!(
        store.reset_offset_by_time("g", "nope", 0),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        store.reset_offset_by_time("", "rs", 0),
        Err(Error::InvalidGroup { .. })
    ));
    // Persisted like any commit.
    store.close().unwrap();
    let store = small(tmp.path()).open().unwrap();
    assert_eq!(
        store
            .pull_consumer("g")
            .unwrap()
            .committed_offset(&q(0))
            .unwrap(),
        Some(7)
    );
    store.close().unwrap();
}
