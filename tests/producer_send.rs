//! Producer send variants and their results: `send` (SendResult fields against the stored
//! MessageExt, view_message), default round-robin queue selection shared by clones, `send_to`,
//! `send_with_selector`, `send_ordered` (`|javaHash(key)| % queues`, stable across reopen,
//! following queue count growth), per-queue order under concurrent producers, `send_batch`
//! (one queue, contiguous offsets and records, all or nothing), `send_async` (callback on another
//! thread, after durability under `Sync`, caller never doing the work, bounded in-flight queue
//! with `Error::Busy` handing the message back), `send_oneway`, and the `SendError` API.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Rng, seed, small};
use mqlite::{
    Error, FlushPolicy, Message, MessageExt, MessageQueue, SendResult, SendStatus, Store,
};

/// Java `String.hashCode()` over UTF-16 code units, written independently of the crate.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// RocketMQ `SelectMessageQueueByHash`: `hash % n`, made non-negative with `Math.abs`.
fn rocketmq_hash_queue(key: &str, n: u32) -> u32 {
    let value = java_hash(key) % n as i32;
    value.unsigned_abs()
}

/// Every message of a queue, in order.
fn read_all(store: &Store, mq: &MessageQueue) -> Vec<MessageExt> {
    let max = store.max_offset(mq).unwrap();
    let mut out = Vec::new();
    let mut off = store.min_offset(mq).unwrap();
    while off < max {
        let got = store.get_messages(mq, off, 256).unwrap();
        assert!(!got.messages.is_empty(), "{mq}: nothing at {off} < {max}");
        off = got.next_offset;
        out.extend(got.messages);
    }
    out
}

fn one(store: &Store, mq: &MessageQueue, offset: u64) -> MessageExt {
    let got = store.get_messages(mq, offset, 1).unwrap();
    assert_eq!(got.messages.len(), 1, "{mq} offset {offset}");
    got.messages.into_iter().next().unwrap()
}

