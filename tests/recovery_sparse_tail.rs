//! What an unclean open does with bytes past the end of the log. Within one maximal record
//! of the end (or of a record header left behind by a torn write) they can be a torn tail and
//! are zeroed; anything else is data recovery cannot explain, and the open refuses with
//! `Error::Corrupted` instead of destroying it. Recovery reads only where the segment file
//! holds data (a preallocated segment is mostly unwritten).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use mqlite::{Error, Message, MessageQueue, Store};

const SEG: u64 = 8 << 20;

/// A store with ten messages, closed; returns the end of the log and the segment's path.
fn ten_messages(dir: &Path) -> (u64, PathBuf) {
    let store = Store::builder(dir)
        .commitlog_segment_size(SEG)
        .open()
        .unwrap();
    for i in 0..10 {
        store.put(&Message::new("t", format!("m{i}")), 0).unwrap();
    }
    let end = store.commitlog_max_offset();
    store.close().unwrap();
    (end, dir.join("commitlog").join(format!("{:020}", 0)))
}

fn scribble(path: &Path, at: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn open(dir: &Path) -> mqlite::Result<Store> {
    Store::builder(dir).commitlog_segment_size(SEG).open()
}

#[test]
fn garbage_near_the_end_is_a_torn_tail_and_is_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (end, path) = ten_messages(dir);
    // Within one maximal record (4 MiB by default) of the end: what a torn write of a large
    // record could leave. Then the mark a crash leaves, so the open recovers.
    scribble(&path, end + (1 << 20), &[0xAB; 5000]);
    std::fs::write(dir.join("abort"), b"1").unwrap();

    let store = open(dir).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes[end as usize..].iter().all(|&b| b == 0),
        "the torn tail survived recovery"
    );
    let r = store.put(&Message::new("t", "after"), 0).unwrap();
    assert_eq!(r.queue_offset, 10);
    let got = store
        .get_messages(&MessageQueue::new("t", 0), 0, 100)
        .unwrap();
    assert_eq!(got.messages.len(), 11);
    store.close().unwrap();
}

#[test]
fn garbage_far_past_the_end_is_refused_not_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (end, path) = ten_messages(dir);
    let at = end + (6 << 20);
    scribble(&path, at, &[0xAB; 5000]);
    std::fs::write(dir.join("abort"), b"1").unwrap();

    match open(dir) {
        Err(Error::Corrupted { file, offset, .. }) => {
            assert_eq!(file, path);
            assert_eq!(offset, at);
        }
        Err(e) => panic!("expected Corrupted, got {e}"),
        Ok(_) => panic!("an open zeroed data it cannot explain"),
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[at as usize..at as usize + 5000], &[0xAB; 5000][..]);
}

#[test]
fn a_segment_of_random_bytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, path) = ten_messages(dir);
    // Deterministic pseudo-random bytes over the whole segment.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..SEG)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    scribble(&path, 0, &noise);
    for unclean in [false, true] {
        if unclean {
            std::fs::write(dir.join("abort"), b"1").unwrap();
        }
        match open(dir) {
            Err(Error::Corrupted { file, .. }) => assert_eq!(file, path),
            Err(e) => panic!("expected Corrupted, got {e}"),
            Ok(_) => panic!("a segment of random bytes opened (unclean: {unclean})"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            noise,
            "the segment was changed"
        );
    }
}
