//! What a push consumer subscribes to and where it starts (reference §13.1, §13.2):
//!
//! - several topics at once, each with its own tag expression (`*`, `a || b` with spaces,
//!   a single tag); filtered-out messages are skipped without holding the offset back;
//! - `ConsumeFrom::FirstOffset`, `LastOffset` and `Timestamp` on first start, and a committed
//!   offset winning over the setting afterwards;
//! - broadcasting: every instance gets everything, offsets are kept per instance (in
//!   `config/broadcastOffset.json`, not in the group's offsets), survive a reopen, and a
//!   restarted instance resumes from its own offset;
//! - the consume thread count bounds (and is reached by) concurrent listener calls;
//! - two consumers of a group cannot share an instance name.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mqlite::{
    ConsumeFrom, ConsumeStatus, Message, MessageExt, MessageModel, MessageQueue, PushConsumer,
    Store,
};
use parking_lot::Mutex;

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type Bodies = Arc<Mutex<Vec<String>>>;

fn collect(bodies: &Bodies) -> impl Fn(&[MessageExt]) -> ConsumeStatus + Send + Sync + 'static {
    let b = bodies.clone();
    move |msgs| {
        b.lock().extend(
            msgs.iter()
                .map(|m| format!("{}/{}", m.topic(), String::from_utf8_lossy(m.body()))),
        );
        ConsumeStatus::Success
    }
}

fn sorted(bodies: &Bodies) -> Vec<String> {
    let mut v = bodies.lock().clone();
    v.sort();
    v
}

/// Waits until `bodies` holds `want` (as a multiset), then a little more to catch extras.
fn expect(bodies: &Bodies, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    wait_until(&format!("{want:?}"), Duration::from_secs(10), || {
        bodies.lock().len() >= want.len()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sorted(bodies), want);
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn several_topics_with_their_own_tag_expressions() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    for t in ["a", "b", "c"] {
        store.create_topic(t, 2).unwrap();
    }
    let bodies: Bodies = Arc::default();
    let consumer = store
        .push_consumer("g")
        .subscribe("a", " x ||  y ")
        .subscribe("b", "*")
        .subscribe("c", "z")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(collect(&bodies))
        .unwrap();
    let mut topics: BTreeSet<String> = consumer
        .assigned_queues()
        .into_iter()
        .map(|q| q.topic)
        .collect();
    topics.remove("%RETRY%g");
    assert_eq!(topics, ["a", "b", "c"].map(String::from).into());
    let p = store.producer("p").unwrap();
    let send = |topic: &str, body: &str, tag: Option<&str>| {
        let mut m = Message::new(topic, body);
        if let Some(t) = tag {
            m = m.with_tags(t);
        }
        p.send(m).unwrap();
    };
    for i in 0..20 {
        send("a", &format!("x{i}"), Some("x"));
        send("a", &format!("y{i}"), Some("y"));
        send("a", &format!("w{i}"), Some("w"));
        send("a", &format!("none{i}"), None);
        send("b", &format!("any{i}"), Some("whatever"));
        send("b", &format!("untagged{i}"), None);
        send("c", &format!("z{i}"), Some("z"));
        send("c", &format!("zz{i}"), Some("zz"));
    }
    let mut want = Vec::new();
    for i in 0..20 {
        want.extend([
            format!("a/x{i}"),
            format!("a/y{i}"),
            format!("b/any{i}"),
            format!("b/untagged{i}"),
            format!("c/z{i}"),
        ]);
    }
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    expect(&bodies, &want);
    consumer.shutdown().unwrap();
    // Skipped messages do not hold the committed offsets back. (Checked after the shutdown's
    // final commit; while running, see push_retry_dlq's
    // the_committed_offset_reaches_the_end_once_all_is_consumed.)
    for t in ["a", "b", "c"] {
        assert_eq!(store.consumer_lag("g", t).unwrap(), 0, "lag of {t}");
    }
}

#[test]
fn consume_from_applies_only_without_a_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 2).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..10 {
        p.send(Message::new("t", format!("old{i}"))).unwrap();
    }
    // Well clear of `mid` on both sides: store times come from a coarse clock (kernel tick).
    std::thread::sleep(Duration::from_millis(40));
    let mid = now_ms();
    std::thread::sleep(Duration::from_millis(40));
    for i in 0..10 {
        p.send(Message::new("t", format!("mid{i}"))).unwrap();
    }
    let start = |group: &str, from: ConsumeFrom, bodies: &Bodies| -> PushConsumer {
        store
            .push_consumer(group)
            .subscribe("t", "*")
            .consume_from(from)
            .start_concurrently(collect(bodies))
            .unwrap()
    };
    let (first, last, ts) = (Bodies::default(), Bodies::default(), Bodies::default());
    let c1 = start("first", ConsumeFrom::FirstOffset, &first);
    let c2 = start("last", ConsumeFrom::LastOffset, &last);
    let c3 = start("ts", ConsumeFrom::Timestamp(mid), &ts);
    for i in 0..5 {
        p.send(Message::new("t", format!("new{i}"))).unwrap();
    }
    let olds: Vec<String> = (0..10).map(|i| format!("t/old{i}")).collect();
    let mids: Vec<String> = (0..10).map(|i| format!("t/mid{i}")).collect();
    let news: Vec<String> = (0..5).map(|i| format!("t/new{i}")).collect();
    let all: Vec<&str> = olds
        .iter()
        .chain(&mids)
        .chain(&news)
        .map(String::as_str)
        .collect();
    expect(&first, &all);
    expect(&last, &news.iter().map(String::as_str).collect::<Vec<_>>());
    expect(
        &ts,
        &mids
            .iter()
            .chain(&news)
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    for c in [c1, c2, c3] {
        c.shutdown().unwrap();
    }
    // Now each group has committed offsets: FirstOffset no longer goes back to the start.
    for i in 0..3 {
        p.send(Message::new("t", format!("later{i}"))).unwrap();
    }
    let again = Bodies::default();
    let c = start("last", ConsumeFrom::FirstOffset, &again);
    expect(&again, &["t/later0", "t/later1", "t/later2"]);
    c.shutdown().unwrap();
}