fn max_offsets(store: &Store, topic: &str) -> Vec<u64> {
    store
        .queues(topic)
        .unwrap()
        .iter()
        .map(|q| store.max_offset(q).unwrap())
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn send_result_matches_the_stored_message() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("orders", 4).unwrap();
    let producer = store.producer("order-service").unwrap();
    assert_eq!(producer.group(), "order-service");
    let msg = Message::new("orders", b"order 1 created".to_vec())
        .with_tags("created")
        .with_keys(["ORDER-1", "CUSTOMER-9"])
        .with_property("region", "eu")
        .with_property("tier", "gold")
        .with_property("region", "us")
        .with_flag(7);
    assert_eq!(msg.property("region"), Some("us"), "later value replaces");
    assert_eq!(msg.topic(), "orders");
    assert_eq!(msg.body(), b"order 1 created");
    assert_eq!(msg.tags(), Some("created"));
    assert_eq!(msg.keys().collect::<Vec<_>>(), ["ORDER-1", "CUSTOMER-9"]);
    assert_eq!(
        msg.properties().collect::<Vec<_>>(),
        [("region", "us"), ("tier", "gold")]
    );
    assert_eq!(msg.flag(), 7);
    assert_eq!(msg.clone().into_body(), b"order 1 created");
    let before = now_ms();
    let r = producer.send(msg.clone()).unwrap();
    let after = now_ms();
    assert_eq!(r.status, SendStatus::SendOk);
    assert_eq!(r.queue.topic, "orders");
    assert!(r.queue.queue_id < 4);
    assert_eq!(r.queue_offset, 0);
    let id = r.msg_id.to_string();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "msg id {id} is not uppercase hex"
    );
    assert_eq!(r.offset_msg_id.store_host, store.config().store_host);
    let off_id = r.offset_msg_id.to_string();
    assert_eq!(off_id.len(), 32);
    assert_eq!(
        off_id.parse::<mqlite::OffsetMessageId>().unwrap(),
        r.offset_msg_id
    );

    let m = one(&store, &r.queue, 0);
    assert_eq!(m.topic(), "orders");
    assert_eq!(m.body(), b"order 1 created");
    assert_eq!(m.msg_id(), id.as_str());
    assert_eq!(m.property("UNIQ_KEY"), Some(id.as_str()));
    assert_eq!(m.offset_msg_id(), r.offset_msg_id);
    assert_eq!(m.physical_offset(), r.offset_msg_id.physical_offset);
    assert_eq!(m.queue_id(), r.queue.queue_id);
    assert_eq!(m.queue_offset(), 0);
    assert_eq!(m.tags(), Some("created"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["ORDER-1", "CUSTOMER-9"]);
    assert_eq!(m.property("KEYS"), Some("ORDER-1 CUSTOMER-9"));
    assert_eq!(m.property("region"), Some("us"));
    assert_eq!(m.property("tier"), Some("gold"));
    let props: BTreeMap<&str, &str> = m.properties().collect();
    for k in ["region", "tier", "TAGS", "KEYS", "UNIQ_KEY"] {
        assert!(props.contains_key(k), "{k} missing from {props:?}");
    }
    assert_eq!(m.flag(), 7);
    assert_eq!(m.sys_flag(), 0);
    assert!(!m.is_compressed());
    assert_eq!(m.reconsume_times(), 0);
    assert_eq!(m.prepared_transaction_offset(), 0);
    assert!(before <= m.born_timestamp() && m.born_timestamp() <= m.store_timestamp());
    assert!(m.store_timestamp() <= after, "store time in the future");
    assert_eq!(m.store_host(), store.config().store_host);
    assert_eq!(m.body_crc(), crc32fast::hash(m.body()) & 0x7FFF_FFFF);
    // 91 fixed bytes for a v1 record with IPv4 hosts, then body, topic and properties.
    let expected_size = 91 + m.body().len() + "orders".len() + m.raw_properties().len();
    assert_eq!(m.store_size() as usize, expected_size);

    assert_eq!(store.view_message(&off_id).unwrap(), m);
    assert_eq!(store.message_at(m.physical_offset()).unwrap(), m);

    // The next message of the same queue: next offset, later record.
    let r2 = producer
        .send_to(Message::new("orders", "order 2"), &r.queue)
        .unwrap();
    assert_eq!(r2.queue, r.queue);
    assert_eq!(r2.queue_offset, 1);
    assert_eq!(
        r2.offset_msg_id.physical_offset,
        r.offset_msg_id.physical_offset + u64::from(m.store_size())
    );
    assert_ne!(r2.msg_id, r.msg_id);
    let m2 = store.view_message(&r2.offset_msg_id.to_string()).unwrap();
    assert_eq!(m2.body(), b"order 2");
    assert_eq!(m2.tags(), None);
    assert_eq!(m2.keys().count(), 0);

    // Bad offset msgIds.
    assert!(matches!(
        store.view_message("not-an-id"),
        Err(Error::Decode(_))
    ));
    assert!(matches!(
        store.view_message("7F00000100002A9FXYZ0000000000400"),
        Err(Error::Decode(_))
    ));
    store.close().unwrap();
}

#[test]
fn round_robin_visits_queues_in_turn_and_clones_share_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("rr", 4).unwrap();
    let p = store.producer("rr-producer").unwrap();
    let clone = p.clone();
    let mut queues = Vec::new();
    for i in 0..24 {
        let sender = if i % 3 == 0 { &clone } else { &p };
        let r = sender.send(Message::new("rr", format!("m{i}"))).unwrap();
        queues.push(r.queue.queue_id);
    }
    for w in queues.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 4, "round robin broken: {queues:?}");
    }
    assert_eq!(max_offsets(&store, "rr"), [6, 6, 6, 6]);

    // A topic created on first send gets 4 queues, visited in turn too.
    let r: Vec<u32> = (0..8)
        .map(|i| {
            p.send(Message::new("rr-auto", format!("a{i}")))
                .unwrap()
                .queue
                .queue_id
        })
        .collect();
    for w in r.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 4, "round robin broken: {r:?}");
    }
    assert_eq!(max_offsets(&store, "rr-auto"), [2, 2, 2, 2]);
    store.close().unwrap();
}

