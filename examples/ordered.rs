//! Ordered consumption: orders go create → pay → complete; `send_ordered` keeps each order in
//! one queue and `start_orderly` consumes each queue in order, one batch at a time, so every
//! order is processed in sequence — here with two consumers and a payment step that fails once.
//!
//! `cargo run --release --example ordered`

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, Message, OrderlyStatus, PushConsumer, Store};

const STEPS: [&str; 3] = ["create", "pay", "complete"];

fn consumer(
    store: &Store,
    name: &str,
    seen: &Arc<Mutex<HashMap<String, Vec<String>>>>,
) -> Result<PushConsumer, mqlite::Error> {
    let seen = seen.clone();
    store
        .push_consumer("fulfilment")
        .subscribe("orders", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .suspend_current_queue_time(Duration::from_millis(50))
        .start_orderly(move |msgs, _ctx| {
            for m in msgs {
                let order = m.keys().next().unwrap_or_default().to_owned();
                let step = m.tags().unwrap_or_default().to_owned();
                // The first try of ORDER-7's payment fails: its queue pauses and retries it,
                // and nothing behind it in that queue overtakes it.
                if order == "ORDER-7" && step == "pay" && m.reconsume_times() == 0 {
                    println!("ORDER-7 pay failed once; queue {} suspended", m.queue_id());
                    return OrderlyStatus::SuspendCurrentQueueAMoment;
                }
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(order)
                    .or_default()
                    .push(step);
            }
            OrderlyStatus::Success
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("ordered")?;
    let store = Store::open(dir.path())?;
    store.create_topic("orders", 4)?;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let a = consumer(&store, "a", &seen)?;
    let b = consumer(&store, "b", &seen)?;
    let producer = store.producer("shop")?;
    let orders = 50;
    for step in STEPS {
        for n in 0..orders {
            let order = format!("ORDER-{n}");
            let msg = Message::new("orders", format!("{order} {step}"))
                .with_tags(step)
                .with_keys([order.as_str()]);
            producer.send_ordered(msg, &order)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .map(Vec::len)
        .sum::<usize>()
        < orders * STEPS.len()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let in_order = seen.values().filter(|s| s.as_slice() == STEPS).count();
    println!("{in_order} of {orders} orders processed as create -> pay -> complete");
    println!("ORDER-7: {:?}", seen.get("ORDER-7"));
    a.shutdown()?;
    b.shutdown()?;
    store.close()?;
    Ok(())
}

/// A fresh directory under the system's temporary directory, removed when dropped. Declared
/// before the store, it outlives it: the store closes first.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("mqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
