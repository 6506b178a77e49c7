//! Transactional messages (reference §12): half messages in `RMQ_SYS_TRANS_HALF_TOPIC`, ops in
//! `RMQ_SYS_TRANS_OP_HALF_TOPIC`, the committed message in its real topic, and the check
//! service asking the group's checker about transactions left unknown.
//!
//! The record format is checked byte by byte with a decoder written here from the reference
//! (§1.1), not the store's own.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{FlushPolicy, Message, MessageExt, MessageQueue, PullStatus, Store, TransactionState};

const HALF: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
const OP: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
const DISCARD: &str = "TRANS_CHECK_MAX_TIME_TOPIC";

fn open(dir: &Path, sync: bool) -> Store {
    open_with(dir, sync, Duration::from_millis(50))
}

/// A store checking every 20 ms for half messages older than `timeout`.
fn open_with(dir: &Path, sync: bool, timeout: Duration) -> Store {
    let b = common::small(dir)
        .transaction_check_interval(Duration::from_millis(20))
        .transaction_timeout(timeout);
    let b = if sync {
        b.flush_policy(FlushPolicy::SYNC)
    } else {
        b
    };
    b.open().unwrap()
}

fn q(topic: &str, id: u32) -> MessageQueue {
    MessageQueue::new(topic, id)
}

/// Polls `f` until it holds; panics after a generous deadline.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all(store: &Store, topic: &str) -> Vec<MessageExt> {
    let Some(_) = store.topic(topic) else {
        return Vec::new();
    };
    store
        .queues(topic)
        .unwrap()
        .iter()
        .flat_map(|mq| common::read_queue(store, mq))
        .collect()
}

/// A record decoded from the reference layout (v1, IPv4 hosts).
struct Raw {
    queue_id: u32,
    queue_offset: u64,
    physical_offset: u64,
    sys_flag: i32,
    born_timestamp: i64,
    prepared_offset: i64,
    body: Vec<u8>,
    topic: String,
    props: HashMap<String, String>,
}

fn raw_record(dir: &Path, offset: u64) -> Raw {
    // 64 KiB segments (common::small).
    let seg = offset / (64 * 1024) * (64 * 1024);
    let file = std::fs::read(dir.join("commitlog").join(format!("{seg:020}"))).unwrap();
    let b = &file[(offset - seg) as usize..];
    let be32 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let total = be32(0) as usize;
    assert_eq!(be32(4), 0xDAA3_20A7, "magic v1");
    let body_len = be32(84) as usize;
    let body = b[88..88 + body_len].to_vec();
    assert_eq!(crc32fast::hash(&body) & 0x7FFF_FFFF, be32(8), "body crc");
    let t = 88 + body_len;
    let topic_len = b[t] as usize;
    let topic = String::from_utf8(b[t + 1..t + 1 + topic_len].to_vec()).unwrap();
    let p = t + 1 + topic_len;
    let props_len = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
    assert_eq!(p + 2 + props_len, total, "record length");
    let props = String::from_utf8(b[p + 2..p + 2 + props_len].to_vec())
        .unwrap()
        .split('\u{2}')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('\u{1}').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Raw {
        queue_id: be32(12),
        queue_offset: be64(20),
        physical_offset: be64(28),
        sys_flag: be32(36) as i32,
        born_timestamp: be64(40) as i64,
        prepared_offset: be64(76) as i64,
        body,
        topic,
        props,
    }
}