#[test]
fn broadcasting_keeps_offsets_per_instance_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let open = || common::small(dir.path()).open().unwrap();
    let start = |store: &Store, name: &str, from: ConsumeFrom, bodies: &Bodies| {
        store
            .push_consumer("bc")
            .subscribe("t", "*")
            .message_model(MessageModel::Broadcasting)
            .consume_from(from)
            .instance_name(name)
            .start_concurrently(collect(bodies))
            .unwrap()
    };
    let batch = |p: &mqlite::Producer, tag: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let body = format!("{tag}{i}");
                p.send(Message::new("t", body.as_str())).unwrap();
                format!("t/{body}")
            })
            .collect()
    };
    let (b1, b2) = (Bodies::default(), Bodies::default());
    let missed;
    {
        let store = open();
        store.create_topic("t", 2).unwrap();
        let p = store.producer("p").unwrap();
        let i1 = start(&store, "i1", ConsumeFrom::FirstOffset, &b1);
        let i2 = start(&store, "i2", ConsumeFrom::FirstOffset, &b2);
        // Broadcasting consumers read every queue, and no retry topic.
        for c in [&i1, &i2] {
            assert_eq!(
                c.assigned_queues(),
                vec![MessageQueue::new("t", 0), MessageQueue::new("t", 1)]
            );
        }
        let first = batch(&p, "one-", 30);
        expect(&b1, &refs(&first));
        expect(&b2, &refs(&first));
        i1.shutdown().unwrap();
        missed = batch(&p, "two-", 30);
        let both: Vec<String> = first.iter().chain(&missed).cloned().collect();
        expect(&b2, &refs(&both));
        i2.shutdown().unwrap();
        // Not the group's offsets.
        assert_eq!(
            store
                .pull_consumer("bc")
                .unwrap()
                .committed_offset(&MessageQueue::new("t", 0))
                .unwrap(),
            None
        );
        store.close().unwrap();
    }
    let file = std::fs::read_to_string(dir.path().join("config/broadcastOffset.json"))
        .expect("config/broadcastOffset.json");
    assert!(file.contains("i1") && file.contains("i2"), "{file}");
    let store = open();
    let p = store.producer("p").unwrap();
    // i1 resumes from its own offsets: exactly what it missed.
    b1.lock().clear();
    let i1 = start(&store, "i1", ConsumeFrom::FirstOffset, &b1);
    expect(&b1, &refs(&missed));
    // i2 is up to date; a new instance starts per its ConsumeFrom.
    b2.lock().clear();
    let i2 = start(&store, "i2", ConsumeFrom::FirstOffset, &b2);
    let b3 = Bodies::default();
    let i3 = start(&store, "i3", ConsumeFrom::LastOffset, &b3);
    let third = batch(&p, "three-", 5);
    let mut want = missed.clone();
    want.extend(third.iter().cloned());
    expect(&b1, &refs(&want));
    expect(&b2, &refs(&third));
    expect(&b3, &refs(&third));
    for c in [i1, i2, i3] {
        c.shutdown().unwrap();
    }
    store.close().unwrap();
}

