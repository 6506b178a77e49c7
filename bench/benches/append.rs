//! Append throughput (DESIGN.md §5).
//!
//! * `append_async/{100B,1KiB}`: one thread, `FlushPolicy::Async`, messages/s. Each iteration
//!   builds the `Message` (fresh body `Vec`, tag) and puts it to queue 0 of a 4-queue topic.
//!   One store per benchmark, 1 GiB segments with warming on, reused across iterations.
//! * `group_commit/append_sync/{1,4,16}`: `FlushPolicy::Sync` (5 s timeout), N threads each
//!   putting 100-byte bodies; messages/s over all threads.
//! * `group_commit/raw_fdatasync/{1,4,16}`: the baseline for the above, run right after it at
//!   each thread count: N threads `pwrite` fixed 191-byte records at atomically reserved
//!   offsets of a preallocated, already-written file and share `fdatasync`s through a
//!   leader/follower group commit on a mutex and condition variable — mqlite's shape with no
//!   store logic.
//!
//! After the run, the mqlite / raw throughput ratio at each thread count is printed (from the
//! medians criterion saved).
//!
//! Run: `cargo bench --bench append -- --noplot` (`MQLITE_BENCH_NO_INDEX=1` turns the index
//! files off, to compare).

mod common;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use mqlite::{FlushPolicy, Message, PutStatus, Store};
use parking_lot::{Condvar, Mutex};

const TOPIC: &str = "bench";
const QUEUES: u32 = 4;
const GIB: u64 = 1 << 30;
const THREADS: [usize; 3] = [1, 4, 16];
/// Record size of the raw baseline.
const RAW_RECORD: usize = 191;
/// Size of the raw baseline's file; appends wrap around in it.
const RAW_FILE: u64 = 128 << 20;

fn open_store(dir: &std::path::Path, policy: FlushPolicy) -> Store {
    let mut builder = Store::builder(dir)
        .flush_policy(policy)
        .commitlog_segment_size(GIB)
        .warm_segments(true);
    // `MQLITE_BENCH_NO_INDEX=1` measures without index files, for comparison.
    if std::env::var_os("MQLITE_BENCH_NO_INDEX").is_some() {
        builder = builder.index(mqlite::IndexConfig::DISABLED);
    }
    let store = builder.open().expect("open store");
    store.create_topic(TOPIC, QUEUES).expect("create topic");
    // Under Sync, opening zero-fills the start of a new store's first segment and the
    // background threads keep ahead of the writer; let any such work settle so it does not
    // share the 2 cores and the disk with the measurement.
    common::wait_for_preparer_idle(Duration::from_secs(15));
    store
}

fn append_async(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_async");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for (name, size) in [("100B", 100usize), ("1KiB", 1024)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Opened on first use, so a filtered-out benchmark costs nothing.
        let store = OnceLock::new();
        let body = vec![b'x'; size];
        group.bench_function(name, |b| {
            let store =
                store.get_or_init(|| open_store(&tmp.path().join("store"), FlushPolicy::ASYNC));
            b.iter(|| {
                let msg = Message::new(TOPIC, body.clone()).with_tags("t");
                black_box(store.put(&msg, 0).expect("put"))
            })
        });
        if let Some(store) = store.into_inner() {
            report_volume(&format!("append_async/{name}"), &store);
            store.close().expect("close");
        }
    }
    group.finish();
}

/// Prints where a benchmark's store ended: segments filled before the last one were rolled
/// over, and a roll waits for the background preparation of the next segment if it is not
/// ready yet.
fn report_volume(bench: &str, store: &Store) {
    let end = store.commitlog_max_offset();
    let segment = store.config().commitlog_segment_size;
    println!(
        "{bench}: CommitLog ends at {} MiB: {} full {} MiB segment(s) behind the writer\n",
        end >> 20,
        end / segment,
        segment >> 20
    );
}

/// Runs `iters` operations split over `threads` threads, timing from a common start.
fn run_threads(threads: usize, iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..n {
                        op(t);
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("bench thread");
        }
        start.elapsed()
    })
}

/// A raw group-commit log: fixed-size records `pwrite`n at atomically reserved offsets, made
/// durable by leader/follower shared `fdatasync`s.
struct RawLog {
    file: File,
    reserved: AtomicU64,
    state: Mutex<RawState>,
    flushed_cv: Condvar,
}

#[derive(Default)]
struct RawState {
    /// Every record below this (logical) offset has been written.
    written: u64,
    /// Starts of records written out of order, above `written`.
    ahead: BTreeSet<u64>,
    /// Everything below this is durable.
    flushed: u64,
    leader: bool,
}

impl RawLog {
    fn create(path: &std::path::Path) -> RawLog {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .expect("create raw log");
        // Write every block (not just fallocate), as mqlite's warmed segments are.
        let chunk = vec![0u8; 1 << 20];
        for i in 0..RAW_FILE / chunk.len() as u64 {
            file.write_all_at(&chunk, i * chunk.len() as u64)
                .expect("zero-fill raw log");
        }
        file.sync_all().expect("sync raw log");
        RawLog {
            file,
            reserved: AtomicU64::new(0),
            state: Mutex::new(RawState::default()),
            flushed_cv: Condvar::new(),
        }
    }

