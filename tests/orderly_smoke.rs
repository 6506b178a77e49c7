//! Orderly consumption under churn: per-key order holds while consumers join and leave.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, OrderlyStatus, PushConsumer, Store};
use parking_lot::Mutex;

type Log = Arc<Mutex<HashMap<String, Vec<u32>>>>;

fn start(store: &Store, name: &str, log: &Log) -> PushConsumer {
    let log = log.clone();
    store
        .push_consumer("orderly")
        .subscribe("orders", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .threads(3)
        .consume_message_batch_max_size(4)
        .start_orderly(move |msgs, _ctx| {
            let mut l = log.lock();
            for m in msgs {
                let key = m.keys().next().unwrap().to_owned();
                let seq: u32 = String::from_utf8_lossy(m.body()).parse().unwrap();
                l.entry(key).or_default().push(seq);
            }
            OrderlyStatus::Success
        })
        .unwrap()
}

#[test]
fn per_key_order_survives_joins_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("orders", 8).unwrap();
    let log: Log = Arc::default();
    let p = store.producer("p").unwrap();
    let mut consumers = vec![start(&store, "a", &log)];
    let (keys, per_key) = (1000u32, 10u32);
    for seq in 0..per_key {
        for k in 0..keys {
            let key = format!("ORDER-{k}");
            p.send_ordered(
                Message::new("orders", seq.to_string()).with_keys([key.as_str()]),
                &key,
            )
            .unwrap();
        }
        match seq {
            2 => consumers.push(start(&store, "b", &log)),
            4 => consumers.push(start(&store, "c", &log)),
            6 => consumers.remove(0).shutdown().unwrap(),
            _ => {}
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = {
            let l = log.lock();
            l.len() == keys as usize && l.values().all(|v| v.len() >= per_key as usize)
        };
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "not everything consumed");
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in consumers {
        c.shutdown().unwrap();
    }
    for (key, seqs) in log.lock().iter() {
        // Duplicates may appear after a move, but never out of order: the sequence with
        // repeats collapsed must be 0..per_key.
        let mut dedup = seqs.clone();
        dedup.dedup();
        let mut expect: Vec<u32> = Vec::new();
        for s in &dedup {
            if expect.last() != Some(s) {
                assert!(
                    *s == expect.len() as u32 || (expect.contains(s)),
                    "{key}: out of order {seqs:?}"
                );
                if !expect.contains(s) {
                    expect.push(*s);
                }
            }
        }
        assert_eq!(expect, (0..per_key).collect::<Vec<_>>(), "{key}: {seqs:?}");
    }
}
