//! The default footprint of a store on disk, and segment sizes that stay with the store: a
//! reopen with other size settings uses the sizes the store was made with, whether recorded in
//! `config/mqlite.json` or read off the files (a store a RocketMQ broker made has no record).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{read_queue, small};
use mqlite::{Message, MessageQueue, Store, StoreConfig};
use serde_json::Value;

/// Bytes allocated on disk under `path` (what `du` counts: 512-byte blocks).
fn disk_use(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            total += disk_use(&entry.unwrap().path());
        }
    }
    total
}

/// A default store with no messages, and one with a message in every queue of a 4-queue
/// topic, stays well under 100 MB on disk (a RocketMQ broker's sizes would take 1 GiB and
/// 6 MB per queue).
#[test]
fn default_store_is_small_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.close().unwrap();
    let empty = disk_use(tmp.path());
    eprintln!("empty store: {empty} bytes");
    // The first 64 MiB CommitLog segment, allocated at open, and a few small files; no
    // consume queue files until a queue gets a message.
    assert!(
        empty <= (64 << 20) + (1 << 20),
        "an empty store uses {empty} bytes"
    );

    let store = Store::open(tmp.path()).unwrap();
    store.create_topic("orders", 4).unwrap();
    for q in 0..4 {
        store.put(&Message::new("orders", "x"), q).unwrap();
    }
    store.close().unwrap();
    let used = disk_use(tmp.path());
    eprintln!("one message per queue: {used} bytes");
    // One 64 MiB CommitLog segment, four 600,000-byte consume queue files, one index file of
    // the embedded size (8,400,040 bytes), plus config.
    assert!(
        used <= (64 << 20) + 4 * 600_000 + 8_400_040 + (1 << 20),
        "a store with 4 messages uses {used} bytes"
    );
    let config = StoreConfig::default();
    assert_eq!(config.commitlog_segment_size, 64 << 20);
    assert_eq!(config.consume_queue_segment_size, 600_000);
}

fn fill(store: &Store, n: u32) -> Vec<(MessageQueue, Vec<Vec<u8>>)> {
    store.create_topic("t", 2).unwrap();
    let mut sent = vec![Vec::new(), Vec::new()];
    for i in 0..n {
        let body = format!("message {i} {}", "x".repeat(200)).into_bytes();
        let q = i % 2;
        store.put(&Message::new("t", body.clone()), q).unwrap();
        sent[q as usize].push(body);
    }
    sent.into_iter()
        .enumerate()
        .map(|(q, b)| (MessageQueue::new("t", q as u32), b))
        .collect()
}

fn check(store: &Store, sent: &[(MessageQueue, Vec<Vec<u8>>)]) {
    for (mq, bodies) in sent {
        let got: Vec<Vec<u8>> = read_queue(store, mq)
            .iter()
            .map(|m| m.body().to_vec())
            .collect();
        assert_eq!(&got, bodies, "queue {mq}");
    }
}

fn recorded(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("config/mqlite.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    (
        v["mappedFileSizeCommitLog"].as_u64().unwrap(),
        v["mappedFileSizeConsumeQueue"].as_u64().unwrap(),
    )
}

/// The sizes are recorded at creation; a reopen asking for others gets the recorded ones and
/// reads everything, and goes on writing.
#[test]
fn reopen_with_other_sizes_uses_the_recorded_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    let mut sent = fill(&store, 1000);
    store.close().unwrap();
    assert_eq!(recorded(tmp.path()), (64 * 1024, 2000));
    assert!(
        std::fs::read_dir(tmp.path().join("commitlog"))
            .unwrap()
            .count()
            > 2,
        "the test needs several segments"
    );

    let store = Store::builder(tmp.path())
        .commitlog_segment_size(1 << 20)
        .consume_queue_segment_size(20_000)
        .open()
        .unwrap();
    assert_eq!(store.config().commitlog_segment_size, 64 * 1024);
    assert_eq!(store.config().consume_queue_segment_size, 2000);
    check(&store, &sent);
    // Writing goes on in the store's sizes: more segments and consume queue files roll.
    for i in 0..400u32 {
        let body = format!("later {i} {}", "y".repeat(200)).into_bytes();
        store.put(&Message::new("t", body.clone()), i % 2).unwrap();
        sent[(i % 2) as usize].1.push(body);
    }
    store.close().unwrap();
    for entry in std::fs::read_dir(tmp.path().join("commitlog")).unwrap() {
        assert_eq!(entry.unwrap().metadata().unwrap().len(), 64 * 1024);
    }
    let store = Store::open(tmp.path()).unwrap();
    check(&store, &sent);
    store.close().unwrap();
    assert_eq!(recorded(tmp.path()), (64 * 1024, 2000));
}

/// A store without the record (as a RocketMQ broker leaves it) has its sizes read off its
/// files, after a clean close and after a crash alike; the record is written then.
#[test]
fn sizes_of_a_store_without_record_come_from_its_files() {
    for crash in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let store = small(tmp.path()).open().unwrap();
        let sent = fill(&store, 600);
        if crash {
            store.flush().unwrap();
            std::mem::forget(store);
            // The forgotten store keeps its directory locked in this process: the crashed
            // state (the `abort` marker included) is reopened from a copy.
            let copy = tempfile::tempdir().unwrap();
            copy_dir(tmp.path(), copy.path());
            reopen_without_record(copy.path(), &sent);
        } else {
            store.close().unwrap();
            reopen_without_record(tmp.path(), &sent);
        }
    }
}

fn reopen_without_record(dir: &Path, sent: &[(MessageQueue, Vec<Vec<u8>>)]) {
    for f in ["config/mqlite.json", "config/mqlite.json.bak"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let store = Store::open(dir).unwrap();
    assert_eq!(store.config().commitlog_segment_size, 64 * 1024);
    assert_eq!(store.config().consume_queue_segment_size, 2000);
    check(&store, sent);
    store.close().unwrap();
    assert_eq!(recorded(dir), (64 * 1024, 2000));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A damaged record is an error that names the file, never a silent fallback to the
/// configured sizes.
#[test]
fn a_damaged_record_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    fill(&store, 10);
    store.close().unwrap();
    for f in ["config/mqlite.json", "config/mqlite.json.bak"] {
        let _ = std::fs::write(tmp.path().join(f), b"{not json");
    }
    match Store::open(tmp.path()) {
        Err(mqlite::Error::Corrupted { file, .. }) => {
            assert!(file.ends_with("mqlite.json"), "{file:?}")
        }
        Err(e) => panic!("expected Corrupted, got {e:?}"),
        Ok(_) => panic!("a store with a damaged size record opened"),
    }
}
