//! The store's lifecycle with clients running: `Store::close` stops push consumers (committing
//! what they consumed) and drains asynchronous sends before the engine closes; afterwards
//! clients get `Error::Closed`; `PushConsumer::shutdown_timeout` bounds the wait for a
//! listener.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlite::{
    ConsumeFrom, ConsumeStatus, Error, FlushPolicy, Message, MessageQueue, OrderlyStatus, Store,
};

const WAIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn body(m: &mqlite::MessageExt) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

fn is_closed<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Closed))
}

/// The repro: consumers still running when the store closes. Everything a listener
/// consumed before `close` returned is committed: after reopening, the group gets exactly the
/// rest, nothing twice.
#[test]
fn close_stops_running_push_consumers_and_commits_what_they_consumed() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 4).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..N {
        p.send(Message::new("t", format!("{i}"))).unwrap();
    }
    let consumed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let start = |name: &str| {
        let consumed = consumed.clone();
        let entered = Mutex::new(entered_tx.clone());
        let release = release_rx.clone();
        store
            .push_consumer("g")
            .subscribe("t", "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .instance_name(name)
            // One thread: a queue's messages are consumed in order, so "consumed" is a prefix
            // of each queue and the committed offsets can say exactly that.
            .threads(1)
            .start_concurrently(move |msgs| {
                for m in msgs {
                    let b = body(m);
                    if b == "1000" {
                        // In the listener while the store closes.
                        entered.lock().unwrap().send(()).unwrap();
                        release.lock().unwrap().recv_timeout(WAIT).unwrap();
                    }
                    consumed.lock().unwrap().insert(b);
                }
                ConsumeStatus::Success
            })
            .unwrap()
    };
    let a = start("a");
    let b = start("b");
    entered_rx.recv_timeout(WAIT).unwrap();
    let closing = store.clone();
    let closer = std::thread::spawn(move || closing.close());
    // Release the listener once the close is under way (new clients are refused then).
    wait_until("the close to start", || {
        is_closed(
            store
                .push_consumer("probe")
                .subscribe("t", "*")
                .start_concurrently(|_| ConsumeStatus::Success)
                .map(drop),
        )
    });
    release_tx.send(()).unwrap();
    closer.join().unwrap().unwrap();
    let at_close: HashSet<String> = consumed.lock().unwrap().clone();
    assert!(
        at_close.contains("1000"),
        "the call in flight finished before close returned"
    );
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    assert_eq!(
        consumed.lock().unwrap().len(),
        at_close.len(),
        "a listener ran after close"
    );
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let again: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = again.clone();
    let c = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            seen.lock().unwrap().extend(msgs.iter().map(body));
            ConsumeStatus::Success
        })
        .unwrap();
    wait_until("the rest of the messages", || {
        again.lock().unwrap().len() >= N - at_close.len()
    });
    c.shutdown().unwrap();
    let again = again.lock().unwrap().clone();
    let redelivered: Vec<&String> = again.iter().filter(|b| at_close.contains(*b)).collect();
    assert!(
        redelivered.is_empty(),
        "{} consumed messages came again: {redelivered:?}",
        redelivered.len()
    );
    let all: HashSet<&String> = at_close.iter().chain(&again).collect();
    assert_eq!(all.len(), N);
    store.close().unwrap();
}

/// Sends accepted by `send_async` before `close` complete with their real results (stored,
/// and durable under `Sync`) before `close` returns, and every one is in the store after.
#[test]
fn close_drains_pending_async_sends_with_their_real_results() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .flush_policy(FlushPolicy::SYNC)
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let results: Arc<Mutex<Vec<mqlite::Result<mqlite::SendResult>>>> = Arc::default();
    let p = store.producer("p").unwrap();
    for i in 0..N {
        let results = results.clone();
        p.send_async(Message::new("t", format!("{i}")), move |r| {
            results.lock().unwrap().push(r)
        })
        .unwrap();
    }
    store.clone().close().unwrap();
    let results = std::mem::take(&mut *results.lock().unwrap());
    assert_eq!(
        results.len(),
        N,
        "every accepted send was called back before close returned"
    );
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failed.is_empty(),
        "{} sends failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().status == mqlite::SendStatus::SendOk)
    );
    let err = p
        .send_async(Message::new("t", "late"), |_| {
            panic!("a refused send is not called back")
        })
        .unwrap_err();
    assert!(matches!(err.error(), Error::Closed));
    assert_eq!(err.into_message().body(), b"late");
    drop((p, store));

    let store = Store::open(dir.path()).unwrap();
    let q = MessageQueue::new("t", 0);
    assert_eq!(store.max_offset(&q).unwrap(), N as u64);
    for r in results.iter().map(|r| r.as_ref().unwrap()).step_by(97) {
        let m = store.get_messages(&q, r.queue_offset, 1).unwrap();
        assert_eq!(m.messages[0].msg_id(), r.msg_id);
    }
    store.close().unwrap();
}