#[test]
fn send_to_and_selector_pick_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("sel", 4).unwrap();
    store.create_topic("other", 4).unwrap();
    let p = store.producer("sel-producer").unwrap();

    for q in [2, 0, 3, 2] {
        let mq = MessageQueue::new("sel", q);
        let r = p
            .send_to(Message::new("sel", format!("to {q}")), &mq)
            .unwrap();
        assert_eq!(r.queue, mq);
    }
    assert_eq!(max_offsets(&store, "sel"), [1, 0, 2, 1]);

    let log_end = store.commitlog_max_offset();
    // A queue of another topic.
    let msg = Message::new("sel", "wrong topic");
    let e = p
        .send_to(msg.clone(), &MessageQueue::new("other", 1))
        .unwrap_err();
    assert!(matches!(e.error(), Error::InvalidMessage(_)), "{e}");
    assert_eq!(e.into_message(), msg);
    // A queue id past the topic's queues.
    let e = p
        .send_to(msg.clone(), &MessageQueue::new("sel", 4))
        .unwrap_err();
    assert!(
        matches!(e.error(), Error::QueueNotFound { topic, queue_id: 4 } if topic == "sel"),
        "{e}"
    );
    assert_eq!(e.into_message(), msg);

    // The selector sees the topic's queues and the message.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = p
        .send_with_selector(Message::new("sel", "pick me"), move |queues, m| {
            s.lock().unwrap().extend(queues.iter().cloned());
            assert_eq!(m.body(), b"pick me");
            1
        })
        .unwrap();
    assert_eq!(r.queue, MessageQueue::new("sel", 1));
    assert_eq!(*seen.lock().unwrap(), store.queues("sel").unwrap());
    let log_end2 = store.commitlog_max_offset();
    assert!(log_end2 > log_end);
    let e = p
        .send_with_selector(msg.clone(), |queues, _| queues.len())
        .unwrap_err();
    assert!(
        matches!(e.error(), Error::QueueNotFound { queue_id: 4, .. }),
        "{e}"
    );
    assert_eq!(e.message(), &msg);
    assert_eq!(store.commitlog_max_offset(), log_end2, "nothing written");
    assert_eq!(max_offsets(&store, "sel"), [1, 1, 2, 1]);
    assert_eq!(max_offsets(&store, "other"), [0, 0, 0, 0]);
    store.close().unwrap();
}

#[test]
fn send_ordered_maps_keys_by_java_hash() {
    // Precondition of the edge case below: this key's hashCode is Integer.MIN_VALUE.
    assert_eq!(java_hash("polygenelubricants"), i32::MIN);
    assert_eq!(rocketmq_hash_queue("polygenelubricants", 3), 2);

    let tmp = tempfile::tempdir().unwrap();
    let keys: Vec<String> = [
        "polygenelubricants",
        "ORDER-7",
        "Aa",
        "BB",
        "",
        "订单-42",
        "😀",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..40).map(|i| format!("order-{i}")))
    .collect();
    assert!(
        keys.iter().any(|k| java_hash(k) < 0),
        "want a negative hash"
    );
    let mut placed: BTreeMap<String, u32> = BTreeMap::new();
    {
        let store = small(tmp.path()).open().unwrap();
        store.create_topic("ordered", 3).unwrap();
        let p = store.producer("ordered-producer").unwrap();
        for round in 0..3 {
            for k in &keys {
                let r = p
                    .send_ordered(Message::new("ordered", format!("{k}#{round}")), k)
                    .unwrap();
                assert_eq!(
                    r.queue.queue_id,
                    rocketmq_hash_queue(k, 3),
                    "key {k:?} (hash {})",
                    java_hash(k)
                );
                if let Some(&q) = placed.get(k) {
                    assert_eq!(q, r.queue.queue_id);
                }
                placed.insert(k.clone(), r.queue.queue_id);
            }
        }
        // Every key's messages are in send order in its queue.
        for q in store.queues("ordered").unwrap() {
            let mut last_round: BTreeMap<String, u32> = BTreeMap::new();
            for m in read_all(&store, &q) {
                let body = String::from_utf8(m.body().to_vec()).unwrap();
                let (k, round) = body.rsplit_once('#').unwrap();
                let round: u32 = round.parse().unwrap();
                assert_eq!(placed[k], q.queue_id);
                if let Some(prev) = last_round.insert(k.to_owned(), round) {
                    assert_eq!(round, prev + 1, "key {k:?} out of order in {q}");
                }
            }
        }
        store.close().unwrap();
    }
    // Stable across a reopen while the queue count stays the same.
    let store = small(tmp.path()).open().unwrap();
    let p = store.producer("ordered-producer").unwrap();
    for k in &keys {
        let r = p.send_ordered(Message::new("ordered", "again"), k).unwrap();
        assert_eq!(r.queue.queue_id, placed[k], "key {k:?} moved after reopen");
    }
    // After growing the topic, keys map over the new count.
    store.create_topic("ordered", 8).unwrap();
    for k in &keys {
        let r = p.send_ordered(Message::new("ordered", "grown"), k).unwrap();
        assert_eq!(r.queue.queue_id, rocketmq_hash_queue(k, 8), "key {k:?}");
    }
    store.close().unwrap();
}

