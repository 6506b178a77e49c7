//! Consumer groups of push consumers: how queues are shared out and moved.
//!
//! - Every allocation strategy (Averagely 3/3/2, AveragelyByCircle, ConsistentHash, a closure
//!   via `allocate_with`, a user type via `allocate_strategy`) gives a live group exactly the
//!   split the pure function computes from `store.consumer_ids(group)`, and a user strategy that
//!   hands queues out twice or invents queues still yields one owner per real queue.
//! - Joins, shutdowns and drops rebalance at once (the periodic rebalance is set to a minute):
//!   right after each call the live consumers' `assigned_queues()` partition the topic and
//!   `consumer_ids` lists exactly them. Under a stream of messages and a listener that takes
//!   time, every delivery is recorded as (consumer, queue, offset, start, end); afterwards
//!   nothing sent is missing, two consumers overlap in time on one queue only over a message
//!   both of them got (the in-flight duplicates of a move), and there are no more duplicates
//!   than messages that can be in flight at the moves.
//! - Raising a topic's queue count rebalances at once; the new queues are consumed.
//! - A consumer whose fetch thread died (here: its allocation strategy panicked in it) drops out
//!   of `consumer_ids`, and the survivor takes its queues over promptly, losing nothing.
//! - `shutdown()` and `Drop` let in-flight messages finish, hand back the rest, commit (so a
//!   successor resumes with no gap and no duplicate) and leave the group; after a store reopen
//!   the committed offset is still there.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mqlite::{
    AllocateStrategy, Averagely, AveragelyByCircle, ConsistentHash, ConsumeFrom, ConsumeStatus,
    Message, MessageExt, MessageQueue, PushConsumer, PushConsumerBuilder, Store,
};
use parking_lot::Mutex;

const TOPIC: &str = "t";

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One call of a listener for one message.
#[derive(Debug, Clone)]
struct Delivery {
    consumer: String,
    queue: u32,
    offset: u64,
    start: Instant,
    end: Instant,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A listener that records every delivery of `TOPIC` and spends `work` on each message.
fn recorder(
    log: &Log,
    name: &str,
    work: Duration,
) -> impl Fn(&[MessageExt]) -> ConsumeStatus + Send + Sync + 'static {
    let log = log.clone();
    let name = name.to_owned();
    move |msgs| {
        let start = Instant::now();
        std::thread::sleep(work);
        let end = Instant::now();
        let mut l = log.lock();
        for m in msgs {
            assert_eq!(m.topic(), TOPIC);
            l.push(Delivery {
                consumer: name.clone(),
                queue: m.queue_id(),
                offset: m.queue_offset(),
                start,
                end,
            });
        }
        ConsumeStatus::Success
    }
}

fn topic_queues(c: &PushConsumer) -> Vec<u32> {
    c.assigned_queues()
        .into_iter()
        .filter(|q| q.topic == TOPIC)
        .map(|q| q.queue_id)
        .collect()
}

/// The live consumers' queues of `TOPIC` partition its `n` queues.
fn assert_partition(consumers: &[&PushConsumer], n: u32, when: &str) {
    let mut all: Vec<u32> = consumers.iter().flat_map(|c| topic_queues(c)).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "{when}: every queue has exactly one owner ({:?})",
        consumers
            .iter()
            .map(|c| (c.id().to_owned(), topic_queues(c)))
            .collect::<Vec<_>>()
    );
}

fn assert_members(store: &Store, group: &str, consumers: &[&PushConsumer], when: &str) {
    let mut want: Vec<String> = consumers.iter().map(|c| c.id().to_owned()).collect();
    want.sort();
    assert_eq!(store.consumer_ids(group), want, "{when}: members");
}

fn builder(store: &Store, group: &str, name: &str) -> PushConsumerBuilder {
    store
        .push_consumer(group)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .rebalance_interval(Duration::from_secs(60))
}

/// A user strategy type: queue `j` goes to consumer `m - 1 - j % m` (a reversed circle).
struct ReverseCircle;

