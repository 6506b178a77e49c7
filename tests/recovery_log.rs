//! What recovery and failures do is said through the `log` facade, once per condition: a
//! config file read from its `.bak`, a torn tail cut, crash recovery, a consume queue rebuilt,
//! the store poisoned.

#[path = "common/capture_log.rs"]
mod capture_log;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use log::Level;
use mqlite::sim::{OpKind, SimStorage};
use mqlite::{FlushPolicy, Message, Store};

#[test]
fn a_backup_config_file_read_is_logged() {
    capture_log::install();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.put(&Message::new("t", "x"), 0).unwrap();
    let c = store.pull_consumer("g").unwrap();
    let q = mqlite::MessageQueue::new("t", 0);
    c.commit_offset(&q, 1).unwrap();
    store.close().unwrap();
    // Written twice so a .bak exists, then the main file is damaged.
    let store = Store::open(tmp.path()).unwrap();
    store.put(&Message::new("t", "y"), 0).unwrap();
    store
        .pull_consumer("g")
        .unwrap()
        .commit_offset(&q, 2)
        .unwrap();
    store.close().unwrap();
    let file = tmp.path().join("config").join("consumerOffset.json");
    std::fs::write(&file, b"{\"offsetTable\":{\"t@g\":{\"0\":").unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.close().unwrap();
    let warned = capture_log::lines(Level::Warn, &file.display().to_string());
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains(".bak"), "{warned:?}");
}

#[test]
fn a_torn_tail_cut_by_crash_recovery_is_logged() {
    capture_log::install();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(1 << 20)
        .open()
        .unwrap();
    let mut last = 0;
    for i in 0..10 {
        last = store
            .put(&Message::new("t", format!("m{i}")), 0)
            .unwrap()
            .physical_offset;
    }
    store.close().unwrap();
    let seg = tmp.path().join("commitlog").join(format!("{:020}", 0));
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"torn", last + 90).unwrap();
    drop(f);
    std::fs::write(tmp.path().join("abort"), b"1").unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(1 << 20)
        .open()
        .unwrap();
    assert_eq!(store.commitlog_max_offset(), last);
    store.close().unwrap();
    let dir = tmp.path().display().to_string();
    assert_eq!(
        capture_log::lines(
            Level::Info,
            &format!("{dir}: the store was not closed cleanly")
        )
        .len(),
        1
    );
    let torn = capture_log::lines(Level::Warn, &seg.display().to_string());
    assert_eq!(torn.len(), 1, "{torn:?}");
    assert!(torn[0].contains(&format!("offset {last}")), "{torn:?}");
}

#[test]
fn poisoning_is_logged_once() {
    capture_log::install();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimStorage::new(tmp.path()).unwrap();
    let store = Store::builder(&dir)
        .commitlog_segment_size(1 << 20)
        .flush_policy(FlushPolicy::SYNC)
        .simulated(&sim)
        .open()
        .unwrap();
    store.put(&Message::new("t", "ok"), 0).unwrap();
    // Every flush fails until the put's own flush has: another thread may flush first (the
    // prefault thread zero-fills ahead of the writer durably under `Sync`), so failing only
    // the next flush may miss the put's.
    sim.fail_from(OpKind::Flush, 1, 5);
    assert!(store.put(&Message::new("t", "x"), 0).is_err());
    // Flushes work again, but the store stays poisoned: every later put is refused.
    sim.clear_faults();
    for _ in 0..20 {
        assert!(matches!(
            store.put(&Message::new("t", "x"), 0),
            Err(mqlite::Error::Poisoned)
        ));
    }
    drop(store);
    let lines = capture_log::lines(Level::Error, &format!("{} poisoned", dir.display()));
    assert_eq!(lines.len(), 1, "{lines:?}");
}
