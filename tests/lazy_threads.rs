//! Threads a store starts only when needed: the segment preparer and prefault threads with
//! the first append, the transaction check thread with the first transaction producer (or at
//! open, when the store holds half messages), the schedule service with the first delayed
//! message (or at open, when the store holds some); a close ends every one of them. (One test in
//! this binary: it counts the process's threads by name.)

mod common;

use std::time::Duration;

use common::threads_named;

use mqlite::{Message, Store, TransactionState};

/// Waits for exactly `n` threads named `prefix` (a new thread names itself once running).
fn wait_for(prefix: &str, n: usize, when: &str) {
    common::wait_until(
        &format!("{n} {prefix} thread(s) {when}"),
        Duration::from_secs(30),
        || threads_named(prefix) == n,
    );
}

const LAZY: [&str; 5] = [
    "mqlite-segment-",
    "mqlite-prefault",
    "mqlite-cq-ahead",
    "mqlite-transact",
    "mqlite-schedule",
];

fn lazy_threads() -> Vec<usize> {
    LAZY.iter().map(|p| threads_named(p)).collect()
}

#[test]
fn threads_start_when_needed_and_end_with_the_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    wait_for("mqlite-flush", 1, "in an opened store");
    assert_eq!(lazy_threads(), [0, 0, 0, 0, 0], "an opened store");

    store.create_topic("t", 1).unwrap();
    store.put(&Message::new("t", b"a".to_vec()), 0).unwrap();
    wait_for("mqlite-segment-", 1, "after the first append");
    wait_for("mqlite-prefault", 1, "after the first append");
    assert_eq!(threads_named("mqlite-transact"), 0);
    assert_eq!(threads_named("mqlite-schedule"), 0);

    store
        .put(&Message::new("t", b"later".to_vec()).with_delay_level(1), 0)
        .unwrap();
    wait_for("mqlite-schedule", 1, "after a delayed message");
    store
        .put(&Message::new("t", b"later".to_vec()).with_delay_level(2), 0)
        .unwrap();
    assert_eq!(threads_named("mqlite-schedule"), 1, "one for the store");

    let tx = store
        .transaction_producer("g", |_| TransactionState::Unknown)
        .unwrap();
    wait_for("mqlite-transact", 1, "with a transaction producer");
    let again = store
        .transaction_producer("g2", |_| TransactionState::Unknown)
        .unwrap();
    assert_eq!(threads_named("mqlite-transact"), 1, "one for the store");
    tx.send_in_transaction(Message::new("t", b"half".to_vec()), |_| {
        TransactionState::Unknown
    })
    .unwrap();
    drop((tx, again));
    store.close().unwrap();
    assert_eq!(lazy_threads(), [0, 0, 0, 0, 0], "after the close");
    assert_eq!(threads_named("mqlite-flush"), 0);

    // The store holds a half message and delayed ones: their threads start at open.
    let store = Store::open(dir.path()).unwrap();
    wait_for("mqlite-transact", 1, "after a reopen with half messages");
    wait_for("mqlite-schedule", 1, "after a reopen with delayed messages");
    store.close().unwrap();
    assert_eq!(lazy_threads(), [0, 0, 0, 0, 0], "after the second close");
}