#[test]
fn concurrent_producers_keep_each_producers_order_per_queue() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 150;
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("conc", 4).unwrap();
    let producer = store.producer("conc-producer").unwrap();
    let base = seed(0x5E4D_0001);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = producer.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(base ^ (t << 16));
                let mut results: Vec<(u64, SendResult)> = Vec::new();
                for i in 0..PER_THREAD {
                    let msg = Message::new("conc", format!("{t}:{i}"))
                        .with_tags(format!("t{t}"))
                        .with_keys([format!("k{t}-{i}")]);
                    let r = match rng.range(0, 3) {
                        0 => p.send(msg),
                        1 => p.send_ordered(msg, format!("thread-{t}")),
                        _ => {
                            let q = MessageQueue::new("conc", rng.range(0, 4) as u32);
                            p.send_to(msg, &q)
                        }
                    };
                    results.push((i, r.unwrap()));
                }
                results
            })
        })
        .collect();
    let mut by_pos: BTreeMap<(u32, u64), (u64, u64)> = BTreeMap::new();
    for (t, h) in handles.into_iter().enumerate() {
        for (i, r) in h.join().unwrap() {
            assert_eq!(r.status, SendStatus::SendOk);
            let prev = by_pos.insert((r.queue.queue_id, r.queue_offset), (t as u64, i));
            assert!(
                prev.is_none(),
                "two sends got {}@{}",
                r.queue,
                r.queue_offset
            );
        }
    }
    assert_eq!(by_pos.len() as u64, THREADS * PER_THREAD);
    let mut total = 0;
    for q in store.queues("conc").unwrap() {
        let msgs = read_all(&store, &q);
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for (n, m) in msgs.iter().enumerate() {
            assert_eq!(m.queue_offset(), n as u64, "offsets not dense in {q}");
            let body = std::str::from_utf8(m.body()).unwrap();
            let (t, i) = body.split_once(':').unwrap();
            let (t, i): (u64, u64) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(by_pos[&(q.queue_id, m.queue_offset())], (t, i));
            assert_eq!(m.tags(), Some(format!("t{t}").as_str()));
            if let Some(prev) = last.insert(t, i) {
                assert!(prev < i, "thread {t}: {i} after {prev} in {q}");
            }
        }
        total += msgs.len() as u64;
    }
    assert_eq!(total, THREADS * PER_THREAD);
    store.close().unwrap();
}

