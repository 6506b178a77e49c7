//! mqlite next to its peers and the machine's raw limits, the workloads of DESIGN.md §5:
//!
//! * W1: 1,000,000 appends of 100-byte bodies, one thread, default `FlushPolicy::Async`,
//!   through `Producer::send`, timed to the final flush (`Store::flush`: fdatasync). A second
//!   row times the same run to the last send, when everything is in the page cache: that is
//!   what the peers' "flush" gives (neither yaque nor commitlog 0.2 ever calls `fsync`).
//! * W2: 500,000 appends of 1 KiB bodies, likewise.
//! * W4: reopen the W1 store and read every message in order (`get_messages` owned, and
//!   `scan` zero-copy).
//! * W6: reopen the W1 store after a clean close and close it again (`Store::open` and
//!   `close`; commitlog's `CommitLog::new` of its W1 log and drop), the median of 20.
//!
//! Peers, each on a fresh directory per run: yaque 0.6 (`try_send`, timed to drop, which
//! writes its buffer out), commitlog 0.2 (`append_msg`, timed to `flush`, which for it is
//! `File::flush`, a no-op; W4 reads with `read`). Raw limits:
//! `write(2)` of 260-byte records through a 64 KiB buffer, and memcpy plus CRC32 of each
//! record into a prefaulted anonymous mapping (no file system at all).
//!
//! Three runs of each; medians and the ratios to the best peer are printed.
//!
//! Run: `cargo bench -p mqlite-bench --bench peers`

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use commitlog::message::MessageSet;
use mqlite::{FlushPolicy, Message, Store};

