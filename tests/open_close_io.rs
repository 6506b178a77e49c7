//! What a clean open and close write and sync, on the crash-simulating backend: a reopen after
//! a clean close writes only the `abort` marker and syncs only the directory (the marker's
//! entry is durable before anything can be appended), a close with nothing new flushes
//! nothing, and a power cut at any point of such a cycle loses nothing.

mod common;

use std::path::Path;

use common::read_queue;
use mqlite::sim::{Keep, OpKind, SimStorage};
use mqlite::{Message, MessageQueue, Store};

fn open(dir: &Path, sim: &SimStorage) -> Store {
    common::small(dir).simulated(sim).open().expect("open")
}

fn bodies(store: &Store) -> Vec<Vec<u8>> {
    read_queue(store, &MessageQueue::new("t", 0))
        .iter()
        .map(|m| m.body().to_vec())
        .collect()
}

/// Cuts the power, restarts with what was durable, reopens and checks every message is
/// there; returns the open store.
fn cut_and_reopen(dir: &Path, sim: &SimStorage, expected: &[Vec<u8>], when: &str) -> Store {
    sim.power_cut();
    sim.restart(Keep::Nothing).unwrap();
    let store = open(dir, sim);
    assert_eq!(bodies(&store), expected, "{when}");
    store
}

fn fill(dir: &Path, sim: &SimStorage, n: usize) -> Vec<Vec<u8>> {
    common::fill_numbered(open(dir, sim), n)
}

#[test]
fn a_clean_reopen_writes_only_the_marker_and_makes_its_entry_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    let expected = fill(&dir, &sim, 300);

    sim.reset_counts();
    let store = open(&dir, &sim);
    assert_eq!(
        sim.count(OpKind::Write),
        1,
        "only the abort marker is written"
    );
    assert_eq!(sim.count(OpKind::Flush), 0, "nothing is flushed");
    assert_eq!(sim.count(OpKind::SyncDir), 1, "one directory sync");
    assert!(
        sim.is_durable(&dir.join("abort")),
        "the marker's entry is durable before anything can be appended"
    );
    assert_eq!(bodies(&store), expected);

    // A close with nothing new writes and flushes nothing either.
    sim.reset_counts();
    store.close().unwrap();
    assert_eq!(sim.count(OpKind::Write), 0);
    assert_eq!(sim.count(OpKind::Flush), 0);
    assert_eq!(sim.count(OpKind::SyncDir), 0);
}

#[test]
fn a_close_after_appends_writes_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    let mut expected = fill(&dir, &sim, 10);
    let store = open(&dir, &sim);
    store.put(&Message::new("t", b"more".to_vec()), 0).unwrap();
    expected.push(b"more".to_vec());
    sim.reset_counts();
    store.close().unwrap();
    assert!(sim.count(OpKind::Write) >= 1, "the checkpoint moved");
    assert!(sim.count(OpKind::Flush) >= 1, "the new record is flushed");
    cut_and_reopen(&dir, &sim, &expected, "after the close")
        .close()
        .unwrap();
}

#[test]
fn a_power_cut_anywhere_in_a_clean_cycle_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    let mut expected = fill(&dir, &sim, 200);

    // Cut right after a clean open: the marker is there, the next open recovers.
    let store = open(&dir, &sim);
    sim.power_cut();
    // (Its close fails: the power is off.)
    drop(store);
    sim.restart(Keep::Nothing).unwrap();
    assert!(dir.join("abort").exists());
    let store = open(&dir, &sim);
    assert_eq!(bodies(&store), expected);

    // Cut right after a clean close whose marker removal was not synced: the next open
    // recovers (the marker may be back), and finds everything the close made durable.
    store.put(&Message::new("t", b"last".to_vec()), 0).unwrap();
    expected.push(b"last".to_vec());
    store.close().unwrap();
    cut_and_reopen(&dir, &sim, &expected, "after the close")
        .close()
        .unwrap();
}

#[test]
fn a_failed_open_then_a_power_cut_loses_nothing() {
    for (kind, nth) in [(OpKind::Write, 2), (OpKind::SyncDir, 1)] {
        let tmp = tempfile::tempdir().unwrap();
        let sim = SimStorage::new(tmp.path()).unwrap();
        let dir = tmp.path().join("s");
        let mut expected = fill(&dir, &sim, 100);
        // Append once more, so the reopen has a checkpoint to write.
        let store = open(&dir, &sim);
        store.put(&Message::new("t", b"x".to_vec()), 0).unwrap();
        expected.push(b"x".to_vec());
        store.close().unwrap();
        // Make the marker (write 1) stick around unsynced; fail the checkpoint (write 2) or
        // the directory sync.
        sim.power_cut();
        sim.restart(Keep::Nothing).unwrap();
        sim.fail_nth(kind, nth, libc::EIO);
        let failed = common::small(&dir).simulated(&sim).open();
        assert!(
            failed.is_err(),
            "{kind:?} {nth}: the open reports the failure"
        );
        drop(failed);
        sim.clear_faults();
        // A retry recovers (the marker is there); a power cut before its directory sync may
        // take the marker away again: either way everything is there.
        let store = open(&dir, &sim);
        assert_eq!(bodies(&store), expected, "{kind:?} {nth}: after the retry");
        drop(store);
        cut_and_reopen(
            &dir,
            &sim,
            &expected,
            &format!("{kind:?} {nth}: after the cut"),
        )
        .close()
        .unwrap();
    }
}
