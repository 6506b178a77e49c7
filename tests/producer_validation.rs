//! Every validation error of the producer (and of `Store::put` / `create_topic` where they
//! validate too), with nothing written: topic names (`[%|a-zA-Z0-9_-]`, at most 127
//! characters, reserved system topics), group names (at most 120), empty and oversized bodies
//! (configured and the 4 MiB default), properties over 32767 bytes (exact boundary), reserved
//! property names, 0x01/0x02 separators in tags, keys, property names and values, spaces in
//! keys, empty property names or values, `UNIQ_KEY` syntax, unknown queues, auto-creation off.
//! After each refusal the error is typed, the message is handed back unchanged, and the
//! CommitLog end, every queue's max offset and the topic table are unchanged.

mod common;

use common::small;
use mqlite::{Error, FlushPolicy, Message, MessageQueue, Producer, SendError, SendResult, Store};

/// Everything a refused send must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    log_end: u64,
    topics: Vec<String>,
    queues: Vec<(String, u32, u64)>,
}

fn snapshot(store: &Store) -> Snapshot {
    let mut queues = Vec::new();
    let topics: Vec<String> = store.topics().into_iter().map(|t| t.name).collect();
    for t in &topics {
        for q in store.queues(t).unwrap() {
            queues.push((t.clone(), q.queue_id, store.max_offset(&q).unwrap()));
        }
    }
    Snapshot {
        log_end: store.commitlog_max_offset(),
        topics,
        queues,
    }
}

/// Sends `msg` with `send`, expects a refusal matching `check`, the message back, nothing
/// written.
fn refused(
    store: &Store,
    what: &str,
    msg: Message,
    send: impl FnOnce(Message) -> Result<SendResult, SendError>,
    check: impl Fn(&Error) -> bool,
) {
    let before = snapshot(store);
    let e = match send(msg.clone()) {
        Ok(r) => panic!("{what}: accepted ({r:?})"),
        Err(e) => e,
    };
    assert!(check(e.error()), "{what}: unexpected error {:?}", e.error());
    assert_eq!(e.into_message(), msg, "{what}: message not handed back");
    assert_eq!(snapshot(store), before, "{what}: something was written");
}

fn put_refused(store: &Store, what: &str, msg: &Message, q: u32, check: impl Fn(&Error) -> bool) {
    let before = snapshot(store);
    match store.put(msg, q) {
        Ok(r) => panic!("{what}: put accepted ({r:?})"),
        Err(e) => assert!(check(&e), "{what}: unexpected put error {e:?}"),
    }
    assert_eq!(snapshot(store), before, "{what}: put wrote something");
}

fn is_topic(e: &Error) -> bool {
    matches!(e, Error::InvalidTopic { .. })
}
fn is_group(e: &Error) -> bool {
    matches!(e, Error::InvalidGroup { .. })
}
fn is_message(e: &Error) -> bool {
    matches!(e, Error::InvalidMessage(_))
}

fn open(dir: &std::path::Path) -> Store {
    let store = small(dir).max_message_size(1000).open().unwrap();
    store.create_topic("valid", 4).unwrap();
    let p = store.producer("setup").unwrap();
    for i in 0..8 {
        p.send(Message::new("valid", format!("seed {i}"))).unwrap();
    }
    store
}

const RESERVED_TOPICS: [&str; 8] = [
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "TBW102",
    "rmq_sys_wheel_timer",
];

fn bad_topics() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "a b",
        "a.b",
        "a/b",
        "topic:1",
        "ä",
        "tab\t",
        "new\nline",
        "a*b",
        "a#b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("t".repeat(128));
    v.extend(RESERVED_TOPICS.iter().map(|s| s.to_string()));
    v
}

#[test]
fn topic_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let p = store.producer("validator").unwrap();
    for topic in bad_topics() {
        let msg = Message::new(topic.clone(), "body");
        refused(
            &store,
            &format!("send to {topic:?}"),
            msg.clone(),
            |m| p.send(m),
            is_topic,
        );
        refused(
            &store,
            &format!("send_ordered to {topic:?}"),
            msg.clone(),
            |m| p.send_ordered(m, "k"),
            is_topic,
        );
        refused(
            &store,
            &format!("send_to {topic:?}"),
            msg.clone(),
            |m| p.send_to(m, &MessageQueue::new(topic.clone(), 0)),
            is_topic,
        );
        refused(
            &store,
            &format!("oneway to {topic:?}"),
            msg.clone(),
            |m| p.send_oneway(m).map(|()| panic!("oneway accepted")),
            is_topic,
        );
        let e = p.send_batch(vec![msg.clone()]).unwrap_err();
        assert!(is_topic(e.error()), "batch to {topic:?}: {:?}", e.error());
        put_refused(&store, &format!("put to {topic:?}"), &msg, 0, is_topic);
        assert!(
            matches!(
                store.create_topic(&topic, 4),
                Err(Error::InvalidTopic { .. })
            ),
            "create_topic({topic:?})"
        );
    }
    assert_eq!(store.topics().len(), 1);
    // The boundaries are accepted.
    for topic in ["t".repeat(127), "%|_-AZaz09".to_owned(), "X".to_owned()] {
        let r = p.send(Message::new(topic.clone(), "ok")).unwrap();
        assert_eq!(r.queue.topic, topic);
    }
    store.close().unwrap();
}

