//! Recovery zeroes what lies past the end of the log only where the segment file holds data
//! (a preallocated segment is mostly unwritten, and reading it all made an unclean reopen of a
//! near-empty 1 GiB segment take most of a second), and still zeroes garbage far past the end.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use mqlite::{Message, MessageQueue, Store};

#[test]
fn garbage_far_past_the_end_is_zeroed_by_an_unclean_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let seg = 8u64 << 20;
    let store = Store::builder(dir)
        .commitlog_segment_size(seg)
        .open()
        .unwrap();
    for i in 0..10 {
        store.put(&Message::new("t", format!("m{i}")), 0).unwrap();
    }
    let end = store.commitlog_max_offset();
    store.close().unwrap();
    // Garbage 1 MiB and 6 MiB past the end (say, a segment reused by hand), then an unclean
    // mark so the open recovers.
    let path = dir.join("commitlog").join(format!("{:020}", 0));
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    for at in [end + (1 << 20), end + (6 << 20)] {
        f.write_all_at(&[0xAB; 5000], at).unwrap();
    }
    drop(f);
    std::fs::write(dir.join("abort"), b"1").unwrap();

    let store = Store::builder(dir)
        .commitlog_segment_size(seg)
        .open()
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes[end as usize..].iter().all(|&b| b == 0),
        "garbage past the end survived recovery"
    );
    let r = store.put(&Message::new("t", "after"), 0).unwrap();
    assert_eq!(r.queue_offset, 10);
    let got = store
        .get_messages(&MessageQueue::new("t", 0), 0, 100)
        .unwrap();
    assert_eq!(got.messages.len(), 11);
    store.close().unwrap();
}