#[test]
fn commit_stores_half_op_and_real_message_in_rocketmq_format() {
    let dir = tempfile::tempdir().unwrap();
    // Never due for a check: the service passes it because of its op alone.
    let store = open_with(dir.path(), true, Duration::from_secs(3600));
    store.create_topic("orders", 4).unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    let tx = store
        .transaction_producer("order-service", move |_: &MessageExt| {
            c.fetch_add(1, Ordering::SeqCst);
            TransactionState::Commit
        })
        .unwrap();
    let msg = Message::new("orders", "order 1 created")
        .with_tags("created")
        .with_keys(["ORDER-1"])
        .with_property("region", "eu");
    let r = tx
        .send_in_transaction(msg, |m| {
            assert_eq!(m.body(), b"order 1 created");
            TransactionState::Commit
        })
        .unwrap();
    assert_eq!(r.local_state, TransactionState::Commit);
    assert!(r.end_recorded);
    assert_eq!(r.queue.topic, "orders");
    assert_eq!(r.queue_offset, 0);

    // The committed message, once.
    let real = common::read_queue(&store, &r.queue);
    assert_eq!(real.len(), 1);
    let m = &real[0];
    assert_eq!(m.body(), b"order 1 created");
    assert_eq!(m.tags(), Some("created"));
    assert_eq!(m.property("region"), Some("eu"));
    assert_eq!(m.msg_id(), r.msg_id.to_string());
    assert_eq!(
        m.prepared_transaction_offset() as u64,
        r.offset_msg_id.physical_offset
    );
    assert_eq!(all(&store, "orders").len(), 1);

    // Half record, byte by byte.
    let half = raw_record(dir.path(), r.offset_msg_id.physical_offset);
    assert_eq!(half.topic, HALF);
    assert_eq!(half.queue_id, 0);
    assert_eq!(half.queue_offset, 0);
    assert_eq!(half.physical_offset, r.offset_msg_id.physical_offset);
    assert_eq!(
        half.sys_flag & 0xC,
        0x0,
        "half stored with transaction type NOT"
    );
    assert_eq!(half.prepared_offset, 0);
    assert_eq!(half.body, b"order 1 created");
    let id = r.msg_id.to_string();
    for (k, v) in [
        ("TRAN_MSG", "true"),
        ("PGROUP", "order-service"),
        ("REAL_TOPIC", "orders"),
        ("REAL_QID", &r.queue.queue_id.to_string()),
        ("UNIQ_KEY", &id),
        ("__transactionId__", &id),
        ("TAGS", "created"),
        ("KEYS", "ORDER-1"),
        ("region", "eu"),
    ] {
        assert_eq!(half.props.get(k).map(String::as_str), Some(v), "half {k}");
    }
    assert!(!half.props.contains_key("DELAY"));

    // Real record: COMMIT type, preparedTransactionOffset = the half's offset, the half's
    // properties (as the broker stores them) with the same UNIQ_KEY.
    let real_raw = raw_record(dir.path(), m.physical_offset());
    assert_eq!(real_raw.topic, "orders");
    assert_eq!(real_raw.queue_id, r.queue.queue_id);
    assert_eq!(real_raw.sys_flag & 0xC, 0x8, "COMMIT type");
    assert_eq!(real_raw.prepared_offset as u64, half.physical_offset);
    assert_eq!(real_raw.born_timestamp, half.born_timestamp);
    assert_eq!(real_raw.props.get("UNIQ_KEY"), Some(&id));
    assert_eq!(
        real_raw.props.get("TAGS").map(String::as_str),
        Some("created")
    );

    // Op record: op topic, the half's queue, tag d, body "0,".
    let ops = common::read_queue(&store, &q(OP, 0));
    assert_eq!(ops.len(), 1);
    let op = raw_record(dir.path(), ops[0].physical_offset());
    assert_eq!(op.topic, OP);
    assert_eq!(op.queue_id, 0);
    assert_eq!(op.sys_flag & 0xC, 0);
    assert_eq!(op.body, b"0,");
    assert_eq!(op.props.get("TAGS").map(String::as_str), Some("d"));
    assert!(op.physical_offset > real_raw.physical_offset);

    // The check service passes it and never asks.
    wait_until("the check service passes the half message", || {
        store
            .pull_consumer("CID_RMQ_SYS_TRANS")
            .unwrap()
            .committed_offset(&q(HALF, 0))
            .unwrap()
            == Some(1)
    });
    assert_eq!(checks.load(Ordering::SeqCst), 0);
    store.close().unwrap();
    let offsets = std::fs::read_to_string(dir.path().join("config/consumerOffset.json")).unwrap();
    assert!(
        offsets.contains("RMQ_SYS_TRANS_HALF_TOPIC@CID_RMQ_SYS_TRANS"),
        "{offsets}"
    );
}

#[test]
fn rollback_writes_only_the_op() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), false, Duration::from_secs(3600));
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    let tx = store
        .transaction_producer("g", move |_: &MessageExt| {
            c.fetch_add(1, Ordering::SeqCst);
            TransactionState::Commit
        })
        .unwrap();
    let r = tx
        .send_in_transaction(Message::new("t", "x"), |_| TransactionState::Rollback)
        .unwrap();
    assert!(r.end_recorded);
    let ops = common::read_queue(&store, &q(OP, 0));
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].body(), b"0,");
    wait_until("the check service passes the half message", || {
        store
            .pull_consumer("CID_RMQ_SYS_TRANS")
            .unwrap()
            .committed_offset(&q(HALF, 0))
            .unwrap()
            == Some(1)
    });
    assert!(all(&store, "t").is_empty());
    assert_eq!(checks.load(Ordering::SeqCst), 0);
}

