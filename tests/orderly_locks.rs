//! Orderly consumption and the store's queue locks: an orderly consumer consumes a queue only
//! while it holds the queue's lock, so queues locked by a holder that died are left alone until
//! the lease lapses and then taken over; a live consumer keeps renewing its leases (so nobody
//! else can take its queues), stops consuming a queue whose lock it lost, and releases its
//! locks when it shuts down.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, MessageQueue, OrderlyStatus, PushConsumer, Store};
use parking_lot::Mutex;

const GROUP: &str = "locked-group";
const TOPIC: &str = "locked";

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One listener call per message: (queue id, queue offset, when).
type Log = Arc<Mutex<Vec<(u32, u64, Instant)>>>;

fn start(store: &Store, log: &Log, lock_interval: Option<Duration>) -> PushConsumer {
    let log = log.clone();
    let mut b = store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .threads(2);
    if let Some(d) = lock_interval {
        b = b.lock_interval(d);
    }
    b.start_orderly(move |msgs, ctx| {
        let now = Instant::now();
        let mut l = log.lock();
        for m in msgs {
            assert_eq!(m.queue_id(), ctx.queue().queue_id);
            l.push((m.queue_id(), m.queue_offset(), now));
        }
        OrderlyStatus::Success
    })
    .unwrap()
}

fn send_to_all(store: &Store, queues: &[MessageQueue], per_queue: u64) {
    let p = store.producer("p").unwrap();
    for i in 0..per_queue {
        for q in queues {
            p.send_to(Message::new(TOPIC, format!("{}-{i}", q.queue_id)), q)
                .unwrap();
        }
    }
}

fn per_queue(log: &Log) -> BTreeMap<u32, Vec<u64>> {
    let mut m: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (q, off, _) in log.lock().iter() {
        m.entry(*q).or_default().push(*off);
    }
    m
}

#[test]
fn queues_of_a_dead_holder_are_taken_over_when_the_lease_lapses() {
    let lease = Duration::from_millis(2500);
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .queue_lock_lease(lease)
        .open()
        .unwrap();
    store.create_topic(TOPIC, 4).unwrap();
    let queues = store.queues(TOPIC).unwrap();
    let (dead, free) = queues.split_at(2);
    send_to_all(&store, &queues, 5);

    // A consumer of the group took these locks and died without unlocking.
    let locked_at = Instant::now();
    assert_eq!(store.lock_queues(GROUP, "dead-holder", dead).unwrap(), dead);

    let log: Log = Arc::default();
    let consumer = start(&store, &log, None);
    assert_eq!(
        consumer.assigned_queues().len(),
        5,
        "4 queues + the retry queue"
    );

    // The free queues flow at once...
    wait_until(
        "the free queues to be consumed",
        Duration::from_secs(10),
        || log.lock().iter().filter(|(q, _, _)| *q >= 2).count() == 10,
    );
    // ... and the dead holder's queues only once its lease lapsed, then entirely.
    wait_until(
        "the dead holder's queues to be taken over",
        Duration::from_secs(10),
        || log.lock().len() == 20,
    );
    let log_now = log.lock().clone();
    for (q, off, at) in &log_now {
        if *q < 2 {
            assert!(
                at.duration_since(locked_at) >= lease,
                "queue {q} offset {off} consumed {:?} after a dead holder locked it (lease {lease:?})",
                at.duration_since(locked_at)
            );
        }
    }
    let first_free = log_now
        .iter()
        .filter(|(q, _, _)| *q >= 2)
        .map(|(_, _, at)| *at)
        .min()
        .unwrap();
    assert!(
        first_free.duration_since(locked_at) < lease,
        "the unlocked queues waited for the dead holder's lease too"
    );
    for (q, offs) in per_queue(&log) {
        assert_eq!(offs, (0..5).collect::<Vec<u64>>(), "queue {q}");
    }

    // The consumer holds every queue now: the dead holder cannot come back.
    assert!(
        store
            .lock_queues(GROUP, "dead-holder", dead)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .lock_queues(GROUP, "dead-holder", free)
            .unwrap()
            .is_empty()
    );
    // Shutting down releases them at once, without waiting for the lease.
    consumer.shutdown().unwrap();
    assert_eq!(
        store.lock_queues(GROUP, "dead-holder", &queues).unwrap(),
        queues
    );
    // Committed where it stopped.
    let pc = store.pull_consumer(GROUP).unwrap();
    for q in &queues {
        assert_eq!(pc.committed_offset(q).unwrap(), Some(5), "{q}");
    }
}