#[test]
fn batch_goes_to_one_queue_as_one_contiguous_region() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(1 << 20)
        .open()
        .unwrap();
    store.create_topic("batch", 4).unwrap();
    let p = store.producer("batch-producer").unwrap();
    p.send_to(
        Message::new("batch", "before"),
        &MessageQueue::new("batch", 0),
    )
    .unwrap();
    let log_start = store.commitlog_max_offset();
    let mut rng = Rng::new(seed(0xBA7C_0001));
    let msgs: Vec<Message> = (0..10)
        .map(|i| {
            // Some bodies are over the compression threshold: batches are never compressed.
            let len = if i % 3 == 0 { 6000 } else { 40 };
            Message::new("batch", rng.bytes(len))
                .with_tags(format!("tag{i}"))
                .with_keys([format!("key{i}")])
                .with_property("i", i.to_string())
        })
        .collect();
    let results = p.send_batch(msgs.clone()).unwrap();
    assert_eq!(results.len(), msgs.len());
    let q = results[0].queue.clone();
    let first = results[0].queue_offset;
    let ids: BTreeSet<String> = results.iter().map(|r| r.msg_id.to_string()).collect();
    assert_eq!(ids.len(), msgs.len(), "msg ids not distinct");
    let mut phys = log_start;
    for (i, (r, sent)) in results.iter().zip(&msgs).enumerate() {
        assert_eq!(r.status, SendStatus::SendOk);
        assert_eq!(r.queue, q);
        assert_eq!(r.queue_offset, first + i as u64);
        assert_eq!(
            r.offset_msg_id.physical_offset, phys,
            "records not contiguous"
        );
        let m = one(&store, &q, r.queue_offset);
        assert_eq!(m.body(), sent.body());
        assert!(!m.is_compressed(), "batch message {i} compressed");
        assert_eq!(m.msg_id(), r.msg_id);
        assert_eq!(m.property("i"), Some(i.to_string().as_str()));
        assert_eq!(m.tags(), Some(format!("tag{i}").as_str()));
        phys += u64::from(m.store_size());
    }
    assert_eq!(store.commitlog_max_offset(), phys);
    // Nothing else went into the queue in between.
    assert_eq!(store.max_offset(&q).unwrap(), first + msgs.len() as u64);
    store.close().unwrap();
}

