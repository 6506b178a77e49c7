//! The concurrent listener's context (RocketMQ `ConsumeConcurrentlyContext`):
//!
//! - `ack_index` on `Success` splits a batch: the messages up to it are acknowledged and never
//!   delivered again, the ones after it come back through `%RETRY%{group}` with
//!   `reconsume_times` 1; `-1` acknowledges none; `ReconsumeLater` retries the whole batch
//!   whatever `ack_index` says;
//! - `delay_level_when_next_consume = -1` sends the failed messages to `%DLQ%{group}` at once;
//!   `n > 0` schedules the retry at delay level `n` (capped at the table's last level);
//! - broadcasting consumers drop the messages after `ack_index`;
//! - `ctx.queue()` names the queue of the batch; `start_concurrently` still works as before.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{read_queue, wait_until};
use mqlite::{
    ConsumeConcurrentlyContext, ConsumeFrom, ConsumeStatus, Message, MessageExt, MessageModel,
    MessageQueue, Store,
};
use parking_lot::Mutex;

const SCHEDULE: &str = "SCHEDULE_TOPIC_XXXX";
const WAIT: Duration = Duration::from_secs(20);

/// One delivery: body, reconsume times, the queue the context named, when.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    reconsume_times: i32,
    ctx_queue: MessageQueue,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, msgs: &[MessageExt], ctx: &ConsumeConcurrentlyContext) {
    let now = Instant::now();
    log.lock().extend(msgs.iter().map(|m| Seen {
        body: String::from_utf8_lossy(m.body()).into_owned(),
        reconsume_times: m.reconsume_times(),
        ctx_queue: ctx.queue().clone(),
        at: now,
    }));
}

fn count(store: &Store, topic: &str, queue: u32) -> u64 {
    store
        .max_offset(&MessageQueue::new(topic, queue))
        .unwrap_or(0)
}

/// A store with a short delay table, topic `t` (one queue) holding `m0..m{n-1}`, sent before
/// the consumer starts so that its first fetch takes them all into one batch.
fn store_with(dir: &std::path::Path, levels: &str, n: usize) -> Store {
    let store = common::small(dir)
        .message_delay_level(levels)
        .open()
        .unwrap();
    store.create_topic("t", 1).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..n {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    store
}

fn deliveries(log: &Log) -> BTreeMap<String, Vec<i32>> {
    let mut per: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for s in log.lock().iter() {
        per.entry(s.body.clone())
            .or_default()
            .push(s.reconsume_times);
    }
    per
}

/// Runs a batch of ten through a listener that answers the first delivery of the batch with
/// `status` and `ack_index`, and every retry with `Success`; returns the deliveries per body.
fn split_batch(status: ConsumeStatus, ack_index: i32) -> (BTreeMap<String, Vec<i32>>, Log) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "10ms 10ms 10ms", 10);
    let log: Log = Arc::default();
    let l = log.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .consume_message_batch_max_size(10)
        .start_concurrently_with_context(move |msgs, ctx| {
            record(&l, msgs, ctx);
            if msgs[0].reconsume_times() == 0 {
                ctx.ack_index = ack_index;
                status
            } else {
                ConsumeStatus::Success
            }
        })
        .unwrap();
    let failed = match status {
        ConsumeStatus::Success => (9 - ack_index.clamp(-1, 9)) as u64,
        ConsumeStatus::ReconsumeLater => 10,
    };
    wait_until("the retries consumed", WAIT, || {
        log.lock().len() as u64 == 10 + failed
    });
    wait_until("everything committed", WAIT, || {
        store.consumer_lag("g", "t").unwrap() == 0
            && store.consumer_lag("g", "%RETRY%g").unwrap() == 0
    });
    let first: Vec<usize> = {
        let log = log.lock();
        let mut sizes = BTreeMap::new();
        for s in log.iter().filter(|s| s.reconsume_times == 0) {
            *sizes.entry(s.at).or_insert(0) += 1;
        }
        sizes.into_values().collect()
    };
    assert_eq!(first, [10], "one pull of ten, one batch");
    // Exactly the failed ones were sent back: nothing else can come again.
    assert_eq!(count(&store, "%RETRY%g", 0), failed);
    assert_eq!(count(&store, "%DLQ%g", 0), 0);
    let stats = consumer.stats();
    assert_eq!(stats.consumed_ok, 10, "{stats:?}");
    assert_eq!(stats.consumed_failed, failed);
    consumer.shutdown().unwrap();
    // The retried copies carry what RocketMQ's send-back writes.
    for r in read_queue(&store, &MessageQueue::new("%RETRY%g", 0)) {
        assert_eq!(r.reconsume_times(), 1);
        assert_eq!(r.property("RETRY_TOPIC"), Some("t"));
        assert_eq!(
            r.property("ORIGIN_MESSAGE_ID"),
            Some(r.msg_id().as_str()),
            "the msgId is kept"
        );
    }
    store.close().unwrap();
    (deliveries(&log), log)
}

