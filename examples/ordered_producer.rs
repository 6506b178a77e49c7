//! Ordered production: every step of an order goes to the same queue (`send_ordered`), so a
//! consumer reading each queue in offset order sees create → pay → complete per order, even
//! with several producer threads.
//!
//! `cargo run --release --example ordered_producer`

use std::collections::HashMap;

use mqlite::{Message, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("ordered_producer")?;
    let store = Store::open(dir.path())?;
    store.create_topic("orders", 4)?;
    let producer = store.producer("order-service")?;

    // Four threads, each driving its own orders through their steps.
    let steps = ["create", "pay", "complete"];
    std::thread::scope(|s| {
        for t in 0..4 {
            let producer = producer.clone();
            s.spawn(move || {
                for step in steps {
                    for n in 0..25 {
                        let order = format!("ORDER-{t}-{n}");
                        let msg = Message::new("orders", format!("{order} {step}"))
                            .with_tags(step)
                            .with_keys([order.as_str()]);
                        producer.send_ordered(msg, &order).expect("send");
                    }
                }
            });
        }
    });

    // Read every queue in order and check each order's steps arrive in sequence.
    let consumer = store.pull_consumer("audit")?;
    let mut progress: HashMap<String, usize> = HashMap::new();
    let mut per_queue = Vec::new();
    for queue in consumer.queues("orders")? {
        let mut offset = 0;
        let mut count = 0;
        loop {
            let r = consumer.pull(&queue, "*", offset, 64)?;
            if r.messages.is_empty() {
                break;
            }
            for m in &r.messages {
                let order = m.keys().next().unwrap_or_default().to_owned();
                let step = m.tags().unwrap_or_default();
                let seen = progress.entry(order.clone()).or_default();
                assert_eq!(steps[*seen], step, "{order} out of order");
                *seen += 1;
                count += 1;
            }
            offset = r.next_begin_offset;
        }
        per_queue.push((queue.to_string(), count));
    }
    println!("messages per queue: {per_queue:?}");
    println!(
        "{} orders, every one seen as create -> pay -> complete",
        progress.values().filter(|&&n| n == steps.len()).count()
    );
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
