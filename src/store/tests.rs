//! Unit tests that need the crate's test-only fault injection.

use std::time::Duration;

use crate::storage::mmap::failpoint;
use crate::{Error, FlushPolicy, Message, MessageQueue, PutStatus, Store};

fn builder(dir: &std::path::Path, policy: FlushPolicy) -> crate::StoreBuilder {
    Store::builder(dir)
        .commitlog_segment_size(64 * 1024)
        .consume_queue_segment_size(2000)
        .flush_policy(policy)
}

#[test]
fn failed_sync_flush_poisons_until_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("poison-sync");
    let store = builder(&dir, FlushPolicy::SYNC).open().unwrap();
    let mut acked = Vec::new();
    for i in 0..50u32 {
        let r = store.put(&Message::new("t", format!("ok-{i}")), 0).unwrap();
        assert_eq!(r.status, PutStatus::PutOk);
        acked.push(r.queue_offset);
    }
    failpoint::fail_flushes_under(&dir, true);
    // The put whose flush fails reports the I/O error, never success.
    let err = store.put(&Message::new("t", "lost?"), 0).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    failpoint::fail_flushes_under(&dir, false);
    // Even with the disk healthy again, the store refuses writes until reopened.
    for _ in 0..3 {
        let err = store.put(&Message::new("t", "after"), 0).unwrap_err();
        assert!(matches!(err, Error::Poisoned), "{err:?}");
    }
    assert!(matches!(store.flush(), Err(Error::Poisoned)));
    // Reads of durable data still work.
    let q = MessageQueue::new("t", 0);
    assert_eq!(store.get_messages(&q, 0, 100).unwrap().messages.len(), 50);
    assert!(matches!(store.close(), Err(Error::Poisoned)));

    let store = builder(&dir, FlushPolicy::SYNC).open().unwrap();
    let got = store.get_messages(&q, 0, 100).unwrap().messages;
    assert!(got.len() >= 50, "acknowledged messages lost: {}", got.len());
    for (i, m) in got.iter().take(50).enumerate() {
        assert_eq!(m.body(), format!("ok-{i}").as_bytes());
    }
    let r = store.put(&Message::new("t", "again"), 0).unwrap();
    assert_eq!(r.status, PutStatus::PutOk);
    assert_eq!(r.queue_offset, got.len() as u64);
    store.close().unwrap();
}

#[test]
fn failed_async_flush_poisons_later_puts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("poison-async");
    let policy = FlushPolicy::Async {
        interval: Duration::from_millis(5),
        min_pages: 0,
    };
    let store = builder(&dir, policy).open().unwrap();
    store.put(&Message::new("t", "first"), 0).unwrap();
    failpoint::fail_flushes_under(&dir, true);
    // The background flusher hits the failure and poisons the store.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        match store.put(&Message::new("t", "more"), 0) {
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "flush failure never surfaced"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => break e,
        }
    };
    failpoint::fail_flushes_under(&dir, false);
    assert!(matches!(err, Error::Poisoned), "{err:?}");
    drop(store);
    // Unclean (the abort marker stays), so the next open recovers everything from the log:
    // under Async a process that keeps running loses nothing that was acknowledged.
    let store = builder(&dir, policy).open().unwrap();
    let got = store
        .get_messages(&MessageQueue::new("t", 0), 0, 10_000)
        .unwrap();
    assert!(!got.messages.is_empty());
    assert_eq!(got.messages[0].body(), b"first");
    store.close().unwrap();
}