#[test]
fn ack_index_splits_a_batch() {
    let (per, log) = split_batch(ConsumeStatus::Success, 3);
    for i in 0..10 {
        let want = if i <= 3 { vec![0] } else { vec![0, 1] };
        assert_eq!(per[&format!("m{i}")], want, "m{i}");
    }
    // The context names the queue of each batch: the topic's, then the retry queue.
    for s in log.lock().iter() {
        let want = if s.reconsume_times == 0 {
            MessageQueue::new("t", 0)
        } else {
            MessageQueue::new("%RETRY%g", 0)
        };
        assert_eq!(s.ctx_queue, want);
    }
}

#[test]
fn ack_index_past_the_batch_acknowledges_all_and_minus_one_none() {
    let (per, _) = split_batch(ConsumeStatus::Success, 1000);
    assert!(per.values().all(|d| d == &vec![0]), "{per:?}");
    let (per, _) = split_batch(ConsumeStatus::Success, -1);
    assert!(per.values().all(|d| d == &vec![0, 1]), "{per:?}");
    // Below -1 counts as -1.
    let (per, _) = split_batch(ConsumeStatus::Success, -7);
    assert!(per.values().all(|d| d == &vec![0, 1]), "{per:?}");
}

#[test]
fn reconsume_later_retries_the_whole_batch_whatever_the_ack_index() {
    let (per, _) = split_batch(ConsumeStatus::ReconsumeLater, 5);
    assert!(per.values().all(|d| d == &vec![0, 1]), "{per:?}");
}

#[test]
fn delay_level_minus_one_goes_to_the_dlq_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Long delays: a retry, if there were one, would not come back during the test.
    let store = store_with(dir.path(), "1h 1h 1h", 3);
    let log: Log = Arc::default();
    let l = log.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .consume_message_batch_max_size(3)
        .start_concurrently_with_context(move |msgs, ctx| {
            record(&l, msgs, ctx);
            // m0 is consumed, m1 and m2 are hopeless.
            ctx.ack_index = 0;
            ctx.delay_level_when_next_consume = -1;
            ConsumeStatus::Success
        })
        .unwrap();
    let dlq = MessageQueue::new("%DLQ%g", 0);
    wait_until("two dead letters", WAIT, || {
        store.max_offset(&dlq).unwrap_or(0) == 2
    });
    wait_until("the commit", WAIT, || {
        store.consumer_lag("g", "t").unwrap() == 0
    });
    consumer.shutdown().unwrap();
    assert_eq!(log.lock().len(), 3, "delivered once each");
    assert_eq!(count(&store, "%RETRY%g", 0), 0, "no retry");
    for q in 0..3 {
        assert_eq!(count(&store, SCHEDULE, q), 0, "nothing scheduled");
    }
    let dead = read_queue(&store, &dlq);
    let bodies: Vec<&[u8]> = dead.iter().map(|m| m.body()).collect();
    assert_eq!(bodies, [b"m1", b"m2"]);
    for d in &dead {
        assert_eq!(d.reconsume_times(), 0, "one try, no retry counted");
        assert_eq!(d.property("RETRY_TOPIC"), Some("t"));
        assert_eq!(d.property("ORIGIN_MESSAGE_ID"), Some(d.msg_id().as_str()));
        assert_eq!(d.property("DELAY"), None);
    }
    store.close().unwrap();
}

