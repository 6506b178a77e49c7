//! A reopened store maps a consume queue's older files only when they are read: reads through
//! every file return exactly what was written, a file that cannot be mapped is an error
//! naming it (never a short or empty read), and a later read maps it and succeeds.

mod common;

use std::path::Path;

use mqlite::sim::{OpKind, SimStorage};
use mqlite::{Error, Message, MessageQueue, Store};

/// 100 units per consume queue file.
fn open(dir: &Path, sim: &SimStorage) -> Store {
    common::small(dir).simulated(sim).open().expect("open")
}

fn fill(dir: &Path, sim: &SimStorage, n: usize) {
    common::fill_numbered(open(dir, sim), n);
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("consumequeue/t/0"))
        .unwrap()
        .count()
}

#[test]
fn every_file_reads_back_after_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    fill(&dir, &sim, 1050);
    assert_eq!(files(&dir), 11);
    let store = open(&dir, &sim);
    let q = MessageQueue::new("t", 0);
    // Backwards, file by file, then everything in order.
    for file in (0..11u64).rev() {
        let got = store.get_messages(&q, file * 100 + 7, 3).unwrap();
        let bodies: Vec<_> = got.messages.iter().map(|m| m.body().to_vec()).collect();
        let want: Vec<_> = (file * 100 + 7..file * 100 + 10)
            .filter(|&i| i < 1050)
            .map(|i| format!("m{i}").into_bytes())
            .collect();
        assert_eq!(bodies, want, "file {file}");
    }
    let all = common::read_queue(&store, &q);
    assert_eq!(all.len(), 1050);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.body(), format!("m{i}").as_bytes());
        assert_eq!(m.queue_offset(), i as u64);
    }
    // Appends go on after the last unit.
    store.put(&Message::new("t", b"next".to_vec()), 0).unwrap();
    store.close().unwrap();
    let store = open(&dir, &sim);
    let last = store.get_messages(&q, 1050, 8).unwrap();
    assert_eq!(last.messages.len(), 1);
    assert_eq!(last.messages[0].body(), b"next");
    store.close().unwrap();
}

#[test]
fn a_file_that_cannot_be_mapped_is_an_error_then_reads_on_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    // (The open checks the last 64 KiB of the log against the queue: the first files are
    // well before that.)
    fill(&dir, &sim, 2000);
    let store = open(&dir, &sim);
    let q = MessageQueue::new("t", 0);
    // The first read of the first file maps it: that fails.
    sim.fail_from(OpKind::Read, 1, libc::ENOMEM);
    match store.get_messages(&q, 0, 32) {
        Err(Error::Io { path, .. }) => assert!(
            path.starts_with(dir.join("consumequeue/t/0")),
            "the error names the queue file: {}",
            path.display()
        ),
        other => panic!("expected an I/O error naming the file, got {other:?}"),
    }
    sim.clear_faults();
    let got = store.get_messages(&q, 0, 32).unwrap();
    assert_eq!(got.messages.len(), 32);
    assert_eq!(got.messages[0].body(), b"m0");
    assert_eq!(got.next_offset, 32);
    store.close().unwrap();
}

/// Waits until the wall clock shows a later millisecond than `after` (store timestamps are
/// milliseconds).
fn next_millisecond(after: u128) -> u128 {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        if now > after {
            return now;
        }
        std::hint::spin_loop();
    }
}

#[test]
fn a_search_by_time_is_an_error_or_right_when_a_file_cannot_be_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    {
        let store = open(&dir, &sim);
        store.create_topic("t", 1).unwrap();
        let mut ms = 0;
        for i in 0..2000 {
            if i % 100 == 0 {
                // Each 100-unit file gets store times of its own.
                ms = next_millisecond(ms);
            }
            store
                .put(&Message::new("t", format!("m{i}").into_bytes()), 0)
                .unwrap();
        }
        store.close().unwrap();
    }
    let store = open(&dir, &sim);
    let q = MessageQueue::new("t", 0);
    let ms = store.get_messages(&q, 800, 1).unwrap().messages[0].store_timestamp() as u64;
    // The first message stored at or after that millisecond (800, or earlier if writing a
    // hundred messages took more than a millisecond).
    let want = common::read_queue(&store, &q)
        .iter()
        .position(|m| m.store_timestamp() as u64 >= ms)
        .unwrap() as u64;
    // (Reading every message mapped every file: reopen for a store that maps on demand.)
    store.close().unwrap();
    let store = open(&dir, &sim);
    // The binary search reaches files not mapped yet: mapping them fails.
    sim.fail_from(OpKind::Read, 1, libc::ENOMEM);
    let got = store.offset_by_time(&q, ms);
    sim.clear_faults();
    match got {
        Err(Error::Io { .. }) => {}
        Err(e) => panic!("expected the I/O error, got {e}"),
        Ok(off) => assert_eq!(off, want, "a mapping failure gave a wrong offset"),
    }
    assert_eq!(store.offset_by_time(&q, ms).unwrap(), want);
    store.close().unwrap();
}

/// Readers mapping older files on first use while the front of the log (and the queue files
/// that only point into it) is deleted, and a writer appends: every read returns messages
/// in order with the right bodies (those deleted under the read are skipped); no read fails.
#[test]
fn reads_mapping_files_race_deletions_and_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(tmp.path()).unwrap();
    let dir = tmp.path().join("s");
    fill(&dir, &sim, 3000);
    let store = open(&dir, &sim);
    let q = MessageQueue::new("t", 0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for r in 0..3u64 {
            let (store, q, stop) = (&store, &q, &stop);
            s.spawn(move || {
                let mut rng = common::Rng::new(r + 1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let from = rng.range(0, 3000);
                    let got = store.get_messages(q, from, 16).expect("a read never fails");
                    let mut last = None;
                    for m in &got.messages {
                        let off = m.queue_offset();
                        // (Messages deleted under the read are skipped.)
                        assert!(
                            off >= from && last.is_none_or(|l| off > l),
                            "{off} after {last:?} from {from}"
                        );
                        last = Some(off);
                        if off < 3000 {
                            assert_eq!(m.body(), format!("m{off}").as_bytes());
                        }
                    }
                }
            });
        }
        let (store, stop) = (&store, &stop);
        s.spawn(move || {
            for i in 0..200 {
                store
                    .put(&Message::new("t", format!("n{i}").into_bytes()), 0)
                    .unwrap();
                if i % 20 == 19 {
                    let end = store.commitlog_max_offset();
                    store
                        .delete_segments_before(end * (i as u64) / 400)
                        .unwrap();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    });
    let min = store.min_offset(&q).unwrap();
    assert!(min > 0, "the front was deleted");
    let rest = common::read_queue(&store, &q);
    assert_eq!(rest.len() as u64, 3200 - min);
    store.close().unwrap();
}
