//! Retries and dead letters: a listener that fails a message makes it come back through the
//! group's retry topic with growing delays, until it lands in the dead-letter topic.
//!
//! `cargo run --release --example retry_and_dlq` (uses a short delay table so it runs quickly).

use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, MessageQueue, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("retry_and_dlq")?;
    // RocketMQ's retries use delay levels 3, 4, 5, …; shorten the table for the demo.
    let store = Store::builder(dir.path())
        .message_delay_level("100ms 200ms 300ms 400ms 500ms 600ms 700ms")
        .open()?;
    store.create_topic("payments", 1)?;
    let started = Instant::now();
    let consumer = store
        .push_consumer("ledger")
        .subscribe("payments", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .max_reconsume_times(3)
        .start_concurrently(move |msgs| {
            for m in msgs {
                println!(
                    "{:>6.0?}  try {} of {:?} (topic {}, msgId {})",
                    started.elapsed(),
                    m.reconsume_times() + 1,
                    String::from_utf8_lossy(m.body()),
                    m.topic(),
                    m.msg_id()
                );
            }
            ConsumeStatus::ReconsumeLater
        })?;
    store
        .producer("gateway")?
        .send(Message::new("payments", "charge card 4242").with_keys(["PAY-1"]))?;

    let dlq = MessageQueue::new("%DLQ%ledger", 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.max_offset(&dlq).unwrap_or(0) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    consumer.shutdown()?;
    let dead = store.get_messages(&dlq, 0, 1)?;
    for m in &dead.messages {
        println!(
            "dead letter after {:?}: {:?} from topic {:?}, reconsumed {} times",
            started.elapsed(),
            String::from_utf8_lossy(m.body()),
            m.property("RETRY_TOPIC").unwrap_or("?"),
            m.reconsume_times()
        );
    }
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
