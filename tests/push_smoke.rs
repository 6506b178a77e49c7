//! Push consumers: queues shared out 3/3/2, retries through the retry topic, broadcasting.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageModel};
use parking_lot::Mutex;

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn three_consumers_share_eight_queues_and_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 8).unwrap();
    let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let start = |name: &str| {
        let seen = seen.clone();
        store
            .push_consumer("g")
            .subscribe("t", "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .instance_name(name)
            .start_concurrently(move |msgs| {
                let mut s = seen.lock();
                for m in msgs {
                    *s.entry(String::from_utf8_lossy(m.body()).into_owned())
                        .or_default() += 1;
                }
                ConsumeStatus::Success
            })
            .unwrap()
    };
    let a = start("a");
    let b = start("b");
    let c = start("c");
    let mut sizes: Vec<usize> = [&a, &b, &c]
        .iter()
        .map(|c| {
            c.assigned_queues()
                .iter()
                .filter(|q| q.topic == "t")
                .count()
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![2, 3, 3]);
    let p = store.producer("p").unwrap();
    for i in 0..400 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    wait_until("400 consumed", Duration::from_secs(10), || {
        seen.lock().len() == 400
    });
    c.shutdown().unwrap();
    let total: usize = [&a, &b]
        .iter()
        .map(|c| {
            c.assigned_queues()
                .iter()
                .filter(|q| q.topic == "t")
                .count()
        })
        .sum();
    assert_eq!(total, 8, "the leaver's queues are taken over");
    for i in 400..800 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    wait_until("800 consumed", Duration::from_secs(10), || {
        seen.lock().len() == 800
    });
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    assert!(
        seen.lock().values().all(|&n| n == 1),
        "no duplicates without failures"
    );
}

#[test]
fn reconsume_later_walks_retry_levels_into_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .message_delay_level("10ms 10ms 10ms 10ms 10ms 10ms 10ms")
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen_times = Arc::new(Mutex::new(Vec::new()));
    let (a, s) = (attempts.clone(), seen_times.clone());
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .max_reconsume_times(3)
        .start_concurrently(move |msgs| {
            a.fetch_add(1, Ordering::SeqCst);
            let m = &msgs[0];
            assert_eq!(m.topic(), "t", "retried messages show their original topic");
            s.lock().push(m.reconsume_times());
            if m.reconsume_times() == 1 {
                panic!("a panic counts as reconsume later");
            }
            ConsumeStatus::ReconsumeLater
        })
        .unwrap();
    let sent = store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "poison").with_tags("x"))
        .unwrap();
    let dlq = mqlite::MessageQueue::new("%DLQ%g", 0);
    wait_until("the DLQ", Duration::from_secs(10), || {
        store.max_offset(&dlq).unwrap_or(0) == 1
    });
    consumer.shutdown().unwrap();
    assert_eq!(*seen_times.lock(), vec![0, 1, 2, 3]);
    let dead = &store.get_messages(&dlq, 0, 1).unwrap().messages[0];
    assert_eq!(dead.body(), b"poison");
    assert_eq!(dead.msg_id(), sent.msg_id);
    assert_eq!(dead.property("RETRY_TOPIC"), Some("t"));
    assert_eq!(dead.tags(), Some("x"));
}

#[test]
fn broadcasting_delivers_everything_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 4).unwrap();
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let consumers: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let n = n.clone();
            store
                .push_consumer("b")
                .subscribe("t", "*")
                .message_model(MessageModel::Broadcasting)
                .consume_from(ConsumeFrom::FirstOffset)
                .instance_name(&format!("i{i}"))
                .start_concurrently(move |msgs| {
                    n.fetch_add(msgs.len(), Ordering::SeqCst);
                    ConsumeStatus::Success
                })
                .unwrap()
        })
        .collect();
    let p = store.producer("p").unwrap();
    for i in 0..100 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    wait_until("all", Duration::from_secs(10), || {
        counts.iter().all(|n| n.load(Ordering::SeqCst) == 100)
    });
    for c in consumers {
        c.shutdown().unwrap();
    }
}
