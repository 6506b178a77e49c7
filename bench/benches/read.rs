//! Sequential pull throughput (DESIGN.md §5): a store prefilled (`FlushPolicy::Async`) with
//! 500,000 messages of 100-byte bodies in one queue, read back with
//! `get_messages(&queue, offset, 32)` walking the queue from offset 0 and wrapping around at
//! the end. Throughput is in messages/s (32 per iteration). `scan_32` reads the same batches
//! zero-copy with `Store::scan` (borrowed `MessageView`s, each record's CRC checked once).
//!
//! Run: `cargo bench --bench read -- --noplot`

mod common;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mqlite::{FlushPolicy, Message, MessageQueue, Store};

const TOPIC: &str = "read";
const MESSAGES: u64 = 500_000;
const BATCH: usize = 32;

fn prefill(dir: &std::path::Path) -> Store {
    let store = Store::builder(dir)
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .expect("open store");
    store.create_topic(TOPIC, 1).expect("create topic");
    let body = vec![b'x'; 100];
    for _ in 0..MESSAGES {
        store
            .put(&Message::new(TOPIC, body.clone()).with_tags("t"), 0)
            .expect("put");
    }
    store.flush().expect("flush");
    // Let background segment preparation finish before measuring.
    common::wait_for_preparer_idle(Duration::from_secs(15));
    store
}

fn sequential(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Prefilled on first use, so a filtered-out benchmark costs nothing.
    let store = OnceLock::new();
    let mq = MessageQueue::new(TOPIC, 0);
    let mut group = c.benchmark_group("read");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("sequential_32", |b| {
        let store = store.get_or_init(|| prefill(&tmp.path().join("store")));
        let mut offset = 0;
        b.iter(|| {
            let got = store.get_messages(&mq, offset, BATCH).expect("get");
            assert_eq!(got.messages.len(), BATCH);
            offset = if got.next_offset >= MESSAGES {
                0
            } else {
                got.next_offset
            };
            black_box(got.messages)
        })
    });
    group.bench_function("scan_32", |b| {
        let store = store.get_or_init(|| prefill(&tmp.path().join("store")));
        let mut offset = 0;
        b.iter(|| {
            let mut bytes = 0;
            let next = store
                .scan(&mq, offset, BATCH, |m| {
                    bytes += m.stored_body().len();
                    true
                })
                .expect("scan");
            assert_eq!(next, offset + BATCH as u64);
            offset = if next >= MESSAGES { 0 } else { next };
            black_box(bytes)
        })
    });
    group.finish();
    if let Some(store) = store.into_inner() {
        store.close().expect("close");
    }
}

criterion_group!(benches, sequential);
criterion_main!(benches);
