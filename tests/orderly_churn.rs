//! Orderly consumption under churn: 10,000 messages over 1,000 order ids, sent with
//! `send_ordered` while up to three orderly consumers (different batch sizes) consume them and
//! consumers keep joining, shutting down and being dropped mid-stream. Checked: no queue is
//! ever in two listener calls at once, across consumers; batches are contiguous runs of one
//! queue no larger than the consumer's batch size; each order id's messages are first seen in
//! send order (repeats only as re-deliveries after a move); a consumer that keeps a queue never
//! skips or repeats; nothing is lost; and everything is committed at the end.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, OrderlyStatus, PushConsumer, Store};
use parking_lot::Mutex;

const GROUP: &str = "churners";
const TOPIC: &str = "orders";
const QUEUES: usize = 8;
const KEYS: u32 = 1000;
const PER_KEY: u32 = 10;
const TOTAL: usize = (KEYS * PER_KEY) as usize;

struct Shared {
    /// Listener calls running per queue, over all consumers.
    in_listener: Vec<AtomicUsize>,
    overlaps: AtomicUsize,
    problems: Mutex<Vec<String>>,
    /// Per queue, (consumer number, offset) in delivery order.
    deliveries: Vec<Mutex<Vec<(usize, u64)>>>,
    /// Per order id, the sequence numbers in delivery order.
    keys: Mutex<HashMap<u32, Vec<u32>>>,
    /// Per queue, the offsets seen at least once.
    seen: Vec<Mutex<BTreeSet<u64>>>,
    unique: AtomicUsize,
}

impl Shared {
    fn new() -> Self {
        Shared {
            in_listener: (0..QUEUES).map(|_| AtomicUsize::new(0)).collect(),
            overlaps: AtomicUsize::new(0),
            problems: Mutex::default(),
            deliveries: (0..QUEUES).map(|_| Mutex::default()).collect(),
            keys: Mutex::default(),
            seen: (0..QUEUES).map(|_| Mutex::default()).collect(),
            unique: AtomicUsize::new(0),
        }
    }

    fn problem(&self, p: String) {
        let mut ps = self.problems.lock();
        if ps.len() < 20 {
            ps.push(p);
        }
    }
}

/// Leaves the listener even if it panics.
struct InListener<'a>(&'a AtomicUsize);

impl Drop for InListener<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often consumers rebalance on their own and renew their locks.
#[derive(Debug, Clone, Copy)]
struct Timing {
    rebalance: Duration,
    lock: Duration,
}

const DEFAULT_TIMING: Timing = Timing {
    rebalance: Duration::from_secs(20),
    lock: Duration::from_secs(20),
};

