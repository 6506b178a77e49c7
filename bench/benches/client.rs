//! Client throughput (DESIGN.md §5): sends through the `Producer` API (`FlushPolicy::Async`,
//! 100-byte bodies) and sequential pulls through the `PullConsumer` API (100-byte bodies,
//! batches of 32, target ≥ 10 M msg/s).
//!
//! Run: `cargo bench --bench client -- --noplot`

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mqlite::{FlushPolicy, Message, MessageQueue, PullStatus, Store};

const MESSAGES: u64 = 500_000;
const BATCH: usize = 32;

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir)
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .expect("open store")
}

fn produce(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    store.create_topic("produce", 4).expect("topic");
    let producer = store.producer("bench").unwrap();
    let body = vec![b'x'; 100];
    let mut group = c.benchmark_group("producer");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    group.bench_function("send_100B", |b| {
        b.iter(|| {
            let msg = Message::new("produce", body.clone()).with_tags("t");
            black_box(producer.send(msg).expect("send"));
        })
    });
    group.bench_function("send_oneway_100B", |b| {
        b.iter(|| {
            let msg = Message::new("produce", body.clone()).with_tags("t");
            producer.send_oneway(msg).expect("send");
        })
    });
    group.finish();
    store.close().expect("close");
}

fn prefill(dir: &std::path::Path) -> Store {
    let store = open(dir);
    store.create_topic("pull", 1).expect("topic");
    let producer = store.producer("bench").unwrap();
    let body = vec![b'x'; 100];
    let q = MessageQueue::new("pull", 0);
    for _ in 0..MESSAGES {
        producer
            .send_to(Message::new("pull", body.clone()).with_tags("t"), &q)
            .expect("send");
    }
    store
}

fn pull(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = OnceLock::new();
    let q = MessageQueue::new("pull", 0);
    let mut group = c.benchmark_group("pull");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(BATCH as u64));
    for expr in ["*", "t"] {
        let name = if expr == "*" { "all_32" } else { "tag_32" };
        group.bench_function(name, |b| {
            let store: &Store = store.get_or_init(|| prefill(tmp.path()));
            let consumer = store.pull_consumer("bench").unwrap();
            let filter = mqlite::MessageSelector::by_tag(expr).expect("filter");
            let mut offset = 0;
            b.iter(|| {
                let r = consumer
                    .pull_filtered(&q, &filter, offset, BATCH)
                    .expect("pull");
                assert_eq!(r.status, PullStatus::Found);
                offset = if r.next_begin_offset >= MESSAGES {
                    0
                } else {
                    r.next_begin_offset
                };
                black_box(r.messages);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, produce, pull);
criterion_main!(benches);
