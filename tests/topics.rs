//! Topics: `create_topic` (validation of names and queue counts, queue counts that only grow),
//! `topic`/`topics`/`queues` describing them, auto-creation on the first send with 4 queues or
//! `default_topic_queues`, auto-creation off (`Error::TopicNotFound` from every send path, nothing
//! written), persistence in `config/topics.json` in RocketMQ's TopicConfigManager shape (checked
//! field by field), reopen, `.bak` fallback, reading a RocketMQ-written file (read and write
//! queue counts differing), and queue count growth taking effect for sends.

mod common;

use std::path::Path;
use std::time::Duration;

use common::small;
use mqlite::{Error, Message, MessageQueue, Store};
use serde_json::Value;

fn topics_json(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("config").join("topics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn names(store: &Store) -> Vec<String> {
    store.topics().into_iter().map(|t| t.name).collect()
}

#[test]
fn create_describe_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    assert!(store.topics().is_empty());
    let cfg = store.create_topic("orders", 8).unwrap();
    assert_eq!(cfg.name, "orders");
    assert_eq!((cfg.read_queue_nums, cfg.write_queue_nums), (8, 8));
    assert_eq!(cfg.perm, 6);
    assert!(!cfg.order);
    assert_eq!(cfg.queue_count(), 8);
    store.create_topic("audit", 1).unwrap();
    store.create_topic("Zeta", 2).unwrap();
    assert_eq!(store.topic("orders"), Some(cfg));
    assert_eq!(store.topic("nope"), None);
    assert_eq!(names(&store), ["Zeta", "audit", "orders"], "sorted by name");
    let qs = store.queues("orders").unwrap();
    assert_eq!(
        qs,
        (0..8)
            .map(|q| MessageQueue::new("orders", q))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .pull_consumer("g")
            .unwrap()
            .queues("audit")
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(store.queues("nope"), Err(Error::TopicNotFound(t)) if t == "nope"));
    // Queue directories exist for every queue.
    for q in 0..8 {
        assert!(
            tmp.path()
                .join("consumequeue/orders")
                .join(q.to_string())
                .is_dir()
        );
    }
    store.close().unwrap();
}

#[test]
fn bad_names_and_queue_counts_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    for name in [
        "",
        "a b",
        "a.b",
        &"x".repeat(128),
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
    ] {
        assert!(
            matches!(store.create_topic(name, 4), Err(Error::InvalidTopic { .. })),
            "{name:?}"
        );
    }
    for n in [0, 1025, u32::MAX] {
        assert!(
            matches!(store.create_topic("t", n), Err(Error::InvalidConfig(_))),
            "{n} queues"
        );
    }
    assert!(store.topics().is_empty());
    assert!(!tmp.path().join("config/topics.json").exists());
    assert_eq!(
        store
            .create_topic(&"x".repeat(127), 1)
            .unwrap()
            .queue_count(),
        1
    );
    assert_eq!(store.create_topic("max", 1024).unwrap().queue_count(), 1024);
    for n in [0, 1025] {
        assert!(matches!(
            small(&tmp.path().join(format!("d{n}")))
                .default_topic_queues(n)
                .open(),
            Err(Error::InvalidConfig(_))
        ));
    }
    store.close().unwrap();
}

#[test]
fn queue_counts_only_grow_and_growth_takes_effect() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = small(tmp.path()).open().unwrap();
        store.create_topic("grow", 4).unwrap();
        let p = store.producer("p").unwrap();
        for i in 0..8 {
            p.send(Message::new("grow", format!("old{i}"))).unwrap();
        }
        let counter = |d: &Path| topics_json(d)["dataVersion"]["counter"].as_u64().unwrap();
        let c0 = counter(tmp.path());
        // Fewer or the same: unchanged, not rewritten.
        assert_eq!(store.create_topic("grow", 2).unwrap().queue_count(), 4);
        assert_eq!(store.create_topic("grow", 4).unwrap().queue_count(), 4);
        assert_eq!(counter(tmp.path()), c0);
        // More: raised.
        let cfg = store.create_topic("grow", 6).unwrap();
        assert_eq!((cfg.read_queue_nums, cfg.write_queue_nums), (6, 6));
        assert!(counter(tmp.path()) > c0);
        assert_eq!(store.queues("grow").unwrap().len(), 6);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..12 {
            seen.insert(
                p.send(Message::new("grow", format!("new{i}")))
                    .unwrap()
                    .queue
                    .queue_id,
            );
        }
        assert_eq!(seen.len(), 6, "round robin over the grown topic: {seen:?}");
        let r = p
            .send_to(Message::new("grow", "q5"), &MessageQueue::new("grow", 5))
            .unwrap();
        assert_eq!(r.queue.queue_id, 5);
        // Old messages are still there.
        let total: u64 = (0..4)
            .map(|q| store.max_offset(&MessageQueue::new("grow", q)).unwrap())
            .sum();
        assert!(total >= 8);
        store.close().unwrap();
    }
    let store = small(tmp.path()).open().unwrap();
    assert_eq!(store.topic("grow").unwrap().queue_count(), 6);
    assert_eq!(
        store
            .get_messages(&MessageQueue::new("grow", 5), 0, 32)
            .unwrap()
            .messages
            .last()
            .unwrap()
            .body(),
        b"q5"
    );
    store.close().unwrap();
}

