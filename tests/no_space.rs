//! Out of space (RELIABILITY.md Part C, case 7). When the next CommitLog segment cannot be
//! created, `put` fails with `Error::NoSpace` (never OK, never a SIGBUS or SIGXFSZ), every
//! acknowledged message stays readable, and writes work again once there is room.
//!
//! * `fsize_limit_gives_no_space`: this test binary re-executed as a child that ignores
//!   SIGXFSZ, opens a store with 1 MiB segments and then lowers RLIMIT_FSIZE below the segment
//!   size (so no further segment can be preallocated; the limit is per file, so it has to be
//!   below one segment to bite), puts until an error, checks it is `NoSpace`, reads back every
//!   acknowledged message and closes. The parent then reopens without the limit, finds exactly
//!   the acknowledged messages and appends more.
//! * `tmpfs_full_gives_no_space`: when running as root with a working `mount`, a store on an
//!   8 MiB tmpfs, which is then filled by another file: appends into the preallocated segment
//!   still succeed, the roll fails with `NoSpace`, and deleting the filler lets puts resume.
//!   Skipped (with a message) when mounting is not possible.
#![allow(unsafe_code)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Rng;
use mqlite::{
    Error, FlushPolicy, IndexConfig, Message, MessageQueue, RetentionConfig, Store, StoreBuilder,
};

const CHILD_ENV: &str = "MQLITE_NOSPACE_CHILD_DIR";
const MIB: u64 = 1024 * 1024;
const QUEUES: u32 = 4;

/// These tests are about the CommitLog's roll meeting a full disk: no index files (their
/// preallocation would meet it first), and the disk-space guard never refuses puts (it would
/// answer `DiskFull` before the roll is tried; `tests/retention.rs` tests the guard).
fn builder(dir: &Path) -> StoreBuilder {
    let mut retention = RetentionConfig::default();
    retention.disk_full_ratio = 100;
    retention.disk_clean_forcibly_ratio = 100;
    retention.disk_max_used_space_ratio = 95;
    retention.delete_when = String::new();
    Store::builder(dir)
        .commitlog_segment_size(MIB)
        .consume_queue_segment_size(40_000)
        .index(IndexConfig::DISABLED)
        .retention(retention)
}

/// The body of message `i`: reproducible in both processes.
fn body(i: u64) -> Vec<u8> {
    let mut rng = Rng::new(i + 1);
    let len = rng.range(1000, 5000) as usize;
    rng.bytes(len)
}

/// An acknowledged put: message index, queue, queue offset, physical offset.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ack {
    i: u64,
    queue: u32,
    queue_offset: u64,
    phys: u64,
}

/// Puts messages `from..` until one fails; returns the acks and the error.
fn put_until_error(
    store: &Store,
    from: u64,
    limit: u64,
    log: &mut dyn FnMut(&Ack),
) -> (Vec<Ack>, Error) {
    let mut acks = Vec::new();
    for i in from..from + limit {
        let queue = (i % u64::from(QUEUES)) as u32;
        match store.put(&Message::new("Full", body(i)), queue) {
            Ok(p) => {
                let ack = Ack {
                    i,
                    queue,
                    queue_offset: p.queue_offset,
                    phys: p.physical_offset,
                };
                log(&ack);
                acks.push(ack);
            }
            Err(e) => return (acks, e),
        }
    }
    panic!("{limit} puts from {from} all succeeded; the store never ran out of space");
}

/// Every acknowledged message reads back with its body, at its queue offset and position.
fn verify(store: &Store, acks: &[Ack]) {
    for a in acks {
        let mq = MessageQueue::new("Full", a.queue);
        let got = store.get_messages(&mq, a.queue_offset, 1).unwrap();
        let m = got
            .messages
            .first()
            .unwrap_or_else(|| panic!("acked {a:?} missing"));
        assert_eq!(m.queue_offset(), a.queue_offset);
        assert_eq!(m.physical_offset(), a.phys, "{a:?}");
        assert!(m.body() == body(a.i), "{a:?}: body differs");
    }
}

/// Queue offsets are dense and each queue holds exactly the acknowledged messages.
fn check_dense(store: &Store, acks: &[Ack]) {
    for q in 0..QUEUES {
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.queue == q).collect();
        for (k, a) in mine.iter().enumerate() {
            assert_eq!(a.queue_offset, k as u64, "queue {q} offsets are dense");
        }
        let mq = MessageQueue::new("Full", q);
        assert_eq!(
            store.max_offset(&mq).unwrap(),
            mine.len() as u64,
            "queue {q} holds exactly the acknowledged messages"
        );
    }
}

