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

/// A hash slot pointing past the file's entries is reported (after the looks a live writer
/// would need to count its entry), not taken for an entry being added.
#[test]
fn verify_reports_a_slot_past_the_entries() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let p = store.producer("p").unwrap();
        for i in 0..100 {
            p.send(Message::new("t", format!("m{i}")).with_keys([format!("K{i}")]))
                .unwrap();
        }
        store.close().unwrap();
    }
    let index = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("an index file");
    // Hash slot 7 (the header is 40 bytes, slots 4 bytes each) names entry 9,999,999.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap();
    f.write_all_at(&9_999_999u32.to_be_bytes(), 40 + 7 * 4)
        .unwrap();
    drop(f);
    let store = Store::open(dir.path()).unwrap();
    let r = store.verify().unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.reason.contains("hash slot 7 points at entry 9999999")),
        "{:?}",
        r.problems
    );
    store.close().unwrap();
}