#[test]
fn topics_are_created_on_the_first_send() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    assert!(store.config().auto_create_topics);
    assert_eq!(store.config().default_topic_queues, 4);
    let p = store.producer("p").unwrap();
    let r = p.send(Message::new("auto", "first")).unwrap();
    let cfg = store.topic("auto").unwrap();
    assert_eq!(
        (cfg.read_queue_nums, cfg.write_queue_nums, cfg.perm),
        (4, 4, 6)
    );
    assert!(r.queue.queue_id < 4);
    // Every send path and Store::put create topics.
    p.send_ordered(Message::new("auto-ordered", "x"), "k")
        .unwrap();
    p.send_with_selector(Message::new("auto-selector", "x"), |q, _| q.len() - 1)
        .unwrap();
    p.send_to(
        Message::new("auto-to", "x"),
        &MessageQueue::new("auto-to", 3),
    )
    .unwrap();
    p.send_oneway(Message::new("auto-oneway", "x")).unwrap();
    p.send_batch(vec![Message::new("auto-batch", "x")]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    p.send_async(Message::new("auto-async", "x"), move |r| {
        tx.send(r.is_ok()).unwrap();
    })
    .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    store.put(&Message::new("auto-put", "x"), 2).unwrap();
    let want = [
        "auto",
        "auto-async",
        "auto-batch",
        "auto-oneway",
        "auto-ordered",
        "auto-put",
        "auto-selector",
        "auto-to",
    ];
    assert_eq!(names(&store), want);
    for t in want {
        assert_eq!(store.topic(t).unwrap().queue_count(), 4, "{t}");
    }
    let json = topics_json(tmp.path());
    for t in want {
        assert_eq!(json["topicConfigTable"][t]["writeQueueNums"], 4, "{t}");
    }
    store.close().unwrap();

    // With another default.
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).default_topic_queues(8).open().unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("eight", "x"))
        .unwrap();
    assert_eq!(store.topic("eight").unwrap().queue_count(), 8);
    assert_eq!(store.queues("eight").unwrap().len(), 8);
    // Explicit creation is not limited by the default.
    assert_eq!(store.create_topic("two", 2).unwrap().queue_count(), 2);
    store.close().unwrap();
}

#[test]
fn with_auto_creation_off_unknown_topics_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).auto_create_topics(false).open().unwrap();
    let p = store.producer("p").unwrap();
    let msg = Message::new("unknown", "x");
    let nf = |e: &Error| matches!(e, Error::TopicNotFound(t) if t == "unknown");
    let e = p.send(msg.clone()).unwrap_err();
    assert!(nf(e.error()), "{e}");
    assert_eq!(e.into_message(), msg);
    assert!(nf(p.send_ordered(msg.clone(), "k").unwrap_err().error()));
    assert!(nf(p
        .send_to(msg.clone(), &MessageQueue::new("unknown", 0))
        .unwrap_err()
        .error()));
    assert!(nf(p.send_oneway(msg.clone()).unwrap_err().error()));
    assert!(nf(p.send_batch(vec![msg.clone()]).unwrap_err().error()));
    let (tx, rx) = std::sync::mpsc::channel();
    p.send_async(msg.clone(), move |r| {
        let e = r.unwrap_err();
        tx.send(matches!(e, Error::TopicNotFound(_))).unwrap();
    })
    .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(matches!(store.put(&msg, 0), Err(Error::TopicNotFound(_))));
    assert!(store.topics().is_empty());
    assert_eq!(store.commitlog_max_offset(), 0);
    assert!(!tmp.path().join("config/topics.json").exists());
    // Created explicitly, it works.
    store.create_topic("unknown", 2).unwrap();
    let r = p.send(msg).unwrap();
    assert!(r.queue.queue_id < 2);
    store.close().unwrap();
}

