//! Shared harness of the kill -9 crash tests (RELIABILITY.md Part C, cases 1, 2 and 15).
//!
//! The child is the test binary itself, re-executed with `--exact crash_child` and the
//! environment variable [`ENV_CHILD`] set (see [`child_entry`]). In `produce` mode it opens
//! the store, prints `READY`, and runs [`THREADS`] producer threads; after every put that
//! returns `PutOk` it prints
//! `ACK topic queue queue_offset physical_offset thread seq len` and flushes stdout, so an ACK
//! line exists only for a put that has returned. In `open` mode it only opens (recovers) the
//! store, prints `READY` and waits to be killed.
//!
//! The parent SIGKILLs the child, reopens the store and checks the oracle with [`verify`]
//! against a [`Model`] of every message verified so far.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlite::{FlushPolicy, MessageExt, MessageQueue, Store};

use crate::common::{self, Rng};

/// Set (to `1`) in the environment of a child process.
pub const ENV_CHILD: &str = "MQLITE_CRASH_CHILD";
const ENV_DIR: &str = "MQLITE_CRASH_DIR";
const ENV_SEED: &str = "MQLITE_CRASH_SEED";
const ENV_POLICY: &str = "MQLITE_CRASH_POLICY";
const ENV_CYCLE: &str = "MQLITE_CRASH_CYCLE";
const ENV_MODE: &str = "MQLITE_CRASH_MODE";
const ENV_RATE: &str = "MQLITE_CRASH_RATE";

/// Topics and their queue counts.
pub const TOPICS: [(&str, u32); 2] = [("crash", 4), ("other", 2)];
/// Producer threads in a child.
pub const THREADS: usize = 4;
/// Largest body, in bytes.
pub const MAX_BODY: u64 = 2000;
const _: () = assert!(MAX_BODY <= 4096);
/// CommitLog segment size used by [`common::small`].
pub const SEGMENT: u64 = 64 * 1024;
/// A child stops producing by itself after this long (in case the parent died).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Messages read per `get_messages` call during verification.
const BATCH: usize = 512;

/// Which flush policy family a scenario uses; each cycle picks a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `FlushPolicy::Sync`, mostly with the default 5 s timeout, sometimes 10 ms.
    Sync,
    /// `FlushPolicy::Async`, default or with a very short interval.
    Async,
}

impl Family {
    /// The policy of one cycle.
    pub fn pick(self, rng: &mut Rng) -> FlushPolicy {
        match (self, rng.range(0, 4)) {
            (Family::Sync, 0) => FlushPolicy::Sync {
                timeout: Duration::from_millis(10),
            },
            (Family::Sync, _) => FlushPolicy::SYNC,
            (Family::Async, 0) => FlushPolicy::Async {
                interval: Duration::from_millis(10),
                min_pages: 1,
            },
            (Family::Async, 1) => FlushPolicy::Async {
                interval: Duration::from_millis(1),
                min_pages: 1,
            },
            (Family::Async, _) => FlushPolicy::ASYNC,
        }
    }
}

/// Encodes a policy for the child's environment.
pub fn policy_code(p: FlushPolicy) -> String {
    match p {
        FlushPolicy::Sync { timeout } => format!("sync:{}", timeout.as_millis()),
        FlushPolicy::Async {
            interval,
            min_pages,
        } => format!("async:{}:{min_pages}", interval.as_millis()),
    }
}

/// Decodes [`policy_code`].
pub fn parse_policy(s: &str) -> FlushPolicy {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize| -> u64 { parts[i].parse().expect("policy number") };
    match parts[0] {
        "sync" => FlushPolicy::Sync {
            timeout: Duration::from_millis(num(1)),
        },
        "async" => FlushPolicy::Async {
            interval: Duration::from_millis(num(1)),
            min_pages: num(2) as u32,
        },
        other => panic!("unknown policy {other:?}"),
    }
}

/// The store builder every process uses (64 KiB CommitLog segments, 100-unit CQ files).
pub fn builder(dir: &Path, policy: FlushPolicy) -> mqlite::StoreBuilder {
    common::small(dir).flush_policy(policy)
}

/// Identity of a produced message: cycle, producer thread, sequence number within the thread,
/// body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MsgId {
    /// Cycle (child run) that produced it.
    pub cycle: u64,
    /// Producer thread.
    pub thread: u64,
    /// Sequence number within the thread and cycle.
    pub seq: u64,
    /// Body length.
    pub len: u64,
}

