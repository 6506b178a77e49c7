//! The index rebuilt at open (index files deleted, or the index newly enabled): what the open
//! indexed survives a power cut right after it, and damage in a part of the log recovery
//! never checked ends the rebuild instead of failing the store.

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
    {
        let store = common::small(dir.path()).open().unwrap();
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
    let first = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    let mut pos = 0usize;
    for _ in 0..10 {
        pos += i32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    }
    // Record 10's body length becomes -1.
    bytes[pos + 84..pos + 88].copy_from_slice(&(-1i32).to_be_bytes());
    std::fs::write(&first, &bytes).unwrap();

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
    assert!(
        store
            .query_by_key("t", "K20", 0, u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    store.flush().unwrap();
    store.close().unwrap();
}
