//! Regression: under `FlushPolicy::Sync`, senders racing with `Store::flush()` in a loop
//! (every flusher dispatches durable units) once wrote one queue's units out of order and
//! poisoned the store. One dispatcher orders every write now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mqlite::{FlushPolicy, Message, MessageQueue, Store};

#[test]
fn concurrent_flushes_never_reorder_consume_queue_units() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .flush_policy(FlushPolicy::SYNC)
        .commitlog_segment_size(4 << 20)
        .consume_queue_segment_size(20 * 1024)
        .open()
        .unwrap();
    store.create_topic("race", 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 400;
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (store, stop) = (store.clone(), stop.clone());
            s.spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    store.flush().expect("flush while sending");
                }
            });
        }
        let senders: Vec<_> = (0..SENDERS)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..PER_SENDER {
                        store
                            .put(&Message::new("race", format!("{t}-{i}")), 0)
                            .expect("put while flushing");
                    }
                })
            })
            .collect();
        for h in senders {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Release);
    });
    let q = MessageQueue::new("race", 0);
    assert_eq!(store.max_offset(&q).unwrap(), (SENDERS * PER_SENDER) as u64);
    let got = store.get_messages(&q, 0, usize::MAX).unwrap();
    for (i, m) in got.messages.iter().enumerate() {
        assert_eq!(m.queue_offset(), i as u64);
    }
    assert_eq!(got.messages.len(), SENDERS * PER_SENDER);
    store.close().unwrap();
}
