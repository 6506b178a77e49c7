//! Producer → consumer latency in process (DESIGN.md §5: at 50 k msg/s, p50 ≤ 15 µs,
//! p99 ≤ 40 µs). A paced producer thread sends one message every 20 µs, stamping the send time
//! in the body; a consumer thread long-polls with `pull_timeout` and records how long each
//! message took to arrive. Criterion times a window of messages; the percentiles over all
//! windows are printed at the end, next to the same paced load through a crossbeam channel
//! run right after (the in-memory ceiling).
//!
//! After it, without criterion (fixed message counts, percentiles printed):
//! - a push consumer (`start_concurrently`) at the same pace, Async;
//! - `pull_timeout` under `FlushPolicy::SYNC`: each send returns once its message is durable,
//!   so the producer's own send time (one group flush) is printed next to the consumer's
//!   latency; the consumer should see a message within about one flush of its send.
//!
//! Run: `cargo bench --bench latency -- --noplot`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mqlite::{
    ConsumeFrom, ConsumeStatus, FlushPolicy, Message, MessageExt, MessageQueue, PullStatus, Store,
};
use parking_lot::Mutex;

const INTERVAL: Duration = Duration::from_micros(20);

/// Calls `send` `n` times, one every [`INTERVAL`], with a 100-byte body that starts with the
/// send time (ns since `base`, big-endian `u128`).
fn paced(base: Instant, n: usize, mut send: impl FnMut(Vec<u8>)) {
    let mut next = Instant::now();
    for _ in 0..n {
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        next += INTERVAL;
        let mut body = base.elapsed().as_nanos().to_be_bytes().to_vec();
        body.resize(100, b'x');
        send(body);
    }
}

/// How long ago (relative to `base`) the message with this body was sent.
fn since_sent(base: Instant, body: &[u8]) -> Duration {
    let mut b = [0u8; 16];
    b.copy_from_slice(&body[..16]);
    base.elapsed()
        .saturating_sub(Duration::from_nanos(u128::from_be_bytes(b) as u64))
}

/// Sends `n` paced messages and returns the one-way latencies observed by the consumer; with
/// `sends`, also how long each send took.
fn run_window(
    store: &Store,
    base: Instant,
    n: usize,
    offset: &mut u64,
    mut sends: Option<&mut Vec<Duration>>,
) -> Vec<Duration> {
    let q = MessageQueue::new("latency", 0);
    let producer = store.producer("bench").unwrap();
    let consumer = store.pull_consumer("bench").unwrap();
    let start_offset = *offset;
    let latencies = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut got = Vec::with_capacity(n);
            let mut off = start_offset;
            while got.len() < n {
                let r = consumer
                    .pull_timeout(&q, "*", off, 32, Duration::from_secs(1))
                    .expect("pull");
                if r.status == PullStatus::Found {
                    got.extend(r.messages.iter().map(|m| since_sent(base, m.body())));
                }
                off = r.next_begin_offset;
            }
            got
        });
        paced(base, n, |body| {
            let start = sends.is_some().then(Instant::now);
            producer
                .send_to(Message::new("latency", body), &q)
                .expect("send");
            if let (Some(sends), Some(start)) = (sends.as_deref_mut(), start) {
                sends.push(start.elapsed());
            }
        });
        receiver.join().expect("receiver")
    });
    *offset += n as u64;
    latencies
}

/// `n` paced messages to a push consumer (`start_concurrently`, one queue): the latencies its
/// listener observes.
fn push_window(store: &Store, base: Instant, n: usize) -> Vec<Duration> {
    store.create_topic("latency-push", 1).expect("topic");
    let got = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let listener_got = got.clone();
    let consumer = store
        .push_consumer("latency-push")
        .subscribe("latency-push", "*")
        .consume_from(ConsumeFrom::LastOffset)
        .start_concurrently(move |msgs: &[MessageExt]| {
            let mut got = listener_got.lock();
            got.extend(msgs.iter().map(|m| since_sent(base, m.body())));
            if got.len() >= n {
                let _ = done_tx.try_send(());
            }
            ConsumeStatus::Success
        })
        .expect("push consumer");
    let producer = store.producer("bench").unwrap();
    let q = MessageQueue::new("latency-push", 0);
    paced(base, n, |body| {
        producer
            .send_to(Message::new("latency-push", body), &q)
            .expect("send");
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the push consumer got every message");
    consumer.shutdown().expect("shutdown");
    let mut got = got.lock();
    std::mem::take(&mut *got)
}

/// The same paced producer and consumer over a crossbeam channel (the in-memory ceiling), for
/// a same-run comparison.
fn crossbeam_window(base: Instant, n: usize) -> Vec<Duration> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut got = Vec::with_capacity(n);
            while got.len() < n {
                let body = rx.recv().expect("recv");
                got.push(since_sent(base, &body));
            }
            got
        });
        paced(base, n, |body| tx.send(body).expect("send"));
        receiver.join().expect("receiver")
    })
}

/// p50, p99, p999 and max of `all` (sorted here).
fn percentiles(all: &mut [Duration]) -> String {
    all.sort();
    if all.is_empty() {
        return "no samples".into();
    }
    let p = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:?}, p90 {:?}, p99 {:?}, p999 {:?}, max {:?} over {} messages",
        p(0.50),
        p(0.90),
        p(0.99),
        p(0.999),
        all[all.len() - 1],
        all.len()
    )
}

/// A store in `dir` with the one-queue topic `latency`.
fn open_store(dir: &std::path::Path, policy: FlushPolicy) -> Store {
    let store = Store::builder(dir)
        .flush_policy(policy)
        .open()
        .expect("open");
    store.create_topic("latency", 1).expect("topic");
    store
}

fn latency(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open_store(tmp.path(), FlushPolicy::ASYNC);
    let base = Instant::now();
    let all = Mutex::new(Vec::new());
    let mut offset = 0;
    let mut group = c.benchmark_group("latency");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("produce_to_pull_timeout_50k_per_s", |b| {
        b.iter_custom(|iters| {
            // One "iteration" is one message; report the mean one-way latency.
            let l = run_window(&store, base, iters as usize, &mut offset, None);
            let total: Duration = l.iter().sum();
            all.lock().extend(l);
            total
        })
    });
    group.finish();
    let mut all = all.into_inner();
    println!("mqlite pull_timeout: {}", percentiles(&mut all));
    // The same number of messages through a crossbeam channel, right after.
    let mut channel = crossbeam_window(Instant::now(), all.len().max(1));
    println!("crossbeam-channel:   {}", percentiles(&mut channel));
    let mut push = push_window(&store, Instant::now(), all.len().clamp(1, 200_000));
    println!("mqlite push:         {}", percentiles(&mut push));
    store.close().expect("close");

    // Sync: every send waits for its group flush.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open_store(tmp.path(), FlushPolicy::SYNC);
    let mut sends = Vec::new();
    let mut offset = 0;
    let mut sync = run_window(&store, Instant::now(), 5_000, &mut offset, Some(&mut sends));
    println!("mqlite Sync pull_timeout: {}", percentiles(&mut sync));
    println!("mqlite Sync send (durable): {}", percentiles(&mut sends));
    store.close().expect("close");
}

criterion_group!(benches, latency);
criterion_main!(benches);
