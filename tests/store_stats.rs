//! `Store::stats`: puts per topic, gets per group, lag; counted as RocketMQ's broker stats
//! count them (whole records, since the open).

use std::time::Duration;

use mqlite::{FlushPolicy, Message, MessageQueue, Store};

fn topic<'a>(s: &'a mqlite::StoreStats, name: &str) -> &'a mqlite::TopicStats {
    s.topics.iter().find(|t| t.topic == name).expect(name)
}

#[test]
fn puts_and_gets_are_counted_per_topic_and_group() {
    for policy in [
        FlushPolicy::ASYNC,
        FlushPolicy::Sync {
            timeout: Duration::from_secs(5),
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path())
            .flush_policy(policy)
            .commitlog_segment_size(1 << 20)
            .open()
            .unwrap();
        store.create_topic("a", 2).unwrap();
        store.create_topic("b", 1).unwrap();
        let mut a_bytes = 0;
        for i in 0..10u32 {
            let r = store
                .put(&Message::new("a", vec![b'x'; 1 + i as usize * 10]), i % 2)
                .unwrap();
            let m = store.view_message(&r.offset_msg_id.to_string()).unwrap();
            a_bytes += u64::from(m.store_size());
        }
        store.put(&Message::new("b", "one"), 0).unwrap();
        let s = store.stats();
        let a = topic(&s, "a");
        assert_eq!((a.messages, a.put_messages, a.put_bytes), (10, 10, a_bytes));
        // All ten were put moments ago, within the last minute (unless the machine stalled
        // for a minute since, which only lowers the rate).
        assert!(a.put_tps > 0.0 && a.put_tps <= 10.0 / 60.0 + 1e-9, "{a:?}");
        assert!(a.put_bytes_per_sec <= a_bytes as f64 / 60.0 + 1e-6);
        assert_eq!(topic(&s, "b").put_messages, 1);
        assert!(s.groups.is_empty());

        let c = store.pull_consumer("billing").unwrap();
        let q0 = MessageQueue::new("a", 0);
        let got = c.pull(&q0, "*", 0, 3).unwrap();
        assert_eq!(got.messages.len(), 3);
        let got_bytes: u64 = got.messages.iter().map(|m| u64::from(m.store_size())).sum();
        let s = store.stats();
        assert_eq!(s.groups.len(), 1);
        let g = &s.groups[0];
        assert_eq!((g.group.as_str(), g.topic.as_str()), ("billing", "a"));
        assert_eq!((g.get_messages, g.get_bytes), (3, got_bytes));
        assert_eq!(g.lag, None, "nothing committed yet");
        c.commit_offset(&q0, got.next_begin_offset).unwrap();
        // Queue 1 was never committed: it counts from its min offset.
        assert_eq!(store.stats().groups[0].lag, Some(2 + 5));
        // A group known only from its committed offsets is listed too.
        store
            .pull_consumer("audit")
            .unwrap()
            .commit_offset(&MessageQueue::new("b", 0), 1)
            .unwrap();
        let s = store.stats();
        let audit = s.groups.iter().find(|g| g.group == "audit").unwrap();
        assert_eq!((audit.get_messages, audit.lag), (0, Some(0)));
        store.close().unwrap();
    }
}

#[test]
fn counts_start_at_the_open_and_recovery_is_not_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Store::builder(dir.path())
            .commitlog_segment_size(1 << 20)
            .open()
            .unwrap()
    };
    let store = open();
    for i in 0..5 {
        store.put(&Message::new("t", format!("m{i}")), 0).unwrap();
    }
    store.close().unwrap();
    // Lose the consume queue: the open rebuilds it from the CommitLog.
    std::fs::remove_dir_all(dir.path().join("consumequeue/t")).unwrap();
    let store = open();
    let s = store.stats();
    let t = topic(&s, "t");
    assert_eq!((t.messages, t.put_messages, t.put_bytes), (5, 0, 0));
    store.put(&Message::new("t", "new"), 0).unwrap();
    assert_eq!(topic(&store.stats(), "t").put_messages, 1);
}

#[test]
fn push_and_delayed_paths_count_where_the_message_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let p = store.producer("p").unwrap();
    p.send(Message::new("later", "x").with_delay_level(1))
        .unwrap();
    // A delayed message is put into the schedule topic first.
    let s = store.stats();
    let schedule = topic(&s, "SCHEDULE_TOPIC_XXXX");
    assert_eq!(schedule.put_messages, 1);
}

#[test]
fn push_consumers_count_as_their_group_gets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("jobs", 2).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..20 {
        p.send(Message::new("jobs", format!("job {i}"))).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let consumer = store
        .push_consumer("workers")
        .subscribe("jobs", "*")
        .consume_from(mqlite::ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            for _ in msgs {
                tx.send(()).unwrap();
            }
            mqlite::ConsumeStatus::Success
        })
        .unwrap();
    for _ in 0..20 {
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    let s = store.stats();
    let g = s
        .groups
        .iter()
        .find(|g| g.group == "workers" && g.topic == "jobs")
        .expect("the group's gets");
    assert_eq!(g.get_messages, 20);
    consumer.shutdown().unwrap();
}
