//! Push-consumer throughput with 4 consume threads, concurrent and orderly (DESIGN.md §5 has
//! no target; figures are reported), and push end-to-end latency.
//!
//! Each throughput iteration starts a fresh consumer group at the first offset of a store
//! prefilled with 100,000 messages of 100 bytes over 8 queues and measures until the listener
//! has seen all of them. Latency: a paced producer (one message every 50 µs) and a push
//! consumer; percentiles of send → listener are printed at the end.
//!
//! Run: `cargo bench --bench push -- --noplot`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mqlite::{ConsumeFrom, ConsumeStatus, FlushPolicy, Message, OrderlyStatus, Store};
use parking_lot::Mutex;

const MESSAGES: usize = 100_000;

fn prefill(dir: &std::path::Path) -> Store {
    let store = Store::builder(dir)
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .expect("open");
    store.create_topic("push", 8).expect("topic");
    let p = store.producer("bench").unwrap();
    let body = vec![b'x'; 100];
    for i in 0..MESSAGES {
        p.send_ordered(Message::new("push", body.clone()), (i % 1000).to_string())
            .expect("send");
    }
    store
}

fn wait_all(count: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < MESSAGES {
        assert!(Instant::now() < deadline, "consumer stalled");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn throughput(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = prefill(tmp.path());
    let mut round = 0;
    let mut group = c.benchmark_group("push");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("concurrently_4_threads", |b| {
        b.iter(|| {
            round += 1;
            let count = Arc::new(AtomicUsize::new(0));
            let n = count.clone();
            let consumer = store
                .push_consumer(&format!("c{round}"))
                .subscribe("push", "*")
                .consume_from(ConsumeFrom::FirstOffset)
                .threads(4)
                .start_concurrently(move |msgs| {
                    n.fetch_add(msgs.len(), Ordering::Relaxed);
                    ConsumeStatus::Success
                })
                .expect("start");
            wait_all(&count);
            consumer.shutdown().expect("shutdown");
        })
    });
    group.bench_function("orderly_4_threads", |b| {
        b.iter(|| {
            round += 1;
            let count = Arc::new(AtomicUsize::new(0));
            let n = count.clone();
            let consumer = store
                .push_consumer(&format!("o{round}"))
                .subscribe("push", "*")
                .consume_from(ConsumeFrom::FirstOffset)
                .threads(4)
                .start_orderly(move |msgs, _| {
                    n.fetch_add(msgs.len(), Ordering::Relaxed);
                    OrderlyStatus::Success
                })
                .expect("start");
            wait_all(&count);
            consumer.shutdown().expect("shutdown");
        })
    });
    group.finish();
}

fn latency(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(tmp.path()).open().expect("open");
    store.create_topic("lat", 1).expect("topic");
    let base = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let s = samples.clone();
    let consumer = store
        .push_consumer("lat")
        .subscribe("lat", "*")
        .threads(1)
        .start_concurrently(move |msgs| {
            let now = base.elapsed();
            let mut s = s.lock();
            for m in msgs {
                let mut b = [0u8; 16];
                b.copy_from_slice(&m.body()[..16]);
                s.push(now.saturating_sub(Duration::from_nanos(u128::from_be_bytes(b) as u64)));
            }
            ConsumeStatus::Success
        })
        .expect("start");
    let producer = store.producer("lat").unwrap();
    let mut group = c.benchmark_group("push");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("send_to_listener_paced_20k_per_s", |b| {
        b.iter_custom(|iters| {
            let start = samples.lock().len();
            let mut next = Instant::now();
            for _ in 0..iters {
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
                next += Duration::from_micros(50);
                let mut body = base.elapsed().as_nanos().to_be_bytes().to_vec();
                body.resize(100, b'x');
                producer.send(Message::new("lat", body)).expect("send");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while samples.lock().len() < start + iters as usize && Instant::now() < deadline {
                std::thread::yield_now();
            }
            samples.lock()[start..].iter().sum()
        })
    });
    group.finish();
    consumer.shutdown().expect("shutdown");
    let mut all = samples.lock().clone();
    all.sort();
    if !all.is_empty() {
        let p = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
        println!(
            "push latency over {} messages: p50 {:?}, p90 {:?}, p99 {:?}",
            all.len(),
            p(0.5),
            p(0.9),
            p(0.99)
        );
    }
}

criterion_group!(benches, throughput, latency);
criterion_main!(benches);
