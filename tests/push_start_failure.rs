//! A push consumer whose start fails (a consume thread cannot be spawned) leaves nothing
//! behind: `start` returns the error, its fetch and consume threads end, and it is not in
//! the group. (One test in this binary: it counts the process's consumer threads.)

mod common;

use std::time::{Duration, Instant};

use common::threads_named;
use mqlite::{ConsumeFrom, ConsumeStatus, Error, Message, Store};

#[test]
fn a_failed_thread_spawn_stops_what_start_started() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_topic("t", 2).unwrap();
    // Thread 0 is the fetch thread, 1..=3 the consume threads: the third consume thread fails.
    let err = store
        .push_consumer("g")
        .subscribe("t", "*")
        .threads(3)
        .fail_thread_spawn(3)
        .start_concurrently(|_| ConsumeStatus::Success)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "spawn consumer thread",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.consumer_ids("g").is_empty(), "not in the group");
    let deadline = Instant::now() + Duration::from_secs(60);
    while threads_named("mqlite-fetch") + threads_named("mqlite-consume") > 0 {
        assert!(
            Instant::now() < deadline,
            "the started threads are still running"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The group works normally afterwards.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let c = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            tx.lock().unwrap().send(msgs[0].body().to_vec()).unwrap();
            ConsumeStatus::Success
        })
        .unwrap();
    assert_eq!(store.consumer_ids("g"), vec![c.id().to_owned()]);
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "x"))
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), b"x");
    c.shutdown().unwrap();
    store.close().unwrap();
}