#[test]
fn batch_is_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).max_message_size(10_000).open().unwrap();
    store.create_topic("batch", 2).unwrap();
    store.create_topic("other", 2).unwrap();
    let p = store.producer("batch-producer").unwrap();
    p.send(Message::new("batch", "seed")).unwrap();
    let good = |i: usize| Message::new("batch", format!("good {i}")).with_tags("ok");
    let with_bad = |bad: Message| -> Vec<Message> {
        let mut v: Vec<Message> = (0..5).map(good).collect();
        v[2] = bad;
        v
    };
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, Vec<Message>, Check)> = vec![
        (
            "empty body",
            with_bad(Message::new("batch", Vec::new())),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        (
            "body over max",
            with_bad(Message::new("batch", vec![b'x'; 10_001])),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        (
            "reserved property",
            with_bad(good(2).with_property("DELAY", "3")),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        (
            "separator in tag",
            with_bad(good(2).with_tags("a\u{1}b")),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        (
            "properties too long",
            with_bad(good(2).with_property("big", "v".repeat(40_000))),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        (
            "two topics",
            with_bad(Message::new("other", "elsewhere")),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        ("empty batch", Vec::new(), |e| {
            matches!(e, Error::InvalidMessage(_))
        }),
        (
            "retry topic",
            vec![Message::new("%RETRY%batch-consumer", "x")],
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
        (
            "reserved topic",
            vec![Message::new("SCHEDULE_TOPIC_XXXX", "x")],
            |e| matches!(e, Error::InvalidTopic { .. }),
        ),
        (
            "batch over max size",
            (0..20)
                .map(|i| Message::new("batch", vec![b'0' + i as u8; 9_000]))
                .collect(),
            |e| matches!(e, Error::InvalidMessage(_)),
        ),
    ];
    for (what, batch, check) in cases {
        let log_end = store.commitlog_max_offset();
        let offsets = (max_offsets(&store, "batch"), max_offsets(&store, "other"));
        let e = p.send_batch(batch.clone()).unwrap_err();
        assert!(check(e.error()), "{what}: unexpected {e}");
        assert_eq!(e.message(), &batch, "{what}: batch not handed back intact");
        assert_eq!(e.into_message(), batch);
        assert_eq!(store.commitlog_max_offset(), log_end, "{what}: log grew");
        assert_eq!(
            (max_offsets(&store, "batch"), max_offsets(&store, "other")),
            offsets,
            "{what}: a queue grew"
        );
    }
    assert_eq!(store.topics().len(), 2, "{:?}", store.topics());
    // The same batch without the bad message goes through.
    let rs = p.send_batch((0..5).map(good).collect()).unwrap();
    assert_eq!(rs.len(), 5);
    store.close().unwrap();
}

#[test]
fn send_async_calls_back_off_thread_once_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path())
        .flush_policy(FlushPolicy::SYNC)
        .open()
        .unwrap();
    store.create_topic("async", 4).unwrap();
    let p = store.producer("async-producer").unwrap();
    let caller = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    const N: usize = 300;
    for i in 0..N {
        let tx = tx.clone();
        let s = store.clone();
        let msg = Message::new("async", format!("async {i}")).with_tags("a");
        p.send_async(msg, move |r| {
            let on_caller = std::thread::current().id() == caller;
            // Under Sync a message is visible only once durable: it must be readable here.
            let visible = r.as_ref().ok().map(|r| {
                s.get_messages(&r.queue, r.queue_offset, 1)
                    .ok()
                    .and_then(|g| g.messages.into_iter().next())
                    .map(|m| (m.msg_id(), m.body().to_vec()))
            });
            tx.send((i, on_caller, r.map_err(|e| e.to_string()), visible))
                .unwrap();
        })
        .unwrap();
    }
    // A message that fails in the background comes back through the callback.
    let bad = Message::new("async", Vec::new());
    let (etx, erx) = mpsc::channel();
    p.send_async(bad.clone(), move |r| {
        let e = r.unwrap_err();
        etx.send(matches!(e, Error::InvalidMessage(_))).unwrap();
    })
    .unwrap();
    let mut seen = BTreeSet::new();
    let mut positions = BTreeSet::new();
    for _ in 0..N {
        let (i, on_caller, r, visible) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!on_caller, "callback {i} ran on the caller's thread");
        let r = r.unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        let (id, body) = visible
            .unwrap()
            .unwrap_or_else(|| panic!("message {i} not visible in its callback"));
        assert_eq!(id, r.msg_id);
        assert_eq!(body, format!("async {i}").into_bytes());
        assert!(seen.insert(i), "callback {i} ran twice");
        assert!(positions.insert((r.queue.queue_id, r.queue_offset)));
    }
    let ok = erx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(ok, "the empty body did not fail with InvalidMessage");
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "extra callback"
    );
    assert_eq!(max_offsets(&store, "async").iter().sum::<u64>(), N as u64);
    store.close().unwrap();
}

/// A 4 MiB body that takes a while to compress in a debug build, and that time.
fn slow_body() -> (Vec<u8>, Duration) {
    let body = Rng::new(0xB16_B0D1).bytes(4 << 20);
    let t = Instant::now();
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    std::io::Write::write_all(&mut enc, &body).unwrap();
    enc.finish().unwrap();
    (body, t.elapsed())
}

#[test]
fn send_async_never_makes_the_caller_do_the_work() {
    let (body, compress_time) = slow_body();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(16 << 20)
        .warm_segments(false)
        .flush_policy(FlushPolicy::SYNC)
        .open()
        .unwrap();
    store.create_topic("big", 1).unwrap();
    let p = store.producer("big-producer").unwrap();
    let (tx, rx) = mpsc::channel();
    let msg = Message::new("big", body.clone());
    let t = Instant::now();
    p.send_async(msg, move |r| {
        tx.send(r.map(|r| r.queue_offset).map_err(|e| e.to_string()))
            .unwrap();
    })
    .unwrap();
    let call = t.elapsed();
    let r = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let done = t.elapsed();
    assert_eq!(r, Ok(0));
    eprintln!(
        "compressing takes {compress_time:?}; send_async returned after {call:?}, done after {done:?}"
    );
    assert!(
        call * 4 < compress_time && call * 4 < done,
        "send_async took {call:?}: the caller compressed or waited (compression {compress_time:?}, \
         callback after {done:?})"
    );
    let m = one(&store, &MessageQueue::new("big", 0), 0);
    assert!(m.is_compressed());
    assert_eq!(m.body(), &body[..]);
    store.close().unwrap();
}

#[test]
fn send_async_full_in_flight_queue_gives_busy_and_the_message_back() {
    let timeout = Duration::from_millis(200);
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("busy", 1).unwrap();
    let p = store
        .producer("busy-producer")
        .unwrap()
        .max_in_flight(2)
        .send_timeout(timeout);
    let (tx, rx) = mpsc::channel();
    let cb = |name: &'static str| {
        let tx = tx.clone();
        move |r: mqlite::Result<SendResult>| {
            tx.send((name, r.map(|r| r.queue_offset).map_err(|e| e.to_string())))
                .unwrap();
        }
    };
    // A holds the first in-flight slot until its callback returns, which waits for `release`.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let a_done = cb("A");
    p.send_async(Message::new("busy", "A"), move |r| {
        entered_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(60));
        a_done(r);
    })
    .unwrap();
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // B takes the second slot (its callback runs after A's).
    p.send_async(Message::new("busy", "B"), cb("B")).unwrap();
    // C finds no room and gets its message back after the send timeout.
    let c = Message::new("busy", "C").with_tags("c").with_keys(["kc"]);
    let t = Instant::now();
    let e = p.send_async(c.clone(), cb("C")).unwrap_err();
    let waited = t.elapsed();
    assert!(matches!(e.error(), Error::Busy(2)), "{e}");
    assert_eq!(e.into_message(), c);
    // C must not wait for A's slot: A's callback gives it up only after `release` (at the
    // latest after its own 60 s timeout), which comes after C returned.
    assert!(
        waited >= timeout && waited < Duration::from_secs(50),
        "Busy after {waited:?}, timeout {timeout:?}"
    );
    release_tx.send(()).unwrap();
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let (name, r) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        got.insert(name, r);
    }
    assert_eq!(got["A"], Ok(0));
    assert_eq!(got["B"], Ok(1));
    // Room again: the next send goes through.
    p.send_async(Message::new("busy", "D"), cb("D")).unwrap();
    let (name, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((name, r), ("D", Ok(2)), "C must never be called back");
    assert_eq!(store.max_offset(&MessageQueue::new("busy", 0)).unwrap(), 3);
    store.close().unwrap();
}