impl AllocateStrategy for ReverseCircle {
    fn allocate(
        &self,
        _group: &str,
        consumer: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Vec<MessageQueue> {
        let m = consumers.len();
        let Some(i) = consumers.iter().position(|c| c == consumer) else {
            return Vec::new();
        };
        queues
            .iter()
            .enumerate()
            .filter(|(j, _)| m - 1 - j % m == i)
            .map(|(_, q)| q.clone())
            .collect()
    }

    fn name(&self) -> &str {
        "REVERSE_CIRCLE"
    }
}

/// Every queue but the last to the last consumer, the last queue to the first one.
fn lopsided(_g: &str, c: &str, qs: &[MessageQueue], cs: &[String]) -> Vec<MessageQueue> {
    let (last_q, rest) = qs.split_last().expect("queues");
    if c == cs[0] {
        vec![last_q.clone()]
    } else if c == cs[cs.len() - 1] {
        rest.to_vec()
    } else {
        Vec::new()
    }
}

#[test]
fn every_strategy_gives_the_group_its_computed_split() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 8).unwrap();
    let queues = store.queues(TOPIC).unwrap();
    type Set = fn(PushConsumerBuilder) -> PushConsumerBuilder;
    let cases: Vec<(&str, Box<dyn AllocateStrategy>, Set)> = vec![
        ("avg", Box::new(Averagely), |b| b),
        ("circle", Box::new(AveragelyByCircle), |b| {
            b.allocate_strategy(AveragelyByCircle)
        }),
        ("hash", Box::new(ConsistentHash::default()), |b| {
            b.allocate_strategy(ConsistentHash::default())
        }),
        ("user-type", Box::new(ReverseCircle), |b| {
            b.allocate_strategy(ReverseCircle)
        }),
        ("closure", Box::new(ReverseCircle), |b| {
            b.allocate_with(lopsided)
        }),
    ];
    for (group, strategy, set) in cases {
        let consumers: Vec<PushConsumer> = ["c-1", "b-2", "a-3"]
            .iter()
            .map(|n| {
                set(builder(&store, group, n))
                    .start_concurrently(|_| ConsumeStatus::Success)
                    .unwrap()
            })
            .collect();
        let refs: Vec<&PushConsumer> = consumers.iter().collect();
        assert_members(&store, group, &refs, group);
        assert_partition(&refs, 8, group);
        let ids = store.consumer_ids(group);
        for c in &consumers {
            let want: Vec<u32> = if group == "closure" {
                lopsided(group, c.id(), &queues, &ids)
            } else {
                strategy.allocate(group, c.id(), &queues, &ids)
            }
            .iter()
            .map(|q| q.queue_id)
            .collect();
            assert_eq!(topic_queues(c), want, "{group}: share of {}", c.id());
        }
        if group == "avg" {
            let mut sizes: Vec<usize> = consumers.iter().map(|c| topic_queues(c).len()).collect();
            sizes.sort_unstable();
            assert_eq!(sizes, vec![2, 3, 3], "8 queues over 3 consumers");
        }
        // The group's retry queue has one owner too.
        let retry = MessageQueue::new(format!("%RETRY%{group}"), 0);
        let owners = consumers
            .iter()
            .filter(|c| c.assigned_queues().contains(&retry))
            .count();
        assert_eq!(owners, 1, "{group}: the retry queue has one owner");
        for c in consumers {
            c.shutdown().unwrap();
        }
        assert!(store.consumer_ids(group).is_empty());
    }
}

#[test]
fn greedy_or_inventive_user_strategies_still_give_one_owner_per_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 8).unwrap();
    let log: Log = Arc::default();
    // Everyone claims every queue, and two queues that do not exist.
    let consumers: Vec<PushConsumer> = ["x", "y", "z"]
        .iter()
        .map(|n| {
            builder(&store, "greedy", n)
                .allocate_with(|_, _, qs, _| {
                    let mut v = qs.to_vec();
                    v.push(MessageQueue::new(TOPIC, 99));
                    v.push(MessageQueue::new("no-such-topic", 0));
                    v
                })
                .start_concurrently(recorder(&log, n, Duration::ZERO))
                .unwrap()
        })
        .collect();
    let refs: Vec<&PushConsumer> = consumers.iter().collect();
    assert_partition(&refs, 8, "greedy strategy");
    for c in &consumers {
        assert!(
            c.assigned_queues()
                .iter()
                .all(|q| q.queue_id < 8 && q.topic != "no-such-topic"),
            "invented queues are ignored: {:?}",
            c.assigned_queues()
        );
    }
    let p = store.producer("p").unwrap();
    for i in 0..80 {
        p.send(Message::new(TOPIC, format!("m{i}"))).unwrap();
    }
    wait_until("80 consumed", Duration::from_secs(10), || {
        log.lock().len() >= 80
    });
    for c in consumers {
        c.shutdown().unwrap();
    }
    let l = log.lock();
    let distinct: BTreeSet<(u32, u64)> = l.iter().map(|d| (d.queue, d.offset)).collect();
    assert_eq!((l.len(), distinct.len()), (80, 80), "each message once");
}

