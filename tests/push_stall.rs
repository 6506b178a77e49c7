//! A push consumer that cannot fetch (a damaged record) does not fail silently: the queue is
//! reported once through `log::warn!`, shows up in `PushConsumer::stats`, and is retried.

#[path = "common/capture_log.rs"]
mod capture_log;
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageQueue};

const WAIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_damaged_record_stalls_the_queue_visibly() {
    capture_log::install();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let q = MessageQueue::new("t", 0);
    {
        let store = common::small(dir).open().unwrap();
        store.create_topic("t", 1).unwrap();
        // Enough after the victim that it lies well before the last 64 KiB the next open
        // re-checks: the damage is found by the read, not by recovery.
        for i in 0..1000 {
            let body = format!("message-{i:04}-{}", "x".repeat(100));
            store.put(&Message::new("t", body), 0).unwrap();
        }
        store.close().unwrap();
    }
    // Damage the body of message 10 in the first segment.
    let seg = dir.join("commitlog").join(format!("{:020}", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"message-0010")
        .expect("message 10 is in the first segment");
    bytes[at + 20] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();

    let store = common::small(dir).open().unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let c = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            g.lock().unwrap().extend(
                msgs.iter()
                    .map(|m| String::from_utf8_lossy(&m.body()[..12]).into_owned()),
            );
            ConsumeStatus::Success
        })
        .unwrap();
    wait_until("the queue to be reported stalled", || {
        !c.stats().stalled.is_empty()
    });
    let stats = c.stats();
    assert_eq!(stats.stalled.len(), 1);
    let stall = &stats.stalled[0];
    assert_eq!(stall.queue, q);
    assert_eq!(stall.offset, 10, "stuck at the damaged record");
    assert!(stats.pull_errors >= 1);
    // It keeps retrying: wait for more failed attempts, then check it warned only once.
    wait_until("retries", || c.stats().pull_errors >= 3);
    let warnings = capture_log::lines(log::Level::Warn, "cannot fetch queue t:0 at offset 10");
    assert_eq!(
        warnings.len(),
        1,
        "one warning per queue and condition: {warnings:?}"
    );
    wait_until(
        "the messages before the damage to be consumed and committed",
        || got.lock().unwrap().len() >= 10 && store.consumer_lag("g", "t").unwrap() == 990,
    );
    let got = got.lock().unwrap().clone();
    let expected: Vec<String> = (0..10).map(|i| format!("message-{i:04}")).collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "only the messages before the damage");
    c.shutdown().unwrap();
    store.close().unwrap();
}