/// A send is in flight until its callback has run: with `max_in_flight(4)` and the first
/// callback held, at most a few more sends may be accepted before `Busy`.
#[test]
fn send_async_in_flight_bound_counts_sends_until_called_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("held", 1).unwrap();
    let p = store
        .producer("held-producer")
        .unwrap()
        .max_in_flight(4)
        .send_timeout(Duration::from_millis(20));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    p.send_async(Message::new("held", "first"), move |_| {
        entered_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(20));
    })
    .unwrap();
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let done = Arc::new(Mutex::new(0usize));
    let mut accepted = 0;
    let mut busy = 0;
    for i in 0..200 {
        let done = done.clone();
        match p.send_async(Message::new("held", format!("m{i}")), move |_| {
            *done.lock().unwrap() += 1;
        }) {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert!(matches!(e.error(), Error::Busy(4)), "{e}");
                busy += 1;
                break;
            }
        }
    }
    release_tx.send(()).unwrap();
    // Two extra for the sends the appender and completion threads are holding.
    assert!(
        accepted <= 4 + 2 && busy == 1,
        "{accepted} sends accepted while the first callback (and so every later one) had not \
         run, with max_in_flight(4); in-flight sends are not bounded"
    );
    store.close().unwrap();
}

#[test]
fn send_oneway_stores_without_reporting() {
    for policy in [FlushPolicy::ASYNC, FlushPolicy::SYNC] {
        let tmp = tempfile::tempdir().unwrap();
        let store = small(tmp.path()).flush_policy(policy).open().unwrap();
        store.create_topic("oneway", 1).unwrap();
        let q = MessageQueue::new("oneway", 0);
        let p = store.producer("oneway-producer").unwrap();
        for i in 0..5 {
            p.send_oneway(Message::new("oneway", format!("o{i}")).with_tags("o"))
                .unwrap();
        }
        if policy == FlushPolicy::SYNC {
            // Not waited for: visible once flushed. A normal send flushes everything before it.
            p.send(Message::new("oneway", "sync")).unwrap();
        }
        let msgs = read_all(&store, &q);
        let bodies: Vec<&[u8]> = msgs.iter().map(|m| m.body()).collect();
        let mut want: Vec<Vec<u8>> = (0..5).map(|i| format!("o{i}").into_bytes()).collect();
        if policy == FlushPolicy::SYNC {
            want.push(b"sync".to_vec());
        }
        assert_eq!(bodies, want, "{policy:?}");
        // Errors found before storing are still reported, with the message.
        let bad = Message::new("no spaces allowed", "x");
        let e = p.send_oneway(bad.clone()).unwrap_err();
        assert!(matches!(e.error(), Error::InvalidTopic { .. }), "{e}");
        assert_eq!(e.into_message(), bad);
        let empty = Message::new("oneway", Vec::new());
        let e = p.send_oneway(empty.clone()).unwrap_err();
        assert!(matches!(e.error(), Error::InvalidMessage(_)), "{e}");
        assert_eq!(e.into_message(), empty);
        assert_eq!(
            store.max_offset(&q).unwrap(),
            want.len() as u64,
            "{policy:?}"
        );
        store.close().unwrap();
    }
}

