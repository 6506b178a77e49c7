//! `query_by_key`: by business key or msgId, within a time range, across queues, newest
//! first, at most 64.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqlite::Message;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn finds_by_key_and_msg_id_within_the_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("orders", 4).unwrap();
    let p = store.producer("p").unwrap();
    let mut early = Vec::new();
    for i in 0..20 {
        let key = if i % 2 == 0 { "ORDER-A" } else { "ORDER-B" };
        early.push(
            p.send(Message::new("orders", format!("early {i}")).with_keys([key, "ALL"]))
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(20));
    let middle = now_ms();
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..10 {
        p.send(Message::new("orders", format!("late {i}")).with_keys(["ORDER-A"]))
            .unwrap();
    }
    let all_a = store
        .query_by_key("orders", "ORDER-A", 0, u64::MAX, 64)
        .unwrap();
    assert_eq!(all_a.len(), 20);
    assert!(
        all_a
            .windows(2)
            .all(|w| w[0].physical_offset() > w[1].physical_offset())
    );
    assert!(all_a.iter().all(|m| m.keys().any(|k| k == "ORDER-A")));
    let late_a = store
        .query_by_key("orders", "ORDER-A", middle, u64::MAX, 64)
        .unwrap();
    assert_eq!(late_a.len(), 10);
    assert!(late_a.iter().all(|m| m.body().starts_with(b"late")));
    let early_b = store
        .query_by_key("orders", "ORDER-B", 0, middle, 64)
        .unwrap();
    assert_eq!(early_b.len(), 10);
    // By msgId (UNIQ_KEY).
    let by_id = store
        .query_by_key("orders", early[3].msg_id.as_str(), 0, u64::MAX, 64)
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].body(), b"early 3");
    assert!(
        store
            .query_by_key("orders", "NOPE", 0, u64::MAX, 64)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .query_by_key("missing", "ORDER-A", 0, u64::MAX, 64)
            .is_err()
    );
}

#[test]
fn returns_at_most_64() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..100 {
        p.send(Message::new("t", format!("m{i}")).with_keys(["K"]))
            .unwrap();
    }
    assert_eq!(
        store.query_by_key("t", "K", 0, u64::MAX, 64).unwrap().len(),
        64
    );
}
