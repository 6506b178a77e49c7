//! Orderly hand-off on rebalance: when a queue moves to a joining consumer, the old owner
//! finishes (and commits) the batch it has in flight before it unlocks the queue, and the new
//! owner starts only then, right after the last committed message — no overlap, no gap, no
//! duplicate. The same holds when the owner shuts down with a batch in flight; if another
//! consumer's periodic rebalance hands the queue out before the leaving one has finished, the
//! lock still keeps them apart (only the in-flight message may be seen again). An ignored test
//! (over 20 s) shows a batch longer than the rebalance's 20 s wait being overlapped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use mqlite::{ConsumeFrom, Message, MessageQueue, OrderlyStatus, PushConsumer, Store};
use parking_lot::Mutex;

const GROUP: &str = "handoff";
const TOPIC: &str = "h";
const TOTAL: u64 = 20;
const BLOCK_AT: u64 = 3;

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Default)]
struct Shared {
    /// Listener calls of the queue running right now, over all consumers.
    in_listener: AtomicUsize,
    overlaps: AtomicUsize,
    /// (consumer, offset) in the order the listener saw them.
    log: Mutex<Vec<(&'static str, u64)>>,
    /// Set when the blocked batch entered the listener.
    blocked: AtomicBool,
}

/// Starts a consumer named `name`; if `gate` is given, its listener blocks on offset
/// `BLOCK_AT` until the gate yields.
fn start(
    store: &Store,
    name: &'static str,
    sh: &Arc<Shared>,
    gate: Option<Receiver<()>>,
) -> PushConsumer {
    start_with(store, name, sh, gate, Duration::from_secs(20))
}

fn start_with(
    store: &Store,
    name: &'static str,
    sh: &Arc<Shared>,
    gate: Option<Receiver<()>>,
    rebalance_interval: Duration,
) -> PushConsumer {
    let sh = sh.clone();
    store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .threads(2)
        .rebalance_interval(rebalance_interval)
        .start_orderly(move |msgs, _ctx| {
            if sh.in_listener.fetch_add(1, Ordering::SeqCst) != 0 {
                sh.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            for m in msgs {
                sh.log.lock().push((name, m.queue_offset()));
                if m.queue_offset() == BLOCK_AT
                    && let Some(g) = &gate
                {
                    sh.blocked.store(true, Ordering::SeqCst);
                    // Released by the test (or after a long timeout, so a bug cannot hang).
                    let _ = g.recv_timeout(Duration::from_secs(40));
                }
            }
            sh.in_listener.fetch_sub(1, Ordering::SeqCst);
            OrderlyStatus::Success
        })
        .unwrap()
}

fn setup() -> (tempfile::TempDir, Store, MessageQueue) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 1).unwrap();
    let q = MessageQueue::new(TOPIC, 0);
    let p = store.producer("p").unwrap();
    for i in 0..TOTAL {
        p.send_to(Message::new(TOPIC, format!("m{i}")), &q).unwrap();
    }
    (dir, store, q)
}

/// Every offset exactly once, the old owner's a prefix, the new owner's the rest.
fn check_log(sh: &Shared, old: &str, new: &str) {
    let log = sh.log.lock().clone();
    let offsets: Vec<u64> = log.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets, (0..TOTAL).collect::<Vec<_>>(), "{log:?}");
    let split = log.iter().position(|(c, _)| *c == new).expect("new owner");
    assert!(split > BLOCK_AT as usize, "{log:?}");
    assert!(log[..split].iter().all(|(c, _)| *c == old), "{log:?}");
    assert!(log[split..].iter().all(|(c, _)| *c == new), "{log:?}");
    assert_eq!(
        sh.overlaps.load(Ordering::SeqCst),
        0,
        "two consumers ran the queue at once"
    );
}

#[test]
fn a_joining_consumer_waits_for_the_batch_in_flight() {
    let (_dir, store, q) = setup();
    let sh = Arc::new(Shared::default());
    let (release, gate) = bounded::<()>(1);
    // Ids sort as "…@a" < "…@z": with one queue, Averagely gives it to "a" once it joins.
    let z = start(&store, "z", &sh, Some(gate));
    wait_until(
        "z to block in the listener",
        Duration::from_secs(10),
        || sh.blocked.load(Ordering::SeqCst),
    );
    let joiner = {
        let store = store.clone();
        let sh = sh.clone();
        std::thread::spawn(move || start(&store, "a", &sh, None))
    };
    wait_until("a to join", Duration::from_secs(10), || {
        store.consumer_ids(GROUP).len() == 2
    });
    // While z's batch is in flight, z keeps the lock and a gets nothing.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        store
            .lock_queues(GROUP, "probe", std::slice::from_ref(&q))
            .unwrap()
            .is_empty()
    );
    assert!(sh.log.lock().iter().all(|(c, _)| *c == "z"));
    release.send(()).unwrap();
    let a = joiner.join().unwrap();
    wait_until("everything consumed", Duration::from_secs(10), || {
        sh.log.lock().len() as u64 >= TOTAL
    });
    assert_eq!(
        a.assigned_queues()
            .iter()
            .filter(|q| q.topic == TOPIC)
            .count(),
        1
    );
    assert!(z.assigned_queues().iter().all(|q| q.topic != TOPIC));
    z.shutdown().unwrap();
    a.shutdown().unwrap();
    check_log(&sh, "z", "a");
    assert_eq!(
        store
            .pull_consumer(GROUP)
            .unwrap()
            .committed_offset(&q)
            .unwrap(),
        Some(TOTAL)
    );
}

