//! The schedule service starts with the first delayed or timer message, whichever path stores
//! it: a push consumer's retry (sent back to the schedule topic from a consume thread) and a
//! timer message stored by the asynchronous sender are delivered in a store that had none.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageQueue, Store};

const LEVELS: &str = "100ms 100ms 100ms 100ms 100ms 100ms 100ms";

#[test]
fn a_retry_as_the_first_delayed_message_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .message_delay_level(LEVELS)
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let tries = Arc::new(AtomicUsize::new(0));
    let seen = tries.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
            0 => ConsumeStatus::ReconsumeLater,
            _ => ConsumeStatus::Success,
        })
        .unwrap();
    store.put(&Message::new("t", "x"), 0).unwrap();
    common::wait_until("the retry to come back", Duration::from_secs(30), || {
        tries.load(Ordering::SeqCst) >= 2
    });
    consumer.shutdown().unwrap();
    store.close().unwrap();
}

#[test]
fn an_asynchronous_timer_message_as_the_first_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    let (tx, rx) = mpsc::channel();
    let at = SystemTime::now() + Duration::from_millis(200);
    store
        .producer("p")
        .unwrap()
        .send_async(Message::new("t", "timer").with_deliver_at(at), move |r| {
            tx.send(r.is_ok()).unwrap()
        })
        .unwrap();
    assert!(rx.recv().unwrap(), "stored");
    let q = MessageQueue::new("t", 0);
    common::wait_until("the timer message", Duration::from_secs(30), || {
        store.max_offset(&q).unwrap() == 1
    });
    let got = store.get_messages(&q, 0, 1).unwrap();
    assert_eq!(got.messages[0].body(), b"timer");
    store.close().unwrap();
}
