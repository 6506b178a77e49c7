//! A delayed message the schedule service cannot deliver is never dropped: it stays pending
//! (its level does not move past it), is reported once, and goes out once delivery works.

#[path = "common/capture_log.rs"]
mod capture_log;

use std::time::{Duration, Instant, SystemTime};

use mqlite::{Message, MessageQueue, Store};

const WAIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn bodies(store: &Store, q: &MessageQueue) -> Vec<Vec<u8>> {
    let got = store.get_messages(q, 0, 100).unwrap();
    got.messages.iter().map(|m| m.body().to_vec()).collect()
}

/// Sent with a 200-byte body; reopened with `max_message_size` 100, the delivery of its copy
/// is refused. It must wait (with the small message behind it on the same level), not vanish,
/// and both go out, in order, once the store is reopened with the old limit.
#[test]
fn an_undeliverable_delayed_message_stays_pending_and_goes_out_later() {
    capture_log::install();
    let dir = tempfile::tempdir().unwrap();
    let t = MessageQueue::new("t", 0);
    let u = MessageQueue::new("u", 0);
    let big = vec![b'b'; 200];
    {
        // Level 1 is an hour away and level 2 too: nothing goes out while this store is open.
        let store = Store::builder(dir.path())
            .message_delay_level("1h 1h")
            .open()
            .unwrap();
        store.create_topic("t", 1).unwrap();
        store.create_topic("u", 1).unwrap();
        let p = store.producer("p").unwrap();
        p.send(Message::new("t", big.clone()).with_delay_level(1))
            .unwrap();
        p.send(Message::new("t", "small").with_delay_level(1))
            .unwrap();
        p.send(Message::new("u", "other level").with_delay_level(2))
            .unwrap();
        store.close().unwrap();
    }
    {
        // Now the levels are 1 s (the clock-skew guard makes the hour-long ones due at once),
        // but bodies over 100 bytes are refused.
        let store = Store::builder(dir.path())
            .message_delay_level("1s 1s")
            .max_message_size(100)
            .open()
            .unwrap();
        wait_until("level 2 to be delivered", || {
            store.max_offset(&u).unwrap() == 1
        });
        wait_until("the failure to be reported", || {
            !capture_log::lines(log::Level::Warn, "delay level 1 at offset 0").is_empty()
        });
        // Give the service more passes: a level-2 message sent now is delivered after its
        // second, by which time level 1 has been retried (every second) several times.
        store
            .producer("p")
            .unwrap()
            .send(Message::new("u", "later").with_delay_level(2))
            .unwrap();
        wait_until("the later level-2 message", || {
            store.max_offset(&u).unwrap() == 2
        });
        let warnings = capture_log::lines(log::Level::Warn, "delay level 1 at offset 0");
        assert_eq!(
            warnings.len(),
            1,
            "reported once, not per retry: {warnings:?}"
        );
        assert!(
            warnings[0].contains("exceeds the maximum"),
            "{}",
            warnings[0]
        );
        assert_eq!(
            store.max_offset(&t).unwrap(),
            0,
            "neither level-1 message went out"
        );
        store.close().unwrap();
    }
    let store = Store::builder(dir.path())
        .message_delay_level("1s 1s")
        .open()
        .unwrap();
    wait_until("both level-1 messages", || {
        store.max_offset(&t).unwrap() == 2
    });
    assert_eq!(bodies(&store, &t), vec![big, b"small".to_vec()]);
    store.close().unwrap();
    // Delivered once each, never twice: a further reopen delivers nothing more.
    let store = Store::builder(dir.path())
        .message_delay_level("1s 1s")
        .open()
        .unwrap();
    assert_eq!(store.max_offset(&t).unwrap(), 2);
    store.close().unwrap();
}

/// The same for a delivery time (`with_deliver_at`, the timer queue): the stuck entry stays
/// pending while later timer entries go out, and it goes out once delivery works again.
#[test]
fn an_undeliverable_timer_message_stays_pending_while_others_go_out() {
    capture_log::install();
    let dir = tempfile::tempdir().unwrap();
    let t = MessageQueue::new("timed", 0);
    let big = vec![b'b'; 200];
    let in_ms = |ms: u64| SystemTime::now() + Duration::from_millis(ms);
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_topic("timed", 1).unwrap();
        store
            .producer("p")
            .unwrap()
            .send(Message::new("timed", big.clone()).with_deliver_at(in_ms(3000)))
            .unwrap();
        store.close().unwrap();
    }
    {
        let store = Store::builder(dir.path())
            .max_message_size(100)
            .open()
            .unwrap();
        if store.max_offset(&t).unwrap() > 0 {
            // Only on a machine so slow that the first store stayed open 3 s: nothing to test.
            return;
        }
        wait_until("the failure to be reported", || {
            !capture_log::lines(log::Level::Warn, "timer entry at offset 0").is_empty()
        });
        let p = store.producer("p").unwrap();
        p.send(Message::new("timed", "now").with_deliver_at(in_ms(0)))
            .unwrap();
        wait_until("the later timer entry", || {
            store.max_offset(&t).unwrap() == 1
        });
        // Outlive at least one retry of the stuck entry (every second).
        p.send(Message::new("timed", "later").with_deliver_at(in_ms(1500)))
            .unwrap();
        wait_until("the last timer entry", || {
            store.max_offset(&t).unwrap() == 2
        });
        let warnings = capture_log::lines(log::Level::Warn, "timer entry at offset 0");
        assert_eq!(warnings.len(), 1, "reported once: {warnings:?}");
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    wait_until("the stuck entry", || store.max_offset(&t).unwrap() == 3);
    assert_eq!(
        bodies(&store, &t),
        vec![b"now".to_vec(), b"later".to_vec(), big]
    );
    store.close().unwrap();
}