/// Checks a recorded history: nothing sent is missing; deliveries of one queue by two
/// consumers overlap in time only over an in-flight duplicate; duplicates within `max_dups`.
fn check_history(sent: &BTreeSet<(u32, u64)>, history: &[Delivery], max_dups: usize) {
    let mut by_msg: BTreeMap<(u32, u64), Vec<&Delivery>> = BTreeMap::new();
    for d in history {
        by_msg.entry((d.queue, d.offset)).or_default().push(d);
    }
    let missing: Vec<_> = sent.iter().filter(|k| !by_msg.contains_key(k)).collect();
    assert!(missing.is_empty(), "lost messages: {missing:?}");
    let dups: usize = by_msg.values().map(|v| v.len() - 1).sum();
    eprintln!(
        "{} deliveries of {} messages, {dups} duplicates (at most {max_dups} allowed)",
        history.len(),
        sent.len()
    );
    assert!(
        dups <= max_dups,
        "{dups} duplicates: more than the messages in flight at the moves ({max_dups})"
    );
    // Offsets a consumer got that another one also got.
    let shared = |d: &Delivery| {
        by_msg[&(d.queue, d.offset)]
            .iter()
            .any(|o| o.consumer != d.consumer)
    };
    let mut by_queue: BTreeMap<u32, Vec<&Delivery>> = BTreeMap::new();
    for d in history {
        by_queue.entry(d.queue).or_default().push(d);
    }
    for (q, ds) in by_queue {
        for (i, a) in ds.iter().enumerate() {
            for b in &ds[i + 1..] {
                let overlap = a.start < b.end && b.start < a.end;
                if overlap && a.consumer != b.consumer {
                    assert!(
                        shared(a) || shared(b),
                        "queue {q} consumed by two consumers at once: {a:?} and {b:?}, \
                         neither an in-flight duplicate"
                    );
                }
            }
        }
    }
}

#[test]
fn joins_leaves_and_drops_move_queues_with_one_owner_and_nothing_lost() {
    const THREADS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 8).unwrap();
    let log: Log = Arc::default();
    let sent: Arc<Mutex<BTreeSet<(u32, u64)>>> = Arc::default();
    // Messages keep coming for as long as consumers come and go.
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (store, sent, stop) = (store.clone(), sent.clone(), stop.clone());
        std::thread::spawn(move || {
            let p = store.producer("p").unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = p.send(Message::new(TOPIC, format!("m{i}"))).unwrap();
                sent.lock().insert((r.queue.queue_id, r.queue_offset));
                i += 1;
                if i % 8 == 0 {
                    std::thread::sleep(Duration::from_millis(4));
                }
            }
        })
    };
    let start = |name: &str| {
        builder(&store, "g", name)
            .threads(THREADS)
            .start_concurrently(recorder(&log, name, Duration::from_micros(700)))
            .unwrap()
    };
    // Duplicates can only come from messages in flight when queues move: at most `THREADS`
    // per consumer that was running at that moment.
    let mut max_dups = 0;
    let mut event = |live: usize| max_dups += THREADS * live;
    let pause = || std::thread::sleep(Duration::from_millis(120));

    let a = start("a");
    assert_partition(&[&a], 8, "a alone");
    pause();
    let b = start("b");
    event(1);
    assert_partition(&[&a, &b], 8, "b joined");
    let c = start("c");
    event(2);
    assert_partition(&[&a, &b, &c], 8, "c joined");
    assert_members(&store, "g", &[&a, &b, &c], "c joined");
    let mut sizes: Vec<usize> = [&a, &b, &c].iter().map(|c| topic_queues(c).len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![2, 3, 3]);
    pause();
    b.shutdown().unwrap();
    event(3);
    assert_partition(&[&a, &c], 8, "b shut down");
    assert_members(&store, "g", &[&a, &c], "b shut down");
    pause();
    let d = start("d");
    event(2);
    assert_partition(&[&a, &c, &d], 8, "d joined");
    pause();
    drop(c);
    event(3);
    assert_partition(&[&a, &d], 8, "c dropped");
    assert_members(&store, "g", &[&a, &d], "c dropped");
    pause();
    let e = start("e");
    event(2);
    assert_partition(&[&a, &d, &e], 8, "e joined");
    pause();
    a.shutdown().unwrap();
    event(3);
    assert_partition(&[&d, &e], 8, "a shut down");
    assert_members(&store, "g", &[&d, &e], "a shut down");
    pause();
    stop.store(true, Ordering::SeqCst);
    producing.join().unwrap();
    let sent = sent.lock().clone();
    wait_until("everything consumed", Duration::from_secs(20), || {
        let got: BTreeSet<(u32, u64)> = log.lock().iter().map(|d| (d.queue, d.offset)).collect();
        sent.is_subset(&got)
    });
    d.shutdown().unwrap();
    e.shutdown().unwrap();
    assert!(store.consumer_ids("g").is_empty());
    let history = log.lock().clone();
    let names: BTreeSet<&str> = history.iter().map(|d| d.consumer.as_str()).collect();
    assert_eq!(names.len(), 5, "every consumer took part: {names:?}");
    check_history(&sent, &history, max_dups);
    // The group's offsets end at the end of every queue.
    assert_eq!(store.consumer_lag("g", TOPIC).unwrap(), 0);
}

