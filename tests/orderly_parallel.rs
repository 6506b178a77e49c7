//! Orderly parallelism: different queues are consumed at the same time on the consumer's
//! threads (never more at once than it has threads), while each queue gets one batch at a
//! time, in offset order, in batches of `consume_message_batch_max_size`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, MessageQueue, OrderlyStatus, Store};
use parking_lot::Mutex;

const GROUP: &str = "parallel";
const TOPIC: &str = "p";

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn setup(queues: u32, per_queue: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, queues).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..per_queue {
        for q in 0..queues {
            p.send_to(
                Message::new(TOPIC, format!("{q}-{i}")),
                &MessageQueue::new(TOPIC, q),
            )
            .unwrap();
        }
    }
    (dir, store)
}

#[derive(Default)]
struct Meter {
    /// Listener calls running now, and the most seen at once.
    running: AtomicUsize,
    peak: AtomicUsize,
    /// Per queue: calls running now, and the most seen at once.
    per_queue: Mutex<BTreeMap<u32, (usize, usize)>>,
    /// Per queue, the offsets of each batch.
    batches: Mutex<BTreeMap<u32, Vec<Vec<u64>>>>,
}

impl Meter {
    fn enter(&self, q: u32, offsets: Vec<u64>) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let mut pq = self.per_queue.lock();
        let e = pq.entry(q).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        self.batches.lock().entry(q).or_default().push(offsets);
    }

    fn leave(&self, q: u32) {
        self.per_queue.lock().get_mut(&q).unwrap().0 -= 1;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn check_queues(&self, queues: u32, per_queue: u64, batch: u64) {
        let pq = self.per_queue.lock();
        for q in 0..queues {
            assert_eq!(pq[&q], (0, 1), "queue {q}: (running, most at once)");
        }
        let expect: Vec<Vec<u64>> = (0..per_queue)
            .step_by(batch as usize)
            .map(|s| (s..(s + batch).min(per_queue)).collect())
            .collect();
        for (q, b) in self.batches.lock().iter() {
            assert_eq!(b, &expect, "queue {q}");
        }
    }
}

#[test]
fn queues_run_in_parallel_one_batch_each_at_a_time() {
    let (_dir, store) = setup(4, 23);
    let meter = Arc::new(Meter::default());
    let m = meter.clone();
    let consumer = store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .threads(4)
        .consume_message_batch_max_size(5)
        .start_orderly(move |msgs, ctx| {
            let q = ctx.queue().queue_id;
            m.enter(q, msgs.iter().map(|x| x.queue_offset()).collect());
            if msgs[0].queue_offset() == 0 {
                // Hold every queue's first batch until all four are in the listener at once
                // (or give up after a while: the peak then tells).
                let deadline = Instant::now() + Duration::from_secs(10);
                while m.peak.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            m.leave(q);
            OrderlyStatus::Success
        })
        .unwrap();
    wait_until("all messages", Duration::from_secs(15), || {
        meter.batches.lock().values().flatten().flatten().count() == 4 * 23
    });
    consumer.shutdown().unwrap();
    assert_eq!(
        meter.peak.load(Ordering::SeqCst),
        4,
        "queues did not run in parallel"
    );
    meter.check_queues(4, 23, 5);
}

#[test]
fn no_more_queues_at_once_than_threads() {
    let (_dir, store) = setup(6, 10);
    let meter = Arc::new(Meter::default());
    let m = meter.clone();
    let consumer = store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .threads(2)
        .consume_message_batch_max_size(3)
        .start_orderly(move |msgs, ctx| {
            let q = ctx.queue().queue_id;
            m.enter(q, msgs.iter().map(|x| x.queue_offset()).collect());
            std::thread::sleep(Duration::from_millis(5));
            m.leave(q);
            OrderlyStatus::Success
        })
        .unwrap();
    wait_until("all messages", Duration::from_secs(15), || {
        meter.batches.lock().values().flatten().flatten().count() == 6 * 10
    });
    consumer.shutdown().unwrap();
    assert_eq!(meter.peak.load(Ordering::SeqCst), 2);
    meter.check_queues(6, 10, 3);
}