    /// Appends one record and returns once it is durable.
    fn append(&self, record: &[u8; RAW_RECORD]) {
        let len = RAW_RECORD as u64;
        let start = self.reserved.fetch_add(len, Ordering::Relaxed);
        let slots = RAW_FILE / len;
        self.file
            .write_all_at(record, (start / len % slots) * len)
            .expect("pwrite");
        let end = start + len;
        let mut st = self.state.lock();
        // Advance the contiguous written end.
        if st.written == start {
            st.written = end;
            while let Some(&next) = st.ahead.first() {
                if next != st.written {
                    break;
                }
                st.ahead.pop_first();
                st.written += len;
            }
        } else {
            st.ahead.insert(start);
        }
        // Group commit.
        loop {
            if st.flushed >= end {
                return;
            }
            if !st.leader {
                st.leader = true;
                let target = st.written;
                drop(st);
                self.file.sync_data().expect("fdatasync");
                st = self.state.lock();
                st.leader = false;
                st.flushed = st.flushed.max(target);
                self.flushed_cv.notify_all();
                continue;
            }
            self.flushed_cv.wait(&mut st);
        }
    }
}

const SYNC: FlushPolicy = FlushPolicy::Sync {
    timeout: Duration::from_secs(5),
};
/// Segment size of the `append_sync_warm` store.
const WARM_SEGMENT: u64 = 64 << 20;

/// A `Sync` store whose writer is in a segment the preparer warmed (allocated, zero-filled
/// and flushed), as every segment after a store's first one is: the first segment is filled
/// under `Async`, the store closed and reopened under `Sync`.
fn open_warm_sync_store(dir: &std::path::Path) -> Store {
    let store = Store::builder(dir)
        .commitlog_segment_size(WARM_SEGMENT)
        .open()
        .expect("open store");
    store.create_topic(TOPIC, QUEUES).expect("create topic");
    let body = vec![b'x'; 1024];
    while store.commitlog_max_offset() < WARM_SEGMENT + (1 << 20) {
        let msg = Message::new(TOPIC, body.clone()).with_tags("t");
        store.put(&msg, 0).expect("put");
    }
    store.close().expect("close");
    let store = Store::builder(dir)
        .flush_policy(SYNC)
        .commitlog_segment_size(WARM_SEGMENT)
        .open()
        .expect("reopen store");
    common::wait_for_preparer_idle(Duration::from_secs(15));
    store
}

/// One `Sync` put of a fresh 100-byte message from thread `t`.
fn sync_put(store: &Store, body: &[u8], t: usize) {
    let msg = Message::new(TOPIC, body.to_vec()).with_tags("t");
    let r = store.put(&msg, t as u32 % QUEUES).expect("put");
    assert_eq!(r.status, PutStatus::PutOk);
}

/// The stores and raw log of the `group_commit` group, each made on first use (so a
/// filtered-out benchmark costs nothing) and kept for the paired ratio measurement.
struct SyncFixtures {
    tmp: tempfile::TempDir,
    fresh: OnceLock<Store>,
    warm: OnceLock<Store>,
    raw: OnceLock<RawLog>,
    body: Vec<u8>,
}

impl SyncFixtures {
    fn new() -> SyncFixtures {
        SyncFixtures {
            tmp: tempfile::tempdir().expect("tempdir"),
            fresh: OnceLock::new(),
            warm: OnceLock::new(),
            raw: OnceLock::new(),
            body: vec![b'x'; 100],
        }
    }

    fn fresh(&self) -> &Store {
        self.fresh
            .get_or_init(|| open_store(&self.tmp.path().join("fresh"), SYNC))
    }

    fn warm(&self) -> &Store {
        self.warm
            .get_or_init(|| open_warm_sync_store(&self.tmp.path().join("warm")))
    }

    fn raw(&self) -> &RawLog {
        self.raw
            .get_or_init(|| RawLog::create(&self.tmp.path().join("raw.log")))
    }

    /// Runs `iters` appends of `variant` on `threads` threads; returns the elapsed time.
    fn run(&self, variant: Variant, threads: usize, iters: u64) -> Duration {
        match variant {
            Variant::Fresh => {
                let store = self.fresh();
                run_threads(threads, iters, |t| sync_put(store, &self.body, t))
            }
            Variant::Warm => {
                let store = self.warm();
                run_threads(threads, iters, |t| sync_put(store, &self.body, t))
            }
            Variant::Raw => {
                let raw = self.raw();
                let record = [b'r'; RAW_RECORD];
                run_threads(threads, iters, |_| raw.append(&record))
            }
        }
    }

