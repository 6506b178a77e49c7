//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use mqlite::{FlushPolicy, MessageExt, MessageQueue, Store, StoreBuilder};

/// A small, seedable PRNG (xorshift64*), so tests are reproducible without extra crates.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// The seed for a test: `MQLITE_SEED` if set, else `default`. Print it so failures reproduce.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("MQLITE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("seed = {s} (set MQLITE_SEED to reproduce)");
    s
}

/// A builder with small files (64 KiB commitlog segments, 100-unit consume queue files), so
/// tests roll segments often.
pub fn small(dir: &Path) -> StoreBuilder {
    mqlite::Store::builder(dir)
        .commitlog_segment_size(64 * 1024)
        .consume_queue_segment_size(2000)
}

/// [`small`] with `FlushPolicy::SYNC`.
pub fn small_sync(dir: &Path) -> StoreBuilder {
    small(dir).flush_policy(FlushPolicy::SYNC)
}

/// Every message of a queue, from its min to its max offset (asserting there is no hole).
pub fn read_queue(store: &Store, mq: &MessageQueue) -> Vec<MessageExt> {
    let max = store.max_offset(mq).unwrap();
    let mut out = Vec::new();
    let mut off = store.min_offset(mq).unwrap();
    while off < max {
        let got = store.get_messages(mq, off, 100).unwrap();
        assert!(
            !got.messages.is_empty(),
            "{mq:?}: nothing at {off} < max {max}"
        );
        off = got.next_offset;
        out.extend(got.messages);
    }
    out
}

/// Polls `f` every 5 ms until it holds, failing the test after `within`.
pub fn wait_until(what: &str, within: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Copies a directory tree (a crash image of a store that is still open).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Runs the ignored test `test` of the current test binary as a child process with `envs`
/// (and `MQLITE_SEED` removed), waits for it to print `READY`, lets it run `kill_after`, then
/// kills it with SIGKILL. Returns every other line it printed to stdout, in order, including
/// what it wrote just before it died.
pub fn run_killed_child(
    test: &str,
    envs: &[(&str, String)],
    kill_after: std::time::Duration,
) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("MQLITE_SEED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "READY" {
                let _ = tx.send(());
            } else {
                lines.push(line);
            }
        }
        lines
    });
    let ready = rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok();
    if ready {
        std::thread::sleep(kill_after);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let lines = reader.join().unwrap();
    assert!(ready, "the child never got ready");
    lines
}

/// The rest of each line of `lines` that starts with `prefix`.
pub fn with_prefix(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

/// Creates topic `t` with one queue in `store`, puts `n` messages with bodies `m0`, `m1`, ...
/// into it, closes the store and returns the bodies.
pub fn fill_numbered(store: Store, n: usize) -> Vec<Vec<u8>> {
    store.create_topic("t", 1).unwrap();
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| format!("m{i}").into_bytes()).collect();
    for b in &bodies {
        store.put(&mqlite::Message::new("t", b.clone()), 0).unwrap();
    }
    store.close().unwrap();
    bodies
}

/// Threads of this process whose name starts with `prefix` (Linux: /proc/self/task; names
/// are cut to 15 bytes).
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}
