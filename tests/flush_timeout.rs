//! `FlushPolicy::Sync` timeouts and group commit. With a zero timeout every put returns
//! `PutStatus::FlushDiskTimeout` or `PutOk`, never an error, and every message is stored (and
//! visible once flushed, and after a reopen). With a normal timeout, 8 threads x 500 concurrent
//! puts all return `PutOk`, per-queue offsets are dense with no duplicates, and every message is
//! visible through `get_messages` with the right body, id and position.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rng, seed, small};
use mqlite::{FlushPolicy, Message, MessageQueue, PutResult, PutStatus, Store};

fn read_queue(store: &Store, mq: &MessageQueue) -> Vec<mqlite::MessageExt> {
    let max = store.max_offset(mq).unwrap();
    let mut out = Vec::new();
    let mut off = 0;
    while off < max {
        let got = store.get_messages(mq, off, 200).unwrap();
        assert!(
            !got.messages.is_empty(),
            "{mq:?}: nothing at {off} < max {max}"
        );
        off = got.next_offset;
        out.extend(got.messages);
    }
    out
}

#[test]
fn zero_timeout_reports_timeout_or_ok_and_stores_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let zero = FlushPolicy::Sync {
        timeout: Duration::ZERO,
    };
    let store = small(dir).flush_policy(zero).open().unwrap();
    store.create_topic("Zero", 2).unwrap();
    let mut rng = Rng::new(seed(0xF1_0001));
    let mut sent: Vec<(Vec<u8>, PutResult)> = Vec::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    // Single-threaded, then concurrent (followers time out while a leader flushes).
    for i in 0..300u32 {
        let len = rng.range(10, 900) as usize;
        let body = rng.bytes(len);
        let put = store
            .put(&Message::new("Zero", body.clone()), i % 2)
            .unwrap_or_else(|e| panic!("put {i} failed with a zero flush timeout: {e:?}"));
        assert!(matches!(
            put.status,
            PutStatus::PutOk | PutStatus::FlushDiskTimeout
        ));
        *statuses.entry(format!("{:?}", put.status)).or_default() += 1;
        sent.push((body, put));
    }
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(u64::from(t) + 77);
                (0..150)
                    .map(|_| {
                        let len = rng.range(10, 900) as usize;
                        let body = rng.bytes(len);
                        let put = store
                            .put(&Message::new("Zero", body.clone()), t % 2)
                            .unwrap_or_else(|e| panic!("concurrent put failed: {e:?}"));
                        (body, put)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (body, put) in t.join().unwrap() {
            assert!(matches!(
                put.status,
                PutStatus::PutOk | PutStatus::FlushDiskTimeout
            ));
            *statuses.entry(format!("{:?}", put.status)).or_default() += 1;
            sent.push((body, put));
        }
    }
    eprintln!("statuses with a zero timeout: {statuses:?}");

    // Everything is stored: after a flush every message is visible where its put said.
    store.flush().unwrap();
    let check = |store: &Store| {
        for (body, put) in &sent {
            let mq = MessageQueue::new("Zero", put.queue_id);
            let got = store.get_messages(&mq, put.queue_offset, 1).unwrap();
            let m = &got.messages[0];
            assert_eq!(m.physical_offset(), put.physical_offset);
            assert_eq!(m.body(), &body[..]);
            assert_eq!(m.msg_id(), put.msg_id);
        }
        let total: u64 = (0..2)
            .map(|q| store.max_offset(&MessageQueue::new("Zero", q)).unwrap())
            .sum();
        assert_eq!(total, sent.len() as u64);
    };
    check(&store);
    store.close().unwrap();
    let store = small(dir).flush_policy(zero).open().unwrap();
    check(&store);
    store.close().unwrap();
}

#[test]
fn zero_timeout_messages_become_visible_without_explicit_flush() {
    // A put that timed out is stored; the background flush makes it visible on its own.
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path())
        .flush_policy(FlushPolicy::Sync {
            timeout: Duration::ZERO,
        })
        .open()
        .unwrap();
    let mut last = None;
    for i in 0..50u32 {
        last = Some(
            store
                .put(&Message::new("Lazy", format!("m{i}").into_bytes()), 0)
                .unwrap(),
        );
    }
    let last = last.unwrap();
    let mq = MessageQueue::new("Lazy", 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.max_offset(&mq).unwrap() < 50 {
        assert!(
            Instant::now() < deadline,
            "timed-out puts never became visible"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = store.get_messages(&mq, last.queue_offset, 1).unwrap();
    assert_eq!(got.messages[0].body(), b"m49");
    store.close().unwrap();
}

#[test]
fn concurrent_sync_puts_all_ok_and_dense() {
    const THREADS: u32 = 8;
    const PER_THREAD: u32 = 500;
    const QUEUES: u32 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let policy = FlushPolicy::Sync {
        timeout: Duration::from_secs(10),
    };
    let store = small(dir).flush_policy(policy).open().unwrap();
    store.create_topic("Group", QUEUES).unwrap();
    let start = Instant::now();
    let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..PER_THREAD)
                    .map(|i| {
                        // Threads share queues, so offsets interleave.
                        let q = (t + i) % QUEUES;
                        let body = format!("t{t}-i{i}-{}", "x".repeat((i % 64) as usize));
                        let put = store
                            .put(
                                &Message::new("Group", body.clone().into_bytes())
                                    .with_tags(format!("t{t}")),
                                q,
                            )
                            .unwrap();
                        (t, body, put)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    eprintln!("{} sync puts in {:?}", all.len(), start.elapsed());
    assert_eq!(all.len(), (THREADS * PER_THREAD) as usize);
    for (t, body, put) in &all {
        assert_eq!(put.status, PutStatus::PutOk, "thread {t}, {body}");
    }
    // Physical offsets are unique; per-queue offsets are dense and unique.
    let mut phys: Vec<u64> = all.iter().map(|a| a.2.physical_offset).collect();
    phys.sort_unstable();
    phys.dedup();
    assert_eq!(
        phys.len(),
        all.len(),
        "two puts got the same physical offset"
    );
    let mut by_queue: BTreeMap<u32, Vec<&(u32, String, PutResult)>> = BTreeMap::new();
    for a in &all {
        by_queue.entry(a.2.queue_id).or_default().push(a);
    }
    let check = |store: &Store| {
        for (q, puts) in &by_queue {
            let mut offs: Vec<u64> = puts.iter().map(|a| a.2.queue_offset).collect();
            offs.sort_unstable();
            assert_eq!(
                offs,
                (0..puts.len() as u64).collect::<Vec<_>>(),
                "queue {q} not dense"
            );
            let mq = MessageQueue::new("Group", *q);
            assert_eq!(store.max_offset(&mq).unwrap(), puts.len() as u64);
            let msgs = read_queue(store, &mq);
            assert_eq!(msgs.len(), puts.len());
            for (t, body, put) in puts.iter().copied() {
                let m = &msgs[put.queue_offset as usize];
                assert_eq!(m.body(), body.as_bytes());
                assert_eq!(m.physical_offset(), put.physical_offset);
                assert_eq!(m.msg_id(), put.msg_id);
                assert_eq!(m.tags(), Some(format!("t{t}").as_str()));
            }
            // Within a queue, queue order is physical order.
            assert!(
                msgs.windows(2)
                    .all(|w| w[0].physical_offset() < w[1].physical_offset())
            );
        }
    };
    // Under Sync a PutOk message is durable and so visible at once, no flush needed.
    check(&store);
    store.close().unwrap();
    let store = small(dir).flush_policy(policy).open().unwrap();
    check(&store);
    store.close().unwrap();
}