/// After close, every client made from the store reports `Error::Closed`; nothing panics.
#[test]
fn clients_get_closed_errors_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    let producer = store.producer("p").unwrap();
    producer.send(Message::new("t", "x")).unwrap();
    let pull = store.pull_consumer("g").unwrap();
    let running = store
        .push_consumer("g2")
        .subscribe("t", "*")
        .start_concurrently(|_| ConsumeStatus::Success)
        .unwrap();
    let builder = store.push_consumer("g3").subscribe("t", "*");
    let handle = store.clone();
    store.close().unwrap();

    assert!(matches!(
        producer
            .send(Message::new("t", "y"))
            .map_err(|e| e.into_parts().0),
        Err(Error::Closed)
    ));
    let e = producer
        .send_async(Message::new("t", "z"), |_| {})
        .unwrap_err();
    assert!(matches!(e.error(), Error::Closed));
    assert!(is_closed(pull.pull(&q, "*", 0, 32)));
    assert!(is_closed(pull.commit_offset(&q, 1)));
    assert!(is_closed(pull.committed_offset(&q)));
    assert!(is_closed(
        builder.start_concurrently(|_| ConsumeStatus::Success)
    ));
    assert!(is_closed(
        handle
            .push_consumer("g4")
            .subscribe("t", "*")
            .start_orderly(|_, _| OrderlyStatus::Success)
    ));
    assert!(is_closed(handle.get_messages(&q, 0, 1)));
    assert!(running.assigned_queues().is_empty());
    assert!(running.shutdown_timeout(Duration::from_secs(30)).unwrap());
    assert!(handle.close().is_ok());
}

/// `shutdown_timeout` returns `Ok(false)` while a listener call runs, leaves the group at
/// once, and does not commit the message in flight: the group's next consumer gets it.
#[test]
fn shutdown_timeout_does_not_wait_for_a_stuck_listener() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel::<String>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let entered = Mutex::new(entered_tx);
    let stuck = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            entered.lock().unwrap().send(body(&msgs[0])).unwrap();
            release_rx.lock().unwrap().recv_timeout(WAIT).unwrap();
            ConsumeStatus::Success
        })
        .unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "slow"))
        .unwrap();
    assert_eq!(entered_rx.recv_timeout(WAIT).unwrap(), "slow");
    assert!(!stuck.shutdown_timeout(Duration::from_millis(20)).unwrap());
    assert!(store.consumer_ids("g").is_empty(), "it left the group");

    let (got_tx, got_rx) = mpsc::channel::<String>();
    let got = Mutex::new(got_tx);
    let next = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            got.lock().unwrap().send(body(&msgs[0])).unwrap();
            ConsumeStatus::Success
        })
        .unwrap();
    assert_eq!(
        got_rx.recv_timeout(WAIT).unwrap(),
        "slow",
        "the message in flight comes again"
    );
    release_tx.send(()).unwrap();
    // An idle consumer stops within any reasonable timeout.
    assert!(next.shutdown_timeout(WAIT).unwrap());
    store.close().unwrap();
}

/// An orderly consumer stopped by `shutdown_timeout` while its listener runs keeps that
/// queue's lock until the listener returns, so no other consumer takes the queue meanwhile.
#[test]
fn orderly_shutdown_timeout_keeps_the_queue_lock_until_the_listener_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let entered = Mutex::new(entered_tx);
    let c = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_orderly(move |_, _| {
            entered.lock().unwrap().send(()).unwrap();
            release_rx.lock().unwrap().recv_timeout(WAIT).unwrap();
            OrderlyStatus::Success
        })
        .unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "x"))
        .unwrap();
    entered_rx.recv_timeout(WAIT).unwrap();
    assert!(!c.shutdown_timeout(Duration::from_millis(20)).unwrap());
    assert!(
        store
            .lock_queues("g", "probe", std::slice::from_ref(&q))
            .unwrap()
            .is_empty(),
        "the queue is still locked by the stopped consumer's running listener"
    );
    release_tx.send(()).unwrap();
    wait_until("the lock to be given back", || {
        store
            .lock_queues("g", "probe", std::slice::from_ref(&q))
            .unwrap()
            == vec![q.clone()]
    });
    store.unlock_queues("g", "probe", &[q]).unwrap();
    store.close().unwrap();
}