/// Runs a backlog through a consumer with `threads` (None: the default) and returns the most
/// listener calls seen at once.
fn concurrency(threads: Option<usize>) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 4).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..48 {
        p.send(Message::new("t", format!("m{i}"))).unwrap();
    }
    let (now, peak, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (n, pk, d) = (now.clone(), peak.clone(), done.clone());
    let mut b = store
        .push_consumer("g")
        .subscribe("t", "*")
        .consume_from(ConsumeFrom::FirstOffset);
    if let Some(t) = threads {
        b = b.threads(t);
    }
    let consumer = b
        .start_concurrently(move |msgs| {
            let cur = n.fetch_add(1, Ordering::SeqCst) + 1;
            pk.fetch_max(cur, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(15));
            n.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(msgs.len(), Ordering::SeqCst);
            ConsumeStatus::Success
        })
        .unwrap();
    wait_until("48 consumed", Duration::from_secs(10), || {
        done.load(Ordering::SeqCst) == 48
    });
    consumer.shutdown().unwrap();
    peak.load(Ordering::SeqCst)
}

#[test]
fn consume_threads_bound_concurrent_listener_calls() {
    assert_eq!(concurrency(Some(1)), 1);
    assert_eq!(concurrency(Some(3)), 3);
    assert_eq!(concurrency(None), 4, "4 consume threads by default");
}

#[test]
fn two_consumers_of_a_group_cannot_share_an_instance_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 2).unwrap();
    let bodies = Bodies::default();
    let a = store
        .push_consumer("g")
        .subscribe("t", "*")
        .instance_name("same")
        .start_concurrently(collect(&bodies))
        .unwrap();
    let b = store
        .push_consumer("g")
        .subscribe("t", "*")
        .instance_name("same")
        .start_concurrently(|_| ConsumeStatus::Success);
    assert!(b.is_err(), "a second consumer with the same id joined");
    drop(b);
    // The refused consumer must not take the running one out of the group.
    assert_eq!(
        store.consumer_ids("g"),
        vec![a.id().to_owned()],
        "the failed start removed the running consumer with the same id from the group"
    );
    // So a newcomer shares the queues with it instead of taking all of them.
    let other = store
        .push_consumer("g")
        .subscribe("t", "*")
        .instance_name("other")
        .start_concurrently(|_| ConsumeStatus::Success)
        .unwrap();
    let mut owned: Vec<MessageQueue> = a.assigned_queues();
    owned.extend(other.assigned_queues());
    owned.sort();
    assert_eq!(
        owned,
        vec![
            MessageQueue::new("%RETRY%g", 0),
            MessageQueue::new("t", 0),
            MessageQueue::new("t", 1)
        ],
        "one owner per queue"
    );
    other.shutdown().unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "still"))
        .unwrap();
    expect(&bodies, &["t/still"]);
    a.shutdown().unwrap();
}
