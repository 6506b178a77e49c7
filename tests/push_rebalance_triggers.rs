//! A topic's queue count raised (`store.create_topic` with more queues) must rebalance the
//! group at once, whenever it happens: also right after the consumers were started, and while
//! the machine is busy. Three spinning threads stand in for a noisy machine; in each of ten
//! rounds (the test stops early after three bad ones) two fresh consumers start and the count
//! goes from 4 to 10 right away. Every round must share out the 10 queues well before the
//! periodic rebalance, a minute away (the bound is generous so that a loaded machine cannot
//! fail it; how long each round took is printed), and messages in the new queues are consumed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageQueue, PushConsumer, Store};

fn start(
    store: &Store,
    group: &str,
    topic: &str,
    name: &str,
    n: &Arc<AtomicUsize>,
) -> PushConsumer {
    let n = n.clone();
    store
        .push_consumer(group)
        .subscribe(topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .rebalance_interval(Duration::from_secs(60))
        .start_concurrently(move |msgs| {
            n.fetch_add(msgs.len(), Ordering::SeqCst);
            ConsumeStatus::Success
        })
        .unwrap()
}

/// Well before the periodic rebalance (60 s): a rebalance by the queue-count change, however
/// loaded the machine, never by the timer.
const LIMIT: Duration = Duration::from_secs(20);

fn owned(cs: &[&PushConsumer], topic: &str) -> usize {
    cs.iter()
        .flat_map(|c| c.assigned_queues())
        .filter(|q| q.topic == topic)
        .count()
}

#[test]
fn queue_count_changes_rebalance_at_once_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut rounds = Vec::new();
    let p = store.producer("p").unwrap();
    for round in 0..10 {
        let (group, topic) = (format!("g{round}"), format!("t{round}"));
        store.create_topic(&topic, 4).unwrap();
        let consumed = Arc::new(AtomicUsize::new(0));
        let a = start(&store, &group, &topic, "a", &consumed);
        let b = start(&store, &group, &topic, "b", &consumed);
        store.create_topic(&topic, 10).unwrap();
        let t0 = Instant::now();
        while owned(&[&a, &b], &topic) != 10 && t0.elapsed() < LIMIT {
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = t0.elapsed();
        let n = owned(&[&a, &b], &topic);
        // The new queues are consumed (once shared out).
        if n == 10 {
            for q in 4..10 {
                p.send_to(
                    Message::new(topic.as_str(), "x"),
                    &MessageQueue::new(topic.as_str(), q),
                )
                .unwrap();
            }
            let t1 = Instant::now();
            while consumed.load(Ordering::SeqCst) < 6 && t1.elapsed() < LIMIT {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        rounds.push((round, n, took, consumed.load(Ordering::SeqCst)));
        a.shutdown().unwrap();
        b.shutdown().unwrap();
        // Enough evidence; keep the test short.
        let bad = rounds
            .iter()
            .filter(|(_, n, took, _)| *n != 10 || *took > LIMIT)
            .count();
        if bad >= 3 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    for r in &rounds {
        eprintln!(
            "round {}: {} queues owned after {:?}, {} consumed",
            r.0, r.1, r.2, r.3
        );
    }
    let bad: Vec<_> = rounds
        .iter()
        .filter(|(_, n, took, _)| *n != 10 || *took > LIMIT)
        .collect();
    assert!(
        bad.is_empty(),
        "rounds not rebalanced at once (round, queues owned, waited, consumed): {bad:?}"
    );
    assert!(
        rounds.iter().all(|r| r.3 == 6),
        "new queues consumed: {rounds:?}"
    );
}