fn set_fsize_limit(bytes: u64) {
    // SAFETY: signal() and getrlimit()/setrlimit() are plain libc calls; SIG_IGN installs no
    // handler code, and the rlimit struct is a valid, initialised local.
    unsafe {
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

/// Runs only as the child of `fsize_limit_gives_no_space`.
#[test]
#[ignore = "child process of fsize_limit_gives_no_space"]
fn child_fills_store() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = builder(Path::new(&dir)).open().unwrap();
    store.create_topic("Full", QUEUES).unwrap();
    // Below one segment: the segments that exist keep working, no new one can be created.
    set_fsize_limit(MIB / 2);
    let mut out = std::io::stdout();
    let (acks, err) = put_until_error(&store, 0, 100_000, &mut |a| {
        writeln!(
            out,
            "\nACK {} {} {} {}",
            a.i, a.queue, a.queue_offset, a.phys
        )
        .unwrap();
    });
    println!("\nERR {err:?}");
    assert!(
        matches!(err, Error::NoSpace { .. }),
        "expected NoSpace, got {err:?}"
    );
    // Still no room: later puts fail the same way, none is acknowledged.
    for i in 0..5 {
        let e = store
            .put(&Message::new("Full", body(1_000_000 + i)), 0)
            .expect_err("a put succeeded while there is no room for a segment");
        assert!(
            matches!(e, Error::NoSpace { .. }),
            "expected NoSpace, got {e:?}"
        );
    }
    verify(&store, &acks);
    check_dense(&store, &acks);
    println!("\nVERIFIED {}", acks.len());
    store.close().unwrap();
    println!("\nCLOSED");
}

#[test]
fn fsize_limit_gives_no_space() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_fills_store",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!(
                    "child did not finish: {:?}",
                    child.wait_with_output().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({:?}; a SIGXFSZ death is signal 25)\nstdout tail: {}\nstderr: {stderr}",
        out.status,
        &stdout[stdout.len().saturating_sub(2000)..]
    );
    let mut acks = Vec::new();
    let mut err = None;
    let mut verified = None;
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("ACK") => acks.push(Ack {
                i: f[1].parse().unwrap(),
                queue: f[2].parse().unwrap(),
                queue_offset: f[3].parse().unwrap(),
                phys: f[4].parse().unwrap(),
            }),
            Some("ERR") => err = Some(line.to_owned()),
            Some("VERIFIED") => verified = Some(f[1].parse::<usize>().unwrap()),
            _ => {}
        }
    }
    let err = err.expect("the child reported no error");
    println!("child's error: {err}");
    assert!(err.contains("NoSpace"), "{err}");
    assert_eq!(
        verified,
        Some(acks.len()),
        "the child read back every acked message"
    );
    assert!(stdout.contains("CLOSED"));
    let end = acks.iter().map(|a| a.phys).max().unwrap();
    assert!(
        end >= MIB / 2,
        "the child filled at least the first segment ({end})"
    );

    // Without the limit: every acknowledged message is there, and nothing else.
    let store = builder(&dir).open().unwrap();
    verify(&store, &acks);
    check_dense(&store, &acks);
    // Writes resume, rolling past the segment that could not be created.
    let mut all = acks.clone();
    let next = acks.len() as u64;
    for i in next..next + 600 {
        let queue = (i % u64::from(QUEUES)) as u32;
        let p = store.put(&Message::new("Full", body(i)), queue).unwrap();
        all.push(Ack {
            i,
            queue,
            queue_offset: p.queue_offset,
            phys: p.physical_offset,
        });
    }
    assert!(
        store.commitlog_max_offset() > end + MIB,
        "appends rolled to new segments"
    );
    store.close().unwrap();
    let store = builder(&dir).open().unwrap();
    verify(&store, &all);
    check_dense(&store, &all);
    store.close().unwrap();
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    // SAFETY: geteuid() has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, cannot mount a tmpfs");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Some(Mount(dir.to_path_buf())),
        other => {
            eprintln!("skipped: mounting a tmpfs failed ({other:?})");
            None
        }
    }
}

/// Writes a file until the file system is full; returns its size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xAB; 4096];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    written
}

#[test]
fn tmpfs_full_gives_no_space() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let Some(_mount) = mount_tmpfs(&mnt, "8m") else {
        return;
    };
    let dir = mnt.join("store");
    let store = builder(&dir)
        .flush_policy(FlushPolicy::SYNC)
        .open()
        .unwrap();
    store.create_topic("Full", QUEUES).unwrap();
    // A first message in each queue creates its consume queue file (40 KB, preallocated).
    let mut acks = Vec::new();
    for i in 0..u64::from(QUEUES) {
        let p = store.put(&Message::new("Full", body(i)), i as u32).unwrap();
        acks.push(Ack {
            i,
            queue: i as u32,
            queue_offset: p.queue_offset,
            phys: p.physical_offset,
        });
    }
    // Let the background preparer finish the next segment, then fill the file system: the
    // segments that exist are fully allocated, so appends into them must still work.
    std::thread::sleep(Duration::from_millis(300));
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    let (more, err) = put_until_error(&store, acks.len() as u64, 10_000, &mut |_| {});
    println!("error on a full tmpfs: {err:?}");
    assert!(
        matches!(err, Error::NoSpace { .. }),
        "expected NoSpace, got {err:?}"
    );
    assert!(
        more.len() > 100,
        "appends into the preallocated segment succeed on a full file system ({} did)",
        more.len()
    );
    acks.extend(more);
    for _ in 0..3 {
        let e = store
            .put(&Message::new("Full", body(999_999)), 1)
            .unwrap_err();
        assert!(
            matches!(e, Error::NoSpace { .. }),
            "expected NoSpace, got {e:?}"
        );
    }
    verify(&store, &acks);
    check_dense(&store, &acks);

    // Free the space: writes resume.
    std::fs::remove_file(&filler).unwrap();
    let from = acks.len() as u64;
    for i in from..from + 400 {
        let queue = (i % u64::from(QUEUES)) as u32;
        let p = store.put(&Message::new("Full", body(i)), queue).unwrap();
        acks.push(Ack {
            i,
            queue,
            queue_offset: p.queue_offset,
            phys: p.physical_offset,
        });
    }
    verify(&store, &acks);
    check_dense(&store, &acks);
    store.close().unwrap();

    let store = builder(&dir).open().unwrap();
    verify(&store, &acks);
    check_dense(&store, &acks);
    store.close().unwrap();
}
