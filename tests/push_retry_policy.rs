//! Per-consumer retry policies (RocketMQ 5 client's `CustomizedBackoffRetryPolicy` and
//! `ExponentialBackoffRetryPolicy`):
//!
//! - each retry comes back no earlier than the policy's delay for its try (lower bounds only);
//! - each retry is a timer message (`rmq_sys_wheel_timer`, `TIMER_DELIVER_MS`, `REAL_TOPIC =
//!   %RETRY%{group}`) carrying RocketMQ's send-back properties (`RETRY_TOPIC`,
//!   `ORIGIN_MESSAGE_ID`, reconsume times + 1), and the copy in `%RETRY%{group}` is stored no
//!   earlier than its delivery time; the delay levels are not used;
//! - `max_reconsume_times` still sends the message to `%DLQ%{group}`;
//! - a listener's `delay_level_when_next_consume` overrides the policy;
//! - policies that cannot give a delay, and a zero consume timeout, are refused at start.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{read_queue, wait_until};
use mqlite::{
    ConsumeFrom, ConsumeStatus, CustomizedRetryPolicy, Error, ExponentialRetryPolicy, Message,
    MessageQueue, RetryPolicy, Store,
};
use parking_lot::Mutex;

const TIMER: &str = "rmq_sys_wheel_timer";
const SCHEDULE: &str = "SCHEDULE_TOPIC_XXXX";
const WAIT: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sends one message and fails its first `fails` deliveries under `policy`; returns the
/// store and when each delivery started, in order.
fn fail_times(
    dir: &std::path::Path,
    policy: RetryPolicy,
    fails: i32,
    max: Option<u32>,
) -> (Store, Vec<(i32, Instant)>, String) {
    let store = common::small(dir).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let tries: Arc<Mutex<Vec<(i32, Instant)>>> = Arc::default();
    let t = tries.clone();
    let mut b = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .retry_policy(policy);
    if let Some(max) = max {
        b = b.max_reconsume_times(max);
    }
    let consumer = b
        .start_concurrently(move |msgs| {
            let r = msgs[0].reconsume_times();
            t.lock().push((r, Instant::now()));
            if r < fails {
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::Success
            }
        })
        .unwrap();
    let sent = store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "job").with_property("user", "kept"))
        .unwrap();
    let deliveries = match max {
        Some(max) if (max as i32) < fails => max as usize + 1,
        _ => fails as usize + 1,
    };
    wait_until("the deliveries", WAIT, || tries.lock().len() >= deliveries);
    if max.is_some_and(|m| (m as i32) < fails) {
        wait_until("the dead letter", WAIT, || {
            store
                .max_offset(&MessageQueue::new("%DLQ%g", 0))
                .unwrap_or(0)
                == 1
        });
    } else {
        wait_until("the commits", WAIT, || {
            store.consumer_lag("g", "t").unwrap() == 0
                && store.consumer_lag("g", "%RETRY%g").unwrap() == 0
        });
    }
    consumer.shutdown().unwrap();
    let tries = tries.lock().clone();
    assert_eq!(tries.len(), deliveries, "one delivery per try: {tries:?}");
    (store, tries, sent.msg_id.to_string())
}

/// Checks that delivery k + 1 came no earlier than `delays[k]` after delivery k (less one tick
/// of the store's clock), and the timer and retry records of each try.
fn check_delays(store: &Store, tries: &[(i32, Instant)], delays: &[Duration], msg_id: &str) {
    for (k, pair) in tries.windows(2).enumerate() {
        assert_eq!((pair[0].0, pair[1].0), (k as i32, k as i32 + 1));
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap + ms(5) >= delays[k],
            "retry {} came {gap:?} after try {k}, before the policy's {:?}",
            k + 1,
            delays[k]
        );
    }
    let timers = read_queue(store, &MessageQueue::new(TIMER, 0));
    let retried = read_queue(store, &MessageQueue::new("%RETRY%g", 0));
    assert_eq!(timers.len(), delays.len());
    assert_eq!(retried.len(), delays.len());
    for (k, (t, r)) in timers.iter().zip(&retried).enumerate() {
        for m in [t, r] {
            assert_eq!(m.reconsume_times(), k as i32 + 1);
            assert_eq!(m.property("RETRY_TOPIC"), Some("t"));
            assert_eq!(m.property("ORIGIN_MESSAGE_ID"), Some(msg_id));
            assert_eq!(m.msg_id(), msg_id);
            assert_eq!(m.property("user"), Some("kept"));
            assert_eq!(m.body(), b"job");
        }
        assert_eq!(t.property("REAL_TOPIC"), Some("%RETRY%g"));
        let deliver_at: i64 = t.property("TIMER_DELIVER_MS").unwrap().parse().unwrap();
        // Due the delay after the send-back, which is read before the timer record's store
        // time (and not long before it).
        let asked = t.store_timestamp() + delays[k].as_millis() as i64;
        assert!(
            deliver_at <= asked && deliver_at + 5_000 >= asked,
            "try {k}: due {deliver_at}, stored {}, delay {:?}",
            t.store_timestamp(),
            delays[k]
        );
        assert!(
            r.store_timestamp() >= deliver_at,
            "try {k}: in the retry topic before its time"
        );
    }
    for q in 0..18 {
        assert_eq!(
            store
                .max_offset(&MessageQueue::new(SCHEDULE, q))
                .unwrap_or(0),
            0,
            "the delay levels are not used"
        );
    }
}