fn body_seed(cycle: u64, thread: u64, seq: u64) -> u64 {
    (cycle << 40 | thread << 32 | seq).wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5851_F42D_4C95_7F2D
}

/// 8 KiB of pseudo-random bytes that every body is a window of.
fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| Rng::new(0x0BAD_5EED_F00D).bytes(2 * 4096))
}

/// The body of a message: `len` pseudo-random bytes, the window of [`pattern`] at an offset
/// derived from (cycle, thread, seq). Checking it is a plain comparison, cheap in debug builds.
pub fn body(cycle: u64, thread: u64, seq: u64, len: usize) -> &'static [u8] {
    let start = (body_seed(cycle, thread, seq) >> 17) as usize % 4096;
    &pattern()[start..start + len]
}

fn key_of(id: &MsgId) -> String {
    format!("c{}-t{}-s{}", id.cycle, id.thread, id.seq)
}

fn parse_key(k: &str) -> Option<(u64, u64, u64)> {
    let rest = k.strip_prefix('c')?;
    let (c, rest) = rest.split_once("-t")?;
    let (t, s) = rest.split_once("-s")?;
    Some((c.parse().ok()?, t.parse().ok()?, s.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------------------------

/// Writes one line to stdout and flushes it; false when stdout is gone.
fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// Body of the `crash_child` test: does nothing unless [`ENV_CHILD`] is set.
pub fn child_entry() {
    if std::env::var_os(ENV_CHILD).is_none() {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let dir = PathBuf::from(var(ENV_DIR));
    let policy = parse_policy(&var(ENV_POLICY));
    let seed: u64 = var(ENV_SEED).parse().expect("seed");
    let cycle: u64 = var(ENV_CYCLE).parse().expect("cycle");
    let mode = var(ENV_MODE);
    let rate: u64 = var(ENV_RATE).parse().expect("rate");
    let store = match builder(&dir, policy).open() {
        Ok(s) => s,
        Err(e) => {
            emit(&format!("\nERR open: {e}\n"));
            return;
        }
    };
    if mode == "open" {
        emit("\nREADY\n");
        std::thread::sleep(CHILD_LIFETIME);
        let _ = store.close();
        return;
    }
    for (topic, queues) in TOPICS {
        if let Err(e) = store.create_topic(topic, queues) {
            emit(&format!("\nERR create_topic {topic}: {e}\n"));
            return;
        }
    }
    emit("\nREADY\n");
    let start = Instant::now();
    let handles: Vec<JoinHandle<()>> = (0..THREADS as u64)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || produce(&store, seed, cycle, thread, start, rate))
        })
        .collect();
    for h in handles {
        if h.join().is_err() {
            emit("ERR producer thread panicked\n");
        }
    }
    let _ = store.close();
}

/// One producer thread: puts until [`CHILD_LIFETIME`] is over, at most `rate` puts a second
/// on average when `rate` is not 0 (it runs at full speed whenever it is behind that pace).
fn produce(store: &Store, seed: u64, cycle: u64, thread: u64, start: Instant, rate: u64) {
    let mut rng = Rng::new(seed ^ (cycle << 20) ^ (thread << 8) ^ 0xC0FF_EE00);
    let queues: Vec<(&str, u32)> = TOPICS
        .iter()
        .flat_map(|&(t, n)| (0..n).map(move |q| (t, q)))
        .collect();
    let mut seq = 0u64;
    while start.elapsed() < CHILD_LIFETIME {
        if let Some(due_us) = (seq * 1_000_000).checked_div(rate)
            && let Some(ahead) = Duration::from_micros(due_us).checked_sub(start.elapsed())
        {
            std::thread::sleep(ahead);
        }
        let (topic, queue) = queues[rng.range(0, queues.len() as u64) as usize];
        let len = rng.range(1, MAX_BODY + 1);
        let id = MsgId {
            cycle,
            thread,
            seq,
            len,
        };
        let msg = mqlite::Message::new(topic, body(cycle, thread, seq, len as usize).to_vec())
            .with_tags(format!("t{thread}"))
            .with_keys([key_of(&id), format!("len{len}")]);
        let line = match store.put(&msg, queue) {
            Ok(r) if r.status == mqlite::PutStatus::PutOk => format!(
                "ACK {topic} {queue} {} {} {thread} {seq} {len}\n",
                r.queue_offset, r.physical_offset
            ),
            Ok(r) => format!("TIMEOUT {thread} {seq} {:?}\n", r.status),
            Err(e) => {
                emit(&format!("ERR put thread {thread} seq {seq}: {e}\n"));
                return;
            }
        };
        if !emit(&line) {
            return;
        }
        seq += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Parent side: running a child
// ---------------------------------------------------------------------------------------------

/// An acknowledged put, as reported by the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue: u32,
    /// Queue offset from the PutResult.
    pub queue_offset: u64,
    /// Physical offset from the PutResult.
    pub phys: u64,
    /// The message.
    pub id: MsgId,
}

/// What a killed child reported.
#[derive(Debug, Default)]
pub struct Report {
    /// Whether the child printed READY (its open completed).
    pub ready: bool,
    /// Acknowledged puts, in output order.
    pub acks: Vec<Ack>,
    /// Per thread, the highest sequence number reported (ACK or TIMEOUT).
    pub last_reported: [Option<u64>; THREADS],
    /// Puts that returned `FlushDiskTimeout`.
    pub timeouts: usize,
    /// ERR lines.
    pub errors: Vec<String>,
    /// Tail of the child's stderr.
    pub stderr: String,
    /// How the child ended.
    pub status: Option<ExitStatus>,
    /// Time from spawn to READY, when the parent waited for it.
    pub ready_after: Option<Duration>,
}

fn parse_ack(line: &str, cycle: u64) -> Option<Ack> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 8 || f[0] != "ACK" {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    Some(Ack {
        topic: f[1].to_owned(),
        queue: n(2)? as u32,
        queue_offset: n(3)?,
        phys: n(4)?,
        id: MsgId {
            cycle,
            thread: n(5)?,
            seq: n(6)?,
            len: n(7)?,
        },
    })
}

fn parse_output(out: &[u8], cycle: u64, report: &mut Report) -> Result<(), String> {
    let text = String::from_utf8_lossy(out);
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop(); // empty, or a partial last line
    for line in lines {
        if line == "READY" {
            report.ready = true;
        } else if line.starts_with("ACK ") {
            let ack = parse_ack(line, cycle).ok_or_else(|| format!("bad ACK line {line:?}"))?;
            let t = ack.id.thread as usize;
            if t >= THREADS {
                return Err(format!("bad thread in {line:?}"));
            }
            report.last_reported[t] = report.last_reported[t].max(Some(ack.id.seq));
            report.acks.push(ack);
        } else if let Some(rest) = line.strip_prefix("TIMEOUT ") {
            let f: Vec<&str> = rest.split(' ').collect();
            let t: usize = f[0].parse().map_err(|_| format!("bad line {line:?}"))?;
            let s: u64 = f[1].parse().map_err(|_| format!("bad line {line:?}"))?;
            report.last_reported[t] = report.last_reported[t].max(Some(s));
            report.timeouts += 1;
        } else if line.starts_with("ERR") {
            report.errors.push(line.to_owned());
        }
    }
    Ok(())
}

/// How long the parent waits for a child to print READY.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What a child does.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Opens the store and produces with [`THREADS`] threads, each at most `rate` puts a
    /// second (0: as fast as it can).
    Produce {
        /// Puts per second per thread, 0 for no limit.
        rate: u64,
    },
    /// Only opens (recovers) the store, then waits.
    Open,
}

/// When to kill a child.
#[derive(Debug, Clone, Copy)]
pub enum KillAt {
    /// This long after it printed READY.
    AfterReady(Duration),
    /// This long after it was spawned.
    AfterSpawn(Duration),
}

/// Spawns a child, kills it with SIGKILL as told, and collects what it printed.
pub fn run_child(
    dir: &Path,
    policy: FlushPolicy,
    seed: u64,
    cycle: u64,
    mode: Mode,
    kill_at: KillAt,
) -> Result<Report, String> {
    let (mode, rate) = match mode {
        Mode::Produce { rate } => ("produce", rate),
        Mode::Open => ("open", 0),
    };
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let spawned = Instant::now();
    let mut child: Child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_CHILD, "1")
        .env(ENV_DIR, dir)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_POLICY, policy_code(policy))
        .env(ENV_CYCLE, cycle.to_string())
        .env(ENV_MODE, mode)
        .env(ENV_RATE, rate.to_string())
        .env_remove("MQLITE_SEED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn child: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let mut signalled = false;
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if !signalled && buf.windows(7).any(|w| w == b"\nREADY\n") {
                signalled = true;
                let _ = ready_tx.send(());
            }
        }
        buf
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let mut ready_after = None;
    match kill_at {
        KillAt::AfterSpawn(d) => {
            std::thread::sleep(d.saturating_sub(spawned.elapsed()));
        }
        KillAt::AfterReady(d) => {
            // An error (child gone before READY) is diagnosed below from its output.
            if ready_rx.recv_timeout(READY_TIMEOUT).is_ok() {
                ready_after = Some(spawned.elapsed());
                std::thread::sleep(d);
            }
        }
    }
    let _ = child.kill();
    let status = child.wait().map_err(|e| format!("wait child: {e}"))?;
    let out = out_thread.join().map_err(|_| "stdout reader panicked")?;
    let err = err_thread.join().map_err(|_| "stderr reader panicked")?;
    let mut report = Report {
        status: Some(status),
        ready_after,
        ..Report::default()
    };
    let err = String::from_utf8_lossy(&err);
    let tail_start = err.len().saturating_sub(4000);
    let tail_start = (tail_start..err.len())
        .find(|&i| err.is_char_boundary(i))
        .unwrap_or(err.len());
    report.stderr = err[tail_start..].to_owned();
    parse_output(&out, cycle, &mut report)?;
    if !report.errors.is_empty() {
        return Err(format!(
            "child reported errors: {:?}\nchild stderr:\n{}",
            report.errors, report.stderr
        ));
    }
    if status.signal() != Some(SIGKILL) {
        return Err(format!(
            "child was not killed by SIGKILL but ended with {status}\nchild stderr:\n{}",
            report.stderr
        ));
    }
    if matches!(kill_at, KillAt::AfterReady(_)) && !report.ready {
        return Err(format!(
            "child never printed READY\nchild stderr:\n{}",
            report.stderr
        ));
    }
    Ok(report)
}