/// RocketMQ's client refuses every topic over 127 characters (`Validators.checkTopic`); only
/// the broker's own retry and dead-letter topics may be longer.
#[test]
fn producer_refuses_user_topics_over_127_even_with_a_retry_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let p = store.producer("validator").unwrap();
    for prefix in ["%RETRY%", "%DLQ%"] {
        let topic = format!("{prefix}{}", "g".repeat(150));
        refused(
            &store,
            &format!("send to {} chars", topic.len()),
            Message::new(topic, "x"),
            |m| p.send(m),
            is_topic,
        );
    }
    store.close().unwrap();
}

#[test]
fn group_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let long = "g".repeat(121);
    for group in [
        "",
        long.as_str(),
        "bad group",
        "g.1",
        "g/1",
        "grüppe",
        "g\u{1}",
    ] {
        // Refused when the client is made, before anything can be sent or committed.
        let before = snapshot(&store);
        assert!(is_group(&store.producer(group).unwrap_err()), "{group:?}");
        assert!(
            is_group(&store.pull_consumer(group).unwrap_err()),
            "{group:?}"
        );
        assert!(
            is_group(
                &store
                    .transaction_producer(group, |_| mqlite::TransactionState::Commit)
                    .unwrap_err()
            ),
            "{group:?}"
        );
        let pushed = store
            .push_consumer(group)
            .subscribe("valid", "*")
            .start_concurrently(|_| mqlite::ConsumeStatus::Success);
        assert!(
            matches!(pushed, Err(Error::InvalidGroup { .. })),
            "{group:?}"
        );
        assert_eq!(
            snapshot(&store),
            before,
            "group {group:?}: something was written"
        );
        assert!(matches!(
            store.consumer_lag(group, "valid"),
            Err(Error::InvalidGroup { .. })
        ));
        assert!(matches!(
            store.reset_offset_by_time(group, "valid", 0),
            Err(Error::InvalidGroup { .. })
        ));
    }
    let before = snapshot(&store);
    // 120 characters and the whole character set are fine.
    let ok = "G".repeat(120);
    store
        .producer(&ok)
        .unwrap()
        .send(Message::new("valid", "ok"))
        .unwrap();
    store
        .producer("%|_-az09")
        .unwrap()
        .send(Message::new("valid", "ok"))
        .unwrap();
    let c = store.pull_consumer(&ok).unwrap();
    c.commit_offset(&MessageQueue::new("valid", 0), 1).unwrap();
    assert_eq!(
        c.committed_offset(&MessageQueue::new("valid", 0)).unwrap(),
        Some(1)
    );
    assert!(snapshot(&store).log_end > before.log_end);
    store.close().unwrap();
}

#[test]
fn bodies_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let p = store.producer("validator").unwrap();
    let q = MessageQueue::new("valid", 1);
    for (what, body) in [
        ("empty", Vec::new()),
        ("max + 1", vec![b'b'; 1001]),
        ("much larger", vec![b'b'; 70_000]),
    ] {
        let msg = Message::new("valid", body);
        refused(&store, what, msg.clone(), |m| p.send(m), is_message);
        refused(&store, what, msg.clone(), |m| p.send_to(m, &q), is_message);
        refused(
            &store,
            what,
            msg.clone(),
            |m| p.send_ordered(m, "k"),
            is_message,
        );
        refused(
            &store,
            what,
            msg.clone(),
            |m| p.send_oneway(m).map(|()| panic!("oneway accepted")),
            is_message,
        );
        put_refused(&store, what, &msg, 1, is_message);
    }
    // Exactly the maximum is accepted (and compressed or not, read back the same).
    let body = vec![b'm'; 1000];
    let r = p.send(Message::new("valid", body.clone())).unwrap();
    let got = store.get_messages(&r.queue, r.queue_offset, 1).unwrap();
    assert_eq!(got.messages[0].body(), &body[..]);
    store.close().unwrap();
}

