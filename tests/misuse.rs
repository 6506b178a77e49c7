//! Calls that used to succeed silently on nonsense now get a typed error, and nothing changes.

use mqlite::{Error, Message, MessageQueue, Store};

#[test]
fn offsets_of_unknown_queues_and_past_the_end_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.create_topic("t", 2).unwrap();
    for _ in 0..5 {
        store.put(&Message::new("t", "x"), 0).unwrap();
    }
    let c = store.pull_consumer("g").unwrap();
    let q0 = MessageQueue::new("t", 0);
    assert!(matches!(
        c.commit_offset(&MessageQueue::new("nope", 0), 1),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        c.commit_offset(&MessageQueue::new("t", 7), 1),
        Err(Error::QueueNotFound { .. })
    ));
    for bad in [6, u64::MAX] {
        match c.commit_offset(&q0, bad) {
            Err(Error::InvalidOffset { offset, max, .. }) => assert_eq!((offset, max), (bad, 5)),
            other => panic!("offset {bad}: {other:?}"),
        }
    }
    assert_eq!(c.committed_offset(&q0).unwrap(), None, "nothing was stored");
    c.commit_offset(&q0, 5).unwrap();
    assert_eq!(c.committed_offset(&q0).unwrap(), Some(5));
    store.close().unwrap();
}

#[test]
fn reads_of_unknown_queues_say_so_like_pull_does() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    let unknown_topic = MessageQueue::new("nope", 0);
    let unknown_queue = MessageQueue::new("t", 3);
    assert!(matches!(
        store.min_offset(&unknown_topic),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        store.max_offset(&unknown_topic),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        store.get_messages(&unknown_topic, 0, 1),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        store.max_offset(&unknown_queue),
        Err(Error::QueueNotFound { .. })
    ));
    assert!(matches!(
        store.get_messages(&unknown_queue, 0, 1),
        Err(Error::QueueNotFound { .. })
    ));
    // A known queue without messages is simply empty.
    let q = MessageQueue::new("t", 0);
    assert_eq!(store.max_offset(&q).unwrap(), 0);
    assert!(store.get_messages(&q, 0, 1).unwrap().messages.is_empty());
    store.close().unwrap();
}

#[test]
fn put_refuses_reserved_properties() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    for name in ["DELAY", "REAL_TOPIC", "TRAN_MSG"] {
        let msg = Message::new("t", "x").with_property(name, "3");
        assert!(store.put(&msg, 0).is_err(), "{name} accepted");
    }
    assert_eq!(store.max_offset(&MessageQueue::new("t", 0)).unwrap(), 0);
    store.close().unwrap();
}

#[test]
fn subscribing_never_creates_a_topic_and_takes_it_when_it_appears() {
    use mqlite::{ConsumeFrom, ConsumeStatus};
    use std::sync::mpsc;
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(tx);
    let consumer = store
        .push_consumer("g")
        .subscribe("ordres", "*") // misspelled: nothing is created
        .subscribe("orders", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            for m in msgs {
                tx.lock().unwrap().send(m.body().to_vec()).unwrap();
            }
            ConsumeStatus::Success
        })
        .unwrap();
    assert!(
        store.topic("ordres").is_none(),
        "a subscription created a topic"
    );
    assert!(store.topic("orders").is_none());
    // The producer creates the topic; the running consumer takes its queues.
    store
        .producer("p")
        .unwrap()
        .send(Message::new("orders", "first"))
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(got, b"first");
    assert!(store.topic("ordres").is_none());
    consumer.shutdown().unwrap();
    store.close().unwrap();
}

#[test]
fn sql_like_tag_expressions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for expr in ["(", "a = 1", "TAGS IN ('a')", "a || (b)"] {
        let r = store
            .push_consumer("g")
            .subscribe("t", expr)
            .start_concurrently(|_| mqlite::ConsumeStatus::Success);
        assert!(
            matches!(r, Err(Error::InvalidFilter { .. })),
            "{expr}: {:?}",
            r.err()
        );
    }
    store.close().unwrap();
}