#[test]
fn a_leaving_consumer_finishes_its_batch_before_the_queue_moves() {
    let (_dir, store, q) = setup();
    let sh = Arc::new(Shared::default());
    let (release, gate) = bounded::<()>(1);
    // "a" owns the queue; "z" stands by.
    let a = start(&store, "a", &sh, Some(gate));
    let z = start(&store, "z", &sh, None);
    wait_until(
        "a to block in the listener",
        Duration::from_secs(10),
        || sh.blocked.load(Ordering::SeqCst),
    );
    let leaver = std::thread::spawn(move || a.shutdown());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !leaver.is_finished(),
        "shutdown did not wait for the batch in flight"
    );
    assert!(sh.log.lock().iter().all(|(c, _)| *c == "a"));
    release.send(()).unwrap();
    leaver.join().unwrap().unwrap();
    wait_until("everything consumed", Duration::from_secs(10), || {
        sh.log.lock().len() as u64 >= TOTAL
    });
    // Give a late duplicate a moment to show up before checking.
    std::thread::sleep(Duration::from_millis(100));
    z.shutdown().unwrap();
    check_log(&sh, "a", "z");
    assert_eq!(
        store
            .pull_consumer(GROUP)
            .unwrap()
            .committed_offset(&q)
            .unwrap(),
        Some(TOTAL)
    );
}

#[test]
fn a_periodic_rebalance_during_shutdown_never_overlaps_the_batch_in_flight() {
    // The standby rebalances every 20 ms while the leaving consumer's batch is still in
    // flight. A consumer that is shutting down keeps its queues until it has committed and
    // left, so the queue moves only after the batch finished: nothing runs twice at once, and
    // nothing is delivered again.
    let (_dir, store, q) = setup();
    let sh = Arc::new(Shared::default());
    let (release, gate) = bounded::<()>(1);
    let fast = Duration::from_millis(20);
    let a = start_with(&store, "a", &sh, Some(gate), fast);
    let z = start_with(&store, "z", &sh, None, fast);
    wait_until(
        "a to block in the listener",
        Duration::from_secs(10),
        || sh.blocked.load(Ordering::SeqCst),
    );
    let leaver = std::thread::spawn(move || a.shutdown());
    // Several of z's rebalances pass while a is leaving: the queue stays with a.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !z.assigned_queues().contains(&q),
        "moved before a committed"
    );
    assert!(
        sh.log.lock().iter().all(|(c, _)| *c == "a"),
        "{:?}",
        sh.log.lock()
    );
    release.send(()).unwrap();
    leaver.join().unwrap().unwrap();
    wait_until("z to take the queue over", Duration::from_secs(10), || {
        z.assigned_queues().contains(&q)
    });
    wait_until("everything consumed", Duration::from_secs(10), || {
        sh.log.lock().last().is_some_and(|(_, o)| *o == TOTAL - 1)
    });
    z.shutdown().unwrap();
    assert_eq!(
        sh.overlaps.load(Ordering::SeqCst),
        0,
        "two consumers ran the queue at once"
    );
    let log = sh.log.lock().clone();
    let offsets: Vec<u64> = log.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets, (0..TOTAL).collect::<Vec<_>>(), "{log:?}");
    assert_eq!(
        store
            .pull_consumer(GROUP)
            .unwrap()
            .committed_offset(&q)
            .unwrap(),
        Some(TOTAL)
    );
}

/// A batch in flight longer than the rebalance's wait: the old owner keeps the queue (and its
/// lock) until the batch is done; a later rebalance finishes the move.
#[test]
fn a_batch_in_flight_longer_than_the_release_wait_is_never_overlapped() {
    let (_dir, store, _q) = setup();
    let sh = Arc::new(Shared::default());
    let (release, gate) = bounded::<()>(1);
    let z = start(&store, "z", &sh, Some(gate));
    wait_until(
        "z to block in the listener",
        Duration::from_secs(10),
        || sh.blocked.load(Ordering::SeqCst),
    );
    let joiner = {
        let store = store.clone();
        let sh = sh.clone();
        std::thread::spawn(move || start(&store, "a", &sh, None))
    };
    // Keep z's batch in flight well past the rebalance's release wait (500 ms), unless a
    // gets in first.
    let until = Instant::now() + Duration::from_secs(3);
    let a_started = || sh.log.lock().iter().any(|(c, _)| *c == "a");
    while Instant::now() < until && !a_started() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let overlapped = a_started();
    let log_then = sh.log.lock().clone();
    release.send(()).unwrap();
    let a = joiner.join().unwrap();
    wait_until("everything consumed", Duration::from_secs(10), || {
        sh.log.lock().last().is_some_and(|(_, o)| *o == TOTAL - 1)
    });
    a.shutdown().unwrap();
    z.shutdown().unwrap();
    assert!(
        !overlapped,
        "a consumed the queue while z's batch (offset {BLOCK_AT}) was still in the listener: \
         {log_then:?}"
    );
    assert_eq!(sh.overlaps.load(Ordering::SeqCst), 0);
}
