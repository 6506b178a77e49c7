//! Orderly dead letters: a message suspended `max_reconsume_times` times is tried once more
//! (reconsume times 0..=max), then goes to the group's `%DLQ%{group}` topic (not to its retry
//! topic) carrying its body, tags, keys, properties and origin, and its queue moves on: later
//! messages are consumed in order and the committed offset passes it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, MessageId, MessageQueue, OrderlyStatus, PushConsumer, Store};
use parking_lot::Mutex;

const GROUP: &str = "dlq-group";
const TOPIC: &str = "d";

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (queue, offset, reconsume times, msg id, when) per message handed to the listener.
type Log = Arc<Mutex<Vec<(u32, u64, i32, MessageId, Instant)>>>;

fn dlq() -> MessageQueue {
    MessageQueue::new(format!("%DLQ%{GROUP}"), 0)
}

fn setup(queues: u32) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, queues).unwrap();
    (dir, store)
}

/// An orderly consumer that suspends every message whose body starts with "poison".
fn start(store: &Store, max: Option<u32>, log: &Log) -> PushConsumer {
    let log = log.clone();
    let mut b = store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .suspend_current_queue_time(Duration::from_millis(20));
    if let Some(max) = max {
        b = b.max_reconsume_times(max);
    }
    b.start_orderly(move |msgs, _ctx| {
        let at = Instant::now();
        let mut l = log.lock();
        let mut poisoned = false;
        for m in msgs {
            l.push((
                m.queue_id(),
                m.queue_offset(),
                m.reconsume_times(),
                m.msg_id(),
                at,
            ));
            poisoned |= m.body().starts_with(b"poison");
        }
        if poisoned {
            OrderlyStatus::SuspendCurrentQueueAMoment
        } else {
            OrderlyStatus::Success
        }
    })
    .unwrap()
}

fn seen(log: &Log, queue: u32) -> Vec<(u64, i32)> {
    log.lock()
        .iter()
        .filter(|e| e.0 == queue)
        .map(|e| (e.1, e.2))
        .collect()
}

fn committed(store: &Store, queue: u32) -> Option<u64> {
    store
        .pull_consumer(GROUP)
        .unwrap()
        .committed_offset(&MessageQueue::new(TOPIC, queue))
        .unwrap()
}