#[test]
fn send_error_hands_back_message_and_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    let p = store.producer("err-producer").unwrap();
    let msg = Message::new("bad topic", "body").with_tags("t");
    let e = p.send(msg.clone()).unwrap_err();
    assert!(matches!(e.error(), Error::InvalidTopic { topic, .. } if topic == "bad topic"));
    assert!(e.to_string().starts_with("send failed: "), "{e}");
    assert!(format!("{e:?}").contains("InvalidTopic"));
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(e.message(), &msg);
    let (err, back) = e.into_parts();
    assert!(matches!(err, Error::InvalidTopic { .. }));
    assert_eq!(back, msg);
    let e = p.send(msg.clone()).unwrap_err();
    let as_error: Error = e.into();
    assert!(matches!(as_error, Error::InvalidTopic { .. }));
    // A closed store.
    let s2 = store.clone();
    store.close().unwrap();
    let e = p.send(Message::new("t", "x")).unwrap_err();
    assert!(matches!(e.error(), Error::Closed), "{e}");
    drop(s2);
}

#[test]
fn producers_and_consumers_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<mqlite::Producer>();
    check::<mqlite::PullConsumer>();
    check::<Store>();
}

#[test]
fn a_flush_past_the_sync_timeout_reports_flush_disk_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path())
        .flush_policy(FlushPolicy::Sync {
            timeout: Duration::ZERO,
        })
        .open()
        .unwrap();
    store.create_topic("slow", 1).unwrap();
    let q = MessageQueue::new("slow", 0);
    let p = store.producer("slow-producer").unwrap();
    let mut timeouts = 0;
    for i in 0..20u64 {
        let r = p.send(Message::new("slow", format!("s{i}"))).unwrap();
        assert_eq!(r.queue_offset, i);
        match r.status {
            SendStatus::SendOk => {}
            SendStatus::FlushDiskTimeout => timeouts += 1,
            s => panic!("{s:?}"),
        }
    }
    assert!(timeouts > 0, "a zero flush timeout never timed out");
    // Stored all the same: visible once flushed.
    store.flush().unwrap();
    let bodies: Vec<Vec<u8>> = read_all(&store, &q)
        .iter()
        .map(|m| m.body().to_vec())
        .collect();
    assert_eq!(
        bodies,
        (0..20)
            .map(|i| format!("s{i}").into_bytes())
            .collect::<Vec<_>>()
    );
    store.close().unwrap();
}
