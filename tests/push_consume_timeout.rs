//! The consume timeout of concurrent push consumers (RocketMQ `consumeTimeout`,
//! `cleanExpireMsg`):
//!
//! - a message whose listener call runs past the timeout is sent back for retry (delay level
//!   3 by default, the retry policy's delay otherwise) and leaves the process queue: it is
//!   delivered again and the committed offset moves past it while the first call still blocks;
//! - the late call's result is ignored: a late `Success` is not counted or acknowledged again,
//!   a late `ReconsumeLater` does not send the message back a second time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{read_queue, wait_until};
use mqlite::{
    ConsumeFrom, ConsumeStatus, CustomizedRetryPolicy, Message, MessageQueue, PushConsumerBuilder,
    Store,
};
use parking_lot::{Condvar, Mutex};

const SCHEDULE: &str = "SCHEDULE_TOPIC_XXXX";
const TIMER: &str = "rmq_sys_wheel_timer";
const WAIT: Duration = Duration::from_secs(20);

/// A gate the blocked listener call waits at (at most 20 s, so a failing test cannot hang in
/// the consumer's shutdown).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let deadline = Instant::now() + WAIT;
        let mut open = self.open.lock();
        while !*open && !self.cv.wait_until(&mut open, deadline).timed_out() {}
    }

    fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
}

fn count(store: &Store, topic: &str, queue: u32) -> u64 {
    store
        .max_offset(&MessageQueue::new(topic, queue))
        .unwrap_or(0)
}

fn builder(store: &Store, timeout: Duration, threads: usize) -> PushConsumerBuilder {
    store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .consume_timeout(timeout)
        .threads(threads)
}

#[test]
fn a_blocked_call_is_sent_back_and_the_offset_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .message_delay_level("5ms 5ms 5ms")
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..10 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    let gate = Arc::new(Gate::default());
    let returned = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(String, i32, Instant)>>> = Arc::default();
    let (g, r, s) = (gate.clone(), returned.clone(), seen.clone());
    let timeout = Duration::from_millis(200);
    let consumer = builder(&store, timeout, 2)
        .start_concurrently(move |msgs| {
            let m = &msgs[0];
            let body = String::from_utf8_lossy(m.body()).into_owned();
            s.lock()
                .push((body.clone(), m.reconsume_times(), Instant::now()));
            if body == "m0" && m.reconsume_times() == 0 {
                g.wait();
                r.store(true, Ordering::SeqCst);
            }
            ConsumeStatus::Success
        })
        .unwrap();
    let redelivered = || {
        seen.lock()
            .iter()
            .find(|(b, r, _)| b == "m0" && *r == 1)
            .map(|(_, _, at)| *at)
    };
    wait_until("m0 delivered again", WAIT, || redelivered().is_some());
    let q = MessageQueue::new("t", 0);
    let pc = store.pull_consumer("g").unwrap();
    wait_until("the committed offset past m0", WAIT, || {
        pc.committed_offset(&q).unwrap() == Some(10)
    });
    assert!(
        !returned.load(Ordering::SeqCst),
        "all this happened while the first call still blocked"
    );
    let first = seen
        .lock()
        .iter()
        .find(|(b, r, _)| b == "m0" && *r == 0)
        .map(|(_, _, at)| *at)
        .unwrap();
    let gap = redelivered().unwrap() - first;
    assert!(gap >= timeout, "sent back {gap:?} after the call started");
    let stats = consumer.stats();
    assert_eq!(stats.consume_timeouts, 1, "{stats:?}");
    let t = stats.topic("t").unwrap();
    assert_eq!((t.consumed_ok, t.consumed_failed), (9, 1));
    assert_eq!(t.lag, 0);
    // Sent back as RocketMQ's cleanExpireMsg does: delay level 3.
    assert_eq!(count(&store, SCHEDULE, 2), 1);
    let scheduled = read_queue(&store, &MessageQueue::new(SCHEDULE, 2));
    assert_eq!(scheduled[0].property("DELAY"), Some("3"));
    assert_eq!(scheduled[0].reconsume_times(), 1);
    assert_eq!(scheduled[0].property("RETRY_TOPIC"), Some("t"));

    gate.open();
    // Shutdown waits for the late call and its (ignored) result.
    consumer.shutdown().unwrap();
    assert!(returned.load(Ordering::SeqCst));
    assert_eq!(count(&store, "%RETRY%g", 0), 1, "sent back once");
    assert_eq!(pc.committed_offset(&q).unwrap(), Some(10));
    assert_eq!(store.consumer_lag("g", "%RETRY%g").unwrap(), 0);
    let m0 = seen.lock().iter().filter(|(b, _, _)| b == "m0").count();
    assert_eq!(m0, 2, "m0: the blocked call and one retry");
    store.close().unwrap();
}

/// One consume thread: the retry of the timed-out message can only run once the late call
/// has returned and its result has been dealt with, so seeing the retry consumed is the
/// moment to check that the late result changed nothing.
fn late_result_is_ignored(late: ConsumeStatus) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let gate = Arc::new(Gate::default());
    let tries: Arc<Mutex<Vec<i32>>> = Arc::default();
    let (g, t) = (gate.clone(), tries.clone());
    let consumer = builder(&store, Duration::from_millis(100), 1)
        .retry_policy(CustomizedRetryPolicy::new([Duration::from_millis(20)]))
        .start_concurrently(move |msgs| {
            let r = msgs[0].reconsume_times();
            t.lock().push(r);
            if r == 0 {
                g.wait();
                return late;
            }
            ConsumeStatus::Success
        })
        .unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "slow"))
        .unwrap();
    let q = MessageQueue::new("t", 0);
    let pc = store.pull_consumer("g").unwrap();
    wait_until("the commit past the blocked message", WAIT, || {
        pc.committed_offset(&q).unwrap() == Some(1)
    });
    wait_until("the retry stored", WAIT, || {
        count(&store, "%RETRY%g", 0) == 1
    });
    assert_eq!(*tries.lock(), [0], "the retry waits for the only thread");
    gate.open();
    wait_until("the retry consumed", WAIT, || {
        store.consumer_lag("g", "%RETRY%g").unwrap() == 0 && tries.lock().len() == 2
    });
    let stats = consumer.stats();
    consumer.shutdown().unwrap();
    assert_eq!(*tries.lock(), [0, 1]);
    assert_eq!(count(&store, "%RETRY%g", 0), 1, "sent back once");
    assert_eq!(count(&store, "%DLQ%g", 0), 0);
    // Sent back after the retry policy's delay: a timer message, not a delay level.
    assert_eq!(count(&store, TIMER, 0), 1);
    assert_eq!(count(&store, SCHEDULE, 2), 0);
    assert_eq!(pc.committed_offset(&q).unwrap(), Some(1));
    assert_eq!(stats.consume_timeouts, 1);
    assert_eq!(
        (stats.consumed_ok, stats.consumed_failed),
        (1, 1),
        "the retry's success and the timeout; the late {late:?} is not counted: {stats:?}"
    );
    store.close().unwrap();
}

#[test]
fn a_late_success_is_not_acknowledged_again() {
    late_result_is_ignored(ConsumeStatus::Success);
}

#[test]
fn a_late_reconsume_later_is_not_sent_back_again() {
    late_result_is_ignored(ConsumeStatus::ReconsumeLater);
}
