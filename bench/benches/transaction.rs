//! Transactional send throughput next to plain send (`FlushPolicy::Async`, 100-byte bodies):
//! a committed transaction stores three records (half message, real message, op), so it costs
//! about three plain sends; `send_in_transaction` left `Unknown` stores only the half message.
//!
//! Run: `cargo bench --bench transaction -- --noplot`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mqlite::{FlushPolicy, Message, MessageExt, Store, TransactionState};

fn transaction(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(tmp.path())
        .flush_policy(FlushPolicy::ASYNC)
        .open()
        .expect("open store");
    store.create_topic("orders", 4).expect("topic");
    let producer = store.producer("bench").unwrap();
    let tx = store
        .transaction_producer("bench-tx", |_: &MessageExt| TransactionState::Commit)
        .unwrap();
    let body = vec![b'x'; 100];
    let mut group = c.benchmark_group("transaction");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    group.bench_function("plain_send_100B", |b| {
        b.iter(|| {
            let msg = Message::new("orders", body.clone()).with_tags("t");
            black_box(producer.send(msg).expect("send"));
        })
    });
    group.bench_function("commit_100B", |b| {
        b.iter(|| {
            let msg = Message::new("orders", body.clone()).with_tags("t");
            black_box(
                tx.send_in_transaction(msg, |_| TransactionState::Commit)
                    .expect("send"),
            );
        })
    });
    group.bench_function("rollback_100B", |b| {
        b.iter(|| {
            let msg = Message::new("orders", body.clone()).with_tags("t");
            black_box(
                tx.send_in_transaction(msg, |_| TransactionState::Rollback)
                    .expect("send"),
            );
        })
    });
    group.finish();
    drop(tx);
    store.close().expect("close");
}

criterion_group!(benches, transaction);
criterion_main!(benches);
