//! An I/O error while opening (a file that cannot be opened, mapped, read or listed: EACCES,
//! ENOMEM, `vm.max_map_count`) is not damage: the open fails with that error and changes
//! nothing, and once the error is gone the store opens with everything it held. A transient
//! error must never turn into a rebuild or a deletion.

use mqlite::sim::{OpKind, SimStorage};
use mqlite::{Error, Message, MessageQueue, Store};

fn messages(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for q in 0..2 {
        let got = store
            .get_messages(&MessageQueue::new("t", q), 0, 1000)
            .unwrap();
        out.extend(got.messages.iter().map(|m| m.body().to_vec()));
    }
    out
}

#[test]
fn a_failed_read_at_open_fails_the_open_and_destroys_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimStorage::new(tmp.path()).unwrap();
    let open = || {
        Store::builder(&dir)
            .commitlog_segment_size(1 << 20)
            .consume_queue_segment_size(20 * 64)
            .simulated(&sim)
            .open()
    };
    let store = open().unwrap();
    store.create_topic("t", 2).unwrap();
    for i in 0..200u32 {
        store
            .put(&Message::new("t", format!("m{i}")), i % 2)
            .unwrap();
    }
    let want = messages(&store);
    store.close().unwrap();

    // How many reads a clean open makes.
    sim.reset_counts();
    let store = open().unwrap();
    let reads = sim.count(OpKind::Read);
    store.close().unwrap();
    assert!(reads > 5, "{reads}");
    for n in 1..=reads {
        sim.reset_counts();
        sim.fail_nth(OpKind::Read, n, libc::EACCES);
        match open() {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EACCES), "read {n}")
            }
            Err(e) => panic!("read {n}: expected the I/O error, got {e}"),
            Ok(_) => panic!("read {n}: the open went on past a failed read"),
        }
        sim.clear_faults();
        sim.reset_counts();
        let store = open().unwrap();
        assert_eq!(messages(&store), want, "read {n}");
        store.close().unwrap();
        // The failed open removed nothing and the next one had nothing to rebuild: it made no
        // more file changes than an open of an intact store.
        assert!(
            sim.count(OpKind::Allocate) == 0,
            "read {n}: the reopen recreated files"
        );
    }
}

#[test]
fn a_failed_first_open_leaves_no_empty_checkpoint() {
    let open = |dir: &std::path::Path, sim: &SimStorage| {
        Store::builder(dir)
            .commitlog_segment_size(1 << 20)
            .simulated(sim)
            .open()
    };
    // How many small-file writes the first open of a new store makes.
    let probe = tempfile::tempdir().unwrap();
    let probe_sim = SimStorage::new(probe.path()).unwrap();
    let store = open(&probe.path().join("store"), &probe_sim).unwrap();
    let writes = probe_sim.count(OpKind::Write);
    store.close().unwrap();
    assert!(writes >= 2, "{writes}");
    for n in 1..=writes {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimStorage::new(tmp.path()).unwrap();
        sim.fail_nth(OpKind::Write, n, libc::ENOSPC);
        let failed = open(&dir, &sim).is_err();
        sim.clear_faults();
        assert!(failed, "write {n}: the open ignored a failed write");
        if let Ok(meta) = std::fs::metadata(dir.join("checkpoint")) {
            assert_eq!(meta.len(), 4096, "write {n}: a partial checkpoint was left");
        }
        let store = open(&dir, &sim).unwrap();
        store.put(&Message::new("t", "x"), 0).unwrap();
        store.close().unwrap();
    }
}
