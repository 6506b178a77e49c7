//! Orderly commit control through `ConsumeOrderlyContext::auto_commit`: with auto-commit (the
//! default) every answer but a suspend commits; without it `Success` leaves the committed
//! offset where it is, `Commit` commits everything consumed so far, and `Rollback` puts back
//! everything since the last commit and redelivers it, in order, after the suspend time. What
//! is left uncommitted at shutdown is delivered again by the next consumer.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, MessageQueue, OrderlyStatus, PushConsumer, Store};
use parking_lot::Mutex;

const GROUP: &str = "committer";
const TOPIC: &str = "c";
const SUSPEND: Duration = Duration::from_millis(150);

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Debug, Clone)]
struct Delivery {
    offset: u64,
    reconsume_times: i32,
    /// The group's committed offset when the batch reached the listener (none = 0).
    committed: u64,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

fn queue() -> MessageQueue {
    MessageQueue::new(TOPIC, 0)
}

fn committed(store: &Store) -> u64 {
    store
        .pull_consumer(GROUP)
        .unwrap()
        .committed_offset(&queue())
        .unwrap()
        .unwrap_or(0)
}

fn setup(n: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic(TOPIC, 1).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..n {
        p.send(Message::new(TOPIC, format!("m{i}"))).unwrap();
    }
    (dir, store)
}

/// A consumer answering from `script`: offset -> (auto_commit, status) for its 1st, 2nd, ...
/// delivery; offsets not in the script succeed with auto-commit.
fn start(
    store: &Store,
    log: &Log,
    script: HashMap<u64, Vec<(bool, OrderlyStatus)>>,
) -> PushConsumer {
    let log = log.clone();
    let s = store.clone();
    let deliveries: Mutex<HashMap<u64, usize>> = Mutex::default();
    store
        .push_consumer(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .suspend_current_queue_time(SUSPEND)
        .start_orderly(move |msgs, ctx| {
            assert_eq!(msgs.len(), 1);
            assert!(ctx.auto_commit, "auto-commit is on by default");
            assert_eq!(ctx.queue(), &queue());
            let m = &msgs[0];
            log.lock().push(Delivery {
                offset: m.queue_offset(),
                reconsume_times: m.reconsume_times(),
                committed: committed(&s),
                at: Instant::now(),
            });
            let nth = {
                let mut d = deliveries.lock();
                let n = d.entry(m.queue_offset()).or_default();
                *n += 1;
                *n - 1
            };
            let (auto, status) = script
                .get(&m.queue_offset())
                .and_then(|v| v.get(nth).copied())
                .unwrap_or((true, OrderlyStatus::Success));
            ctx.auto_commit = auto;
            status
        })
        .unwrap()
}

fn find(log: &[Delivery], offset: u64, nth: usize) -> &Delivery {
    log.iter()
        .filter(|d| d.offset == offset)
        .nth(nth)
        .unwrap_or_else(|| panic!("delivery {nth} of {offset}: {log:?}"))
}

#[test]
fn manual_commit_and_rollback() {
    use OrderlyStatus::{Commit, Rollback, Success, SuspendCurrentQueueAMoment as Suspend};
    let (_dir, store) = setup(10);
    let log: Log = Arc::default();
    let script = HashMap::from([
        (0, vec![(false, Success)]),
        (1, vec![(false, Success)]),
        (2, vec![(false, Commit)]),
        (3, vec![(false, Success), (false, Success)]),
        (4, vec![(false, Success), (false, Success)]),
        (5, vec![(false, Rollback), (false, Commit)]),
        (6, vec![(false, Success)]),
        (7, vec![(false, Suspend), (false, Commit)]),
        (8, vec![(false, Success)]),
        (9, vec![(false, Success)]),
    ]);
    let consumer = start(&store, &log, script);
    wait_until("the last message", Duration::from_secs(10), || {
        log.lock().last().is_some_and(|d| d.offset == 9)
    });
    consumer.shutdown().unwrap();
    let log = log.lock().clone();
    let got: Vec<(u64, u64)> = log.iter().map(|d| (d.offset, d.committed)).collect();
    assert_eq!(
        got,
        [
            // Success without auto-commit: nothing committed...
            (0, 0),
            (1, 0),
            (2, 0),
            // ... until the Commit of 2.
            (3, 3),
            (4, 3),
            (5, 3),
            // Rollback of 5: 3, 4, 5 again, in order, still uncommitted.
            (3, 3),
            (4, 3),
            (5, 3),
            (6, 6),
            // A suspend retries only the batch, not 6.
            (7, 6),
            (7, 6),
            (8, 8),
            (9, 8),
        ],
        "{log:?}"
    );
    let rollback_wait = find(&log, 3, 1).at.duration_since(find(&log, 5, 0).at);
    assert!(
        rollback_wait >= SUSPEND && rollback_wait < Duration::from_secs(5),
        "redelivered {rollback_wait:?} after the rollback"
    );
    let suspend_wait = find(&log, 7, 1).at.duration_since(find(&log, 7, 0).at);
    assert!(
        suspend_wait >= SUSPEND && suspend_wait < Duration::from_secs(5),
        "{suspend_wait:?}"
    );
    assert_eq!(find(&log, 7, 1).reconsume_times, 1);
    // 8 and 9 were never committed: shutdown leaves the offset at 8...
    assert_eq!(committed(&store), 8);
    // ... so the next consumer gets them again.
    let log2: Log = Arc::default();
    let again = start(&store, &log2, HashMap::new());
    wait_until("the redelivery", Duration::from_secs(10), || {
        log2.lock().len() >= 2
    });
    again.shutdown().unwrap();
    let got: Vec<u64> = log2.lock().iter().map(|d| d.offset).collect();
    assert_eq!(got, [8, 9]);
    assert_eq!(committed(&store), 10);
}

#[test]
fn with_auto_commit_commit_and_rollback_are_plain_success() {
    use OrderlyStatus::{Commit, Rollback, Success};
    let (_dir, store) = setup(6);
    let log: Log = Arc::default();
    let script = HashMap::from([
        (0, vec![(true, Success)]),
        (1, vec![(true, Rollback)]),
        (2, vec![(true, Commit)]),
        (3, vec![(true, Rollback)]),
        (4, vec![(true, Success)]),
    ]);
    let consumer = start(&store, &log, script);
    wait_until("the last message", Duration::from_secs(10), || {
        log.lock().last().is_some_and(|d| d.offset == 5)
    });
    wait_until("the last commit", Duration::from_secs(10), || {
        committed(&store) == 6
    });
    // Nothing comes back after a rollback with auto-commit.
    std::thread::sleep(SUSPEND * 2);
    consumer.shutdown().unwrap();
    let got: Vec<(u64, u64)> = log.lock().iter().map(|d| (d.offset, d.committed)).collect();
    assert_eq!(got, [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
    assert_eq!(committed(&store), 6);
}

#[test]
fn an_auto_committed_success_also_commits_what_was_left_uncommitted() {
    use OrderlyStatus::Success;
    let (_dir, store) = setup(4);
    let log: Log = Arc::default();
    let script = HashMap::from([
        (0, vec![(false, Success)]),
        (1, vec![(false, Success)]),
        (2, vec![(true, Success)]),
        (3, vec![(false, Success)]),
    ]);
    let consumer = start(&store, &log, script);
    wait_until("the last message", Duration::from_secs(10), || {
        log.lock().last().is_some_and(|d| d.offset == 3)
    });
    consumer.shutdown().unwrap();
    let got: Vec<(u64, u64)> = log.lock().iter().map(|d| (d.offset, d.committed)).collect();
    assert_eq!(got, [(0, 0), (1, 0), (2, 0), (3, 3)]);
    assert_eq!(committed(&store), 3);
}
