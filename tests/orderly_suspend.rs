//! Orderly suspend and local retry: `SuspendCurrentQueueAMoment` (or a panic in the listener)
//! puts the batch back in front of its queue and retries it in place after the suspend time
//! (consumer setting, default 1 s, or per batch through the context), counting reconsume
//! times; later messages of that queue wait, other queues keep flowing — even on a single
//! consume thread — and, with the default (unlimited) max, nothing goes to a retry or
//! dead-letter topic.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{
    ConsumeFrom, ConsumeOrderlyContext, Message, MessageExt, MessageQueue, OrderlyStatus,
    PushConsumer, PushConsumerBuilder, Store,
};
use parking_lot::Mutex;

const GROUP: &str = "suspender";
const TOPIC: &str = "s";

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One entry per message handed to the listener.
#[derive(Debug, Clone)]
struct Seen {
    queue: u32,
    offset: u64,
    reconsume_times: i32,
    batch: usize,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn setup(queues: u32) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, queues).unwrap();
    (dir, store)
}

fn builder(store: &Store) -> PushConsumerBuilder {
    store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
}

/// Starts an orderly consumer that logs every message, then answers with `decide`.
fn start(
    b: PushConsumerBuilder,
    log: &Log,
    decide: impl Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> OrderlyStatus + Send + Sync + 'static,
) -> PushConsumer {
    let log = log.clone();
    b.start_orderly(move |msgs, ctx| {
        let at = Instant::now();
        log.lock().extend(msgs.iter().map(|m| Seen {
            queue: m.queue_id(),
            offset: m.queue_offset(),
            reconsume_times: m.reconsume_times(),
            batch: msgs.len(),
            at,
        }));
        decide(msgs, ctx)
    })
    .unwrap()
}

fn send(store: &Store, queue: u32, n: usize) {
    let p = store.producer("p").unwrap();
    let q = MessageQueue::new(TOPIC, queue);
    for i in 0..n {
        p.send_to(Message::new(TOPIC, format!("{queue}-{i}")), &q)
            .unwrap();
    }
}

fn attempts(log: &Log, queue: u32, offset: u64) -> Vec<Seen> {
    log.lock()
        .iter()
        .filter(|s| s.queue == queue && s.offset == offset)
        .cloned()
        .collect()
}

fn offsets_of(log: &Log, queue: u32) -> Vec<u64> {
    log.lock()
        .iter()
        .filter(|s| s.queue == queue)
        .map(|s| s.offset)
        .collect()
}

/// Nothing of an orderly group went through its retry topic or a dead-letter topic.
fn assert_no_retry_or_dlq(store: &Store) {
    let retry = MessageQueue::new(format!("%RETRY%{GROUP}"), 0);
    assert_eq!(store.max_offset(&retry).unwrap_or(0), 0, "retry topic used");
    let dlq = format!("%DLQ%{GROUP}");
    assert!(
        store
            .queues(&dlq)
            .map(|qs| qs.iter().all(|q| store.max_offset(q).unwrap() == 0))
            .unwrap_or(true),
        "dead-letter topic used"
    );
}

/// Each retry came at least `min` and less than `max` after the one before, counting up.
fn assert_retries(tries: &[Seen], min: Duration, max: Duration) {
    for (i, t) in tries.iter().enumerate() {
        assert_eq!(
            t.reconsume_times, i as i32,
            "reconsume times of try {i}: {tries:?}"
        );
    }
    for w in tries.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= min && gap < max,
            "retry after {gap:?}, expected {min:?}..{max:?}"
        );
    }
}

