//! Filtered pulls: a store prefilled (`FlushPolicy::Async`) with 100,000 messages of 100-byte
//! bodies in one queue, message `i` tagged `a` or `b` in turn and carrying the properties
//! `region` (`eu`/`us` in turn) and `amount` (`i % 1000`). Each iteration pulls the whole
//! queue through `PullConsumer::pull_filtered` in batches of 32 matches; throughput is in
//! queue messages examined per second (100,000 per iteration), so the filters compare on the
//! same work:
//!
//! - `none`: the tag expression `*` (every message returned);
//! - `tag_half`: the tag `a` (half returned; the other half skipped by tag hash);
//! - `sql_half`: `amount >= 500` (half returned; every record read and evaluated);
//! - `sql_half_3_terms`: `region IN ('eu', 'us') AND amount >= 500.0 AND TAGS IS NOT NULL`.
//!
//! `eval` measures `SqlFilter::matches` alone on one record's properties string.
//!
//! Run: `cargo bench -p mqlite-bench --bench filter -- --noplot`

mod common;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mqlite::{FlushPolicy, Message, MessageQueue, MessageSelector, SqlFilter, Store};

const TOPIC: &str = "filter";
const MESSAGES: u64 = 100_000;
const BATCH: usize = 32;

fn prefill(dir: &std::path::Path) -> Store {
    let store = Store::builder(dir)
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .expect("open store");
    store.create_topic(TOPIC, 1).expect("create topic");
    let body = vec![b'x'; 100];
    for i in 0..MESSAGES {
        let msg = Message::new(TOPIC, body.clone())
            .with_tags(if i % 2 == 0 { "a" } else { "b" })
            .with_property("region", if i % 2 == 0 { "eu" } else { "us" })
            .with_property("amount", (i % 1000).to_string());
        store.put(&msg, 0).expect("put");
    }
    store.flush().expect("flush");
    common::wait_for_preparer_idle(Duration::from_secs(15));
    store
}

/// Pulls the whole queue; returns the number of messages returned.
fn pull_queue(store: &Store, q: &MessageQueue, selector: &MessageSelector) -> usize {
    let consumer = store.pull_consumer("bench").expect("consumer");
    let (mut offset, mut got) = (0, 0);
    while offset < MESSAGES {
        let r = consumer
            .pull_filtered(q, selector, offset, BATCH)
            .expect("pull");
        got += r.messages.len();
        offset = r.next_begin_offset;
        black_box(r.messages);
    }
    got
}

fn pulls(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = OnceLock::new();
    let q = MessageQueue::new(TOPIC, 0);
    let mut group = c.benchmark_group("filter");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(MESSAGES));
    let cases = [
        ("none", MessageSelector::ALL, MESSAGES),
        (
            "tag_half",
            MessageSelector::by_tag("a").unwrap(),
            MESSAGES / 2,
        ),
        (
            "sql_half",
            MessageSelector::by_sql("amount >= 500").unwrap(),
            MESSAGES / 2,
        ),
        (
            "sql_half_3_terms",
            MessageSelector::by_sql(
                "region IN ('eu', 'us') AND amount >= 500.0 AND TAGS IS NOT NULL",
            )
            .unwrap(),
            MESSAGES / 2,
        ),
    ];
    for (name, selector, want) in cases {
        group.bench_function(name, |b| {
            let store: &Store = store.get_or_init(|| prefill(tmp.path()));
            assert_eq!(pull_queue(store, &q, &selector) as u64, want, "{name}");
            b.iter(|| pull_queue(store, &q, &selector))
        });
    }
    group.finish();
}

fn eval(c: &mut Criterion) {
    let props = mqlite::format::properties::encode([
        ("UNIQ_KEY", "7F0000010B5C18B4AAC2721A7B3D0000"),
        ("TAGS", "a"),
        ("region", "eu"),
        ("amount", "742"),
        ("WAIT", "true"),
    ]);
    let mut group = c.benchmark_group("eval");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, expr) in [
        ("one_term", "amount >= 500"),
        (
            "three_terms",
            "region IN ('eu', 'us') AND amount >= 500.0 AND TAGS IS NOT NULL",
        ),
    ] {
        let filter = SqlFilter::parse(expr).unwrap();
        assert!(filter.matches(&props));
        group.bench_function(name, |b| b.iter(|| filter.matches(black_box(&props))));
    }
    group.finish();
}

criterion_group!(benches, pulls, eval);
criterion_main!(benches);
