//! Reopen after a clean close (DESIGN.md §5: ≤ 10 ms, independent of store size).
//!
//! A store of ~200 MB of messages (1 KiB bodies, round-robin over 3 topics × 4 queues, 64 MiB
//! CommitLog segments) and one 4× smaller are prefilled and closed cleanly; each iteration
//! then does `Store::builder(dir)…open()` followed by `close()` with the same configuration.
//!
//! Run: `cargo bench --bench reopen -- --noplot`

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mqlite::{Message, Store};

const SEGMENT: u64 = 64 << 20;
const TOPICS: [&str; 3] = ["orders", "payments", "shipments"];
const QUEUES: u32 = 4;
const BODY: usize = 1024;

fn builder(dir: &Path) -> mqlite::StoreBuilder {
    Store::builder(dir).commitlog_segment_size(SEGMENT)
}

/// Fills a store with at least `bytes` of CommitLog and closes it.
fn prefill(dir: &Path, bytes: u64) {
    let store = builder(dir).open().expect("open store");
    for t in TOPICS {
        store.create_topic(t, QUEUES).expect("create topic");
    }
    let body = vec![b'x'; BODY];
    let mut i = 0u32;
    while store.commitlog_max_offset() < bytes {
        let topic = TOPICS[(i % 3) as usize];
        let msg = Message::new(topic, body.clone()).with_tags("t");
        store.put(&msg, (i / 3) % QUEUES).expect("put");
        i += 1;
    }
    store.close().expect("close");
}

fn reopen(c: &mut Criterion) {
    let mut group = c.benchmark_group("reopen");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, bytes) in [("200MB", 200_000_000u64), ("50MB", 50_000_000)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("store");
        // Prefilled on first use, so a filtered-out benchmark costs nothing.
        let filled = OnceLock::new();
        group.bench_function(BenchmarkId::new("open_close", name), |b| {
            filled.get_or_init(|| prefill(&dir, bytes));
            b.iter(|| {
                let store = builder(&dir).open().expect("reopen");
                store.close().expect("close");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reopen);
criterion_main!(benches);