#[test]
fn raising_the_queue_count_rebalances_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 4).unwrap();
    let log: Log = Arc::default();
    let a = builder(&store, "g", "a")
        .start_concurrently(recorder(&log, "a", Duration::ZERO))
        .unwrap();
    let b = builder(&store, "g", "b")
        .start_concurrently(recorder(&log, "b", Duration::ZERO))
        .unwrap();
    assert_partition(&[&a, &b], 4, "4 queues");
    // Let the consumers settle first: a change right after the start, and timing under load,
    // are push_rebalance_triggers.rs's business.
    std::thread::sleep(Duration::from_millis(100));
    store.create_topic(TOPIC, 10).unwrap();
    // The periodic rebalance is a minute away: this is the queue-count change itself.
    let t0 = Instant::now();
    wait_until("10 queues shared out", Duration::from_secs(3), || {
        let n: usize = [&a, &b].iter().map(|c| topic_queues(c).len()).sum();
        n == 10
    });
    eprintln!(
        "rebalanced {:?} after the queue count changed",
        t0.elapsed()
    );
    assert_partition(&[&a, &b], 10, "10 queues");
    assert_eq!(topic_queues(&a), vec![0, 1, 2, 3, 4]);
    assert_eq!(topic_queues(&b), vec![5, 6, 7, 8, 9]);
    let p = store.producer("p").unwrap();
    let mut sent = BTreeSet::new();
    for i in 0..100u32 {
        let r = p
            .send_to(
                Message::new(TOPIC, format!("m{i}")),
                &MessageQueue::new(TOPIC, i % 10),
            )
            .unwrap();
        sent.insert((r.queue.queue_id, r.queue_offset));
    }
    wait_until("100 consumed", Duration::from_secs(10), || {
        log.lock().len() >= 100
    });
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    let history = log.lock().clone();
    check_history(&sent, &history, 0);
    for d in &history {
        let owner = if d.queue < 5 { "a" } else { "b" };
        assert_eq!(d.consumer, owner, "queue {} consumed by its owner", d.queue);
    }
}

