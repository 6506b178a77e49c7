//! Retention (RocketMQ's cleaner, in-process) and the disk-space guard: expiry by file
//! modification time, the size cap, consumers behind a deleted segment, and puts refused with
//! `Error::DiskFull` until space returns.

#[path = "common/capture_log.rs"]
mod capture_log;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mqlite::{
    Error, IndexConfig, Message, MessageQueue, PullStatus, RetentionConfig, Store, StoreBuilder,
};

const SEG: u64 = 64 * 1024;

fn retention(enabled: bool, cap: Option<u64>) -> RetentionConfig {
    let mut r = RetentionConfig::default();
    r.enabled = enabled;
    r.file_reserved_time = Duration::from_secs(3600);
    r.max_store_bytes = cap;
    // No hour of the day triggers the cleaner by itself in these tests.
    r.delete_when = String::new();
    r
}

fn builder(dir: &Path, r: RetentionConfig) -> StoreBuilder {
    Store::builder(dir)
        .commitlog_segment_size(SEG)
        .consume_queue_segment_size(20 * 200)
        .index(IndexConfig {
            enabled: true,
            max_hash_slots: 32,
            max_index_entries: 300,
        })
        .retention(r)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn index_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("index")).unwrap().count()
}

fn age(path: &Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

/// Puts 300-byte messages to queue 0 of "t" until the CommitLog has `n` segments in use.
fn fill_segments(store: &Store, n: u64) -> u64 {
    let mut i = 0;
    while store.commitlog_max_offset() < (n - 1) * SEG + SEG / 2 {
        store
            .put(
                &Message::new("t", vec![b'x'; 300]).with_keys([format!("K{i}")]),
                0,
            )
            .unwrap();
        i += 1;
    }
    i
}

#[test]
fn expired_segments_go_oldest_first_and_consumers_behind_move_to_the_min() {
    capture_log::install();
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path(), retention(false, None)).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let sent = fill_segments(&store, 6);
    let q = MessageQueue::new("t", 0);
    let pull = store.pull_consumer("behind").unwrap();
    pull.commit_offset(&q, 3).unwrap();
    store.flush().unwrap(); // the index writer has caught up
    let index_before = index_files(dir.path());
    let segs = segments(dir.path());
    assert!(segs.len() >= 6);

    // Nothing is old enough.
    assert_eq!(store.cleanup_now().unwrap().deleted_segments, 0);
    // Segments 0, 1 and 3 are old; 2 is young: deletion stops there.
    for i in [0, 1, 3] {
        age(&segs[i], Duration::from_secs(7200));
    }
    let report = store.cleanup_now().unwrap();
    assert_eq!(report.deleted_segments, 2);
    assert_eq!(report.commitlog_min_offset, 2 * SEG);
    assert_eq!(store.commitlog_min_offset(), 2 * SEG);
    assert!(!segs[0].exists() && !segs[1].exists() && segs[2].exists());
    assert!(
        index_files(dir.path()) < index_before,
        "index files into deleted segments go"
    );

    // The queue's min offset moved past the deleted records; the consumer behind it gets
    // OffsetIllegal and is sent to the min; the loss is logged per group.
    let min = store.min_offset(&q).unwrap();
    assert!(min > 3);
    let first = store.get_messages(&q, min, 1).unwrap();
    assert!(first.messages[0].physical_offset() >= 2 * SEG);
    let r = pull.pull(&q, "*", 3, 32).unwrap();
    assert_eq!(r.status, PullStatus::OffsetIllegal);
    assert_eq!(r.next_begin_offset, min);
    let lost = capture_log::lines(log::Level::Warn, "group behind never consumed");
    assert_eq!(lost.len(), 2, "{lost:?}");
    let total: u64 = lost
        .iter()
        .map(|l| {
            let n = l.split("never consumed ").nth(1).unwrap();
            n.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(total, min - 3);

    // Everything old: all but the segment being written go.
    for s in segments(dir.path()) {
        age(&s, Duration::from_secs(7200));
    }
    let report = store.cleanup_now().unwrap();
    // (The directory may also hold the next segment, prepared ahead of the writer.)
    let active = store.commitlog_max_offset() / SEG * SEG;
    assert_eq!(store.commitlog_min_offset(), active);
    assert!(report.deleted_segments >= 3);
    // Lookups still answer for what is left, and nothing for what is gone.
    let last = sent - 1;
    assert_eq!(
        store
            .query_by_key("t", &format!("K{last}"), 0, u64::MAX, 8)
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .query_by_key("t", "K0", 0, u64::MAX, 8)
            .unwrap()
            .is_empty()
    );
    store.put(&Message::new("t", "more"), 0).unwrap();
    store.close().unwrap();
    // The new minimum survives a reopen.
    let store = builder(dir.path(), retention(false, None)).open().unwrap();
    assert_eq!(
        store.min_offset(&q).unwrap(),
        store.max_offset(&q).unwrap() - {
            let r = store.get_messages(&q, 0, 100_000).unwrap();
            r.messages.len() as u64
        }
    );
    store.close().unwrap();
}

#[test]
fn size_cap_deletes_the_oldest_at_each_roll() {
    let dir = tempfile::tempdir().unwrap();
    // The store with its queue and index files may take about 8 segments.
    let cap = 8 * SEG + 20 * 200 * 8 + 300 * 20 * 8;
    let store = builder(dir.path(), retention(true, Some(cap)))
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    fill_segments(&store, 30);
    let segs = segments(dir.path()).len();
    assert!(segs <= 9, "{segs} segments");
    assert!(store.commitlog_min_offset() >= 20 * SEG);
    let report = store.cleanup_now().unwrap();
    // The cap holds when the pass checks; the segment preparer may allocate the next segment
    // right after it (the next roll's pass deletes for it).
    assert!(report.store_bytes <= cap + SEG, "{report:?}");
    assert!(!report.disk_full);
    // What is left reads back densely from the queue's new min.
    let min = store.min_offset(&q).unwrap();
    let all = common::read_queue(&store, &q);
    assert_eq!(all[0].queue_offset(), min);
    store.close().unwrap();
}

#[test]
fn guard_refuses_puts_over_the_cap_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 6 * SEG;
    // The cleaner is off: only the guard runs at rolls, so the cap is reached for certain.
    let store = builder(dir.path(), retention(false, Some(cap)))
        .index(IndexConfig::DISABLED)
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    let mut refused = None;
    for i in 0..10_000 {
        match store.put(&Message::new("t", vec![b'y'; 300]), 0) {
            Ok(_) => {}
            Err(Error::DiskFull(why)) => {
                refused = Some((i, why));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (i, why) = refused.expect("the guard refused a put");
    assert!(why.contains("max_store_bytes"), "{why}");
    // Nothing of the refused put was written; every later put is refused too.
    let max = store.max_offset(&q).unwrap();
    assert_eq!(max, i);
    let end = store.commitlog_max_offset();
    for _ in 0..3 {
        assert!(matches!(
            store.put(&Message::new("t", "no"), 0),
            Err(Error::DiskFull(_))
        ));
    }
    assert_eq!(store.max_offset(&q).unwrap(), max);
    assert_eq!(store.commitlog_max_offset(), end);
    // Space returns: retention deletes (forced, over the cap) and puts go through again.
    let report = store.cleanup_now().unwrap();
    assert!(
        report.deleted_segments > 0 && !report.disk_full,
        "{report:?}"
    );
    store.put(&Message::new("t", "again"), 0).unwrap();
    assert_eq!(store.max_offset(&q).unwrap(), max + 1);
    store.close().unwrap();
}
