//! Flow control of the push consumer (reference §13.4): with a slow or stuck listener the
//! consumer stops fetching once a queue's cache reaches a threshold, so `cached()` (messages and
//! body bytes) never exceeds the threshold by more than one pull batch per queue, however far
//! behind the consumer is, and fetching resumes when the backlog drains.
//!
//! - message threshold (`pull_threshold_for_queue`) with a slow listener;
//! - byte threshold (`pull_threshold_size_for_queue`) with 1 KiB bodies;
//! - offset span (`consume_concurrently_max_span`): with cached messages spread out (a tag
//!   filter), fetching stops at the span long before the count threshold;
//! - the defaults (1000 messages per queue) with a stuck listener on 4 queues far behind;
//! - after each, every message is consumed once and new messages keep flowing.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageQueue, PushConsumer, Store};
use parking_lot::{Condvar, Mutex};

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A gate listeners wait at until it opens (or 10 s pass, so a failing test cannot hang in
/// the consumer's shutdown).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut open = self.open.lock();
        while !*open {
            if self.cv.wait_until(&mut open, deadline).timed_out() {
                return;
            }
        }
    }

    fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
}

/// Samples `cached()` every millisecond until stopped; returns the largest values seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, u64)>,
}

impl Sampler {
    fn start(consumer: Arc<PushConsumer>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut n, mut b) = (0, 0);
            while !s.load(Ordering::SeqCst) {
                let (cn, cb) = consumer.cached();
                n = n.max(cn);
                b = b.max(cb);
                std::thread::sleep(Duration::from_millis(1));
            }
            (n, b)
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> (usize, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn fill(store: &Store, topic: &str, queue: u32, n: usize, body: usize) {
    let p = store.producer("p").unwrap();
    let q = MessageQueue::new(topic, queue);
    for i in 0..n {
        let mut b = format!("{queue}:{i}:").into_bytes();
        b.resize(body.max(b.len()), b'x');
        p.send_to(Message::new(topic, b), &q).unwrap();
    }
}

type Seen = Arc<Mutex<Vec<(u32, u64)>>>;

fn distinct(seen: &Seen) -> usize {
    seen.lock().iter().collect::<BTreeSet<_>>().len()
}

/// Sends a few more messages and checks they are consumed: fetching did not stay paused.
fn still_flowing(store: &Store, consumer: &PushConsumer, seen: &Seen, topic: &str, before: usize) {
    let p = store.producer("p").unwrap();
    for i in 0..10 {
        p.send(Message::new(topic, format!("late-{i}"))).unwrap();
    }
    wait_until("late messages", Duration::from_secs(5), || {
        distinct(seen) == before + 10
    });
    assert_eq!(consumer.cached(), (0, 0), "nothing left cached");
}

#[test]
fn a_slow_listener_holds_the_message_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    fill(&store, "t", 0, 800, 16);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let consumer = Arc::new(
        store
            .push_consumer("g")
            .subscribe("t", "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .pull_threshold_for_queue(100)
            .pull_batch_size(32)
            .threads(2)
            .start_concurrently(move |msgs| {
                std::thread::sleep(Duration::from_millis(1));
                s.lock()
                    .extend(msgs.iter().map(|m| (m.queue_id(), m.queue_offset())));
                ConsumeStatus::Success
            })
            .unwrap(),
    );
    let sampler = Sampler::start(consumer.clone());
    wait_until("800 consumed", Duration::from_secs(20), || {
        distinct(&seen) == 800
    });
    let (max_n, _) = sampler.finish();
    eprintln!("largest cache: {max_n} messages (threshold 100, pull batch 32)");
    assert!(max_n <= 100 + 32, "cached {max_n} messages");
    assert!(
        max_n >= 60,
        "the slow listener let the cache fill up ({max_n})"
    );
    assert_eq!(seen.lock().len(), 800, "each message once");
    still_flowing(&store, &consumer, &seen, "t", 800);
    Arc::into_inner(consumer).unwrap().shutdown().unwrap();
}

#[test]
fn a_stuck_listener_holds_the_byte_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    fill(&store, "t", 0, 300, 1024);
    let gate = Arc::new(Gate::default());
    let seen: Seen = Arc::default();
    let (g, s) = (gate.clone(), seen.clone());
    let consumer = Arc::new(
        store
            .push_consumer("g")
            .subscribe("t", "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .pull_threshold_size_for_queue(16 * 1024)
            .pull_batch_size(8)
            .start_concurrently(move |msgs| {
                g.wait();
                s.lock()
                    .extend(msgs.iter().map(|m| (m.queue_id(), m.queue_offset())));
                ConsumeStatus::Success
            })
            .unwrap(),
    );
    let sampler = Sampler::start(consumer.clone());
    // Fetching stops at the byte threshold: the cache settles.
    wait_until("the cache to fill", Duration::from_secs(5), || {
        consumer.cached().1 >= 16 * 1024
    });
    std::thread::sleep(Duration::from_millis(200));
    let (n, bytes) = consumer.cached();
    eprintln!("stuck: {n} messages, {bytes} bytes cached (threshold 16 KiB, pull batch 8)");
    assert!(bytes <= (16 + 8) * 1024, "{bytes} bytes cached");
    assert!(n <= 16 + 8);
    gate.open();
    wait_until("300 consumed", Duration::from_secs(10), || {
        distinct(&seen) == 300
    });
    let (_, max_b) = sampler.finish();
    assert!(max_b <= (16 + 8) * 1024, "at most {max_b} bytes cached");
    assert_eq!(seen.lock().len(), 300);
    still_flowing(&store, &consumer, &seen, "t", 300);
    Arc::into_inner(consumer).unwrap().shutdown().unwrap();
}

#[test]
fn the_offset_span_stops_fetching_before_the_count_does() {
    // Only every 10th message matches the subscription, so cached messages are 10 offsets
    // apart: a span of 100 is reached with about 11 cached, far below the count threshold.
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let p = store.producer("p").unwrap();
    let q = MessageQueue::new("t", 0);
    for i in 0..3000 {
        let tag = if i % 10 == 0 { "a" } else { "b" };
        p.send_to(Message::new("t", format!("m{i}")).with_tags(tag), &q)
            .unwrap();
    }
    let gate = Arc::new(Gate::default());
    let seen: Seen = Arc::default();
    let (g, s) = (gate.clone(), seen.clone());
    let consumer = Arc::new(
        store
            .push_consumer("g")
            .subscribe("t", "a")
            .consume_from(ConsumeFrom::FirstOffset)
            .consume_concurrently_max_span(100)
            .pull_batch_size(16)
            .start_concurrently(move |msgs| {
                g.wait();
                s.lock()
                    .extend(msgs.iter().map(|m| (m.queue_id(), m.queue_offset())));
                ConsumeStatus::Success
            })
            .unwrap(),
    );
    let sampler = Sampler::start(consumer.clone());
    wait_until("the cache to fill", Duration::from_secs(5), || {
        consumer.cached().0 >= 11
    });
    std::thread::sleep(Duration::from_millis(200));
    let (n, _) = consumer.cached();
    eprintln!("stuck: {n} messages cached 10 offsets apart (span 100, pull batch 16)");
    // At most 11 within the span, plus one more pull.
    assert!(n <= 11 + 16, "{n} cached: the span did not stop fetching");
    gate.open();
    wait_until("300 consumed", Duration::from_secs(10), || {
        distinct(&seen) == 300
    });
    let (max_n, _) = sampler.finish();
    assert!(max_n <= 11 + 16, "at most {max_n} cached");
    assert_eq!(seen.lock().len(), 300);
    assert!(seen.lock().iter().all(|&(_, o)| o % 10 == 0));
    Arc::into_inner(consumer).unwrap().shutdown().unwrap();
}

#[test]
fn default_thresholds_bound_memory_far_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 4).unwrap();
    for q in 0..4 {
        fill(&store, "t", q, 1500, 32);
    }
    let gate = Arc::new(Gate::default());
    let seen: Seen = Arc::default();
    let (g, s) = (gate.clone(), seen.clone());
    let consumer = Arc::new(
        store
            .push_consumer("g")
            .subscribe("t", "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .start_concurrently(move |msgs| {
                g.wait();
                s.lock()
                    .extend(msgs.iter().map(|m| (m.queue_id(), m.queue_offset())));
                ConsumeStatus::Success
            })
            .unwrap(),
    );
    let sampler = Sampler::start(consumer.clone());
    wait_until("the caches to fill", Duration::from_secs(10), || {
        consumer.cached().0 >= 4 * 1000
    });
    std::thread::sleep(Duration::from_millis(200));
    let (n, bytes) = consumer.cached();
    eprintln!("stuck: {n} messages, {bytes} bytes cached over 4 queues of 1500");
    assert!(n <= 4 * (1000 + 32), "{n} cached");
    gate.open();
    wait_until("6000 consumed", Duration::from_secs(10), || {
        distinct(&seen) == 6000
    });
    let (max_n, max_b) = sampler.finish();
    assert!(max_n <= 4 * (1000 + 32), "at most {max_n} cached");
    assert!(
        max_b <= 4 * (1000 + 32) * 32,
        "at most {max_b} bytes cached"
    );
    assert_eq!(seen.lock().len(), 6000);
    still_flowing(&store, &consumer, &seen, "t", 6000);
    Arc::into_inner(consumer).unwrap().shutdown().unwrap();
}
