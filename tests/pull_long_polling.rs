//! Long polling (`PullConsumer::pull_timeout`): a waiting pull returns as soon as a matching
//! message arrives (woken by the writer, under `Async` and `Sync`), well before its timeout;
//! without arrivals it returns `NoNewMsg` at the timeout; messages that do not match are
//! skipped while waiting and reflected in `next_begin_offset`; messages already there, illegal
//! offsets and bad filters return at once; an arrival in another queue does not end the wait;
//! several waiters on one queue are all woken. Senders sleep before sending only to prove
//! that the wait ends on the arrival, not on a timer.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::small;
use mqlite::{Error, FlushPolicy, Message, MessageQueue, PullStatus, Store};

const LONG: Duration = Duration::from_secs(30);

/// Sends `msgs` from another thread, `delay` after `start`; returns when each send returned.
fn send_later(
    store: &Store,
    delay: Duration,
    msgs: Vec<(Message, u32)>,
) -> std::thread::JoinHandle<Vec<Instant>> {
    let p = store.producer("late-producer").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        msgs.into_iter()
            .map(|(m, q)| {
                let q = MessageQueue::new(m.topic().to_owned(), q);
                p.send_to(m, &q).unwrap();
                Instant::now()
            })
            .collect()
    })
}

#[test]
fn a_waiting_pull_is_woken_by_the_arrival() {
    for policy in [FlushPolicy::ASYNC, FlushPolicy::SYNC] {
        let tmp = tempfile::tempdir().unwrap();
        let store = small(tmp.path()).flush_policy(policy).open().unwrap();
        store.create_topic("lp", 1).unwrap();
        let q = MessageQueue::new("lp", 0);
        let c = store.pull_consumer("g").unwrap();
        let delay = Duration::from_millis(300);
        let start = Instant::now();
        let sender = send_later(&store, delay, vec![(Message::new("lp", "late"), 0)]);
        let r = c.pull_timeout(&q, "*", 0, 32, LONG).unwrap();
        let returned = Instant::now();
        let sent = sender.join().unwrap()[0];
        assert_eq!(r.status, PullStatus::Found, "{policy:?}");
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].body(), b"late");
        assert_eq!(r.next_begin_offset, 1);
        let waited = returned - start;
        assert!(
            waited >= delay,
            "{policy:?}: returned after {waited:?}, before the send"
        );
        // Woken by the arrival, not by the timeout (no tighter wall-clock bound: a loaded
        // machine may be slow to run the woken thread).
        let lag = returned.saturating_duration_since(sent);
        assert!(
            waited < LONG,
            "{policy:?}: returned {lag:?} after the send ({waited:?} in all, timeout {LONG:?})"
        );
        store.close().unwrap();
    }
}

#[test]
fn without_arrivals_it_returns_no_new_msg_at_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("lp", 1).unwrap();
    let q = MessageQueue::new("lp", 0);
    let c = store.pull_consumer("g").unwrap();
    // Empty queue, offset 0.
    let timeout = Duration::from_millis(300);
    let t = Instant::now();
    let r = c.pull_timeout(&q, "*", 0, 32, timeout).unwrap();
    let waited = t.elapsed();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    assert_eq!(r.next_begin_offset, 0);
    assert!(waited >= timeout && waited < timeout + LONG, "{waited:?}");
    // At the end of a queue with messages.
    let p = store.producer("p").unwrap();
    for i in 0..3 {
        p.send(Message::new("lp", format!("m{i}"))).unwrap();
    }
    let t = Instant::now();
    let r = c.pull_timeout(&q, "*", 3, 32, timeout).unwrap();
    let waited = t.elapsed();
    assert_eq!(
        (r.status, r.next_begin_offset, r.max_offset),
        (PullStatus::NoNewMsg, 3, 3)
    );
    assert!(waited >= timeout && waited < timeout + LONG, "{waited:?}");
    // A zero timeout does not wait.
    let t = Instant::now();
    let r = c.pull_timeout(&q, "*", 3, 32, Duration::ZERO).unwrap();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    assert!(
        t.elapsed() < LONG,
        "a zero timeout waited {:?}",
        t.elapsed()
    );
    store.close().unwrap();
}

