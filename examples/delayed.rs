//! Delayed delivery: a message with a delay level and one with a delivery time become visible
//! in their topic when due, and a store closed meanwhile delivers them after it reopens.
//!
//! `cargo run --release --example delayed`

use std::time::{Duration, Instant, SystemTime};

use mqlite::{Message, MessageQueue, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("delayed")?;
    let open = || {
        Store::builder(dir.path())
            .message_delay_level("1s 2s 3s")
            .open()
    };
    let store = open()?;
    store.create_topic("reminders", 1)?;
    let producer = store.producer("scheduler")?;
    let sent = Instant::now();
    producer.send(Message::new("reminders", "level 1: after 1 s").with_delay_level(1))?;
    producer.send(
        Message::new("reminders", "at now + 1.5 s")
            .with_deliver_at(SystemTime::now() + Duration::from_millis(1500)),
    )?;
    producer.send(Message::new("reminders", "level 3: after 3 s").with_delay_level(3))?;
    let q = MessageQueue::new("reminders", 0);
    println!(
        "sent 3 delayed messages; visible now: {}",
        store.max_offset(&q)?
    );

    let consumer = store.pull_consumer("reader")?;
    let mut offset = 0;
    while offset < 2 {
        let r = consumer.pull_timeout(&q, "*", offset, 32, Duration::from_secs(5))?;
        for m in &r.messages {
            println!(
                "{:>7.0?}  {}",
                sent.elapsed(),
                String::from_utf8_lossy(m.body())
            );
        }
        offset = r.next_begin_offset;
    }
    // Close with the 3 s message still pending; it is delivered after the reopen.
    store.close()?;
    println!("closed at {:?}, reopening", sent.elapsed());
    let store = open()?;
    let consumer = store.pull_consumer("reader")?;
    let r = consumer.pull_timeout(&q, "*", offset, 32, Duration::from_secs(10))?;
    for m in &r.messages {
        println!(
            "{:>7.0?}  {}",
            sent.elapsed(),
            String::from_utf8_lossy(m.body())
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
