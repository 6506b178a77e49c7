//! `Store::reset_offset_by_time` while the group's consumers run: they drop their progress in
//! the topic's queues and go on from the reset offsets, and nothing they had in flight
//! commits over the reset.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlite::{
    ConsumeFrom, ConsumeStatus, Message, MessageModel, MessageQueue, OrderlyStatus, Store,
};

const WAIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn body(m: &mqlite::MessageExt) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

/// A listener call in flight during the reset (on the last message) returns after it: its
/// completion must not move the committed offset off the reset; the consumer then consumes
/// every message again from the reset offset.
#[test]
fn a_running_push_consumer_follows_a_reset_and_does_not_overwrite_it() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    let p = store.producer("p").unwrap();
    for i in 0..N {
        p.send(Message::new("t", format!("{i}"))).unwrap();
    }
    // Phase 1: every message once; the last one stays in the listener until released.
    // Phase 2 (after the reset): each message waits at the gate until it opens.
    let (entered_tx, entered_rx) = mpsc::channel::<(u8, String)>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let gate_rx = Mutex::new(gate_rx);
    let entered = Mutex::new(entered_tx);
    let phase2: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let first: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let (p2, f1) = (phase2.clone(), first.clone());
    let c = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .threads(2)
        .start_concurrently(move |msgs| {
            let b = body(&msgs[0]);
            if f1.lock().unwrap().insert(b.clone()) {
                if b == format!("{}", N - 1) {
                    entered.lock().unwrap().send((1, b)).unwrap();
                    release_rx.lock().unwrap().recv_timeout(WAIT).unwrap();
                }
            } else {
                entered.lock().unwrap().send((2, b.clone())).unwrap();
                gate_rx.lock().unwrap().recv_timeout(WAIT).unwrap();
                p2.lock().unwrap().insert(b);
            }
            ConsumeStatus::Success
        })
        .unwrap();
    let pull = store.pull_consumer("g").unwrap();
    assert_eq!(
        entered_rx.recv_timeout(WAIT).unwrap(),
        (1, format!("{}", N - 1))
    );
    wait_until("messages before the last to be committed", || {
        pull.committed_offset(&q).unwrap() == Some(N as u64 - 1)
    });

    store.reset_offset_by_time("g", "t", 0).unwrap();
    assert_eq!(
        pull.committed_offset(&q).unwrap(),
        Some(0),
        "pull consumers see the reset"
    );
    // The consumer starts over: the first message reaches the gate on the free thread.
    assert_eq!(entered_rx.recv_timeout(WAIT).unwrap(), (2, "0".to_owned()));
    // The call in flight returns; its thread then takes the next message (so its stale
    // completion has been handled by the time that one arrives).
    release_tx.send(()).unwrap();
    assert_eq!(entered_rx.recv_timeout(WAIT).unwrap().0, 2);
    assert_eq!(
        pull.committed_offset(&q).unwrap(),
        Some(0),
        "the listener call from before the reset committed over it"
    );
    for _ in 0..N {
        gate_tx.send(()).unwrap();
    }
    wait_until("every message again", || phase2.lock().unwrap().len() == N);
    wait_until("the commit to reach the end", || {
        pull.committed_offset(&q).unwrap() == Some(N as u64)
    });
    c.shutdown().unwrap();
    store.close().unwrap();
}

/// A reset back makes running orderly consumers deliver again, each queue in order, and
/// broadcasting consumers (whose offsets are their own) too.
#[test]
fn orderly_and_broadcasting_consumers_follow_resets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 2).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..20 {
        p.send_ordered(Message::new("t", format!("{i}")), format!("{}", i % 2))
            .unwrap();
    }
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let orderly = store
        .push_consumer("o")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_orderly(move |msgs, _| {
            g.lock().unwrap().extend(msgs.iter().map(body));
            OrderlyStatus::Success
        })
        .unwrap();
    let b_got: Arc<Mutex<Vec<String>>> = Arc::default();
    let bg = b_got.clone();
    let broadcast = store
        .push_consumer("b")
        .subscribe("t", "*")
        .message_model(MessageModel::Broadcasting)
        .instance_name("one")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            bg.lock().unwrap().extend(msgs.iter().map(body));
            ConsumeStatus::Success
        })
        .unwrap();
    wait_until("first pass", || {
        got.lock().unwrap().len() == 20 && b_got.lock().unwrap().len() == 20
    });
    wait_until("orderly commits", || {
        store.consumer_lag("o", "t").unwrap() == 0
    });
    store.reset_offset_by_time("o", "t", 0).unwrap();
    store.reset_offset_by_time("b", "t", 0).unwrap();
    wait_until("second pass", || {
        got.lock().unwrap().len() == 40 && b_got.lock().unwrap().len() == 40
    });
    let got = got.lock().unwrap().clone();
    for key in 0..2 {
        let second: Vec<&String> = got[20..]
            .iter()
            .filter(|b| b.parse::<usize>().unwrap() % 2 == key)
            .collect();
        let expected: Vec<String> = (0..20)
            .filter(|i| i % 2 == key)
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            second,
            expected.iter().collect::<Vec<_>>(),
            "queue of key {key} in order"
        );
    }
    let mut again = b_got.lock().unwrap()[20..].to_vec();
    again.sort_by_key(|b| b.parse::<usize>().unwrap());
    assert_eq!(again, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    orderly.shutdown().unwrap();
    broadcast.shutdown().unwrap();
    store.close().unwrap();
}
