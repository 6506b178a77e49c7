//! Reopen after kill -9: a child process opens a store with RocketMQ's 1 GiB CommitLog
//! segments, stores `n` messages of 100 bytes (`FlushPolicy::Async`), says so, and is killed
//! with SIGKILL; the parent then times `Store::open` (crash recovery) and checks that every
//! message is there. Recovery should cost what was written since the last checkpoint, not the
//! size of the segment.
//!
//! Five runs per case on a fresh directory each; medians are printed.
//!
//! Run: `cargo bench -p mqlite-bench --bench reopen_killed`

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mqlite::{Message, Store};

const SEGMENT: u64 = 1 << 30;
const RUNS: usize = 5;
const CHILD: &str = "MQLITE_BENCH_KILLED_CHILD";

fn builder(dir: &Path) -> mqlite::StoreBuilder {
    Store::builder(dir).commitlog_segment_size(SEGMENT)
}

/// The child: store `n` messages, print READY, wait to be killed.
fn child(dir: &str, n: usize) {
    let store = builder(Path::new(dir)).open().expect("open");
    let producer = store.producer("bench").expect("producer");
    for _ in 0..n {
        producer
            .send(Message::new("bench", vec![b'x'; 100]))
            .expect("send");
    }
    println!("READY");
    // Blocks until the parent kills us (stdin stays open and empty).
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    std::process::exit(1);
}

/// One run: the time `Store::open` took after the child holding `n` messages was killed.
fn run(n: usize) -> Duration {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let mut kid = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD, format!("{}:{n}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut line = String::new();
    BufReader::new(kid.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the child");
    assert_eq!(line.trim(), "READY", "the child failed");
    kid.kill().expect("SIGKILL");
    kid.wait().expect("wait");
    let start = Instant::now();
    let store = builder(&dir).open().expect("reopen");
    let took = start.elapsed();
    let stored: u64 = store
        .queues("bench")
        .expect("queues")
        .iter()
        .map(|q| store.max_offset(q).expect("max offset"))
        .sum();
    assert_eq!(stored, n as u64, "messages lost by the crash");
    store.close().expect("close");
    took
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (dir, n) = spec.rsplit_once(':').expect("dir:n");
        child(dir, n.parse().expect("n"));
        return;
    }
    for n in [1usize, 100_000] {
        let mut times: Vec<Duration> = (0..RUNS).map(|_| run(n)).collect();
        times.sort();
        println!(
            "reopen after kill -9, 1 GiB segments, {n} messages: median {:.1} ms (all {:?})",
            times[RUNS / 2].as_secs_f64() * 1000.0,
            times
                .iter()
                .map(|t| format!("{:.1}", t.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
        );
    }
}