#[test]
fn a_suspended_queue_blocks_only_itself_even_on_one_thread() {
    let (_dir, store) = setup(4);
    send(&store, 0, 1);
    let log: Log = Arc::default();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let consumer = start(
        builder(&store)
            .threads(1)
            .suspend_current_queue_time(Duration::from_millis(200)),
        &log,
        move |msgs, _| {
            if msgs[0].queue_id() == 0 && msgs[0].queue_offset() == 0 && !r.load(Ordering::SeqCst) {
                OrderlyStatus::SuspendCurrentQueueAMoment
            } else {
                OrderlyStatus::Success
            }
        },
    );
    wait_until(
        "the first try of the stuck message",
        Duration::from_secs(10),
        || !attempts(&log, 0, 0).is_empty(),
    );
    // Later messages of the stuck queue, and traffic on the others.
    send(&store, 0, 2);
    for q in 1..4 {
        send(&store, q, 10);
    }
    wait_until(
        "the other queues to be consumed",
        Duration::from_secs(10),
        || (1..4).all(|q| offsets_of(&log, q).len() == 10),
    );
    wait_until("a few local retries", Duration::from_secs(10), || {
        attempts(&log, 0, 0).len() >= 3
    });
    assert_eq!(offsets_of(&log, 0).iter().filter(|o| **o > 0).count(), 0);
    release.store(true, Ordering::SeqCst);
    wait_until(
        "the stuck queue to move on",
        Duration::from_secs(10),
        || offsets_of(&log, 0).ends_with(&[0, 1, 2]),
    );
    consumer.shutdown().unwrap();

    // Other queues in offset order, once each.
    for q in 1..4 {
        assert_eq!(
            offsets_of(&log, q),
            (0..10).collect::<Vec<u64>>(),
            "queue {q}"
        );
    }
    // The stuck message: several tries, counted, spaced by the suspend time, never passed.
    let tries = attempts(&log, 0, 0);
    assert_retries(&tries, Duration::from_millis(200), Duration::from_secs(5));
    let q0 = offsets_of(&log, 0);
    assert!(q0[..q0.len() - 2].iter().all(|o| *o == 0), "{q0:?}");
    assert_eq!(attempts(&log, 0, 1)[0].reconsume_times, 0);
    // The other queues moved while it was suspended.
    let first_try = tries[0].at;
    let success = tries.last().unwrap().at;
    let others_meanwhile = log
        .lock()
        .iter()
        .filter(|s| s.queue != 0 && s.at > first_try && s.at < success)
        .count();
    assert_eq!(others_meanwhile, 30);
    assert_no_retry_or_dlq(&store);
}

#[test]
fn the_default_suspend_time_is_one_second() {
    let (_dir, store) = setup(1);
    send(&store, 0, 2);
    let log: Log = Arc::default();
    let consumer = start(builder(&store), &log, |msgs, _| {
        if msgs[0].queue_offset() == 0 && msgs[0].reconsume_times() == 0 {
            OrderlyStatus::SuspendCurrentQueueAMoment
        } else {
            OrderlyStatus::Success
        }
    });
    wait_until("both messages", Duration::from_secs(10), || {
        offsets_of(&log, 0).len() == 3
    });
    consumer.shutdown().unwrap();
    assert_eq!(offsets_of(&log, 0), [0, 0, 1]);
    assert_retries(
        &attempts(&log, 0, 0),
        Duration::from_millis(1000),
        Duration::from_secs(6),
    );
}

#[test]
fn the_context_overrides_the_suspend_time_per_batch() {
    let (_dir, store) = setup(1);
    send(&store, 0, 2);
    let log: Log = Arc::default();
    let consumer = start(
        builder(&store).suspend_current_queue_time(Duration::from_millis(3000)),
        &log,
        |msgs, ctx| {
            assert_eq!(ctx.suspend_current_queue_time, None, "fresh context");
            if msgs[0].queue_offset() == 0 && msgs[0].reconsume_times() < 3 {
                ctx.suspend_current_queue_time = Some(Duration::from_millis(50));
                OrderlyStatus::SuspendCurrentQueueAMoment
            } else {
                OrderlyStatus::Success
            }
        },
    );
    wait_until("both messages", Duration::from_secs(10), || {
        offsets_of(&log, 0).len() == 5
    });
    consumer.shutdown().unwrap();
    assert_eq!(offsets_of(&log, 0), [0, 0, 0, 0, 1]);
    // 50 ms each, far from the consumer's 3 s.
    assert_retries(
        &attempts(&log, 0, 0),
        Duration::from_millis(50),
        Duration::from_millis(2000),
    );
}