#[test]
fn topics_json_has_rocketmqs_shape_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let listed;
    {
        let store = small(tmp.path()).open().unwrap();
        store.create_topic("orders", 8).unwrap();
        store.create_topic("billing", 1).unwrap();
        store
            .producer("p")
            .unwrap()
            .send(Message::new("auto", "x"))
            .unwrap();
        listed = store.topics();
        store.close().unwrap();
    }
    let json = topics_json(tmp.path());
    let dv = &json["dataVersion"];
    assert!(dv["counter"].as_u64().unwrap() >= 3, "{dv}");
    assert_eq!(dv["stateVersion"], 0);
    assert!(dv["timestamp"].as_u64().unwrap() >= before_ms, "{dv}");
    let table = json["topicConfigTable"].as_object().unwrap();
    assert_eq!(table.len(), listed.len());
    for t in &listed {
        let v = &table[&t.name];
        assert_eq!(v["topicName"], t.name.as_str());
        assert_eq!(v["readQueueNums"], t.read_queue_nums);
        assert_eq!(v["writeQueueNums"], t.write_queue_nums);
        assert_eq!(v["perm"], 6);
        assert_eq!(v["topicFilterType"], "SINGLE_TAG");
        assert_eq!(v["topicSysFlag"], 0);
        assert_eq!(v["order"], false);
        assert_eq!(v["attributes"], serde_json::json!({}));
    }
    assert_eq!(table["orders"]["writeQueueNums"], 8);
    assert_eq!(table["auto"]["writeQueueNums"], 4);
    let store = small(tmp.path()).open().unwrap();
    assert_eq!(store.topics(), listed);
    store.close().unwrap();
}

#[test]
fn a_damaged_topics_json_falls_back_to_its_backup() {
    for (i, damage) in [
        &b"{\"topicConfigTable\": {\"tr"[..],
        b"",
        b"\0\0\0\0",
        b"[]",
    ]
    .into_iter()
    .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = small(tmp.path()).open().unwrap();
            store.create_topic("first", 2).unwrap();
            store.create_topic("second", 3).unwrap();
            store.close().unwrap();
        }
        let config = tmp.path().join("config");
        let bak: Value =
            serde_json::from_str(&std::fs::read_to_string(config.join("topics.json.bak")).unwrap())
                .unwrap();
        // The backup is the previous version: "first" only.
        assert!(bak["topicConfigTable"].get("first").is_some());
        assert!(bak["topicConfigTable"].get("second").is_none());
        std::fs::write(config.join("topics.json"), damage).unwrap();
        let store = small(tmp.path()).open().unwrap();
        let t = store
            .topic("first")
            .unwrap_or_else(|| panic!("damage {i}: backup not used: {:?}", store.topics()));
        assert_eq!(t.queue_count(), 2);
        // The topic missing from the backup is rebuilt from its queue directories.
        assert_eq!(store.topic("second").map(|t| t.queue_count()), Some(3));
        store.close().unwrap();
    }
}

#[test]
fn a_rocketmq_written_topics_json_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    // As a RocketMQ broker writes it (fastjson, pretty), with extra fields and a topic whose
    // read and write queue counts differ.
    let text = r#"{
	"dataVersion":{
		"counter":7,
		"stateVersion":0,
		"timestamp":1726766740123
	},
	"topicConfigTable":{
		"TBW102":{
			"attributes":{},
			"order":false,
			"perm":7,
			"readQueueNums":8,
			"topicFilterType":"SINGLE_TAG",
			"topicName":"TBW102",
			"topicSysFlag":0,
			"writeQueueNums":8
		},
		"orders":{
			"attributes":{},
			"order":true,
			"perm":6,
			"readQueueNums":2,
			"topicFilterType":"SINGLE_TAG",
			"topicName":"orders",
			"topicSysFlag":0,
			"writeQueueNums":4
		}
	}
}"#;
    std::fs::write(tmp.path().join("config/topics.json"), text).unwrap();
    let store = small(tmp.path()).open().unwrap();
    let orders = store.topic("orders").unwrap();
    assert_eq!((orders.read_queue_nums, orders.write_queue_nums), (2, 4));
    assert!(orders.order);
    assert_eq!(orders.perm, 6);
    assert_eq!(store.topic("TBW102").unwrap().perm, 7);
    // Consumers see the read queues, producers write to the write queues.
    assert_eq!(store.queues("orders").unwrap().len(), 2);
    let p = store.producer("p").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..8 {
        seen.insert(
            p.send(Message::new("orders", format!("{i}")))
                .unwrap()
                .queue
                .queue_id,
        );
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    // The system topic stays closed to users.
    assert!(matches!(
        p.send(Message::new("TBW102", "x")).unwrap_err().error(),
        Error::InvalidTopic { .. }
    ));
    store.close().unwrap();
    let json = topics_json(tmp.path());
    assert!(json["dataVersion"]["counter"].as_u64().unwrap() >= 7);
}
