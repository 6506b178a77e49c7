//! Consume queue files are created ahead of the writer (once it is half way through the last
//! one), a clean close removes the one never written to, and an open that finds one (left by
//! a crash) ignores it.

#[path = "common/capture_log.rs"]
mod capture_log;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mqlite::{Message, MessageQueue, Store};

/// `common::small` makes 100-unit (2000-byte) consume queue files.
const FILE: u64 = 2000;

fn queue_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("consumequeue").join("t").join("0")
}

fn files(store_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(queue_dir(store_dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn name(base: u64) -> String {
    format!("{base:020}")
}

fn put(store: &Store, from: usize, to: usize) {
    for i in from..to {
        store.put(&Message::new("t", format!("m{i}")), 0).unwrap();
    }
}

fn bodies(store: &Store) -> Vec<String> {
    common::read_queue(store, &MessageQueue::new("t", 0))
        .iter()
        .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
        .collect()
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

#[test]
fn the_next_file_is_made_ahead_and_an_unused_one_removed_at_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = common::small(&dir).open().unwrap();
    store.create_topic("t", 1).unwrap();
    put(&store, 0, 40);
    assert_eq!(
        files(&dir),
        [name(0)],
        "not half way through the first file yet"
    );
    put(&store, 40, 60);
    common::wait_until("the second file", Duration::from_secs(60), || {
        files(&dir).len() == 2
    });
    assert_eq!(files(&dir), [name(0), name(FILE)]);
    // Into the second file and past its half: the third one comes.
    put(&store, 60, 160);
    common::wait_until("the third file", Duration::from_secs(60), || {
        files(&dir).len() == 3
    });
    assert_eq!(bodies(&store), expected(160));
    store.close().unwrap();
    // The third file never got a unit: gone.
    assert_eq!(files(&dir), [name(0), name(FILE)]);

    let store = common::small(&dir).open().unwrap();
    assert_eq!(bodies(&store), expected(160));
    put(&store, 160, 230);
    assert_eq!(bodies(&store), expected(230));
    store.close().unwrap();
    assert_eq!(files(&dir), [name(0), name(FILE), name(2 * FILE)]);
}

#[test]
fn an_open_ignores_and_removes_a_file_made_ahead_and_never_written() {
    capture_log::install();
    for crashed in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let store = common::small(&dir).open().unwrap();
        store.create_topic("t", 1).unwrap();
        put(&store, 0, 130);
        store.close().unwrap();
        assert_eq!(files(&dir), [name(0), name(FILE)]);
        // What a crash right after the file was made leaves: a zero-filled file of full size.
        std::fs::write(
            queue_dir(&dir).join(name(2 * FILE)),
            vec![0u8; FILE as usize],
        )
        .unwrap();
        if crashed {
            std::fs::write(dir.join("abort"), b"").unwrap();
        }

        let store = common::small(&dir).open().unwrap();
        let q = MessageQueue::new("t", 0);
        assert_eq!(store.max_offset(&q).unwrap(), 130, "crashed: {crashed}");
        assert_eq!(files(&dir), [name(0), name(FILE)], "crashed: {crashed}");
        // Nothing was cut or rebuilt: the empty file is simply not part of the queue.
        assert_eq!(
            capture_log::lines(log::Level::Warn, "consume queue t:0"),
            Vec::<String>::new(),
            "crashed: {crashed}"
        );
        assert_eq!(bodies(&store), expected(130));
        // The writer goes on in the second file, and past it.
        put(&store, 130, 250);
        assert_eq!(bodies(&store), expected(250));
        store.close().unwrap();
        let store = common::small(&dir).open().unwrap();
        assert_eq!(bodies(&store), expected(250), "crashed: {crashed}");
        store.close().unwrap();
    }
}

/// A failed directory sync while a queue file is being made (ahead or by the writer) leaves no
/// stray file behind: the file is made again later and every put that reported success is
/// stored.
#[test]
fn a_failed_directory_sync_while_making_a_file_leaves_nothing_in_the_way() {
    use mqlite::sim::{OpKind, SimStorage};
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    let store = common::small(&dir).simulated(&sim).open().unwrap();
    store.create_topic("t", 1).unwrap();
    put(&store, 0, 40);
    // The next directory sync fails: the one made for the second file, whoever makes it.
    sim.fail_nth(OpKind::SyncDir, 1, libc::EIO);
    let mut stored = Vec::new();
    for i in 40..250 {
        let body = format!("m{i}");
        if store.put(&Message::new("t", body.clone()), 0).is_ok() {
            stored.push(body);
        }
    }
    assert!(
        stored.len() >= 249 - 40,
        "at most the put that made the file fails: {} of 210 stored",
        stored.len()
    );
    let all = bodies(&store);
    assert_eq!(&all[..40], &expected(40)[..]);
    assert_eq!(&all[40..], &stored[..]);
    store.close().unwrap();
}
