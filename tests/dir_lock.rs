//! Exclusive directory lock (RELIABILITY.md Part C, case 13). A second open of a store
//! directory, in this process or in another one, fails at once with `Error::Locked`; once the
//! holder closes (or, for another process, is SIGKILLed) opening succeeds, and what the killed
//! holder wrote is recovered. The other process is this test binary re-executed with
//! `MQLITE_LOCK_CHILD_DIR` set, running the `#[ignore]`d `child_holds_lock`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::small;
use mqlite::{Error, Message, MessageQueue};

const CHILD_ENV: &str = "MQLITE_LOCK_CHILD_DIR";

fn expect_locked(dir: &Path) {
    let t = Instant::now();
    match small(dir).open() {
        Err(Error::Locked(p)) => assert_eq!(p, dir, "Locked names the directory"),
        Err(e) => panic!("expected Error::Locked, got {e:?}"),
        Ok(_) => panic!("a second open of a locked directory succeeded"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "Locked must come at once, not when the holder lets go; took {:?}",
        t.elapsed()
    );
}

#[test]
fn second_open_in_process_is_locked_until_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = small(dir).open().unwrap();
    store
        .put(&Message::new("Lock", b"one".to_vec()), 0)
        .unwrap();
    expect_locked(dir);
    expect_locked(dir);
    // The failed opens did not disturb the open store.
    store
        .put(&Message::new("Lock", b"two".to_vec()), 0)
        .unwrap();
    assert_eq!(std::fs::read(dir.join("lock")).unwrap(), b"lock");
    // A clone is the same store, not a second open; it keeps the lock until close.
    let clone = store.clone();
    clone.close().unwrap();
    assert!(matches!(
        store.put(&Message::new("Lock", b"x".to_vec()), 0),
        Err(Error::Closed)
    ));
    drop(store);

    let store = small(dir).open().unwrap();
    let got = store
        .get_messages(&MessageQueue::new("Lock", 0), 0, 10)
        .unwrap();
    assert_eq!(got.messages.len(), 2);
    expect_locked(dir);
    drop(store); // dropping the last handle also releases the lock
    small(dir).open().unwrap().close().unwrap();
}

#[test]
fn failed_open_does_not_release_the_holders_lock() {
    // A second open that fails must not unlock the directory for a third one (for example by
    // truncating or re-creating the lock file under the holder).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = small(dir).open().unwrap();
    for _ in 0..3 {
        expect_locked(dir);
    }
    store
        .put(&Message::new("Lock", b"still mine".to_vec()), 0)
        .unwrap();
    store.close().unwrap();
    assert!(!dir.join("abort").exists());
}

/// Runs only as the child of `other_process_holds_lock_until_killed`.
#[test]
#[ignore = "child process of other_process_holds_lock_until_killed"]
fn child_holds_lock() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = small(Path::new(&dir)).open().unwrap();
    for i in 0..50 {
        let body = format!("from child {i}");
        store
            .put(&Message::new("Child", body.into_bytes()), 1)
            .unwrap();
    }
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(120));
    unreachable!("the parent kills this process");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn other_process_holds_lock_until_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut child = KillOnDrop(
        Command::new(exe)
            .args([
                "--exact",
                "child_holds_lock",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim_end().ends_with("LOCKED") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the child did not report LOCKED");

    expect_locked(&dir);
    expect_locked(&dir);

    // SIGKILL: the kernel drops the flock with the process.
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    assert!(
        dir.join("abort").exists(),
        "a killed store leaves its abort marker"
    );

    let store = small(&dir)
        .open()
        .expect("open after the holder was killed");
    let mq = MessageQueue::new("Child", 1);
    assert_eq!(
        store.max_offset(&mq).unwrap(),
        50,
        "the child's messages are recovered"
    );
    let got = store.get_messages(&mq, 0, 100).unwrap();
    for (i, m) in got.messages.iter().enumerate() {
        assert_eq!(m.body(), format!("from child {i}").as_bytes());
    }
    let put = store
        .put(&Message::new("Child", b"parent".to_vec()), 1)
        .unwrap();
    assert_eq!(put.queue_offset, 50);
    expect_locked(&dir);
    store.close().unwrap();
}
