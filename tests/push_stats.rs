//! Push consumer statistics (RocketMQ `ConsumerRunningInfo` / `ConsumeStatus`):
//!
//! - totals since the start and per topic (the retry topic is one) match what the listener
//!   acknowledged and failed;
//! - rates are the last minute's counts per second (count / 60 while the whole test fits in a
//!   minute); the average consume time reflects the listener's; fetches are counted as
//!   messages per second;
//! - while the listener holds messages, the cache and the lag show them, per queue and per
//!   topic; once all is consumed the lag is 0;
//! - orderly consumers count successes and suspends.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::wait_until;
use mqlite::{
    ConsumeFrom, ConsumeStatus, ConsumerStats, ConsumerTopicStats, Message, MessageQueue,
    OrderlyStatus,
};
use parking_lot::{Condvar, Mutex};

const WAIT: Duration = Duration::from_secs(20);

/// `rate` is `count` events of the last minute per second: count / 60 (less if the test ran
/// so slowly that some of them left the minute already).
fn assert_rate(what: &str, rate: f64, count: u64) {
    let most = count as f64 / 60.0;
    assert!(
        rate > 0.0 && rate <= most * 1.000_001,
        "{what}: {rate} per second for {count} events"
    );
}

fn topic<'a>(stats: &'a ConsumerStats, name: &str) -> &'a ConsumerTopicStats {
    stats
        .topic(name)
        .unwrap_or_else(|| panic!("no figures for {name}: {stats:?}"))
}

#[test]
fn counts_match_what_was_consumed_and_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .message_delay_level("5ms 5ms 5ms")
        .open()
        .unwrap();
    store.create_topic("t", 3).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            c.fetch_add(1, Ordering::SeqCst);
            // Work the listener's average time can see.
            std::thread::sleep(Duration::from_millis(3));
            let i: usize = String::from_utf8_lossy(&msgs[0].body()[1..])
                .parse()
                .unwrap();
            if i.is_multiple_of(3) && msgs[0].reconsume_times() == 0 {
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::Success
            }
        })
        .unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..30 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    wait_until("40 calls and everything committed", WAIT, || {
        calls.load(Ordering::SeqCst) == 40
            && store.consumer_lag("g", "t").unwrap() == 0
            && store.consumer_lag("g", "%RETRY%g").unwrap() == 0
    });
    let stats = consumer.stats();
    consumer.shutdown().unwrap();
    assert_eq!(
        (stats.consumed_ok, stats.consumed_failed),
        (30, 10),
        "{stats:?}"
    );
    assert_eq!(stats.consume_timeouts, 0);
    let names: Vec<&str> = stats.topics.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(names, ["%RETRY%g", "t"], "sorted, the retry topic included");

    let t = topic(&stats, "t");
    assert_eq!((t.consumed_ok, t.consumed_failed), (20, 10));
    assert_rate("t ok", t.consume_ok_tps, 20);
    assert_rate("t failed", t.consume_failed_tps, 10);
    assert_rate("t pulled", t.pull_tps, 30);
    assert!(
        t.consume_rt_ms >= 3.0 && t.consume_rt_ms < 10_000.0,
        "{}",
        t.consume_rt_ms
    );
    assert!(t.pull_rt_ms.is_finite() && t.pull_rt_ms >= 0.0);
    assert_eq!((t.cached_messages, t.cached_bytes, t.lag), (0, 0, 0));

    let r = topic(&stats, "%RETRY%g");
    assert_eq!((r.consumed_ok, r.consumed_failed), (10, 0));
    assert_rate("retry ok", r.consume_ok_tps, 10);
    assert_eq!(r.consume_failed_tps, 0.0);
    assert_rate("retry pulled", r.pull_tps, 10);

    let queues: BTreeSet<MessageQueue> = stats.queues.iter().map(|q| q.queue.clone()).collect();
    let want: BTreeSet<MessageQueue> = (0..3)
        .map(|q| MessageQueue::new("t", q))
        .chain([MessageQueue::new("%RETRY%g", 0)])
        .collect();
    assert_eq!(queues, want);
    for q in &stats.queues {
        assert_eq!(q.lag, 0, "{q:?}");
        assert_eq!(q.committed_offset, q.max_offset, "{q:?}");
        assert_eq!(q.max_offset, store.max_offset(&q.queue).unwrap());
    }
    store.close().unwrap();
}

#[test]
fn the_cache_and_the_lag_show_messages_held_by_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..10 {
        p.send(Message::new("t", format!("body-{i}"))).unwrap();
    }
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let (g, s) = (gate.clone(), started.clone());
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .threads(1)
        .start_concurrently(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + WAIT;
            let (lock, cv) = &*g;
            let mut open = lock.lock();
            while !*open && !cv.wait_until(&mut open, deadline).timed_out() {}
            ConsumeStatus::Success
        })
        .unwrap();
    let q = MessageQueue::new("t", 0);
    wait_until("all ten fetched, one with the listener", WAIT, || {
        started.load(Ordering::SeqCst) == 1
            && consumer
                .stats()
                .queues
                .iter()
                .any(|s| s.queue == q && s.cached_messages == 10)
    });
    let stats = consumer.stats();
    let qs = stats.queues.iter().find(|s| s.queue == q).unwrap();
    assert_eq!(qs.cached_bytes, 10 * 6, "ten bodies of six bytes");
    assert_eq!((qs.committed_offset, qs.max_offset, qs.lag), (0, 10, 10));
    let t = topic(&stats, "t");
    assert_eq!((t.cached_messages, t.cached_bytes, t.lag), (10, 60, 10));
    assert_eq!(t.consumed_ok, 0);
    assert_eq!(consumer.cached(), (10, 60));
    {
        let (lock, cv) = &*gate;
        *lock.lock() = true;
        cv.notify_all();
    }
    wait_until("all consumed", WAIT, || consumer.stats().consumed_ok == 10);
    wait_until("the lag gone", WAIT, || {
        topic(&consumer.stats(), "t").lag == 0
    });
    let t = topic(&consumer.stats(), "t").clone();
    assert_eq!((t.cached_messages, t.cached_bytes), (0, 0));
    consumer.shutdown().unwrap();
    store.close().unwrap();
}

#[test]
fn orderly_consumers_count_successes_and_suspends() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .suspend_current_queue_time(Duration::from_millis(10))
        .start_orderly(|msgs, _| {
            if msgs[0].reconsume_times() == 0 {
                OrderlyStatus::SuspendCurrentQueueAMoment
            } else {
                OrderlyStatus::Success
            }
        })
        .unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..3 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    wait_until("three consumed", WAIT, || consumer.stats().consumed_ok == 3);
    let stats = consumer.stats();
    consumer.shutdown().unwrap();
    assert_eq!(stats.consumed_failed, 3, "one suspend each: {stats:?}");
    let t = topic(&stats, "t");
    assert_eq!((t.consumed_ok, t.consumed_failed), (3, 3));
    assert_rate("orderly ok", t.consume_ok_tps, 3);
    store.close().unwrap();
}