/// Kills the victim's fetch thread and checks the survivor takes its queues over within 3 s.
/// `survivor_rebalance`: the survivor's periodic rebalance, `None` for the default (20 s).
fn dead_fetch_thread(survivor_rebalance: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 8).unwrap();
    let log: Log = Arc::default();
    // Only the victim rebalances on its own (every 50 ms); its fetch thread is then made to
    // panic (a testing hook: a panicking allocation strategy no longer kills it, it falls
    // back to Averagely).
    let victim = builder(&store, "g", "victim")
        .rebalance_interval(Duration::from_millis(50))
        .start_concurrently(recorder(&log, "victim", Duration::ZERO))
        .unwrap();
    let mut survivor = store
        .push_consumer("g")
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name("survivor");
    if let Some(d) = survivor_rebalance {
        survivor = survivor.rebalance_interval(d);
    }
    let survivor = survivor
        .start_concurrently(recorder(&log, "survivor", Duration::ZERO))
        .unwrap();
    assert_partition(&[&victim, &survivor], 8, "both alive");
    let p = store.producer("p").unwrap();
    let mut sent = BTreeSet::new();
    for i in 0..80 {
        let r = p.send(Message::new(TOPIC, format!("before-{i}"))).unwrap();
        sent.insert((r.queue.queue_id, r.queue_offset));
    }
    wait_until("80 consumed", Duration::from_secs(10), || {
        log.lock().len() >= 80
    });
    victim.kill_fetch_thread();
    wait_until(
        "the victim to leave consumer_ids",
        Duration::from_secs(3),
        || store.consumer_ids("g") == vec![survivor.id().to_owned()],
    );
    let t0 = Instant::now();
    let took_over = {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if topic_queues(&survivor).len() == 8 {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for i in 0..80 {
        let r = p.send(Message::new(TOPIC, format!("after-{i}"))).unwrap();
        sent.insert((r.queue.queue_id, r.queue_offset));
    }
    assert!(
        took_over,
        "the dead consumer's queues were not taken over within 3 s (survivor has {:?}); \
         a consumer whose threads died should count as leaving and rebalance at once",
        topic_queues(&survivor)
    );
    eprintln!("taken over {:?} after the death was visible", t0.elapsed());
    wait_until("everything consumed", Duration::from_secs(10), || {
        let got: BTreeSet<(u32, u64)> = log.lock().iter().map(|d| (d.queue, d.offset)).collect();
        sent.is_subset(&got)
    });
    survivor.shutdown().unwrap();
    let _ = victim.shutdown();
    let history = log.lock().clone();
    check_history(&sent, &history, 8);
}

#[test]
fn the_periodic_rebalance_replaces_a_consumer_whose_fetch_thread_died() {
    dead_fetch_thread(Some(Duration::from_millis(300)));
}

/// The issue: "leaving (shutdown, drop, or a consumer whose threads died) ... trigger a
/// rebalance at once". Here the survivor keeps the default 20 s periodic rebalance, so the
/// takeover must come from the death itself.
#[test]
fn a_consumer_whose_fetch_thread_died_is_replaced_at_once() {
    dead_fetch_thread(None);
}

/// Stops a consumer mid-stream (by `shutdown` or by dropping it) and checks that a successor
/// resumes exactly where it stopped.
fn stop_and_resume(by_drop: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 1).unwrap();
    let q = MessageQueue::new(TOPIC, 0);
    let p = store.producer("p").unwrap();
    for i in 0..200 {
        p.send(Message::new(TOPIC, format!("m{i}"))).unwrap();
    }
    let log: Log = Arc::default();
    let first = builder(&store, "g", "first")
        .threads(3)
        .start_concurrently(recorder(&log, "first", Duration::from_millis(15)))
        .unwrap();
    wait_until("some consumed", Duration::from_secs(10), || {
        log.lock().len() >= 12
    });
    let assigned = first.assigned_queues();
    assert!(assigned.contains(&q));
    if by_drop {
        drop(first);
    } else {
        first.shutdown().unwrap();
    }
    let stopped = log.lock().len();
    assert!(store.consumer_ids("g").is_empty(), "left the group");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        log.lock().len(),
        stopped,
        "no message is consumed after the stop returned"
    );
    let done: BTreeSet<u64> = log.lock().iter().map(|d| d.offset).collect();
    let first_gap = (0..).find(|o| !done.contains(o)).unwrap();
    assert!(
        done.iter().all(|&o| o < first_gap),
        "in-flight messages finished, the rest handed back: consumed {done:?}"
    );
    let committed = store
        .pull_consumer("g")
        .unwrap()
        .committed_offset(&q)
        .unwrap();
    assert_eq!(committed, Some(first_gap), "committed where it stopped");
    // The commit is on disk: a reopened store has it.
    drop(p);
    store.close().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    assert_eq!(
        store
            .pull_consumer("g")
            .unwrap()
            .committed_offset(&q)
            .unwrap(),
        Some(first_gap)
    );
    let next = builder(&store, "g", "next")
        .start_concurrently(recorder(&log, "next", Duration::ZERO))
        .unwrap();
    wait_until("the rest consumed", Duration::from_secs(10), || {
        log.lock().len() >= 200
    });
    next.shutdown().unwrap();
    let history = log.lock().clone();
    let sent: BTreeSet<(u32, u64)> = (0..200).map(|o| (0, o)).collect();
    check_history(&sent, &history, 0);
    let resumed: Vec<u64> = history
        .iter()
        .filter(|d| d.consumer == "next")
        .map(|d| d.offset)
        .collect();
    assert_eq!(resumed.iter().min(), Some(&first_gap));
    store.close().unwrap();
}

#[test]
fn shutdown_finishes_in_flight_commits_and_leaves() {
    stop_and_resume(false);
}

#[test]
fn drop_finishes_in_flight_commits_and_leaves() {
    stop_and_resume(true);
}
