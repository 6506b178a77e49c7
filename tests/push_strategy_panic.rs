//! A user allocation strategy that panics does not break the group: the consumer falls back to
//! the default averaging strategy (warned once), stays in the group and consumes its share.

#[path = "common/capture_log.rs"]
mod capture_log;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageQueue, Store};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_panicking_strategy_falls_back_to_averaging() {
    capture_log::install();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 4).unwrap();
    let got: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let start = |name: &str, panicking: bool| {
        let got = got.clone();
        let b = store
            .push_consumer("g")
            .subscribe("t", "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .instance_name(name);
        let b = if panicking {
            b.allocate_with(|_, _, _, _| panic!("strategy bug"))
        } else {
            b
        };
        b.start_concurrently(move |msgs| {
            got.lock().unwrap().extend(
                msgs.iter()
                    .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
            );
            ConsumeStatus::Success
        })
        .unwrap()
    };
    let bad = start("bad", true);
    let good = start("good", false);
    assert_eq!(store.consumer_ids("g").len(), 2, "both in the group");
    let topic_queues = |c: &mqlite::PushConsumer| -> Vec<MessageQueue> {
        c.assigned_queues()
            .into_iter()
            .filter(|q| q.topic == "t")
            .collect()
    };
    wait_until("the queues to be shared 2/2", || {
        topic_queues(&bad).len() == 2 && topic_queues(&good).len() == 2
    });
    let all: BTreeSet<MessageQueue> = topic_queues(&bad)
        .into_iter()
        .chain(topic_queues(&good))
        .collect();
    assert_eq!(all.len(), 4, "every queue has one owner");
    let p = store.producer("p").unwrap();
    for i in 0..40 {
        p.send(Message::new("t", format!("{i}"))).unwrap();
    }
    wait_until("every message", || got.lock().unwrap().len() == 40);
    let warnings = capture_log::lines(log::Level::Warn, "allocation strategy panicked");
    assert_eq!(
        warnings.len(),
        1,
        "warned once for the consumer: {warnings:?}"
    );
    bad.shutdown().unwrap();
    good.shutdown().unwrap();
    store.close().unwrap();
}
