//! A job loop with lite pull consumers: two workers of one group share a topic's queues and
//! poll them from their own threads (auto-commit records their progress); then an auditor in
//! another group reads one queue again from its start with `assign` and `seek_to_begin`.
//!
//! `cargo run --release --example lite_pull`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlite::{ConsumeFrom, LitePullConsumer, Message, MessageQueue, Store};

const JOBS: usize = 200;

fn worker(store: &Store, name: &str) -> Result<LitePullConsumer, mqlite::Error> {
    let consumer = store
        .lite_pull_consumer("workers")
        .consume_from(ConsumeFrom::FirstOffset)
        .instance_name(name)
        .build()?;
    consumer.subscribe("jobs", "*")?;
    Ok(consumer)
}

/// Polls until every job is done (or a minute has passed); returns how many this worker did.
fn run(consumer: &LitePullConsumer, done: &AtomicUsize) -> Result<usize, mqlite::Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut mine = 0;
    while done.load(Ordering::Acquire) < JOBS && Instant::now() < deadline {
        for job in consumer.poll(Duration::from_millis(100))? {
            // Process the job here; the next poll (after auto_commit_interval) commits it.
            let _ = job.body();
            mine += 1;
            done.fetch_add(1, Ordering::AcqRel);
        }
    }
    Ok(mine)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::new("lite_pull")?;
    let store = Store::open(dir.path())?;
    store.create_topic("jobs", 4)?;
    let producer = store.producer("scheduler")?;
    for i in 0..JOBS {
        producer.send(Message::new("jobs", format!("job {i}")))?;
    }

    let workers = [worker(&store, "w1")?, worker(&store, "w2")?];
    for w in &workers {
        let queues: Vec<u32> = w.assignment().iter().map(|q| q.queue_id).collect();
        println!("{} owns jobs queues {queues:?}", w.id());
    }
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = workers
        .into_iter()
        .map(|w| {
            let done = done.clone();
            std::thread::spawn(move || -> Result<(String, usize), mqlite::Error> {
                let n = run(&w, &done)?;
                let id = w.id().to_owned();
                w.shutdown()?; // commits what it polled and leaves the group
                Ok((id, n))
            })
        })
        .collect();
    for t in threads {
        let (id, n) = t.join().map_err(|_| "a worker panicked")??;
        println!("{id} did {n} jobs");
    }
    println!(
        "workers' lag after shutdown: {}",
        store.consumer_lag("workers", "jobs")?
    );

    // An auditor re-reads queue 0 from its start, outside the workers' group.
    let auditor = store
        .lite_pull_consumer("audit")
        .auto_commit(false)
        .build()?;
    let q0 = MessageQueue::new("jobs", 0);
    auditor.assign(std::slice::from_ref(&q0))?;
    auditor.seek_to_begin(&q0)?;
    let first = auditor.poll(Duration::from_secs(5))?;
    println!(
        "audit of {q0}: first batch of {} starts with {:?}",
        first.len(),
        first
            .first()
            .map(|m| String::from_utf8_lossy(m.body()).into_owned())
    );
    auditor.shutdown()?;
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
