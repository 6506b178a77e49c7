//! Transactions across kill -9: a child process (this test binary re-executed) sends
//! transactional messages (committed at once, rolled back at once, left unknown for the check
//! service, or ended later by a second call) under `Sync` and `Async` flush, with a check
//! service running every 10 ms, until the parent SIGKILLs it at a random moment; 30 cycles.
//! Whether a transaction commits is a pure function of its body, known to the child's local
//! transactions, to its checker and to the parent's.
//!
//! After the last cycle the parent reopens the store and lets the check service resolve
//! every half message left, then checks: every commit the child acknowledged is delivered,
//! every transaction left unknown whose checker commits is delivered (checked back after the
//! reopen), nothing is delivered twice, and nothing that rolls back is ever delivered.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Rng;
use mqlite::{FlushPolicy, Message, MessageExt, MessageQueue, Store, TransactionState};

const ENV_CHILD: &str = "MQLITE_TXN_CHILD";
const ENV_DIR: &str = "MQLITE_TXN_DIR";
const ENV_CYCLE: &str = "MQLITE_TXN_CYCLE";
const CYCLES: u64 = 30;
const HALF: &str = "RMQ_SYS_TRANS_HALF_TOPIC";

fn open(dir: &Path, sync: bool) -> Store {
    let b = common::small(dir)
        .transaction_check_interval(Duration::from_millis(10))
        .transaction_timeout(Duration::from_millis(20));
    let b = if sync {
        b.flush_policy(FlushPolicy::SYNC)
    } else {
        b
    };
    b.open().unwrap()
}

/// Whether the transaction of `body` commits (two in three do).
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

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("\n{line}\n").as_bytes());
    let _ = out.flush();
}

/// The child: sends transactions until killed.
#[test]
#[ignore = "child process of kill_9_between_half_and_end_keeps_transactions_exact"]
fn transaction_child() {
    let (Some(dir), Some(_)) = (std::env::var_os(ENV_DIR), std::env::var_os(ENV_CHILD)) else {
        return;
    };
    let cycle: u64 = std::env::var(ENV_CYCLE).unwrap().parse().unwrap();
    let store = open(Path::new(&dir), cycle.is_multiple_of(2));
    let tx = store.transaction_producer("orders", checker).unwrap();
    emit("READY");
    for i in 0.. {
        let body = format!("c{cycle}-{i}");
        let mode = i % 3;
        let r = tx
            .send_in_transaction(Message::new("t", body.as_str()), |m| {
                if mode == 0 {
                    decision(m.body())
                } else {
                    TransactionState::Unknown
                }
            })
            .unwrap();
        match mode {
            0 => {
                assert!(r.end_recorded);
                emit(&format!("ENDED {body}"));
            }
            1 => emit(&format!("HALF {body}")),
            _ => {
                emit(&format!("HALF {body}"));
                tx.end_transaction(&r.offset_msg_id, decision(body.as_bytes()))
                    .unwrap();
                emit(&format!("ENDED {body}"));
            }
        }
    }
}

/// What a child reported before it was killed.
#[derive(Default)]
struct Report {
    /// Half messages stored (the transaction is pending or ended).
    halves: Vec<String>,
    /// Transactions ended by the producer.
    ended: Vec<String>,
}

fn run_child(dir: &Path, cycle: u64, kill_after: Duration) -> Report {
    let lines = common::run_killed_child(
        "transaction_child",
        &[
            (ENV_CHILD, "1".to_owned()),
            (ENV_DIR, dir.display().to_string()),
            (ENV_CYCLE, cycle.to_string()),
        ],
        kill_after,
    );
    Report {
        halves: common::with_prefix(&lines, "HALF "),
        ended: common::with_prefix(&lines, "ENDED "),
    }
}

#[test]
fn kill_9_between_half_and_end_keeps_transactions_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(common::seed(0x7A5));
    let mut stored = BTreeSet::new();
    let mut ended = BTreeSet::new();
    let began = Instant::now();
    for cycle in 0..CYCLES {
        let kill_after = Duration::from_millis(rng.range(5, 80));
        let r = run_child(dir.path(), cycle, kill_after);
        stored.extend(r.halves);
        ended.extend(r.ended.iter().cloned());
        stored.extend(r.ended);
    }
    let cycles_took = began.elapsed();
    let store = open(dir.path(), false);
    let _tx = store.transaction_producer("orders", checker).unwrap();
    let half = MessageQueue::new(HALF, 0);
    let sys = store.pull_consumer("CID_RMQ_SYS_TRANS").unwrap();
    let expected: BTreeSet<&String> = stored.iter().filter(|b| commits(b.as_bytes())).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let delivered: Vec<String> = store
            .queues("t")
            .unwrap()
            .iter()
            .flat_map(|q| common::read_queue(&store, q))
            .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
            .collect();
        let passed = sys.committed_offset(&half).unwrap() == Some(store.max_offset(&half).unwrap());
        let all_there = expected.iter().all(|b| delivered.contains(b));
        if passed && all_there {
            break delivered;
        }
        assert!(
            Instant::now() < deadline,
            "the check service never resolved every half message ({} of {} expected delivered)",
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
    assert!(
        ended.iter().filter(|b| commits(b.as_bytes())).count() > 10,
        "too few transactions ended to mean anything"
    );
    eprintln!(
        "{} half messages stored, {} ended by the producer, {} delivered; cycles {cycles_took:?}, resolution {:?}",
        stored.len(),
        ended.len(),
        delivered.len(),
        began.elapsed() - cycles_took
    );
}