#[test]
fn a_queue_locked_by_a_live_holder_is_never_consumed() {
    // The lease is long: the foreign holder stays live for the whole test.
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 2).unwrap();
    let queues = store.queues(TOPIC).unwrap();
    assert_eq!(
        store
            .lock_queues(GROUP, "other-process", &queues[..1])
            .unwrap(),
        &queues[..1]
    );
    send_to_all(&store, &queues, 20);
    let log: Log = Arc::default();
    let consumer = start(&store, &log, None);
    wait_until("queue 1 to be consumed", Duration::from_secs(10), || {
        log.lock().len() >= 20
    });
    // More messages for both queues: only queue 1 moves.
    send_to_all(&store, &queues, 5);
    wait_until(
        "the new messages of queue 1",
        Duration::from_secs(10),
        || log.lock().len() >= 25,
    );
    let seen = per_queue(&log);
    assert!(!seen.contains_key(&0), "queue 0 consumed without its lock");
    assert_eq!(seen[&1], (0..25).collect::<Vec<u64>>());

    // The holder lets go: the consumer picks queue 0 up (it retries locking).
    store
        .unlock_queues(GROUP, "other-process", &queues[..1])
        .unwrap();
    wait_until("queue 0 after the unlock", Duration::from_secs(10), || {
        log.lock().len() == 50
    });
    assert_eq!(per_queue(&log)[&0], (0..25).collect::<Vec<u64>>());
    consumer.shutdown().unwrap();
}

#[test]
fn a_live_consumer_keeps_renewing_its_leases() {
    // A short lease and a lock interval well below it: the consumer renews in time, so the
    // store never sees its locks lapse, even while it has nothing to consume.
    let lease = Duration::from_millis(400);
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .queue_lock_lease(lease)
        .open()
        .unwrap();
    store.create_topic(TOPIC, 2).unwrap();
    let queues = store.queues(TOPIC).unwrap();
    let log: Log = Arc::default();
    let consumer = start(&store, &log, Some(Duration::from_millis(50)));
    // Proof that it holds both locks: it consumed from both queues.
    send_to_all(&store, &queues, 1);
    wait_until("one message per queue", Duration::from_secs(10), || {
        log.lock().len() == 2
    });
    // Idle now. Someone else keeps trying to take the queues for several leases.
    let until = Instant::now() + lease * 5;
    let mut tries = 0;
    while Instant::now() < until {
        let stolen = store.lock_queues(GROUP, "intruder", &queues).unwrap();
        assert!(
            stolen.is_empty(),
            "after {tries} tries, an intruder took {stolen:?} from a live consumer \
             (lease {lease:?}, lock_interval 50 ms)"
        );
        tries += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still consuming both queues.
    send_to_all(&store, &queues, 1);
    wait_until(
        "one more message per queue",
        Duration::from_secs(10),
        || log.lock().len() == 4,
    );
    consumer.shutdown().unwrap();
}

#[test]
fn a_consumer_that_loses_its_lock_stops_consuming_the_queue() {
    // The consumer trusts a lock for half the lease after its last renewal; a failed renewal
    // (someone else holds the queue now) stops it at the latest then.
    let lease = Duration::from_millis(1000);
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .queue_lock_lease(lease)
        .open()
        .unwrap();
    store.create_topic(TOPIC, 2).unwrap();
    let queues = store.queues(TOPIC).unwrap();
    let log: Log = Arc::default();
    let consumer = start(&store, &log, Some(Duration::from_millis(50)));
    send_to_all(&store, &queues, 1);
    wait_until("one message per queue", Duration::from_secs(10), || {
        log.lock().len() == 2
    });
    // Take queue 0 away behind the consumer's back.
    store
        .unlock_queues(GROUP, consumer.id(), &queues[..1])
        .unwrap();
    assert_eq!(
        store.lock_queues(GROUP, "intruder", &queues[..1]).unwrap(),
        &queues[..1]
    );
    let stolen_at = Instant::now();
    // Keep the intruder's lease fresh while the consumer's trust in its own runs out.
    while stolen_at.elapsed() < lease / 2 + Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            store.lock_queues(GROUP, "intruder", &queues[..1]).unwrap(),
            &queues[..1]
        );
    }
    send_to_all(&store, &queues, 3);
    wait_until("queue 1 to keep flowing", Duration::from_secs(10), || {
        per_queue(&log)[&1].len() == 4
    });
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        store.lock_queues(GROUP, "intruder", &queues[..1]).unwrap();
    }
    assert_eq!(
        per_queue(&log)[&0],
        [0],
        "queue 0 consumed while the intruder held it"
    );
    // The intruder lets go: the consumer locks queue 0 again and catches up, in order.
    store
        .unlock_queues(GROUP, "intruder", &queues[..1])
        .unwrap();
    wait_until("queue 0 after the unlock", Duration::from_secs(10), || {
        per_queue(&log)[&0].len() == 4
    });
    assert_eq!(per_queue(&log)[&0], [0, 1, 2, 3]);
    consumer.shutdown().unwrap();
}