fn unknown_then_checked(state: TransactionState) -> (tempfile::TempDir, Store, Vec<MessageExt>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    store.create_topic("t", 1).unwrap();
    let (tx_seen, rx_seen) = crossbeam_channel::unbounded();
    let tx = store
        .transaction_producer("g", move |m: &MessageExt| {
            tx_seen.send(m.clone()).unwrap();
            state
        })
        .unwrap();
    let r = tx
        .send_in_transaction(Message::new("t", "pending").with_tags("a"), |_| {
            TransactionState::Unknown
        })
        .unwrap();
    assert!(!r.end_recorded);
    // Consumers see nothing of a half message.
    let pull = store
        .pull_consumer("c")
        .unwrap()
        .pull(&q("t", 0), "*", 0, 32)
        .unwrap();
    assert_eq!(pull.status, PullStatus::NoNewMsg);
    let checked = rx_seen.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(checked.property("TRANSACTION_CHECK_TIMES"), Some("1"));
    // The checker sees the real topic and queue (the copy's CommitLog offset).
    assert_eq!(checked.topic(), "t");
    assert_eq!(checked.queue_id(), 0);
    assert_eq!(checked.msg_id(), r.msg_id.to_string());
    assert!(checked.physical_offset() > r.offset_msg_id.physical_offset);
    wait_until("the op of the check-back", || {
        store.max_offset(&q(OP, 0)).unwrap_or(0) == 1
    });
    let seen: Vec<MessageExt> = rx_seen.try_iter().collect();
    assert!(seen.is_empty(), "checked again: {seen:?}");
    (dir, store, vec![checked])
}

#[test]
fn unknown_is_checked_back_and_committed() {
    let (_dir, store, checked) = unknown_then_checked(TransactionState::Commit);
    let real = common::read_queue(&store, &q("t", 0));
    assert_eq!(real.len(), 1);
    assert_eq!(real[0].body(), b"pending");
    assert_eq!(
        real[0].prepared_transaction_offset() as u64,
        checked[0].physical_offset()
    );
    // The op names the re-appended copy's half queue offset.
    let ops = common::read_queue(&store, &q(OP, 0));
    assert_eq!(ops[0].body(), b"1,");
    wait_until("the check service passes both half records", || {
        store
            .pull_consumer("CID_RMQ_SYS_TRANS")
            .unwrap()
            .committed_offset(&q(HALF, 0))
            .unwrap()
            == Some(2)
    });
    assert_eq!(common::read_queue(&store, &q("t", 0)).len(), 1);
}

#[test]
fn unknown_is_checked_back_and_rolled_back() {
    let (_dir, store, _) = unknown_then_checked(TransactionState::Rollback);
    wait_until("the check service passes both half records", || {
        store
            .pull_consumer("CID_RMQ_SYS_TRANS")
            .unwrap()
            .committed_offset(&q(HALF, 0))
            .unwrap()
            == Some(2)
    });
    assert!(all(&store, "t").is_empty());
}

#[test]
fn a_panicking_checker_counts_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), false);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let tx = store
        .transaction_producer("g", move |_: &MessageExt| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("checker failure (expected by the test)");
            }
            TransactionState::Commit
        })
        .unwrap();
    // A local transaction that panics counts as Unknown too.
    let r = tx
        .send_in_transaction(Message::new("t", "x"), |_| {
            panic!("local transaction failure (expected by the test)")
        })
        .unwrap();
    assert_eq!(r.local_state, TransactionState::Unknown);
    wait_until("committed on the second check", || {
        store.max_offset(&r.queue).unwrap() == 1
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let m = &common::read_queue(&store, &r.queue)[0];
    assert_eq!(m.property("TRANSACTION_CHECK_TIMES"), Some("2"));
}

#[test]
fn too_many_checks_discard_into_the_check_max_topic() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .transaction_check_interval(Duration::from_millis(10))
        .transaction_timeout(Duration::from_millis(10))
        .transaction_check_max(3)
        .open()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let tx = store
        .transaction_producer("g", move |_: &MessageExt| {
            c.fetch_add(1, Ordering::SeqCst);
            TransactionState::Unknown
        })
        .unwrap();
    let r = tx
        .send_in_transaction(Message::new("t", "never decided"), |_| {
            TransactionState::Unknown
        })
        .unwrap();
    wait_until("discarded", || {
        store.topic(DISCARD).is_some() && store.max_offset(&q(DISCARD, 0)).unwrap() == 1
    });
    let d = &common::read_queue(&store, &q(DISCARD, 0))[0];
    assert_eq!(d.body(), b"never decided");
    assert_eq!(d.property("TRANSACTION_CHECK_TIMES"), Some("3"));
    assert_eq!(d.property("REAL_TOPIC"), Some("t"));
    assert_eq!(d.msg_id(), r.msg_id.to_string());
    wait_until("the check service passes every copy", || {
        store
            .pull_consumer("CID_RMQ_SYS_TRANS")
            .unwrap()
            .committed_offset(&q(HALF, 0))
            .unwrap()
            == Some(4)
    });
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(all(&store, "t").is_empty());
    assert_eq!(store.max_offset(&q(DISCARD, 0)).unwrap(), 1);
}