const RUNS: usize = 3;
/// Bytes a 100-byte body takes as a RocketMQ record (header, topic, properties).
const RECORD_100: usize = 260;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` (which returns how many operations it timed, and the time) `RUNS` times on a
/// fresh directory each, and returns the median rate in operations/s.
fn rate(mut f: impl FnMut(&Path) -> (usize, Duration)) -> f64 {
    median(
        (0..RUNS)
            .map(|_| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let (n, took) = f(tmp.path());
                n as f64 / took.as_secs_f64()
            })
            .collect(),
    )
}

/// `durable`: timed to `Store::flush` (fdatasync), the W1/W2 definition; otherwise to the
/// last send returning, when everything is in the page cache — what the peers' own flush
/// gives (yaque's and commitlog's only call `write(2)`/`File::flush`, never `fsync`).
fn mqlite_append(dir: &Path, n: usize, body: usize, durable: bool) -> (usize, Duration) {
    let store = Store::builder(dir.join("store"))
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .expect("open");
    let producer = store.producer("bench").unwrap();
    let payload = vec![b'x'; body];
    let start = Instant::now();
    for _ in 0..n {
        producer
            .send(Message::new("bench", payload.clone()))
            .expect("send");
    }
    let sent = start.elapsed();
    store.flush().expect("flush");
    let took = if durable { start.elapsed() } else { sent };
    store.close().expect("close");
    (n, took)
}

fn yaque_append(dir: &Path, n: usize, body: usize) -> (usize, Duration) {
    let payload = vec![b'x'; body];
    let start = Instant::now();
    let mut sender = yaque::Sender::open(dir.join("yaque")).expect("open yaque");
    for _ in 0..n {
        sender.try_send(&payload).expect("yaque send");
    }
    drop(sender);
    (n, start.elapsed())
}

fn commitlog_append(dir: &Path, n: usize, body: usize) -> (usize, Duration) {
    let payload = vec![b'x'; body];
    let start = Instant::now();
    let mut log =
        commitlog::CommitLog::new(commitlog::LogOptions::new(dir.join("commitlog"))).expect("open");
    for _ in 0..n {
        log.append_msg(&payload).expect("append");
    }
    log.flush().expect("flush");
    (n, start.elapsed())
}

/// `write(2)` of `record`-byte records through a 64 KiB buffer, then `fdatasync`.
fn raw_write(dir: &Path, n: usize, record: usize) -> (usize, Duration) {
    let rec = vec![b'x'; record];
    let start = Instant::now();
    let file = std::fs::File::create(dir.join("raw")).expect("create");
    let mut w = std::io::BufWriter::with_capacity(64 << 10, file);
    for _ in 0..n {
        w.write_all(&rec).expect("write");
    }
    let file = w.into_inner().expect("flush");
    file.sync_data().expect("sync");
    (n, start.elapsed())
}

/// memcpy + CRC32 of `record`-byte records into a prefaulted anonymous mapping.
fn raw_mmap(n: usize, record: usize) -> (usize, Duration) {
    let mut map = memmap2::MmapMut::map_anon(n * record).expect("map");
    map.fill(0); // prefault
    let rec = vec![b'x'; record];
    let start = Instant::now();
    let mut crc = 0u32;
    for chunk in map.chunks_exact_mut(record) {
        chunk.copy_from_slice(&rec);
        crc ^= crc32fast::hash(&chunk[..record]);
    }
    std::hint::black_box(crc);
    (n, start.elapsed())
}

fn mqlite_read(dir: &Path, n: usize, zero_copy: bool) -> (usize, Duration) {
    let store_dir = dir.join("store");
    mqlite_append(dir, n, 100, true);
    let start = Instant::now();
    let store = Store::open(&store_dir).expect("reopen");
    let mut read = 0;
    for q in store.queues("bench").expect("queues") {
        let mut off = 0;
        let max = store.max_offset(&q).expect("max");
        while off < max {
            if zero_copy {
                off = store
                    .scan(&q, off, usize::MAX, |m| {
                        std::hint::black_box(m.stored_body());
                        read += 1;
                        true
                    })
                    .expect("scan");
            } else {
                let got = store.get_messages(&q, off, 32).expect("read");
                read += got.messages.len();
                off = got.next_offset;
            }
        }
    }
    let took = start.elapsed();
    assert_eq!(read, n);
    store.close().expect("close");
    (n, took)
}

fn commitlog_read(dir: &Path, n: usize) -> (usize, Duration) {
    commitlog_append(dir, n, 100);
    let start = Instant::now();
    let log =
        commitlog::CommitLog::new(commitlog::LogOptions::new(dir.join("commitlog"))).expect("open");
    let mut offset = 0;
    let mut read = 0;
    while read < n {
        let buf = log
            .read(offset, commitlog::ReadLimit::max_bytes(1 << 20))
            .expect("read");
        let mut last = None;
        for m in buf.iter() {
            std::hint::black_box(m.payload());
            read += 1;
            last = Some(m.offset());
        }
        offset = last.expect("progress") + 1;
    }
    (n, start.elapsed())
}

/// Median time of 20 reopens of a store that `fill` wrote into the directory it is given;
/// `open` opens and closes it once.
fn reopen_time(fill: impl FnOnce(&Path), mut open: impl FnMut(&Path)) -> Duration {
    let tmp = tempfile::tempdir().expect("tempdir");
    fill(tmp.path());
    open(tmp.path()); // the first open after the writes pays for what they left behind
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            open(tmp.path());
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn report(name: &str, rows: &[(&str, f64)]) {
    let best_peer = rows
        .iter()
        .filter(|(who, _)| *who == "yaque" || *who == "commitlog")
        .map(|r| r.1)
        .fold(0.0, f64::max);
    println!("{name}");
    for (who, r) in rows {
        let ratio = if best_peer > 0.0 { r / best_peer } else { 0.0 };
        println!("  {who:<22} {:>12.0} msg/s   {ratio:>5.2}x best peer", r);
    }
}

fn main() {
    // `cargo bench` passes flags such as `--bench`; this harness takes none.
    let w1 = 1_000_000;
    report(
        "W1: 1,000,000 appends of 100 B, one thread, to the final flush",
        &[
            (
                "mqlite Producer::send",
                rate(|d| mqlite_append(d, w1, 100, true)),
            ),
            (
                "  same, to page cache",
                rate(|d| mqlite_append(d, w1, 100, false)),
            ),
            ("yaque", rate(|d| yaque_append(d, w1, 100))),
            ("commitlog", rate(|d| commitlog_append(d, w1, 100))),
            (
                "raw write(2) 64 KiB",
                rate(|d| raw_write(d, w1, RECORD_100)),
            ),
            ("raw mmap memcpy+crc", rate(|_| raw_mmap(w1, RECORD_100))),
        ],
    );
    let w2 = 500_000;
    report(
        "W2: 500,000 appends of 1 KiB",
        &[
            (
                "mqlite Producer::send",
                rate(|d| mqlite_append(d, w2, 1024, true)),
            ),
            (
                "  same, to page cache",
                rate(|d| mqlite_append(d, w2, 1024, false)),
            ),
            ("yaque", rate(|d| yaque_append(d, w2, 1024))),
            ("commitlog", rate(|d| commitlog_append(d, w2, 1024))),
            (
                "raw write(2) 64 KiB",
                rate(|d| raw_write(d, w2, 1024 + 160)),
            ),
            ("raw mmap memcpy+crc", rate(|_| raw_mmap(w2, 1024 + 160))),
        ],
    );
    report(
        "W4: reopen and read 1,000,000 messages of 100 B in order",
        &[
            ("mqlite get_messages", rate(|d| mqlite_read(d, w1, false))),
            ("mqlite scan (views)", rate(|d| mqlite_read(d, w1, true))),
            ("commitlog", rate(|d| commitlog_read(d, w1))),
        ],
    );
    let mqlite_open = reopen_time(
        |d| {
            mqlite_append(d, w1, 100, true);
        },
        |d| {
            let store = Store::open(d.join("store")).expect("reopen");
            store.close().expect("close");
        },
    );
    let commitlog_open = reopen_time(
        |d| {
            commitlog_append(d, w1, 100);
        },
        |d| {
            let log = commitlog::CommitLog::new(commitlog::LogOptions::new(d.join("commitlog")))
                .expect("open");
            drop(log);
        },
    );
    println!("W6: reopen the W1 store after a clean close (open and close, median of 20)");
    println!("  mqlite Store::open      {mqlite_open:>10.2?}");
    println!("  commitlog               {commitlog_open:>10.2?}");
}