#[test]
fn non_matching_arrivals_are_skipped_while_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("lp", 1).unwrap();
    let q = MessageQueue::new("lp", 0);
    let c = store.pull_consumer("g").unwrap();
    // Two non-matching messages, then a matching one.
    let start = Instant::now();
    let sender = send_later(
        &store,
        Duration::from_millis(200),
        vec![
            (Message::new("lp", "b1").with_tags("b"), 0),
            (Message::new("lp", "b2").with_tags("b"), 0),
        ],
    );
    let sender2 = {
        let p = store.producer("p2").unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            p.send(Message::new("lp", "a1").with_tags("a")).unwrap();
            Instant::now()
        })
    };
    let r = c.pull_timeout(&q, "a", 0, 32, LONG).unwrap();
    let returned = Instant::now();
    sender.join().unwrap();
    let sent = sender2.join().unwrap();
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].body(), b"a1");
    assert_eq!(r.messages[0].queue_offset(), 2);
    assert_eq!(r.next_begin_offset, 3);
    // Woken by the matching arrival, not by the timeout.
    assert!(returned - start < LONG);
    eprintln!(
        "returned {:?} after the matching send",
        returned.saturating_duration_since(sent)
    );

    // Only non-matching arrivals: NoNewMsg at the timeout, next past what arrived.
    let timeout = Duration::from_millis(600);
    let sender = send_later(
        &store,
        Duration::from_millis(100),
        vec![
            (Message::new("lp", "c1").with_tags("c"), 0),
            (Message::new("lp", "c2").with_tags("c"), 0),
        ],
    );
    let t = Instant::now();
    let r = c.pull_timeout(&q, "a", 3, 32, timeout).unwrap();
    let waited = t.elapsed();
    sender.join().unwrap();
    assert_eq!(r.status, PullStatus::NoNewMsg, "{r:?}");
    assert!(r.messages.is_empty());
    assert_eq!(r.next_begin_offset, 5, "skipped arrivals not reflected");
    assert!(waited >= timeout && waited < timeout + LONG, "{waited:?}");
    store.close().unwrap();
}

#[test]
fn messages_already_there_and_errors_return_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("lp", 1).unwrap();
    let q = MessageQueue::new("lp", 0);
    let p = store.producer("p").unwrap();
    for i in 0..5 {
        p.send(Message::new("lp", format!("m{i}")).with_tags("x"))
            .unwrap();
    }
    let c = store.pull_consumer("g").unwrap();
    let t = Instant::now();
    let r = c.pull_timeout(&q, "x", 1, 2, LONG).unwrap();
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(r.messages.len(), 2);
    assert_eq!(r.next_begin_offset, 3);
    let r = c.pull_timeout(&q, "*", 50, 2, LONG).unwrap();
    assert_eq!(
        (r.status, r.next_begin_offset),
        (PullStatus::OffsetIllegal, 0)
    );
    assert!(matches!(
        c.pull_timeout(&q, "a || ", 0, 2, LONG),
        Err(Error::InvalidFilter { .. })
    ));
    assert!(matches!(
        c.pull_timeout(&MessageQueue::new("nope", 0), "*", 0, 2, LONG),
        Err(Error::TopicNotFound(_))
    ));
    // None of these waited for its timeout.
    assert!(t.elapsed() < LONG, "{:?}", t.elapsed());
    store.close().unwrap();
}

#[test]
fn an_arrival_in_another_queue_does_not_end_the_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("lp", 2).unwrap();
    store.create_topic("other", 1).unwrap();
    let c = store.pull_consumer("g").unwrap();
    let timeout = Duration::from_millis(500);
    let sender = send_later(
        &store,
        Duration::from_millis(100),
        vec![
            (Message::new("lp", "q1"), 1),
            (Message::new("other", "o"), 0),
        ],
    );
    let t = Instant::now();
    let r = c
        .pull_timeout(&MessageQueue::new("lp", 0), "*", 0, 32, timeout)
        .unwrap();
    let waited = t.elapsed();
    sender.join().unwrap();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    assert!(waited >= timeout, "{waited:?}");
    store.close().unwrap();
}

#[test]
fn every_waiter_is_woken() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("lp", 1).unwrap();
    let q = MessageQueue::new("lp", 0);
    const WAITERS: usize = 6;
    let barrier = Arc::new(Barrier::new(WAITERS + 1));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|i| {
            let c = store.pull_consumer(&format!("g{i}")).unwrap();
            let q = q.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r = c.pull_timeout(&q, "*", 0, 32, LONG).unwrap();
                (r, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("lp", "all"))
        .unwrap();
    for w in waiters {
        let (r, at) = w.join().unwrap();
        assert_eq!(r.status, PullStatus::Found);
        assert_eq!(r.messages[0].body(), b"all");
        // Every waiter is woken by the one arrival, none waits out its timeout.
        assert!(at.saturating_duration_since(t) < LONG);
    }
    store.close().unwrap();
}
