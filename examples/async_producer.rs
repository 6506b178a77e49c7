//! Asynchronous sends: `send_async` returns at once and the callback runs on a background
//! thread once the result is known — under `FlushPolicy::Sync`, once the message is durable, with
//! many in-flight messages sharing one flush.
//!
//! `cargo run --release --example async_producer`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mqlite::{FlushPolicy, Message, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("async_producer")?;
    let store = Store::builder(dir.path())
        .flush_policy(FlushPolicy::Sync {
            timeout: Duration::from_secs(5),
        })
        .open()?;
    store.create_topic("events", 4)?;
    let producer = store.producer("event-service")?;

    let n = 20_000;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let started = Instant::now();
    for i in 0..n {
        let ok = ok.clone();
        let failed = failed.clone();
        let done_tx = done_tx.clone();
        let msg = Message::new("events", format!("event {i}")).with_tags("tick");
        producer.send_async(msg, move |result| {
            match result {
                Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("send failed: {e}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            if ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) == n {
                let _ = done_tx.send(());
            }
        })?;
    }
    let submitted = started.elapsed();
    done_rx.recv_timeout(Duration::from_secs(60))?;
    let elapsed = started.elapsed();
    println!(
        "submitted {n} sends in {submitted:?}; all {} durable after {elapsed:?} ({:.0} msg/s), {} failed",
        ok.load(Ordering::Relaxed),
        n as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    let lag = store.consumer_lag("nobody-yet", "events")?;
    println!("messages waiting for a new consumer group: {lag}");
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
