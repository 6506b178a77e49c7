//! Consumer groups: three push consumers share a topic's eight queues (3/3/2), one leaves and
//! its queues are taken over, and every message is consumed once.
//!
//! `cargo run --release --example consumer_group`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, ConsumeStatus, Message, PushConsumer, Store};

type Tally = Arc<Mutex<BTreeMap<String, usize>>>;

fn consumer(store: &Store, name: &str, tally: &Tally) -> Result<PushConsumer, mqlite::Error> {
    let tally = tally.clone();
    let me = name.to_owned();
    store
        .push_consumer("billing")
        .subscribe("orders", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .threads(2)
        .start_concurrently(move |msgs| {
            *tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(me.clone())
                .or_default() += msgs.len();
            ConsumeStatus::Success
        })
}

fn wait_for(tally: &Tally, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .sum::<usize>()
        < n
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("consumer_group")?;
    let store = Store::open(dir.path())?;
    store.create_topic("orders", 8)?;
    let tally: Tally = Arc::default();
    let a = consumer(&store, "a", &tally)?;
    let b = consumer(&store, "b", &tally)?;
    let c = consumer(&store, "c", &tally)?;
    for c in [&a, &b, &c] {
        let qs: Vec<u32> = c
            .assigned_queues()
            .iter()
            .filter(|q| q.topic == "orders")
            .map(|q| q.queue_id)
            .collect();
        println!("{} owns orders queues {qs:?}", c.id());
    }
    let producer = store.producer("shop")?;
    for i in 0..3000 {
        producer.send(Message::new("orders", format!("order {i}")))?;
    }
    wait_for(&tally, 3000);
    println!(
        "after 3000 messages: {:?}",
        tally.lock().unwrap_or_else(PoisonError::into_inner)
    );

    println!("{} leaves", c.id());
    c.shutdown()?;
    for c in [&a, &b] {
        let n = c
            .assigned_queues()
            .iter()
            .filter(|q| q.topic == "orders")
            .count();
        println!("{} now owns {n} queues", c.id());
    }
    for i in 3000..6000 {
        producer.send(Message::new("orders", format!("order {i}")))?;
    }
    wait_for(&tally, 6000);
    println!(
        "after 6000 messages: {:?}",
        tally.lock().unwrap_or_else(PoisonError::into_inner)
    );
    a.shutdown()?;
    b.shutdown()?;
    // Shutdown committed where each consumer stopped.
    println!(
        "billing lag after shutdown: {}",
        store.consumer_lag("billing", "orders")?
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