/// Push consumers started and shut down over and over (by `shutdown`, by a 1 ms
/// `shutdown_timeout`, by drop) while messages arrive: every message is consumed in the end,
/// and once an unbounded shutdown has returned no listener call starts.
#[test]
fn repeated_start_and_shutdown_while_messages_arrive_loses_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const N: usize = 6000;
    const PER_ROUND: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).open().unwrap();
    store.create_topic("t", 8).unwrap();
    let producer = store.producer("p").unwrap();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let calls_after_stop = Arc::new(AtomicUsize::new(0));
    let mut sent = 0;
    let mut round = 0;
    while sent < N || seen.lock().unwrap().len() < N {
        round += 1;
        assert!(
            round < 2000,
            "rounds exhausted: {}",
            seen.lock().unwrap().len()
        );
        let stopped = Arc::new(AtomicBool::new(false));
        let start = |name: String| {
            let seen = seen.clone();
            let stopped = stopped.clone();
            let calls_after_stop = calls_after_stop.clone();
            store
                .push_consumer("g")
                .subscribe("t", "*")
                .consume_from(ConsumeFrom::FirstOffset)
                .instance_name(&name)
                .consume_message_batch_max_size(1)
                .start_concurrently(move |msgs| {
                    if stopped.load(Ordering::Acquire) {
                        calls_after_stop.fetch_add(1, Ordering::Relaxed);
                    }
                    seen.lock().unwrap().extend(msgs.iter().map(body));
                    ConsumeStatus::Success
                })
                .unwrap()
        };
        let a = start(format!("a{round}"));
        let b = start(format!("b{round}"));
        if sent < N {
            // Messages arrive while the consumers start, fetch and are stopped.
            for _ in 0..PER_ROUND.min(N - sent) {
                producer.send(Message::new("t", format!("{sent}"))).unwrap();
                sent += 1;
            }
        } else {
            let before = seen.lock().unwrap().len();
            wait_until("progress", || seen.lock().unwrap().len() > before);
        }
        match round % 3 {
            0 => {
                a.shutdown().unwrap();
                b.shutdown().unwrap();
                stopped.store(true, Ordering::Release);
            }
            1 => {
                // Bounded: a call may still be running, and finishes on its own.
                a.shutdown_timeout(Duration::from_millis(1)).unwrap();
                b.shutdown_timeout(Duration::from_millis(1)).unwrap();
            }
            _ => {
                drop(a);
                drop(b);
                stopped.store(true, Ordering::Release);
            }
        }
    }
    eprintln!("{round} rounds");
    assert_eq!(
        calls_after_stop.load(Ordering::Relaxed),
        0,
        "listener calls started after a shutdown returned"
    );
    store.close().unwrap();
}

/// A transaction checker that closes the store (from the check thread itself) gets `Ok`: the
/// close does not try to join the thread it runs on, and the store is closed after it.
#[test]
fn a_checker_may_close_the_store() {
    use mqlite::TransactionState;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .transaction_check_interval(Duration::from_millis(20))
        .transaction_timeout(Duration::from_millis(1))
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let handle = Mutex::new(Some(store.clone()));
    let producer = store
        .transaction_producer("g", move |_| {
            if let Some(s) = handle.lock().unwrap().take() {
                let _ = tx.lock().unwrap().send(s.close());
            }
            TransactionState::Unknown
        })
        .unwrap();
    producer
        .send_in_transaction(Message::new("t", b"half".to_vec()), |_| {
            TransactionState::Unknown
        })
        .unwrap();
    let closed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the checker ran and its close returned");
    assert!(closed.is_ok(), "{closed:?}");
    drop(producer);
    drop(store);
    // The lock is released: the store opens again.
    Store::open(dir.path()).unwrap().close().unwrap();
}
