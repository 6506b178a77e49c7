//! SQL92 filters: messages carry properties; a pull consumer and a push consumer each select
//! the ones they want with RocketMQ's SQL92 syntax, next to a plain tag filter. Also shows
//! what a malformed expression reports, and how an absent property behaves.
//!
//! `cargo run --release --example sql_filter` (in a temporary directory, removed at the end).

use std::sync::mpsc;
use std::time::Duration;

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageSelector, PullStatus, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = TempDir::new("sql-filter")?;
    let store = Store::open(tmp.path())?;
    store.create_topic("orders", 2)?;

    // Orders with a tag (their state) and properties; the last one has no region at all.
    let producer = store.producer("shop")?;
    let orders = [
        ("ORDER-1", "created", Some("eu"), "120.50"),
        ("ORDER-2", "paid", Some("eu"), "80"),
        ("ORDER-3", "paid", Some("us"), "990"),
        ("ORDER-4", "paid", Some("eu"), "1500"),
        ("ORDER-5", "shipped", Some("uk"), "42"),
        ("ORDER-6", "paid", None, "300"),
    ];
    for (id, state, region, amount) in orders {
        let mut msg = Message::new("orders", id)
            .with_tags(state)
            .with_keys([id])
            .with_property("amount", amount);
        if let Some(region) = region {
            msg = msg.with_property("region", region);
        }
        producer.send(msg)?;
    }

    // Pull: paid European orders above 100. `TAGS` is the tag; amounts may have decimals, so
    // compare with a float literal (an integer literal would need integer values).
    let selectors = [
        "TAGS = 'paid' AND region IN ('eu', 'uk') AND amount > 100.0",
        // Absent properties are unknown: ORDER-6 has no region, so it matches neither this
        // one nor its negation...
        "region <> 'us'",
        "NOT (region <> 'us')",
        // ...but IS NULL finds it.
        "region IS NULL",
    ];
    let consumer = store.pull_consumer("audit")?;
    for expr in selectors {
        let selector = MessageSelector::by_sql(expr)?;
        let mut ids = Vec::new();
        for queue in consumer.queues("orders")? {
            let r = consumer.pull_filtered(&queue, &selector, 0, 32)?;
            if r.status == PullStatus::Found {
                ids.extend(
                    r.messages
                        .iter()
                        .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
                );
            }
        }
        ids.sort();
        println!("{expr:<62} -> {ids:?}");
    }
    // A tag selector pulls through the same call.
    let shipped = MessageSelector::by_tag("shipped")?;
    for queue in consumer.queues("orders")? {
        let r = consumer.pull_filtered(&queue, &shipped, 0, 32)?;
        println!(
            "tag 'shipped' on {queue}: {:?}, {} message(s), next offset {}",
            r.status,
            r.messages.len(),
            r.next_begin_offset
        );
    }

    // A malformed expression says where and what.
    if let Err(e) = MessageSelector::by_sql("amount > 100 AND region = ") {
        println!("refused: {e}");
    }

    // Push: a consumer group that only sees large orders.
    let (tx, rx) = mpsc::channel();
    let big = store
        .push_consumer("big-orders")
        .subscribe_with("orders", MessageSelector::by_sql("amount >= 500.0")?)
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            for m in msgs {
                let _ = tx.send(String::from_utf8_lossy(m.body()).into_owned());
            }
            ConsumeStatus::Success
        })?;
    let mut large = vec![
        rx.recv_timeout(Duration::from_secs(10))?,
        rx.recv_timeout(Duration::from_secs(10))?,
    ];
    large.sort();
    println!("push consumer got: {large:?}");
    big.shutdown()?;

    store.close()?;
    Ok(())
}

/// A directory under the system temp dir, removed on drop.
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