#[test]
fn default_maximum_body_is_4_mib() {
    assert_eq!(mqlite::StoreConfig::default().max_message_size, 4 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(16 << 20)
        .warm_segments(false)
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .unwrap();
    store.create_topic("big", 1).unwrap();
    let p = store.producer("validator").unwrap();
    let msg = Message::new("big", vec![b'z'; (4 << 20) + 1]);
    refused(&store, "4 MiB + 1", msg.clone(), |m| p.send(m), is_message);
    refused(
        &store,
        "4 MiB + 1 uncompressed",
        msg.clone(),
        |m| p.clone().compress_over(usize::MAX).send(m),
        is_message,
    );
    put_refused(&store, "put 4 MiB + 1", &msg, 0, is_message);
    let body = vec![b'z'; 4 << 20];
    let r = p.send(Message::new("big", body.clone())).unwrap();
    let got = store.get_messages(&r.queue, 0, 1).unwrap();
    assert_eq!(got.messages[0].body().len(), body.len());
    assert!(got.messages[0].body() == body.as_slice());
    store.close().unwrap();
}

#[test]
fn properties_over_32767_bytes_are_refused_at_the_exact_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let p = store.producer("validator").unwrap();
    // Stored properties: "p" 0x01 value 0x02 (len + 3), UNIQ_KEY 0x01 32 hex 0x02 (42) and,
    // with the whole-record CRC on (the default), "__CRC32#" 0x01 10 digits 0x02 (20): the
    // limit covers all of it, as RocketMQ's `PROPERTIES_SIZE_EXCEEDED` check does.
    assert!(store.config().record_crc);
    let fits = 32_767 - 3 - 42 - 20;
    let over = Message::new("valid", "x").with_property("p", "v".repeat(fits + 1));
    refused(
        &store,
        "32768 bytes of properties",
        over.clone(),
        |m| p.send(m),
        is_message,
    );
    put_refused(
        &store,
        "put 32768 bytes of properties",
        &over,
        0,
        is_message,
    );
    // Tags and keys count too.
    let tagged = Message::new("valid", "x")
        .with_tags("t".repeat(20_000))
        .with_keys(["k".repeat(13_000)]);
    refused(
        &store,
        "long tag and key",
        tagged,
        |m| p.send(m),
        is_message,
    );
    let r = p
        .send(Message::new("valid", "x").with_property("p", "v".repeat(fits)))
        .unwrap();
    let m = store.view_message(&r.offset_msg_id.to_string()).unwrap();
    assert_eq!(m.raw_properties().len(), 32_767);
    assert_eq!(m.property("p").map(str::len), Some(fits));
    store.close().unwrap();
}

#[test]
fn reserved_property_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let p = store.producer("validator").unwrap();
    let names = [
        "TAGS",
        "KEYS",
        "UNIQ_KEY",
        "WAIT",
        "DELAY",
        "RETRY_TOPIC",
        "REAL_TOPIC",
        "REAL_QID",
        "TRAN_MSG",
        "PGROUP",
        "MIN_OFFSET",
        "MAX_OFFSET",
        "RECONSUME_TIME",
        "MAX_RECONSUME_TIMES",
        "ORIGIN_MESSAGE_ID",
        "__transactionId__",
        "TIMER_DELIVER_MS",
        "__CRC32#",
        "__RMQ.TRANSIENT.anything",
    ];
    for name in names {
        let msg = Message::new("valid", "body").with_property(name, "1");
        refused(&store, name, msg.clone(), |m| p.send(m), is_message);
        refused(
            &store,
            name,
            msg.clone(),
            |m| p.send_oneway(m).map(|()| panic!("oneway accepted")),
            is_message,
        );
        let e = p.send_batch(vec![msg]).unwrap_err();
        assert!(is_message(e.error()), "batch {name}: {:?}", e.error());
    }
    store.close().unwrap();
}

