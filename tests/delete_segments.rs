//! Deleting old CommitLog segments: queues' min offsets move up, later data stays readable, and
//! the store reopens (cleanly and after a crash) with the new minimum.

mod common;

use mqlite::{Message, MessageQueue};

fn body(q: u32, i: u64) -> Vec<u8> {
    format!("queue {q} message {i} {}", "x".repeat((i % 300) as usize)).into_bytes()
}

fn check(store: &mqlite::Store, queues: u32, per_queue: u64) -> Vec<u64> {
    let mut mins = Vec::new();
    for q in 0..queues {
        let mq = MessageQueue::new("t", q);
        let min = store.min_offset(&mq).unwrap();
        assert_eq!(store.max_offset(&mq).unwrap(), per_queue);
        let mut off = 0;
        let mut seen = min;
        loop {
            let r = store.get_messages(&mq, off, 64).unwrap();
            if r.messages.is_empty() {
                break;
            }
            for m in &r.messages {
                assert_eq!(m.queue_offset(), seen, "dense from the new minimum");
                assert_eq!(m.body(), body(q, seen).as_slice());
                assert!(m.physical_offset() >= store.commitlog_min_offset());
                seen += 1;
            }
            off = r.next_offset;
        }
        assert_eq!(seen, per_queue);
        mins.push(min);
    }
    mins
}

#[test]
fn delete_before_moves_minimums_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 3).unwrap();
    let per_queue = 400;
    for i in 0..per_queue {
        for q in 0..3 {
            store.put(&Message::new("t", body(q, i)), q).unwrap();
        }
    }
    let end = store.commitlog_max_offset();
    let cut = end / 2;
    let min = store.delete_segments_before(cut).unwrap();
    assert!(min > 0 && min <= cut, "min {min} cut {cut}");
    assert_eq!(store.commitlog_min_offset(), min);
    let files = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .count();
    assert!(files as u64 <= (end - min) / (64 * 1024) + 2);
    let mins = check(&store, 3, per_queue);
    assert!(mins.iter().all(|&m| m > 0));
    // Reading below the minimum starts at the minimum.
    let r = store
        .get_messages(&MessageQueue::new("t", 0), 0, 1)
        .unwrap();
    assert_eq!(r.messages[0].queue_offset(), mins[0]);
    store.close().unwrap();

    // Clean reopen.
    let store = common::small(dir.path()).open().unwrap();
    assert_eq!(check(&store, 3, per_queue), mins);
    assert_eq!(store.commitlog_min_offset(), min);
    store.close().unwrap();

    // Reopen through recovery (abort marker present).
    std::fs::write(dir.path().join("abort"), b"1").unwrap();
    let store = common::small(dir.path()).open().unwrap();
    assert_eq!(check(&store, 3, per_queue), mins);
    let r = store
        .put(&Message::new("t", body(0, per_queue)), 0)
        .unwrap();
    assert_eq!(r.queue_offset, per_queue);
    // The active segment is never deleted.
    let min2 = store.delete_segments_before(u64::MAX).unwrap();
    assert!(min2 <= r.physical_offset);
    assert_eq!(
        store
            .get_messages(&MessageQueue::new("t", 0), per_queue, 1)
            .unwrap()
            .messages[0]
            .body(),
        body(0, per_queue).as_slice()
    );
    store.close().unwrap();
}