    fn close(self) {
        for (name, store) in [("append_sync", self.fresh), ("append_sync_warm", self.warm)] {
            if let Some(store) = store.into_inner() {
                report_volume(&format!("group_commit/{name}"), &store);
                store.close().expect("close");
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `append_sync`: a new store, writing its first (not warmed) segment.
    Fresh,
    /// `append_sync_warm`: writing a segment the preparer warmed.
    Warm,
    /// `raw_fdatasync`.
    Raw,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Fresh, Variant::Warm, Variant::Raw];

    fn name(self) -> &'static str {
        match self {
            Variant::Fresh => "append_sync",
            Variant::Warm => "append_sync_warm",
            Variant::Raw => "raw_fdatasync",
        }
    }
}

fn group_commit(c: &mut Criterion, fx: &SyncFixtures) {
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for threads in THREADS {
        // The three variants run back to back at each thread count: fsync latency on this
        // machine drifts by 2x over tens of seconds.
        for v in Variant::ALL {
            group.bench_with_input(BenchmarkId::new(v.name(), threads), &threads, |b, &n| {
                b.iter_custom(|iters| fx.run(v, n, iters))
            });
        }
    }
    group.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Rounds of the paired measurement, and the length of one variant's turn in a round.
const PAIRED_ROUNDS: usize = 9;
const PAIRED_TURN: Duration = Duration::from_millis(150);

/// A steadier ratio than criterion's separate runs give: at each thread count, the variants
/// take turns of ~150 ms, in rotating order, for several rounds; each round yields a ratio
/// mqlite/raw from turns ~0.5 s apart, and the median of those ratios is reported.
fn paired_sync_ratios(fx: &SyncFixtures) {
    println!(
        "\nSync append vs raw_fdatasync, paired: {PAIRED_ROUNDS} rounds of interleaved \
         {} ms turns per thread count; median msg/s and median per-round ratio",
        PAIRED_TURN.as_millis()
    );
    for threads in THREADS {
        // Calibrate each variant's turn length in appends.
        let turn: Vec<u64> = Variant::ALL
            .iter()
            .map(|&v| {
                let probe = 16 * threads as u64;
                let el = fx.run(v, threads, probe);
                let per_op = el.as_secs_f64() / probe as f64;
                ((PAIRED_TURN.as_secs_f64() / per_op) as u64).max(threads as u64)
            })
            .collect();
        let mut rates = vec![Vec::new(); Variant::ALL.len()];
        let mut ratios = vec![Vec::new(); Variant::ALL.len()];
        for round in 0..PAIRED_ROUNDS {
            let mut rate = [0.0; 3];
            for k in 0..Variant::ALL.len() {
                let i = (round + k) % Variant::ALL.len();
                let el = fx.run(Variant::ALL[i], threads, turn[i]);
                rate[i] = turn[i] as f64 / el.as_secs_f64();
                rates[i].push(rate[i]);
            }
            for i in 0..2 {
                ratios[i].push(rate[i] / rate[2]);
            }
        }
        let raw_rate = median(&mut rates[2]);
        for i in 0..2 {
            let rate = median(&mut rates[i]);
            // `median` sorts: first and last are the extremes.
            let ratio = median(&mut ratios[i]);
            let (lo, hi) = (ratios[i][0], ratios[i][ratios[i].len() - 1]);
            println!(
                "  {threads:>2} threads: {:<16} {rate:>7.0} msg/s, raw_fdatasync {raw_rate:>7.0} \
                 msg/s, ratio {ratio:.2} (rounds: {lo:.2}..{hi:.2})",
                Variant::ALL[i].name(),
            );
        }
    }
}

fn print_sync_ratios(since: SystemTime) {
    let mut lines = Vec::new();
    for t in THREADS {
        let p = t.to_string();
        let median = |f: &str| common::median_ns(since, "group_commit", f, &p);
        let Some(raw) = median("raw_fdatasync") else {
            continue;
        };
        // Times per message: the throughput ratio mqlite/raw is raw time / mqlite time.
        for f in ["append_sync", "append_sync_warm"] {
            if let Some(m) = median(f) {
                lines.push(format!(
                    "  {t:>2} threads: {f:<16} {:>7.0} msg/s, raw_fdatasync {:>7.0} msg/s, ratio {:.2}",
                    1e9 / m,
                    1e9 / raw,
                    raw / m
                ));
            }
        }
    }
    if !lines.is_empty() {
        println!("\nSync append vs raw_fdatasync (criterion medians, separate runs):");
        for l in lines {
            println!("{l}");
        }
    }
}

fn main() {
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    append_async(&mut c);
    let fx = SyncFixtures::new();
    group_commit(&mut c, &fx);
    c.final_summary();
    print_sync_ratios(since);
    // Only in a real `cargo bench` run (not `cargo test --benches`, `--list` or
    // `--profile-time`), and only if the whole sync group ran.
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--list" || a.starts_with("--profile-time"));
    let all_ran = fx.fresh.get().is_some() && fx.warm.get().is_some() && fx.raw.get().is_some();
    if measuring && all_ran {
        paired_sync_ratios(&fx);
    }
    fx.close();
}
