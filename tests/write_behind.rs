//! Under the default `FlushPolicy::Async`, the flush thread starts writing the CommitLog back
//! as appends go (every 8 MiB), a margin behind the writer, instead of leaving it all to the
//! next periodic flush. Writing back first drops the range's pages from the store's mapping,
//! which `/proc/self/smaps` shows: the log file's resident size stays near what is ahead of
//! the writer instead of growing with everything written. Every message still reads back,
//! before and after a reopen.
//!
//! One test in its own binary: no other store's mappings are in the way.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::{Duration, Instant};

use mqlite::{IndexConfig, Message, MessageQueue, Store};

/// Resident bytes of this process's mappings of `file` (from `/proc/self/smaps`).
fn resident(file: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let name = file.to_str().expect("utf-8 path");
    let mut in_file = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header line: "start-end perms offset dev inode path".
            in_file = line.ends_with(name);
        } else if in_file && let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .expect("Rss");
            total += kb * 1024;
        }
    }
    total
}

#[test]
fn the_log_is_written_back_behind_the_writer_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let body = vec![b'w'; 1024];
    let n = 40_000; // ~48 MiB of log: five write-back steps
    let log_file = path.join("commitlog").join("00000000000000000000");
    {
        // Without the index, whose thread reads the log behind the writer (mapping those
        // pages again, read-only: nothing for a write-back to write-protect).
        // The flush thread in the normal class: on a machine kept busy by other work, an
        // idle-class one may not get a CPU for a long time.
        let store = Store::builder(&path)
            .index(IndexConfig::DISABLED)
            .idle_housekeeping(false)
            .open()
            .unwrap();
        let producer = store.producer("wb").unwrap();
        for _ in 0..n {
            producer.send(Message::new("wb", body.clone())).unwrap();
        }
        let written = store.commitlog_max_offset();
        // The flush thread gets to it when a CPU is free; wait for the effect, not a time.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rss = resident(&log_file);
            if rss < written / 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{rss} bytes of the log still mapped after writing {written}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Nothing was lost from what was unmapped.
        let mut read = 0;
        for q in store.queues("wb").unwrap() {
            let max = store.max_offset(&q).unwrap();
            let next = store
                .scan(&q, 0, usize::MAX, |m| {
                    assert_eq!(m.stored_body(), &body[..]);
                    read += 1;
                    true
                })
                .unwrap();
            assert_eq!(next, max);
        }
        assert_eq!(read, n);
        store.close().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let total: u64 = store
        .queues("wb")
        .unwrap()
        .iter()
        .map(|q: &MessageQueue| store.max_offset(q).unwrap())
        .sum();
    assert_eq!(total, n as u64);
    store.close().unwrap();
}