#[test]
fn a_customized_policy_delivers_retries_after_its_delays() {
    let dir = tempfile::tempdir().unwrap();
    let delays = [ms(300), ms(100), ms(200)];
    let policy = CustomizedRetryPolicy::new(delays).into();
    // Four failures: the fourth retry uses the last delay again.
    let (store, tries, id) = fail_times(dir.path(), policy, 4, None);
    check_delays(&store, &tries, &[ms(300), ms(100), ms(200), ms(200)], &id);
    store.close().unwrap();
}

#[test]
fn an_exponential_policy_delivers_retries_after_growing_delays() {
    let dir = tempfile::tempdir().unwrap();
    let policy = ExponentialRetryPolicy {
        initial: ms(50),
        max: ms(250),
        multiplier: 2.0,
    }
    .into();
    let (store, tries, id) = fail_times(dir.path(), policy, 4, None);
    check_delays(&store, &tries, &[ms(50), ms(100), ms(200), ms(250)], &id);
    store.close().unwrap();
}

#[test]
fn the_dlq_rule_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    let policy = CustomizedRetryPolicy::new([ms(20)]).into();
    let (store, tries, id) = fail_times(dir.path(), policy, i32::MAX, Some(2));
    assert_eq!(
        tries.iter().map(|t| t.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "max 2 reconsumes: three deliveries"
    );
    let dead = read_queue(&store, &MessageQueue::new("%DLQ%g", 0));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reconsume_times(), 2);
    assert_eq!(dead[0].property("ORIGIN_MESSAGE_ID"), Some(id.as_str()));
    assert_eq!(dead[0].property("TIMER_DELIVER_MS"), None, "not delayed");
    assert_eq!(
        store.max_offset(&MessageQueue::new("%RETRY%g", 0)).unwrap(),
        2
    );
    store.close().unwrap();
}

#[test]
fn the_listeners_delay_level_overrides_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .message_delay_level("5ms 5ms 5ms")
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let tries: Arc<Mutex<Vec<i32>>> = Arc::default();
    let t = tries.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        // An hour: if the policy applied, the retry would not come during the test.
        .retry_policy(CustomizedRetryPolicy::new([Duration::from_secs(3600)]))
        .start_concurrently_with_context(move |msgs, ctx| {
            t.lock().push(msgs[0].reconsume_times());
            if msgs[0].reconsume_times() == 0 {
                ctx.delay_level_when_next_consume = 2;
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::Success
            }
        })
        .unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "x"))
        .unwrap();
    wait_until("the retry", WAIT, || tries.lock().len() == 2);
    consumer.shutdown().unwrap();
    assert_eq!(*tries.lock(), [0, 1]);
    assert_eq!(
        store
            .max_offset(&MessageQueue::new(SCHEDULE, 1))
            .unwrap_or(0),
        1,
        "through delay level 2"
    );
    assert_eq!(
        store.max_offset(&MessageQueue::new(TIMER, 0)).unwrap_or(0),
        0,
        "not through a timer"
    );
    store.close().unwrap();
}

#[test]
fn bad_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = |policy: RetryPolicy, timeout: Duration| {
        store
            .push_consumer("g")
            .subscribe("t", "*")
            .retry_policy(policy)
            .consume_timeout(timeout)
            .start_concurrently(|_| ConsumeStatus::Success)
    };
    let minute = Duration::from_secs(60);
    let refused =
        |r: mqlite::Result<mqlite::PushConsumer>| matches!(r, Err(Error::InvalidConfig(_)));
    assert!(refused(start(
        CustomizedRetryPolicy::new([]).into(),
        minute
    )));
    let exp = |initial, max, multiplier| {
        RetryPolicy::from(ExponentialRetryPolicy {
            initial,
            max,
            multiplier,
        })
    };
    assert!(refused(start(exp(ms(1), ms(2), 0.5), minute)));
    assert!(refused(start(exp(ms(1), ms(2), f64::NAN), minute)));
    assert!(refused(start(exp(ms(5), ms(2), 2.0), minute)));
    assert!(refused(start(RetryPolicy::DelayLevels, Duration::ZERO)));
    start(exp(ms(1), ms(2), 2.0), minute)
        .unwrap()
        .shutdown()
        .unwrap();
    store.close().unwrap();
}