/// SIGKILL's number on Linux (and every other Unix).
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------------------------
// Parent side: the oracle
// ---------------------------------------------------------------------------------------------

/// One verified message of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Which message.
    pub id: MsgId,
    /// Its CommitLog offset.
    pub phys: u64,
    /// Its record size.
    pub size: u32,
    /// Whether its put was acknowledged.
    pub acked: bool,
}

/// Every message verified so far, per queue, indexed by queue offset.
#[derive(Debug, Default)]
pub struct Model {
    /// Per (topic, queue): the messages at queue offsets 0, 1, ...
    pub queues: BTreeMap<(String, u32), Vec<Stored>>,
    /// Acknowledged messages ever.
    pub acked: usize,
    /// Messages ever verified.
    pub total: usize,
}

/// What one verification found.
#[derive(Debug, Default, Clone, Copy)]
pub struct CycleStats {
    /// Messages of this cycle in the store.
    pub new: usize,
    /// Acknowledged in this cycle.
    pub acked: usize,
    /// Unacknowledged messages of this cycle that survived.
    pub unacked_kept: usize,
    /// Messages of earlier cycles read and compared again.
    pub rechecked: usize,
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

/// Checks one message read back: topic, queue, key, tags, body.
fn check_content(m: &MessageExt, topic: &str, queue: u32) -> Result<MsgId, String> {
    let at = format!("{topic}:{queue}@{}", m.queue_offset());
    ensure!(m.topic() == topic, "{at}: topic {:?}", m.topic());
    ensure!(m.queue_id() == queue, "{at}: queue id {}", m.queue_id());
    let keys: Vec<&str> = m.keys().collect();
    ensure!(keys.len() == 2, "{at}: keys {keys:?}");
    let (cycle, thread, seq) = parse_key(keys[0]).ok_or_else(|| format!("{at}: key {keys:?}"))?;
    let len = m.body().len() as u64;
    ensure!(
        keys[1] == format!("len{len}"),
        "{at}: body of {len} bytes, keys {keys:?}"
    );
    ensure!(
        (1..=MAX_BODY).contains(&len) && thread < THREADS as u64,
        "{at}: bad len {len} / thread {thread}"
    );
    ensure!(
        m.tags() == Some(format!("t{thread}").as_str()),
        "{at}: tags {:?} for thread {thread}",
        m.tags()
    );
    ensure!(
        m.body() == body(cycle, thread, seq, m.body().len()),
        "{at}: body of {} differs from the expected pattern",
        keys[0]
    );
    Ok(MsgId {
        cycle,
        thread,
        seq,
        len,
    })
}

/// Which messages verified in earlier cycles [`verify`] reads again.
#[derive(Debug, Clone, Copy)]
pub enum Recheck {
    /// All of them.
    All,
    /// Of each queue, slice `.0` of `.1` equal slices (so `n` cycles cover everything).
    Slice(u64, u64),
}

impl Recheck {
    /// The queue offsets to read again, of a queue that had `len` verified messages.
    fn range(self, len: u64) -> (u64, u64) {
        match self {
            Recheck::All => (0, len),
            Recheck::Slice(i, n) => (len * (i % n) / n, len * (i % n + 1) / n),
        }
    }