#[test]
fn after_max_reconsume_times_the_message_goes_to_the_dlq_and_the_queue_moves_on() {
    let (_dir, store) = setup(2);
    let p = store.producer("p").unwrap();
    let q0 = MessageQueue::new(TOPIC, 0);
    let q1 = MessageQueue::new(TOPIC, 1);
    p.send_to(
        Message::new(TOPIC, "poison")
            .with_tags("bad")
            .with_keys(["K-POISON"])
            .with_property("origin", "test"),
        &q0,
    )
    .unwrap();
    for i in 0..2 {
        p.send_to(Message::new(TOPIC, format!("good-{i}")), &q0)
            .unwrap();
    }
    for i in 0..3 {
        p.send_to(Message::new(TOPIC, format!("other-{i}")), &q1)
            .unwrap();
    }
    let log: Log = Arc::default();
    let consumer = start(&store, Some(3), &log);
    wait_until("queue 0 to move on", Duration::from_secs(10), || {
        seen(&log, 0).last() == Some(&(2, 0))
    });
    wait_until(
        "the offset to pass the dead letter",
        Duration::from_secs(10),
        || committed(&store, 0) == Some(3),
    );
    wait_until("queue 1", Duration::from_secs(10), || {
        seen(&log, 1).len() == 3
    });

    // Tried with reconsume times 0, 1, 2, 3 (max 3), spaced by the suspend time, then dropped.
    assert_eq!(
        seen(&log, 0),
        [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (2, 0)]
    );
    let tries: Vec<Instant> = log
        .lock()
        .iter()
        .filter(|e| e.0 == 0 && e.1 == 0)
        .map(|e| e.4)
        .collect();
    for w in tries.windows(2) {
        assert!(w[1].duration_since(w[0]) >= Duration::from_millis(20));
    }
    assert_eq!(seen(&log, 1), [(0, 0), (1, 0), (2, 0)]);

    // The dead letter.
    // The poison message's first delivery (queue 0, offset 0): queue 1 may have logged first.
    let origin_id = log
        .lock()
        .iter()
        .find(|e| e.0 == 0 && e.1 == 0)
        .map(|e| e.3)
        .expect("queue 0 offset 0 consumed");
    assert_eq!(
        store.queues(&dlq().topic).unwrap(),
        vec![dlq()],
        "one DLQ queue"
    );
    let dead = store.get_messages(&dlq(), 0, 32).unwrap().messages;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.body(), b"poison");
    assert_eq!(d.tags(), Some("bad"));
    assert_eq!(d.keys().collect::<Vec<_>>(), ["K-POISON"]);
    assert_eq!(d.property("origin"), Some("test"));
    assert_eq!(d.property("RETRY_TOPIC"), Some(TOPIC));
    assert_eq!(d.property("ORIGIN_MESSAGE_ID"), Some(origin_id.as_str()));
    assert_eq!(d.reconsume_times(), 3);
    // Not through the retry topic.
    let retry = MessageQueue::new(format!("%RETRY%{GROUP}"), 0);
    assert_eq!(store.max_offset(&retry).unwrap(), 0);

    // Nothing more to see, and the dead letter is not redelivered after a restart.
    consumer.shutdown().unwrap();
    assert_eq!(committed(&store, 0), Some(3));
    assert_eq!(committed(&store, 1), Some(3));
    p.send_to(Message::new(TOPIC, "after-restart"), &q0)
        .unwrap();
    let log2: Log = Arc::default();
    let again = start(&store, Some(3), &log2);
    wait_until("the new message", Duration::from_secs(10), || {
        !seen(&log2, 0).is_empty()
    });
    again.shutdown().unwrap();
    assert_eq!(seen(&log2, 0), [(3, 0)]);
    assert!(seen(&log2, 1).is_empty());
    assert_eq!(store.max_offset(&dlq()).unwrap(), 1);
}

#[test]
fn max_zero_sends_the_first_failure_to_the_dlq() {
    let (_dir, store) = setup(1);
    let p = store.producer("p").unwrap();
    p.send(Message::new(TOPIC, "poison")).unwrap();
    p.send(Message::new(TOPIC, "fine")).unwrap();
    let log: Log = Arc::default();
    let consumer = start(&store, Some(0), &log);
    wait_until("the queue to move on", Duration::from_secs(10), || {
        seen(&log, 0).len() == 2
    });
    wait_until("the DLQ", Duration::from_secs(10), || {
        store.max_offset(&dlq()).unwrap_or(0) == 1
    });
    consumer.shutdown().unwrap();
    assert_eq!(seen(&log, 0), [(0, 0), (1, 0)]);
    let dead = store.get_messages(&dlq(), 0, 32).unwrap().messages;
    assert_eq!(dead[0].body(), b"poison");
    assert_eq!(dead[0].reconsume_times(), 0);
    assert_eq!(committed(&store, 0), Some(2));
}

#[test]
fn several_dead_letters_keep_the_queue_in_order() {
    let (_dir, store) = setup(1);
    let p = store.producer("p").unwrap();
    let bodies = ["ok-0", "poison-1", "ok-2", "poison-3", "ok-4"];
    for b in bodies {
        p.send(Message::new(TOPIC, b)).unwrap();
    }
    let log: Log = Arc::default();
    let consumer = start(&store, Some(1), &log);
    wait_until("the last message", Duration::from_secs(10), || {
        seen(&log, 0).last() == Some(&(4, 0))
    });
    wait_until("the committed offset", Duration::from_secs(10), || {
        committed(&store, 0) == Some(5)
    });
    consumer.shutdown().unwrap();
    assert_eq!(
        seen(&log, 0),
        [(0, 0), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1), (4, 0)]
    );
    let dead: Vec<Vec<u8>> = store
        .get_messages(&dlq(), 0, 32)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.body().to_vec())
        .collect();
    assert_eq!(dead, [b"poison-1".to_vec(), b"poison-3".to_vec()]);
}
