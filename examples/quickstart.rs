//! Quickstart: produce messages with tags and keys, pull them with a tag filter, commit the
//! consumer offset, reopen the store and resume where the consumer left off.
//!
//! `cargo run --release --example quickstart [DIR]` (a temporary directory when DIR is absent).

use std::time::Duration;

use mqlite::{ConsumeFrom, FlushPolicy, Message, PullStatus, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = TempDir::new("quickstart")?;
            tmp.path().to_path_buf()
        }
    };
    println!("store directory: {}", dir.display());

    // Durable acknowledgements: a send returns once its message is on disk. The default
    // segment sizes keep the store small (64 MiB CommitLog segments); `.rocketmq_defaults()`
    // would choose a RocketMQ broker's.
    let builder = Store::builder(&dir).flush_policy(FlushPolicy::Sync {
        timeout: Duration::from_secs(5),
    });
    let store = builder.clone().open()?;
    store.create_topic("orders", 2)?;

    let producer = store.producer("order-service")?;
    let events = [
        ("ORDER-1", "created"),
        ("ORDER-2", "created"),
        ("ORDER-1", "paid"),
        ("ORDER-3", "created"),
        ("ORDER-2", "paid"),
        ("ORDER-1", "shipped"),
    ];
    for (order, step) in events {
        let msg = Message::new("orders", format!("{order} {step}"))
            .with_tags(step)
            .with_keys([order])
            .with_property("region", "eu");
        // Same order id, same queue: the steps of one order stay in order.
        let r = producer.send_ordered(msg, order)?;
        println!(
            "sent {order} {step:<8} -> {:?} {} offset {} msgId {}",
            r.status, r.queue, r.queue_offset, r.msg_id
        );
    }

    // A pull consumer that only wants payments.
    let consumer = store.pull_consumer("billing")?;
    for queue in consumer.queues("orders")? {
        let from = consumer.consume_offset(&queue, ConsumeFrom::FirstOffset)?;
        let r = consumer.pull(&queue, "paid", from, 32)?;
        println!(
            "pull {queue} from {from}: {:?}, next {}",
            r.status, r.next_begin_offset
        );
        for m in &r.messages {
            println!(
                "  offset {} tag {:?} keys {:?} body {:?}",
                m.queue_offset(),
                m.tags().unwrap_or(""),
                m.keys().collect::<Vec<_>>(),
                String::from_utf8_lossy(m.body())
            );
        }
        consumer.commit_offset(&queue, r.next_begin_offset)?;
    }
    println!(
        "billing lag on orders: {}",
        store.consumer_lag("billing", "orders")?
    );
    store.close()?;

    // Reopen: a clean close needs no scan; the consumer resumes from its committed offsets.
    let started = std::time::Instant::now();
    let store = builder.open()?;
    println!("reopened in {:?}", started.elapsed());
    let producer = store.producer("order-service")?;
    producer.send_ordered(
        Message::new("orders", "ORDER-1 paid again").with_tags("paid"),
        "ORDER-1",
    )?;
    let consumer = store.pull_consumer("billing")?;
    for queue in consumer.queues("orders")? {
        let from = consumer.consume_offset(&queue, ConsumeFrom::FirstOffset)?;
        let r = consumer.pull_timeout(&queue, "paid", from, 32, Duration::from_millis(100))?;
        if r.status == PullStatus::Found {
            for m in &r.messages {
                println!(
                    "resumed {queue} at {from}: {:?}",
                    String::from_utf8_lossy(m.body())
                );
            }
        }
        consumer.commit_offset(&queue, r.next_begin_offset)?;
    }
    let sent = producer.send(Message::new("orders", "lookup me"))?;
    let found = store.view_message(&sent.offset_msg_id.to_string())?;
    println!(
        "view_message({}) -> {:?}",
        sent.offset_msg_id,
        String::from_utf8_lossy(found.body())
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