#[test]
fn separators_spaces_and_empty_properties_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let p = store.producer("validator").unwrap();
    let base = || Message::new("valid", "body");
    let cases = [
        ("0x01 in tag", base().with_tags("a\u{1}b")),
        ("0x02 in tag", base().with_tags("a\u{2}")),
        ("0x01 in key", base().with_keys(["k\u{1}"])),
        ("0x02 in second key", base().with_keys(["ok", "\u{2}k"])),
        ("space in key", base().with_keys(["two words"])),
        (
            "0x01 in property name",
            base().with_property("na\u{1}me", "v"),
        ),
        (
            "0x02 in property name",
            base().with_property("name\u{2}", "v"),
        ),
        (
            "0x01 in property value",
            base().with_property("name", "v\u{1}"),
        ),
        (
            "0x02 in property value",
            base().with_property("name", "\u{2}v"),
        ),
        ("empty property name", base().with_property("", "v")),
        ("empty property value", base().with_property("name", "")),
    ];
    for (what, msg) in cases {
        refused(&store, what, msg.clone(), |m| p.send(m), is_message);
        put_refused(&store, what, &msg, 2, is_message);
    }
    // A client id that is not 32 hex digits cannot be stored.
    put_refused(
        &store,
        "bad UNIQ_KEY",
        &base().with_property("UNIQ_KEY", "not-hex"),
        0,
        |e| matches!(e, Error::Decode(_)),
    );
    store.close().unwrap();
}

#[test]
fn unknown_queues_and_topics_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).auto_create_topics(false).open().unwrap();
    store.create_topic("valid", 4).unwrap();
    let p: Producer = store.producer("validator").unwrap();
    let msg = Message::new("valid", "body");
    refused(
        &store,
        "queue 4 of 4",
        msg.clone(),
        |m| p.send_to(m, &MessageQueue::new("valid", 4)),
        |e| matches!(e, Error::QueueNotFound { queue_id: 4, .. }),
    );
    put_refused(&store, "put to queue 9", &msg, 9, |e| {
        matches!(e, Error::QueueNotFound { queue_id: 9, .. })
    });
    let missing = Message::new("missing", "body");
    let not_found = |e: &Error| matches!(e, Error::TopicNotFound(t) if t == "missing");
    refused(
        &store,
        "unknown topic",
        missing.clone(),
        |m| p.send(m),
        not_found,
    );
    refused(
        &store,
        "unknown topic, ordered",
        missing.clone(),
        |m| p.send_ordered(m, "k"),
        not_found,
    );
    refused(
        &store,
        "unknown topic, selector",
        missing.clone(),
        |m| p.send_with_selector(m, |_, _| 0),
        not_found,
    );
    refused(
        &store,
        "unknown topic, oneway",
        missing.clone(),
        |m| p.send_oneway(m).map(|()| panic!("oneway accepted")),
        not_found,
    );
    put_refused(&store, "put to unknown topic", &missing, 0, not_found);
    let e = p.send_batch(vec![missing.clone()]).unwrap_err();
    assert!(not_found(e.error()), "{:?}", e.error());
    assert!(store.topic("missing").is_none());
    store.close().unwrap();
}

/// A message refused by validation must not create its (new) topic either: RocketMQ's client
/// checks the message (`Validators.checkMessage`: body empty or too large) before it looks up
/// or auto-creates the topic route, and `Store::put` also checks before creating.
#[test]
fn refused_message_does_not_create_its_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).max_message_size(1000).open().unwrap();
    let p = store.producer("validator").unwrap();
    let cases = [
        ("empty body", Message::new("fresh-empty", Vec::new())),
        (
            "body too large",
            Message::new("fresh-large", vec![b'x'; 1001]),
        ),
        (
            "separator in tag",
            Message::new("fresh-tag", "x").with_tags("a\u{1}"),
        ),
        (
            "properties too long",
            Message::new("fresh-props", "x").with_property("p", "v".repeat(40_000)),
        ),
    ];
    for (what, msg) in &cases {
        // Store::put refuses without creating the topic.
        put_refused(&store, what, msg, 0, is_message);
        assert!(
            store.topic(msg.topic()).is_none(),
            "put: {what} created the topic"
        );
    }
    let mut created = Vec::new();
    for (what, msg) in &cases {
        let e = p.send(msg.clone()).unwrap_err();
        assert!(is_message(e.error()), "{what}: {:?}", e.error());
        assert_eq!(e.message(), msg);
        if store.topic(msg.topic()).is_some() {
            created.push(*what);
        }
    }
    let e = p
        .send_batch(vec![
            Message::new("fresh-batch", "ok"),
            Message::new("fresh-batch", Vec::new()),
        ])
        .unwrap_err();
    assert!(is_message(e.error()));
    if store.topic("fresh-batch").is_some() {
        created.push("batch with an empty body");
    }
    assert_eq!(
        store.commitlog_max_offset(),
        0,
        "a refused message was written"
    );
    assert!(
        created.is_empty(),
        "Producer sends refused by validation auto-created their topics ({created:?}); \
         topics now: {:?}",
        store.topics().iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    store.close().unwrap();
}