    /// The slice for `cycle` of `cycles`, re-reading everything every `every` cycles and at
    /// the last one.
    pub fn for_cycle(cycle: u64, cycles: u64, every: u64) -> Recheck {
        if cycle + 1 == cycles || every <= 1 {
            Recheck::All
        } else {
            Recheck::Slice(cycle % every, every)
        }
    }
}

/// Reads queue offsets `from..to` of `mq` in batches, checking that the queue is dense there
/// (each record has the next queue offset) and that its max offset is `max`, and hands each
/// message to `f`.
fn read_range(
    store: &Store,
    mq: &MessageQueue,
    from: u64,
    to: u64,
    max: u64,
    mut f: impl FnMut(&MessageExt) -> Result<(), String>,
) -> Result<(), String> {
    let mut off = from;
    while off < to {
        let want = ((to - off) as usize).min(BATCH);
        let r = store
            .get_messages(mq, off, want)
            .map_err(|e| format!("get_messages({mq}, {off}): {e} (max {max})"))?;
        ensure!(
            r.min_offset == 0 && r.max_offset == max,
            "{mq}: get_messages reports min {} max {}, expected 0 {max}",
            r.min_offset,
            r.max_offset
        );
        ensure!(
            !r.messages.is_empty(),
            "{mq}: hole: get_messages at {off} returned nothing (max {max})"
        );
        for m in &r.messages {
            ensure!(
                m.queue_offset() == off,
                "{mq}: expected queue offset {off}, got {}",
                m.queue_offset()
            );
            f(m)?;
            off += 1;
        }
        ensure!(
            r.next_offset == off,
            "{mq}: next_offset {} after reading up to {off}",
            r.next_offset
        );
    }
    Ok(())
}

/// (c): the record a queue unit points at is the record at that CommitLog offset.
fn same_at(store: &Store, m: &MessageExt) -> Result<(), String> {
    let phys = m.physical_offset();
    let at = store.message_at(phys).map_err(|e| {
        format!(
            "{}:{}@{}: message_at({phys}): {e}",
            m.topic(),
            m.queue_id(),
            m.queue_offset()
        )
    })?;
    ensure!(
        at == *m,
        "{}:{}@{}: message_at({phys}) differs from the queue's record",
        m.topic(),
        m.queue_id(),
        m.queue_offset()
    );
    Ok(())
}

/// Checks the oracle on a reopened store after the child of `cycle` (which reported `report`)
/// was killed, and extends `model` with the messages of this cycle.
///
/// Messages of this cycle, and with [`Recheck::All`] every message, get every check below;
/// with [`Recheck::Slice`] the slice of older messages is read again through `get_messages`
/// and compared (queue offset, physical offset, size, body bytes), and every queue's max
/// offset must still cover all of them.
///
/// (a) every acknowledged message reads back byte-identical (body, key, tags) at the queue
/// offset and physical offset its put returned, through `get_messages` and `message_at`;
/// (b) every queue is dense from 0 to its max offset: reading it in batches returns each queue
/// offset in turn, and each unit points at the record carrying that queue offset;
/// (c) every record read through a queue equals `message_at` of its physical offset, and the
/// records of all queues tile the CommitLog from 0 to its end with only segment-end blanks
/// between them (no record outside the queues, none overlapping);
/// (d) per producer thread, the surviving messages of this cycle are exactly sequence numbers
/// 0..n in log order, with n at least one past the last acknowledged and at most one past the
/// last reported: only an unacknowledged suffix can be missing, and nothing verified in an
/// earlier cycle changed or disappeared; no record is readable that the producer did not
/// write whole (a torn record served as a message fails here).
pub fn verify(
    store: &Store,
    model: &mut Model,
    cycle: u64,
    report: &Report,
    recheck: Recheck,
) -> Result<CycleStats, String> {
    let mut stats = CycleStats::default();
    let topics = store.topics();
    ensure!(
        topics.len() == TOPICS.len(),
        "topics {:?}",
        topics.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let mut fresh: BTreeMap<(String, u32), Vec<Stored>> = BTreeMap::new();
    let mut per_thread: Vec<Vec<(u64, u64)>> = vec![Vec::new(); THREADS];
    let mut spans: Vec<(u64, u32)> = Vec::with_capacity(model.total + 1024);
    for (topic, nq) in TOPICS {
        for q in 0..nq {
            let mq = MessageQueue::new(topic, q);
            let key = (topic.to_owned(), q);
            let old: &[Stored] = model.queues.get(&key).map_or(&[], Vec::as_slice);
            let new = fresh.entry(key).or_default();
            let min = store
                .min_offset(&mq)
                .map_err(|e| format!("min_offset {mq}: {e}"))?;
            let max = store
                .max_offset(&mq)
                .map_err(|e| format!("max_offset {mq}: {e}"))?;
            ensure!(min == 0, "{mq}: min offset {min}, expected 0");
            ensure!(
                max >= old.len() as u64,
                "{mq}: max offset {max} but {} messages were verified before (lost: {:?})",
                old.len(),
                old.get(max as usize)
            );
            // Messages verified in earlier cycles: all of them (every check) or a slice (same
            // queue offset, physical offset, size and body bytes) read again.
            let (lo, hi) = recheck.range(old.len() as u64);
            let deep = matches!(recheck, Recheck::All);
            read_range(store, &mq, lo, hi, max, |m| {
                let off = m.queue_offset();
                let prev = &old[off as usize];
                ensure!(
                    (m.physical_offset(), m.store_size()) == (prev.phys, prev.size),
                    "{mq}@{off}: verified earlier as {prev:?}, now at physical offset {} size {}",
                    m.physical_offset(),
                    m.store_size()
                );
                if deep {
                    let id = check_content(m, topic, q)?;
                    ensure!(
                        id == prev.id,
                        "{mq}@{off}: verified earlier as {prev:?}, now holds {id:?}"
                    );
                    same_at(store, m)?;
                } else {
                    let p = prev.id;
                    ensure!(
                        m.body() == body(p.cycle, p.thread, p.seq, p.len as usize),
                        "{mq}@{off}: body of {p:?} changed since it was verified"
                    );
                }
                stats.rechecked += 1;
                Ok(())
            })?;
            spans.extend(old.iter().map(|s| (s.phys, s.size)));
            // Messages of this cycle.
            read_range(store, &mq, old.len() as u64, max, max, |m| {
                let phys = m.physical_offset();
                let id = check_content(m, topic, q).map_err(|e| {
                    format!(
                        "{e}: the record at physical offset {phys} (size {}, CommitLog end {}) \
                         is served although the producer never wrote it whole (a torn record \
                         that recovery kept?)",
                        m.store_size(),
                        store.commitlog_max_offset()
                    )
                })?;
                ensure!(
                    id.cycle == cycle,
                    "{mq}@{}: new message {id:?} is not from cycle {cycle}",
                    m.queue_offset()
                );
                same_at(store, m)?;
                let st = Stored {
                    id,
                    phys,
                    size: m.store_size(),
                    acked: false,
                };
                new.push(st);
                per_thread[id.thread as usize].push((id.seq, phys));
                spans.push((phys, st.size));
                Ok(())
            })?;
        }
    }
    // (a) and (d): every ACK of this cycle is in the store, where the put said.
    for ack in &report.acks {
        let key = (ack.topic.clone(), ack.queue);
        let base = model.queues.get(&key).map_or(0, Vec::len) as u64;
        let new = fresh
            .get_mut(&key)
            .ok_or_else(|| format!("ACK for unknown queue {ack:?}"))?;
        ensure!(
            ack.queue_offset >= base,
            "acked {ack:?} has a queue offset below the {base} messages present before this cycle"
        );
        let now_max = base + new.len() as u64;
        let got = new
            .get_mut((ack.queue_offset - base) as usize)
            .ok_or_else(|| {
                format!("LOST acknowledged message {ack:?}: queue max offset is {now_max}")
            })?;
        ensure!(
            got.id == ack.id && got.phys == ack.phys,
            "acked {ack:?} but the store holds {got:?} there"
        );
        ensure!(!got.acked, "two ACKs for {ack:?}");
        got.acked = true;
        stats.acked += 1;
    }
    // (d) per thread: a dense prefix of its sequence, in log order.
    for (t, v) in per_thread.iter_mut().enumerate() {
        v.sort_unstable();
        for (i, &(seq, _)) in v.iter().enumerate() {
            ensure!(
                seq == i as u64,
                "thread {t}: surviving seqs are not a prefix: position {i} holds seq {seq}"
            );
        }
        for w in v.windows(2) {
            ensure!(
                w[0].1 < w[1].1,
                "thread {t}: seq {} at {} but seq {} at {}",
                w[0].0,
                w[0].1,
                w[1].0,
                w[1].1
            );
        }
        let limit = report.last_reported[t].map_or(1, |s| s + 2);
        ensure!(
            v.len() as u64 <= limit,
            "thread {t}: {} messages survived but only {:?} was reported",
            v.len(),
            report.last_reported[t]
        );
        stats.new += v.len();
    }
    stats.unacked_kept = stats.new - stats.acked;
    // (c) the records of all queues tile the CommitLog.
    spans.sort_unstable();
    let mut end = 0u64;
    for &(phys, size) in &spans {
        ensure!(
            phys == end || (!end.is_multiple_of(SEGMENT) && phys == (end / SEGMENT + 1) * SEGMENT),
            "commitlog: record at {phys} follows a record ending at {end} (missing or overlapping record)"
        );
        end = phys + u64::from(size);
    }
    let log_end = store.commitlog_max_offset();
    ensure!(
        log_end == end
            || (!end.is_multiple_of(SEGMENT) && log_end == (end / SEGMENT + 1) * SEGMENT),
        "commitlog max offset {log_end}, but the last record ends at {end}"
    );
    for (key, v) in fresh {
        let q = model.queues.entry(key).or_default();
        model.acked += v.iter().filter(|s| s.acked).count();
        model.total += v.len();
        q.extend(v);
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// A test directory that is kept (and its path reported) when the test fails.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A fresh directory.
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("store");
        TestDir {
            dir: Some(dir),
            path,
        }
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk and returns its path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.path.clone()
    }
}

fn fail(dir: &mut TestDir, seed: u64, cycle: u64, policy: FlushPolicy, msg: &str) -> ! {
    let path = dir.keep();
    panic!(
        "cycle {cycle} (policy {}): {msg}\nseed {seed} (rerun with MQLITE_SEED={seed}); store kept at {}",
        policy_code(policy),
        path.display()
    );
}

/// Cases 1 and 2: `cycles` times, run a producing child on the same directory, SIGKILL it
/// 5..300 ms after READY, reopen the store in the parent, check [`verify`], close. Every
/// `cycles_per_dir` cycles the test starts over in a fresh directory (bounds a soak's store).
/// Each producer thread makes at most `rate` puts a second (0: no limit); this bounds the
/// store's growth, and so the time verification takes, in debug builds.
pub fn kill_loop(family: Family, cycles: u64, cycles_per_dir: u64, rate: u64, default_seed: u64) {
    let seed = common::seed(default_seed);
    let mut rng = Rng::new(seed);
    let mut dir = TestDir::new("mqlite-crash-");
    let mut model = Model::default();
    let (mut rechecked, mut acked_in_models) = (0usize, 0usize);
    let started = Instant::now();
    let (mut acked, mut kept, mut timeouts) = (0usize, 0usize, 0usize);
    let (mut child_time, mut check_time) = (Duration::ZERO, Duration::ZERO);
    for cycle in 0..cycles {
        let in_dir = cycle % cycles_per_dir;
        if cycle > 0 && in_dir == 0 {
            dir = TestDir::new("mqlite-crash-");
            acked_in_models += std::mem::take(&mut model).acked;
        }
        let recheck = Recheck::for_cycle(in_dir, cycles_per_dir.min(cycles - cycle + in_dir), 10);
        let policy = family.pick(&mut rng);
        let delay = Duration::from_millis(rng.range(5, 301));
        let child_seed = rng.next_u64();
        let t0 = Instant::now();
        let report = match run_child(
            dir.path(),
            policy,
            child_seed,
            cycle,
            Mode::Produce { rate },
            KillAt::AfterReady(delay),
        ) {
            Ok(r) => r,
            Err(e) => fail(&mut dir, seed, cycle, policy, &e),
        };
        let t1 = Instant::now();
        child_time += t1 - t0;
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let store = builder(dir.path(), policy)
                .open()
                .map_err(|e| format!("reopen after kill: {e}"))?;
            let stats = verify(&store, &mut model, cycle, &report, recheck)?;
            store
                .close()
                .map_err(|e| format!("close after verify: {e}"))?;
            Ok::<_, String>(stats)
        }));
        let stats = match check {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => fail(&mut dir, seed, cycle, policy, &e),
            Err(p) => fail(&mut dir, seed, cycle, policy, &panic_text(&*p)),
        };
        check_time += t1.elapsed();
        acked += stats.acked;
        kept += stats.unacked_kept;
        rechecked += stats.rechecked;
        timeouts += report.timeouts;
        eprintln!(
            "cycle {cycle:3} {:<12} kill after {:3} ms: {:5} acked, {:2} unacked kept, {:3} timeouts; \
             store {} msgs, {} re-read",
            policy_code(policy),
            delay.as_millis(),
            stats.acked,
            stats.unacked_kept,
            report.timeouts,
            model.total,
            stats.rechecked
        );
    }
    eprintln!(
        "{cycles} cycles in {:.1?} (children {child_time:.1?}, reopen+verify {check_time:.1?}): \
         {acked} acked ({} in store at the end, {} bytes of CommitLog), {kept} unacked kept, \
         {timeouts} flush timeouts, {rechecked} re-reads of \
         messages from earlier cycles",
        started.elapsed(),
        model.total,
        log_bytes(dir.path()),
    );
    assert!(acked > 0, "no put was ever acknowledged");
    assert_eq!(acked_in_models + model.acked, acked);
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    format!("panic while reopening or verifying: {what}")
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("commitlog"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Case 15 (crash during recovery): a producing child with a flush interval longer than its
/// life leaves a large unflushed tail; then `kills` children that only open the store are
/// SIGKILLed, half 1..20 ms after spawn and half at a random point of a full open (timed on a
/// copy of the store), so mid-recovery; a final reopen must satisfy the oracle. Repeated for
/// `rounds` rounds on the same directory.
pub fn reopen_during_recovery(rounds: u64, kills: u64, produce_ms: u64, default_seed: u64) {
    let seed = common::seed(default_seed);
    let mut rng = Rng::new(seed);
    let mut dir = TestDir::new("mqlite-crash-recovery-");
    let mut model = Model::default();
    // Nothing is flushed by the flush thread while the producer runs (a process crash keeps
    // the page cache, so nothing is lost either); the checkpoint stays at the last open.
    let produce_policy = FlushPolicy::Async {
        interval: Duration::from_secs(600),
        min_pages: u32::MAX,
    };
    let started = Instant::now();
    for round in 0..rounds {
        let report = run_child(
            dir.path(),
            produce_policy,
            rng.next_u64(),
            round,
            Mode::Produce { rate: 0 },
            KillAt::AfterReady(Duration::from_millis(produce_ms)),
        )
        .unwrap_or_else(|e| fail(&mut dir, seed, round, produce_policy, &e));
        // How long a complete open (recovery) of this store takes, measured on a copy.
        let probe = dir.path().with_file_name("probe");
        copy_dir(dir.path(), &probe).expect("copy the store");
        let open_ms = run_child(
            &probe,
            FlushPolicy::SYNC,
            0,
            round,
            Mode::Open,
            KillAt::AfterReady(Duration::ZERO),
        )
        .unwrap_or_else(|e| fail(&mut dir, seed, round, FlushPolicy::SYNC, &e))
        .ready_after
        .map_or(20, |d| d.as_millis() as u64);
        std::fs::remove_dir_all(&probe).expect("remove the copy");
        let mut before_ready = 0;
        for k in 0..kills {
            let policy = if rng.range(0, 2) == 0 {
                FlushPolicy::SYNC
            } else {
                FlushPolicy::ASYNC
            };
            // Half the kills 1..20 ms after spawn, half anywhere in a full open.
            let delay = Duration::from_millis(if k % 2 == 0 {
                rng.range(1, 21)
            } else {
                rng.range(1, open_ms.max(20) + 1)
            });
            let r = run_child(
                dir.path(),
                policy,
                0,
                round,
                Mode::Open,
                KillAt::AfterSpawn(delay),
            )
            .unwrap_or_else(|e| {
                fail(
                    &mut dir,
                    seed,
                    round,
                    policy,
                    &format!("open-kill {k} after {delay:?}: {e}"),
                )
            });
            if !r.ready {
                before_ready += 1;
            }
        }
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let store = builder(dir.path(), FlushPolicy::SYNC)
                .open()
                .map_err(|e| format!("final reopen: {e}"))?;
            let stats = verify(&store, &mut model, round, &report, Recheck::All)?;
            store.close().map_err(|e| format!("close: {e}"))?;
            Ok::<_, String>(stats)
        }));
        let stats = match check {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => fail(&mut dir, seed, round, produce_policy, &e),
            Err(p) => fail(&mut dir, seed, round, produce_policy, &panic_text(&*p)),
        };
        eprintln!(
            "round {round}: {} acked, {} unacked kept; a full open took {open_ms} ms; \
             {before_ready}/{kills} open-kills landed before READY; store {} msgs",
            stats.acked, stats.unacked_kept, model.total
        );
    }
    eprintln!("{rounds} rounds in {:.1?}", started.elapsed());
}