#[test]
fn a_given_delay_level_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    // Level 3 (the store's choice for a first retry) would come back at once; the listener
    // asks for level 4, 400 ms.
    let store = store_with(dir.path(), "1ms 1ms 1ms 400ms 1ms", 1);
    let log: Log = Arc::default();
    let l = log.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently_with_context(move |msgs, ctx| {
            record(&l, msgs, ctx);
            match msgs[0].reconsume_times() {
                0 => {
                    ctx.delay_level_when_next_consume = 4;
                    ConsumeStatus::ReconsumeLater
                }
                1 => {
                    // Past the table: capped at its last level (5, 1 ms).
                    ctx.delay_level_when_next_consume = 99;
                    ConsumeStatus::ReconsumeLater
                }
                _ => ConsumeStatus::Success,
            }
        })
        .unwrap();
    wait_until("three deliveries", WAIT, || log.lock().len() == 3);
    consumer.shutdown().unwrap();
    let seen = log.lock().clone();
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap + Duration::from_millis(10) >= Duration::from_millis(400),
        "the level 4 retry came after {gap:?}"
    );
    assert_eq!(count(&store, SCHEDULE, 3), 1, "one copy at level 4");
    assert_eq!(count(&store, SCHEDULE, 4), 1, "one copy at the last level");
    assert_eq!(count(&store, SCHEDULE, 2), 0, "not the store's level 3");
    let scheduled = read_queue(&store, &MessageQueue::new(SCHEDULE, 3));
    assert_eq!(scheduled[0].property("DELAY"), Some("4"));
    let retried = read_queue(&store, &MessageQueue::new("%RETRY%g", 0));
    assert!(
        retried[0].store_timestamp() >= scheduled[0].store_timestamp() + 400,
        "delivered to the retry topic no earlier than the level's delay"
    );
    store.close().unwrap();
}

#[test]
fn broadcasting_drops_what_follows_the_ack_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "10ms 10ms 10ms", 6);
    let log: Log = Arc::default();
    let l = log.clone();
    let consumer = store
        .push_consumer("b")
        .subscribe("t", "*")
        .message_model(MessageModel::Broadcasting)
        .consume_from(ConsumeFrom::FirstOffset)
        .consume_message_batch_max_size(6)
        .instance_name("one")
        .start_concurrently_with_context(move |msgs, ctx| {
            record(&l, msgs, ctx);
            ctx.ack_index = 1;
            ConsumeStatus::Success
        })
        .unwrap();
    wait_until("six deliveries", WAIT, || log.lock().len() == 6);
    let q = MessageQueue::new("t", 0);
    wait_until("the offset past the dropped ones", WAIT, || {
        consumer
            .stats()
            .queues
            .iter()
            .any(|s| s.queue == q && s.committed_offset == 6 && s.lag == 0)
    });
    let stats = consumer.stats();
    assert_eq!((stats.consumed_ok, stats.consumed_failed), (2, 4));
    consumer.shutdown().unwrap();
    assert!(deliveries(&log).values().all(|d| d == &vec![0]));
    assert_eq!(count(&store, "%RETRY%b", 0), 0);
    assert_eq!(count(&store, "%DLQ%b", 0), 0);
    store.close().unwrap();
}

#[test]
fn start_concurrently_without_a_context_still_acknowledges_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "10ms 10ms 10ms", 8);
    let n = Arc::new(Mutex::new(0usize));
    let c = n.clone();
    let consumer = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .consume_message_batch_max_size(4)
        .start_concurrently(move |msgs| {
            *c.lock() += msgs.len();
            ConsumeStatus::Success
        })
        .unwrap();
    wait_until("all consumed and committed", WAIT, || {
        *n.lock() == 8 && store.consumer_lag("g", "t").unwrap() == 0
    });
    consumer.shutdown().unwrap();
    assert_eq!(count(&store, "%RETRY%g", 0), 0);
    store.close().unwrap();
}
