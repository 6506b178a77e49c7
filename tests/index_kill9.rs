//! Index files after kill -9: a child process sends keyed messages and reports each
//! acknowledged one; the parent SIGKILLs it mid-stream, reopens the store (crash recovery
//! drops the index files not known durable and re-indexes the commitlog) and finds every
//! acknowledged message by its key and by its msgId, cycle after cycle.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mqlite::{IndexConfig, Message, Store, StoreBuilder};

const ENV_DIR: &str = "MQLITE_INDEX_KILL_DIR";
const ENV_FROM: &str = "MQLITE_INDEX_KILL_FROM";

fn builder(dir: &Path) -> StoreBuilder {
    common::small(dir).index(IndexConfig {
        enabled: true,
        max_hash_slots: 64,
        max_index_entries: 400,
    })
}

/// The child: sends `m{i}` with keys `U{i}` and `G{i % 10}` from `i = FROM` on, printing
/// `ACK i msg_id` after each send returned, until it is killed.
#[test]
#[ignore = "child process of index_kill9; does nothing when run directly"]
fn index_kill_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let from: u64 = std::env::var(ENV_FROM).unwrap().parse().unwrap();
    let store = builder(Path::new(&dir)).open().unwrap();
    let p = store.producer("p").unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    for i in from.. {
        let r = p
            .send(
                Message::new("orders", format!("m{i}"))
                    .with_keys([format!("U{i}"), format!("G{}", i % 10)]),
            )
            .unwrap();
        writeln!(out, "ACK {i} {}", r.msg_id).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn index_survives_kill_9() {
    let mut rng = common::Rng::new(common::seed(0x1D_0009));
    let dir = tempfile::tempdir().unwrap();
    {
        let store = builder(dir.path()).open().unwrap();
        store.create_topic("orders", 3).unwrap();
        store.close().unwrap();
    }
    let mut acked: Vec<(u64, String)> = Vec::new();
    for cycle in 0..3 {
        let from = acked.last().map_or(0, |a| a.0 + 1);
        let stop_after = rng.range(300, 1500);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "index_kill_child", "--nocapture"])
            .args(["--test-threads=1"])
            .env(ENV_DIR, dir.path())
            .env(ENV_FROM, from.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut n = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            let mut parts = line.split(' ');
            if parts.next() == Some("ACK") {
                let i: u64 = parts.next().unwrap().parse().unwrap();
                acked.push((i, parts.next().unwrap().to_owned()));
                n += 1;
                if n >= stop_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements the child wrote before it died.
        for line in lines.map_while(Result::ok) {
            let mut parts = line.split(' ');
            if parts.next() == Some("ACK") {
                let i: u64 = parts.next().unwrap().parse().unwrap();
                acked.push((i, parts.next().unwrap().to_owned()));
            }
        }
        let store = builder(dir.path()).open().unwrap();
        check(&store, &acked, cycle);
        store.close().unwrap();
    }
}

fn check(store: &Store, acked: &[(u64, String)], cycle: u32) {
    for (i, id) in acked {
        let by_key = store
            .query_by_key("orders", &format!("U{i}"), 0, u64::MAX, 64)
            .unwrap();
        // A message the killed child stored but could not acknowledge is sent again by the
        // next child (it resumes after the last acknowledgement): the key may have two
        // records, each with the same body.
        assert!(
            (1..=2).contains(&by_key.len()),
            "cycle {cycle}: U{i}: {} records",
            by_key.len()
        );
        assert!(
            by_key
                .iter()
                .all(|m| m.body() == format!("m{i}").as_bytes()),
            "cycle {cycle}: U{i}"
        );
        let by_id = store.view_message_by_id("orders", id).unwrap();
        assert!(
            by_key
                .iter()
                .any(|m| m.physical_offset() == by_id.physical_offset()),
            "cycle {cycle}: U{i}: the acknowledged message is not among the key's records"
        );
    }
    // A shared key: the newest 64, newest first, as the log holds them.
    let all = store
        .messages_between("orders", 0, u64::MAX, usize::MAX)
        .unwrap();
    let want: Vec<u64> = all
        .iter()
        .rev()
        .filter(|m| m.keys().any(|k| k == "G3"))
        .map(|m| m.physical_offset())
        .take(64)
        .collect();
    let got: Vec<u64> = store
        .query_by_key("orders", "G3", 0, u64::MAX, 64)
        .unwrap()
        .iter()
        .map(|m| m.physical_offset())
        .collect();
    assert_eq!(got, want, "cycle {cycle}");
}

/// Entries the index files on disk hold (each file's `indexCount` minus the unused entry 0).
fn index_entries(dir: &Path) -> u64 {
    let Ok(files) = std::fs::read_dir(dir.join("index")) else {
        return 0;
    };
    files
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .filter(|b| b.len() >= 40)
        .map(|b| u64::from(u32::from_be_bytes([b[36], b[37], b[38], b[39]]).saturating_sub(1)))
        .sum()
}

/// After kill -9, the index files come to hold every record the log kept (the open indexes
/// what they lack), with no query to catch the index up.
#[test]
fn after_kill_9_the_index_files_hold_every_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = builder(dir.path()).open().unwrap();
        store.create_topic("orders", 3).unwrap();
        store.close().unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "index_kill_child", "--nocapture"])
        .args(["--test-threads=1"])
        .env(ENV_DIR, dir.path())
        .env(ENV_FROM, "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acks = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with("ACK"))
        .take(1000)
        .count();
    assert_eq!(acks, 1000);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let store = builder(dir.path()).open().unwrap();
    let records: u64 = store
        .queues("orders")
        .unwrap()
        .iter()
        .map(|q| store.max_offset(q).unwrap())
        .sum();
    assert!(records >= 1000);
    // Each message has three index keys: its msgId and two keys.
    common::wait_until(
        "the index writer to catch up",
        Duration::from_secs(60),
        || index_entries(dir.path()) == 3 * records,
    );
    store.close().unwrap();
    assert_eq!(index_entries(dir.path()), 3 * records);
}