fn start(store: &Store, no: usize, sh: &Arc<Shared>, timing: Timing) -> PushConsumer {
    let batch = [1, 4, 7][no % 3];
    let sh = sh.clone();
    store
        .push_consumer(GROUP)
        .rebalance_interval(timing.rebalance)
        .lock_interval(timing.lock)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(&format!("c{no}"))
        .threads(2)
        .consume_message_batch_max_size(batch)
        .pull_batch_size(16)
        .start_orderly(move |msgs, ctx| {
            let q = ctx.queue().clone();
            if q.topic != TOPIC {
                sh.problem(format!("c{no}: a batch from {q}"));
                return OrderlyStatus::Success;
            }
            let qi = q.queue_id as usize;
            if sh.in_listener[qi].fetch_add(1, Ordering::SeqCst) != 0 {
                sh.overlaps.fetch_add(1, Ordering::SeqCst);
                sh.problem(format!("c{no}: queue {qi} already in a listener"));
            }
            let _in = InListener(&sh.in_listener[qi]);
            let offsets: Vec<u64> = msgs.iter().map(|m| m.queue_offset()).collect();
            if msgs.is_empty()
                || msgs.len() > batch
                || msgs.iter().any(|m| m.queue_id() as usize != qi)
                || offsets.windows(2).any(|w| w[1] != w[0] + 1)
            {
                sh.problem(format!(
                    "c{no}: bad batch (max {batch}) of {q}: {offsets:?}"
                ));
            }
            sh.deliveries[qi]
                .lock()
                .extend(offsets.iter().map(|o| (no, *o)));
            {
                let mut keys = sh.keys.lock();
                for m in msgs {
                    let key: u32 = m.keys().next().unwrap()["ORDER-".len()..].parse().unwrap();
                    let seq: u32 = std::str::from_utf8(m.body()).unwrap().parse().unwrap();
                    keys.entry(key).or_default().push(seq);
                }
            }
            {
                let mut seen = sh.seen[qi].lock();
                for o in &offsets {
                    if seen.insert(*o) {
                        sh.unique.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            // Keep batches in flight for a moment, so that moves happen mid-batch.
            let pause = if offsets[0].is_multiple_of(29) { 3 } else { 1 };
            std::thread::sleep(Duration::from_millis(pause));
            OrderlyStatus::Success
        })
        .unwrap()
}

#[test]
fn order_holds_while_consumers_join_shut_down_and_drop() {
    churn(0x0DE5_0001, DEFAULT_TIMING);
}

/// The same with consumers that also rebalance on their own every few milliseconds (so a
/// leaving consumer is dropped from the group while it still finishes its batches) and renew
/// their locks constantly (so renewals race with releases).
#[test]
fn order_holds_with_constant_rebalancing_and_lock_renewal() {
    churn(
        0x0DE5_0002,
        Timing {
            rebalance: Duration::from_millis(15),
            lock: Duration::from_millis(10),
        },
    );
}

fn churn(default_seed: u64, timing: Timing) {
    let seed = common::seed(default_seed);
    let mut rng = common::Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, QUEUES as u32).unwrap();
    let sh = Arc::new(Shared::new());
    let began = Instant::now();

    let mut live: Vec<(usize, PushConsumer)> =
        (0..3).map(|n| (n, start(&store, n, &sh, timing))).collect();
    let mut next_no = 3;

    // Ten rounds; each sends one message of every order id, in a random key order.
    let producer = {
        let store = store.clone();
        let mut rng = common::Rng::new(seed ^ 0xFEED);
        std::thread::spawn(move || {
            let p = store.producer("p").unwrap();
            let mut keys: Vec<u32> = (0..KEYS).collect();
            for seq in 0..PER_KEY {
                for i in (1..keys.len()).rev() {
                    keys.swap(i, rng.range(0, i as u64 + 1) as usize);
                }
                for k in &keys {
                    let key = format!("ORDER-{k}");
                    p.send_ordered(
                        Message::new(TOPIC, seq.to_string()).with_keys([key.as_str()]),
                        &key,
                    )
                    .unwrap();
                }
            }
        })
    };

    // Churn, paced by consumption so it happens mid-stream.
    let mut events = Vec::new();
    for threshold in (1..=12).map(|i| i * 700) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sh.unique.load(Ordering::SeqCst) < threshold {
            assert!(
                Instant::now() < deadline,
                "stalled below {threshold}: {events:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let add = match live.len() {
            1 => true,
            3 => false,
            _ => rng.range(0, 2) == 0,
        };
        let at = sh.unique.load(Ordering::SeqCst);
        if add {
            live.push((next_no, start(&store, next_no, &sh, timing)));
            events.push(format!("{at}: start c{next_no}"));
            next_no += 1;
        } else {
            let (no, c) = live.remove(rng.range(0, live.len() as u64) as usize);
            if rng.range(0, 2) == 0 {
                c.shutdown().unwrap();
                events.push(format!("{at}: shutdown c{no}"));
            } else {
                drop(c);
                events.push(format!("{at}: drop c{no}"));
            }
        }
    }
    producer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sh.unique.load(Ordering::SeqCst) < TOTAL {
        assert!(
            Instant::now() < deadline,
            "only {} of {TOTAL} consumed; events {events:?}",
            sh.unique.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for (_, c) in live {
        c.shutdown().unwrap();
    }
    eprintln!("consumed in {:?}; events: {events:?}", began.elapsed());

    assert_eq!(
        sh.overlaps.load(Ordering::SeqCst),
        0,
        "a queue ran in two listener calls at once: {:?}",
        sh.problems.lock()
    );
    assert!(sh.problems.lock().is_empty(), "{:?}", sh.problems.lock());

    // Per order id: first seen in send order, all seen; repeats only of earlier messages.
    let keys = sh.keys.lock();
    assert_eq!(keys.len(), KEYS as usize);
    let mut repeats = 0;
    for (key, seqs) in keys.iter() {
        let mut next = 0;
        for s in seqs {
            assert!(*s <= next, "ORDER-{key}: {s} before {next}: {seqs:?}");
            if *s == next {
                next += 1;
            } else {
                repeats += 1;
            }
        }
        assert_eq!(next, PER_KEY, "ORDER-{key} lost messages: {seqs:?}");
    }

    // Per queue: a consumer keeping a queue sees a contiguous run; a new owner starts at or
    // before the first offset nobody has seen (re-delivery after a move, never a gap).
    let mut total = 0;
    for (q, d) in sh.deliveries.iter().enumerate() {
        let d = d.lock();
        let mut high: Option<u64> = None;
        for (i, (c, o)) in d.iter().enumerate() {
            let first_unseen = high.map_or(0, |h| h + 1);
            if i > 0 && d[i - 1].0 == *c {
                assert_eq!(
                    *o,
                    d[i - 1].1 + 1,
                    "queue {q}: c{c} skipped or repeated: {:?}",
                    &d[i.saturating_sub(5)..(i + 5).min(d.len())]
                );
            } else {
                assert!(
                    *o <= first_unseen,
                    "queue {q}: c{c} started at {o}, past {first_unseen}"
                );
            }
            high = Some(high.map_or(*o, |h| h.max(*o)));
        }
        let max = store
            .max_offset(&mqlite::MessageQueue::new(TOPIC, q as u32))
            .unwrap();
        assert_eq!(sh.seen[q].lock().len() as u64, max, "queue {q}");
        total += max;
    }
    assert_eq!(total as usize, TOTAL);
    eprintln!("re-deliveries after moves: {repeats}");
    assert_eq!(store.consumer_lag(GROUP, TOPIC).unwrap(), 0);
}