#[test]
fn no_checker_means_the_message_waits() {
    let dir = tempfile::tempdir().unwrap();
    // Sent with a checker registered, but never due while it is.
    let store = open_with(dir.path(), false, Duration::from_secs(3600));
    let tx = store
        .transaction_producer("g", |_: &MessageExt| TransactionState::Commit)
        .unwrap();
    let clone = tx.clone();
    drop(tx);
    let r = clone
        .send_in_transaction(Message::new("t", "x"), |_| TransactionState::Unknown)
        .unwrap();
    drop(clone);
    store.close().unwrap();

    let store = open(dir.path(), false);
    // No checker: the half message waits, re-appended without counting checks.
    wait_until("re-appended at least twice", || {
        store.max_offset(&q(HALF, 0)).unwrap() >= 3
    });
    assert_eq!(store.max_offset(&r.queue).unwrap(), 0);
    let halves = common::read_queue(&store, &q(HALF, 0));
    assert!(
        halves
            .iter()
            .all(|h| h.property("TRANSACTION_CHECK_TIMES").unwrap_or("0") == "0")
    );
    let _tx = store
        .transaction_producer("g", |_: &MessageExt| TransactionState::Commit)
        .unwrap();
    wait_until("committed once a checker is registered", || {
        store.max_offset(&r.queue).unwrap() == 1
    });
    let m = &common::read_queue(&store, &r.queue)[0];
    assert_eq!(m.property("TRANSACTION_CHECK_TIMES"), Some("1"));
}

#[test]
fn end_transaction_later_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap(); // default 30 s check interval
    let tx = store
        .transaction_producer("g", |_: &MessageExt| TransactionState::Rollback)
        .unwrap();
    let r = tx
        .send_in_transaction(Message::new("t", "x"), |_| TransactionState::Unknown)
        .unwrap();
    assert_eq!(store.max_offset(&r.queue).unwrap(), 0);
    tx.end_transaction(&r.offset_msg_id, TransactionState::Commit)
        .unwrap();
    tx.end_transaction(&r.offset_msg_id, TransactionState::Commit)
        .unwrap();
    tx.end_transaction(&r.offset_msg_id, TransactionState::Rollback)
        .unwrap();
    assert_eq!(common::read_queue(&store, &r.queue).len(), 1);
    assert_eq!(store.max_offset(&q(OP, 0)).unwrap(), 1);
    // Another group cannot end it; a non-half offset is refused.
    let other = store
        .transaction_producer("other", |_: &MessageExt| TransactionState::Commit)
        .unwrap();
    assert!(
        other
            .end_transaction(&r.offset_msg_id, TransactionState::Commit)
            .is_err()
    );
    let real = &common::read_queue(&store, &r.queue)[0];
    assert!(
        tx.end_transaction(&real.offset_msg_id(), TransactionState::Commit)
            .is_err()
    );
}

#[test]
fn delays_are_stripped_and_batches_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), false);
    let tx = store
        .transaction_producer("g", |_: &MessageExt| TransactionState::Commit)
        .unwrap();
    let r = tx
        .send_in_transaction(Message::new("t", "x").with_delay_level(3), |_| {
            TransactionState::Commit
        })
        .unwrap();
    let m = &common::read_queue(&store, &r.queue)[0];
    assert_eq!(m.property("DELAY"), None);
    assert!(store.topic("SCHEDULE_TOPIC_XXXX").is_none());
    let e = tx
        .send_batch_in_transaction(vec![Message::new("t", "a"), Message::new("t", "b")])
        .unwrap_err();
    assert!(matches!(e.error(), mqlite::Error::InvalidMessage(_)));
    assert_eq!(e.into_message().len(), 2);
    // Refused messages come back and store nothing.
    let e = tx
        .send_in_transaction(Message::new("t", ""), |_| unreachable!())
        .unwrap_err();
    assert!(matches!(e.error(), mqlite::Error::InvalidMessage(_)));
}

