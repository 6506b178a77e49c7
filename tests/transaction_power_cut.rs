//! Transactions across power cuts on the crash simulator (`mqlite::sim`), under `Sync`: a
//! sender runs transactions (committed at once, rolled back at once, left unknown for the
//! check service, or ended later by a second call) while the check service runs every 5 ms;
//! the power is cut at a random moment, and the store restarts keeping only what was durable
//! or, every other round, also a random half of the unsynced pages (so a commit's real message
//! may survive without its op). Whether a transaction commits is a pure function of its body.
//!
//! After the last round, the store reopens and the check service resolves every half message
//! left; then every commit acknowledged is delivered, every half message acknowledged whose
//! checker commits is delivered, nothing is delivered twice, and nothing that rolls back is
//! delivered.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Rng;
use mqlite::sim::{Keep, SimStorage};
use mqlite::{FlushPolicy, Message, MessageExt, MessageQueue, SendStatus, Store, TransactionState};

const HALF: &str = "RMQ_SYS_TRANS_HALF_TOPIC";

fn open(dir: &Path, sim: &SimStorage) -> Store {
    Store::builder(dir)
        .simulated(sim)
        .flush_policy(FlushPolicy::SYNC)
        .commitlog_segment_size(64 * 1024)
        .consume_queue_segment_size(20 * 64)
        .transaction_check_interval(Duration::from_millis(5))
        .transaction_timeout(Duration::from_millis(10))
        .open()
        .expect("open")
}

fn commits(body: &[u8]) -> bool {
    !crc32fast::hash(body).is_multiple_of(3)
}

fn decision(body: &[u8]) -> TransactionState {
    if commits(body) {
        TransactionState::Commit
    } else {
        TransactionState::Rollback
    }
}

fn checker(m: &MessageExt) -> TransactionState {
    decision(m.body())
}

#[derive(Default)]
struct Acked {
    /// Half messages stored durably.
    halves: BTreeSet<String>,
    /// Transactions whose end was stored durably.
    ended: BTreeSet<String>,
}

fn run_round(dir: &Path, sim: &SimStorage, round: u64, target: usize, acked: &Mutex<Acked>) {
    let store = open(dir, sim);
    let tx = store.transaction_producer("orders", checker).unwrap();
    let count = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0.. {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let body = format!("r{round}-{i}");
                let mode = i % 3;
                let Ok(r) = tx.send_in_transaction(Message::new("t", body.as_str()), |m| {
                    if mode == 0 {
                        decision(m.body())
                    } else {
                        TransactionState::Unknown
                    }
                }) else {
                    break;
                };
                if r.status != SendStatus::SendOk {
                    continue;
                }
                acked.lock().unwrap().halves.insert(body.clone());
                let ended = match mode {
                    0 => r.end_recorded,
                    1 => false,
                    _ => tx
                        .end_transaction(&r.offset_msg_id, decision(body.as_bytes()))
                        .is_ok(),
                };
                if ended {
                    acked.lock().unwrap().ended.insert(body);
                }
                count.fetch_add(1, Ordering::AcqRel);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.load(Ordering::Acquire) < target && Instant::now() < deadline {
            std::thread::yield_now();
        }
        sim.power_cut();
        stop.store(true, Ordering::Release);
    });
    drop(tx);
    drop(store);
}

#[test]
fn power_cuts_keep_transactions_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimStorage::new(tmp.path()).unwrap();
    let acked = Mutex::new(Acked::default());
    let mut rng = Rng::new(common::seed(0x7C07));
    for round in 0..24u64 {
        run_round(&dir, &sim, round, rng.range(1, 60) as usize, &acked);
        let keep = if round % 2 == 1 {
            Keep::RandomPages {
                seed: rng.next_u64(),
                probability: 0.5,
            }
        } else {
            Keep::Nothing
        };
        sim.restart(keep).unwrap();
    }
    let acked = acked.into_inner().unwrap();
    let store = open(&dir, &sim);
    let _tx = store.transaction_producer("orders", checker).unwrap();
    let half = MessageQueue::new(HALF, 0);
    let sys = store.pull_consumer("CID_RMQ_SYS_TRANS").unwrap();
    let expected: Vec<&String> = acked
        .halves
        .iter()
        .filter(|b| commits(b.as_bytes()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let delivered: Vec<String> = match store.topic("t") {
            Some(_) => store
                .queues("t")
                .unwrap()
                .iter()
                .flat_map(|q| common::read_queue(&store, q))
                .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
                .collect(),
            None => Vec::new(),
        };
        let max = store.max_offset(&half).unwrap_or(0);
        let passed = sys.committed_offset(&half).unwrap().unwrap_or(0) == max;
        if passed && expected.iter().all(|b| delivered.contains(b)) {
            break delivered;
        }
        assert!(
            Instant::now() < deadline,
            "the check service never resolved every half message ({} of {} delivered)",
            expected.iter().filter(|b| delivered.contains(b)).count(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in &delivered {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    for (b, n) in &counts {
        assert_eq!(*n, 1, "{b} delivered {n} times");
        assert!(commits(b.as_bytes()), "{b} rolls back but was delivered");
    }
    for b in acked.ended.iter().filter(|b| commits(b.as_bytes())) {
        assert!(
            counts.contains_key(b.as_str()),
            "acknowledged commit {b} lost"
        );
    }
    assert!(
        acked.ended.len() > 50,
        "too few transactions to mean anything"
    );
    store.close().unwrap();
}
