//! `Store::verify` while the store is being written: what is being written is the end of the
//! data, never damage (index entries and slots included).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mqlite::{Message, Store};

#[test]
fn verify_during_writes_finds_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .commitlog_segment_size(1 << 20)
        .open()
        .unwrap();
    store.create_topic("t", 2).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let p = store.producer("p").unwrap();
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) && i < 2_000_000 {
                p.send(Message::new("t", format!("m{i}")).with_keys([format!("K{i}")]))
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    // Check until some runs have seen the index being written too (it follows the log in
    // the background, on an idle-class thread that a busy machine may hold off: past 20 runs
    // a lookup by key catches it up, as every query does).
    let (mut runs, mut with_index) = (0, 0);
    while (runs < 20 || with_index < 5) && !writer.is_finished() {
        let r = store.verify().unwrap();
        assert!(r.is_ok(), "{:?}", r.problems);
        runs += 1;
        with_index += usize::from(r.index_entries > 0);
        if runs >= 20 && with_index == 0 {
            store.query_by_key("t", "K0", 0, u64::MAX, 1).unwrap();
        }
    }
    done.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    let r = store.verify().unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.records, sent);
    assert!(with_index > 0, "no run saw index entries");
}