#[test]
fn check_immunity_time_defers_the_first_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), false);
    let (seen_tx, seen_rx) = crossbeam_channel::unbounded();
    let tx = store
        .transaction_producer("g", move |m: &MessageExt| {
            seen_tx
                .send((m.born_timestamp(), now_ms(), m.clone()))
                .unwrap();
            TransactionState::Commit
        })
        .unwrap();
    let immune = tx
        .send_in_transaction(
            Message::new("t", "immune").with_property("CHECK_IMMUNITY_TIME_IN_SECONDS", "1"),
            |_| TransactionState::Unknown,
        )
        .unwrap();
    let plain = tx
        .send_in_transaction(Message::new("t", "plain"), |_| TransactionState::Unknown)
        .unwrap();
    // The plain one behind it is not held up.
    let (_, _, first) = seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first.msg_id(), plain.msg_id.to_string());
    let (born, checked_at, second) = seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(second.msg_id(), immune.msg_id.to_string());
    assert!(
        checked_at - born as u64 >= 1000,
        "checked before its immunity ended"
    );
    wait_until("both committed", || all(&store, "t").len() == 2);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn compressed_bodies_survive_commit_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), false);
    let body: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 7).to_be_bytes()).collect();
    let tx = store
        .transaction_producer("g", |_: &MessageExt| TransactionState::Commit)
        .unwrap();
    let a = tx
        .send_in_transaction(Message::new("t", body.clone()), |_| {
            TransactionState::Commit
        })
        .unwrap();
    let b = tx
        .send_in_transaction(Message::new("t", body.clone()), |_| {
            TransactionState::Unknown
        })
        .unwrap();
    wait_until("both committed", || all(&store, "t").len() == 2);
    for m in all(&store, "t") {
        assert_eq!(m.body(), &body[..]);
        assert!(m.is_compressed());
    }
    assert_ne!(a.msg_id, b.msg_id);
}

/// A copy the check service made stays without an op when the producer commits the original
/// half message: after a reopen (which forgets the transactions ended before), the copy is
/// found committed in its real queue and gets its op; the checker is never asked, and a
/// second end of the original does not deliver the message again. The same path covers a
/// crash between a commit's real message and its op.
#[test]
fn a_commit_without_its_op_is_found_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // 1. Checked back (a copy is made), the checker does not know yet.
    let store = common::small(dir.path())
        .transaction_check_interval(Duration::from_millis(20))
        .transaction_timeout(Duration::from_millis(50))
        .transaction_check_max(1000)
        .open()
        .unwrap();
    let (seen_tx, seen_rx) = crossbeam_channel::unbounded();
    let tx = store
        .transaction_producer("g", move |m: &MessageExt| {
            let _ = seen_tx.send(m.physical_offset());
            TransactionState::Unknown
        })
        .unwrap();
    let r = tx
        .send_in_transaction(Message::new("t", "once"), |_| TransactionState::Unknown)
        .unwrap();
    seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    drop(tx);
    store.close().unwrap();

    // 2. With no check running, the producer commits the original half message.
    let store = common::small(dir.path())
        .flush_policy(FlushPolicy::SYNC)
        .transaction_check_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let tx = store
        .transaction_producer("g", |_: &MessageExt| TransactionState::Unknown)
        .unwrap();
    tx.end_transaction(&r.offset_msg_id, TransactionState::Commit)
        .unwrap();
    assert_eq!(common::read_queue(&store, &r.queue).len(), 1);
    let ops_before = store.max_offset(&q(OP, 0)).unwrap();
    let half_max = store.max_offset(&q(HALF, 0)).unwrap();
    let passed = store
        .pull_consumer("CID_RMQ_SYS_TRANS")
        .unwrap()
        .committed_offset(&q(HALF, 0))
        .unwrap()
        .unwrap_or(0);
    assert!(passed < half_max, "the latest copy is still to be checked");
    drop(tx);
    store.close().unwrap();

    // 3. Reopened with checks running and a checker that would commit again.
    let store = open(dir.path(), true);
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let tx = store
        .transaction_producer("g", move |_: &MessageExt| {
            a.fetch_add(1, Ordering::SeqCst);
            TransactionState::Commit
        })
        .unwrap();
    wait_until("every copy passed", || {
        let max = store.max_offset(&q(HALF, 0)).unwrap();
        store
            .pull_consumer("CID_RMQ_SYS_TRANS")
            .unwrap()
            .committed_offset(&q(HALF, 0))
            .unwrap()
            == Some(max)
            && store.max_offset(&q(OP, 0)).unwrap() > ops_before
    });
    tx.end_transaction(&r.offset_msg_id, TransactionState::Commit)
        .unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert_eq!(common::read_queue(&store, &r.queue).len(), 1);
}
