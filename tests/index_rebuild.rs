//! The index rebuilt at open (index files deleted, or the index newly enabled): what the open
//! indexed survives a power cut right after it, and damage in a part of the log recovery
//! never checked neither fails the store nor keeps intact records (in later segments, or
//! written later) from being found by key.

mod common;

use std::path::Path;

use mqlite::sim::{Keep, SimStorage};
use mqlite::{IndexConfig, Message, Store, StoreBuilder};

const MESSAGES: usize = 1500;

fn builder(dir: &Path, index: bool) -> StoreBuilder {
    Store::builder(dir)
        .commitlog_segment_size(1 << 20)
        .index(IndexConfig {
            enabled: index,
            max_hash_slots: 512,
            max_index_entries: 8000,
        })
}

fn missing_keys(store: &Store) -> usize {
    (0..MESSAGES)
        .filter(|i| {
            store
                .query_by_key("t", &format!("K{i}"), 0, u64::MAX, 10)
                .unwrap()
                .is_empty()
        })
        .count()
}

/// The rebuilt entries belong to records older than the checkpoint's `indexMsgTimestamp`, so
/// they must be on disk before the store runs: a power cut that keeps a random half of the
/// unsynced pages must not lose any of them.
#[test]
fn an_index_rebuilt_at_open_survives_a_power_cut() {
    let base = common::seed(11);
    for round in 0..4u64 {
        let seed = base + round;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        {
            let store = builder(&dir, true).open().unwrap();
            store.create_topic("t", 2).unwrap();
            let producer = store.producer("p").unwrap();
            for i in 0..MESSAGES {
                let msg = Message::new("t", format!("m{i}")).with_keys([format!("K{i}")]);
                producer.send(msg).unwrap();
            }
            drop(producer);
            store.close().unwrap();
        }
        // The operator deletes the index to have it rebuilt; the checkpoint keeps its
        // indexMsgTimestamp.
        std::fs::remove_dir_all(dir.join("index")).unwrap();
        let sim = SimStorage::new(&dir).unwrap();
        {
            let store = builder(&dir, true).simulated(&sim).open().unwrap();
            assert_eq!(missing_keys(&store), 0, "seed {seed}: before the cut");
            sim.power_cut();
            let _ = store.close();
        }
        sim.restart(Keep::RandomPages {
            seed,
            probability: 0.5,
        })
        .unwrap();
        let store = builder(&dir, true).simulated(&sim).open().unwrap();
        assert_eq!(missing_keys(&store), 0, "seed {seed}: after the cut");
        store.close().unwrap();
    }
}

/// A store written without the index, damaged in the middle of its log, then opened with the
/// index on: the records before the damage are found by key, the store runs, flushes and
/// closes without error.
#[test]
fn damage_in_an_old_part_of_the_log_ends_the_rebuild_quietly() {
    let dir = tempfile::tempdir().unwrap();
    write_keyed(dir.path());
    damage_record_10(dir.path());

    let store = common::small(dir.path())
        .index(IndexConfig {
            enabled: true,
            max_hash_slots: 64,
            max_index_entries: 400,
        })
        .open()
        .unwrap();
    for i in 0..10 {
        let found = store
            .query_by_key("t", &format!("K{i}"), 0, u64::MAX, 10)
            .unwrap();
        assert_eq!(found.len(), 1, "K{i}");
    }
    // K20 shares the damaged segment (64 KiB, 58 records) and lies after the damage; K299
    // is in a later segment, which the rebuild goes on with.
    assert!(
        store
            .query_by_key("t", "K20", 0, u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .query_by_key("t", "K299", 0, u64::MAX, 10)
            .unwrap()
            .len(),
        1
    );
    store.flush().unwrap();
    store.close().unwrap();
}

/// 300 records of ~1 KiB keyed `K0`..`K299` in topic `t` (64 KiB segments: 58 a segment),
/// written with the index off.
fn write_keyed(dir: &Path) {
    let store = common::small(dir).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let producer = store.producer("p").unwrap();
    for i in 0..300 {
        let msg =
            Message::new("t", format!("m{i}{}", "x".repeat(1000))).with_keys([format!("K{i}")]);
        producer.send(msg).unwrap();
    }
    drop(producer);
    store.close().unwrap();
}

/// Sets the body length of record 10 of the first segment to -1.
fn damage_record_10(dir: &Path) {
    let first = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    let mut pos = 0usize;
    for _ in 0..10 {
        pos += i32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    }
    bytes[pos + 84..pos + 88].copy_from_slice(&(-1i32).to_be_bytes());
    std::fs::write(&first, &bytes).unwrap();
}

/// [`write_keyed`] and [`damage_record_10`], the records made old enough (by the clock) that
/// recovery after a later crash starts past them.
fn damaged_store(dir: &Path) {
    write_keyed(dir);
    // Not synchronisation: recovery starts a few seconds of store time before the
    // checkpoint, and these records must be older than that.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    {
        let store = common::small(dir).open().unwrap();
        store
            .producer("p")
            .unwrap()
            .send(Message::new("t", "bump"))
            .unwrap();
        store.close().unwrap();
    }
    damage_record_10(dir);
}

/// After an open whose rebuild met old damage, new records are indexed; a crash then drops
/// the index file they went to, and the next open's rebuild (from before the damage again)
/// must still reach them.
#[test]
fn records_written_after_old_damage_are_found_by_key_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    damaged_store(&dir);
    let index = IndexConfig {
        enabled: true,
        max_hash_slots: 64,
        max_index_entries: 4000,
    };
    let store = common::small(&dir).index(index).open().unwrap();
    let producer = store.producer("p").unwrap();
    for i in 0..50 {
        let msg = Message::new("t", format!("n{i}")).with_keys([format!("N{i}")]);
        producer.send(msg).unwrap();
    }
    assert_eq!(
        store
            .query_by_key("t", "N49", 0, u64::MAX, 10)
            .unwrap()
            .len(),
        1
    );
    // The files as a kill -9 now would leave them.
    let image = tmp.path().join("image");
    common::copy_dir(&dir, &image);
    drop(producer);
    store.close().unwrap();
    let _ = std::fs::remove_file(image.join("lock"));
    let store = common::small(&image).index(index).open().unwrap();
    for i in 0..50 {
        let found = store
            .query_by_key("t", &format!("N{i}"), 0, u64::MAX, 10)
            .unwrap();
        assert_eq!(found.len(), 1, "N{i}");
    }
    store.close().unwrap();
}