#[test]
fn a_suspended_batch_comes_back_whole_and_in_order() {
    let (_dir, store) = setup(1);
    send(&store, 0, 7);
    let log: Log = Arc::default();
    let consumer = start(
        builder(&store)
            .consume_message_batch_max_size(3)
            .suspend_current_queue_time(Duration::from_millis(50)),
        &log,
        |msgs, _| {
            // The second batch fails twice.
            if msgs[0].queue_offset() == 3 && msgs[0].reconsume_times() < 2 {
                OrderlyStatus::SuspendCurrentQueueAMoment
            } else {
                OrderlyStatus::Success
            }
        },
    );
    wait_until("all messages", Duration::from_secs(10), || {
        offsets_of(&log, 0).last() == Some(&6)
    });
    consumer.shutdown().unwrap();
    let got: Vec<(u64, i32, usize)> = log
        .lock()
        .iter()
        .map(|s| (s.offset, s.reconsume_times, s.batch))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0, 3),
            (1, 0, 3),
            (2, 0, 3),
            (3, 0, 3),
            (4, 0, 3),
            (5, 0, 3),
            (3, 1, 3),
            (4, 1, 3),
            (5, 1, 3),
            (3, 2, 3),
            (4, 2, 3),
            (5, 2, 3),
            (6, 0, 1),
        ]
    );
    assert_eq!(
        store
            .pull_consumer(GROUP)
            .unwrap()
            .committed_offset(&MessageQueue::new(TOPIC, 0))
            .unwrap(),
        Some(7)
    );
}

#[test]
fn a_panic_in_the_listener_suspends_the_queue() {
    const PANIC: &str = "deliberate listener panic";
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&PANIC) {
            default_hook(info);
        }
    }));
    let (_dir, store) = setup(1);
    send(&store, 0, 3);
    let log: Log = Arc::default();
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    let consumer = start(
        builder(&store).suspend_current_queue_time(Duration::from_millis(100)),
        &log,
        move |msgs, _| {
            if msgs[0].queue_offset() == 1 && msgs[0].reconsume_times() < 2 {
                p.fetch_add(1, Ordering::SeqCst);
                std::panic::panic_any(PANIC);
            }
            OrderlyStatus::Success
        },
    );
    wait_until("all messages", Duration::from_secs(10), || {
        offsets_of(&log, 0).last() == Some(&2)
    });
    consumer.shutdown().unwrap();
    assert_eq!(panics.load(Ordering::SeqCst), 2);
    assert_eq!(offsets_of(&log, 0), [0, 1, 1, 1, 2]);
    assert_retries(
        &attempts(&log, 0, 1),
        Duration::from_millis(100),
        Duration::from_secs(5),
    );
    assert_no_retry_or_dlq(&store);
}

#[test]
fn orderly_retries_are_unlimited_by_default() {
    // A concurrent consumer would give up after 16 tries; an orderly one keeps going.
    const TRIES: i32 = 20;
    let (_dir, store) = setup(2);
    send(&store, 0, 2);
    send(&store, 1, 1);
    let log: Log = Arc::default();
    let consumer = start(
        builder(&store).suspend_current_queue_time(Duration::from_millis(10)),
        &log,
        |msgs, _| {
            let m = &msgs[0];
            if m.queue_id() == 0 && m.queue_offset() == 0 && m.reconsume_times() < TRIES {
                OrderlyStatus::SuspendCurrentQueueAMoment
            } else {
                OrderlyStatus::Success
            }
        },
    );
    wait_until(
        "the stubborn message to pass",
        Duration::from_secs(10),
        || offsets_of(&log, 0).last() == Some(&1),
    );
    consumer.shutdown().unwrap();
    let tries = attempts(&log, 0, 0);
    assert_eq!(tries.len(), TRIES as usize + 1);
    assert_retries(&tries, Duration::from_millis(10), Duration::from_secs(5));
    assert_eq!(offsets_of(&log, 1), [0]);
    assert_no_retry_or_dlq(&store);
    let committed: BTreeMap<u32, Option<u64>> = (0..2)
        .map(|q| {
            let c = store
                .pull_consumer(GROUP)
                .unwrap()
                .committed_offset(&MessageQueue::new(TOPIC, q))
                .unwrap();
            (q, c)
        })
        .collect();
    assert_eq!(committed, BTreeMap::from([(0, Some(2)), (1, Some(1))]));
}
