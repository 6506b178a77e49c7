//! The `mqlite` command line tool and read-only opens, driven against stores made here,
//! including one held open by a child process (this test binary re-executed with
//! `MQLITE_CLI_CHILD` set) that keeps producing.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mqlite::{Error, Message, MessageQueue, PullStatus, Store};
use serde_json::Value;

const ENV_CHILD: &str = "MQLITE_CLI_CHILD";
/// Messages the child produces.
const LIVE: u64 = 3000;

fn mqlite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqlite"))
        .args(args)
        .output()
        .expect("run mqlite")
}

fn ok_stdout(args: &[&str]) -> String {
    let out = mqlite(args);
    assert!(
        out.status.success(),
        "mqlite {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok_stdout(&all)).expect("valid JSON")
}

/// `mqlite --json verify DIR` on a damaged store: exit status 2 and the parsed report.
fn verify_damaged(d: &str) -> Value {
    let out = mqlite(&["--json", "verify", d]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    v
}

fn sample_store(dir: &Path) -> (String, String) {
    let store = Store::builder(dir)
        .commitlog_segment_size(64 << 10)
        .open()
        .unwrap();
    store.create_topic("orders", 2).unwrap();
    let mut first = None;
    for i in 0..10u32 {
        let tag = if i % 2 == 0 { "created" } else { "paid" };
        let msg = Message::new("orders", format!("order {i}"))
            .with_tags(tag)
            .with_keys([format!("ORDER-{i}")]);
        let put = store.put(&msg, i % 2).unwrap();
        first.get_or_insert((put.offset_msg_id.to_string(), put.msg_id.to_string()));
    }
    let pull = store.pull_consumer("billing").unwrap();
    pull.commit_offset(&MessageQueue::new("orders", 0), 3)
        .unwrap();
    pull.commit_offset(&MessageQueue::new("orders", 1), 5)
        .unwrap();
    store.close().unwrap();
    first.unwrap()
}

fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().display().to_string(),
                    m.len(),
                    m.modified().unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn read_verbs_print_tables_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (offset_id, uniq) = sample_store(&dir);
    let d = dir.to_str().unwrap();
    let before = listing(&dir);

    let t = ok_stdout(&["topics", d]);
    assert!(t.lines().next().unwrap().starts_with("TOPIC"));
    assert!(
        t.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "2", "10"])
    );
    let v = json(&["topics", d]);
    assert_eq!(v[0]["topic"], "orders");
    assert_eq!(v[0]["messages"], 10);

    let v = json(&["topic", d, "orders"]);
    let queues = v["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(
        (
            queues[0]["min_offset"].as_u64(),
            queues[0]["max_offset"].as_u64()
        ),
        (Some(0), Some(5))
    );
    assert!(queues[1]["last_store_timestamp"].as_u64().unwrap() > 0);
    assert!(ok_stdout(&["topic", d, "orders"]).contains("MAX_OFFSET"));

    let v = json(&["groups", d]);
    assert_eq!(
        (v[0]["group"].as_str(), v[0]["topic"].as_str()),
        (Some("billing"), Some("orders"))
    );
    assert_eq!(v[0]["lag"], 2);
    let v = json(&["progress", d, "billing"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["broker_offset"].as_u64(),
            rows[0]["consumer_offset"].as_u64(),
            rows[0]["lag"].as_u64()
        ),
        (Some(5), Some(3), Some(2))
    );
    assert_eq!(rows[1]["lag"], 0);
    // The last consumed message's store time (offset 2 of queue 0 was consumed).
    assert!(rows[0]["last_consumed_store_timestamp"].as_u64().unwrap() > 0);
    assert!(
        json(&["progress", d, "nobody"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(ok_stdout(&["progress", d]).contains("CONSUMER_OFFSET"));

    let v = json(&["print", d, "orders", "--queue", "0"]);
    let bodies: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["order 0", "order 2", "order 4", "order 6", "order 8"]
    );
    let v = json(&[
        "print", d, "orders", "--tag", "paid", "--limit", "2", "--body", "hex",
    ]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["body"], "6f726465722031"); // "order 1"
    assert_eq!(rows[0]["tags"], "paid");
    let v = json(&[
        "print", d, "orders", "--queue", "1", "--from", "1", "--to", "3", "--body", "base64",
    ]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["body"], "b3JkZXIgMw=="); // "order 3"
    let v = json(&[
        "print",
        d,
        "orders",
        "--sql",
        "TAGS = 'paid' AND TAGS IS NOT NULL",
    ]);
    assert_eq!(v.as_array().unwrap().len(), 5);
    assert!(v.as_array().unwrap().iter().all(|m| m["tags"] == "paid"));
    let table = ok_stdout(&["print", d, "orders"]);
    assert_eq!(table.lines().count(), 11);
    assert!(table.contains("ORDER-7"));

    let v = json(&["get", d, &offset_id]);
    assert_eq!(v["body"], "order 0");
    assert_eq!(v["msg_id"], uniq.as_str());
    let v = json(&["get", d, &uniq]);
    assert_eq!(v["offset_msg_id"], offset_id.as_str());
    assert!(ok_stdout(&["get", d, &uniq]).contains("order 0"));

    let v = json(&["query", d, "orders", "ORDER-5"]);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["body"], "order 5");
    let v = json(&[
        "query", d, "orders", "ORDER-5", "--begin", "0", "--end", "1",
    ]);
    assert!(v.as_array().unwrap().is_empty());

    let v = json(&["stats", d]);
    assert_eq!(
        (
            v["topics"].as_u64(),
            v["messages"].as_u64(),
            v["groups"].as_u64()
        ),
        (Some(1), Some(10), Some(1))
    );
    assert_eq!(v["commitlog_segment_size"], 64 << 10);
    // Everything was stored moments ago: every window counts all ten.
    assert_eq!(v["per_topic"][0]["stored_last_1m"], 10);
    assert_eq!(v["throughput"][2]["messages"], 10);
    assert!(v["disk"]["commitlog"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["per_group"][0]["group"], "billing");
    assert_eq!(v["per_group"][0]["lag"], 2);
    assert!(ok_stdout(&["stats", d]).contains("LAST_15M"));
    let v = json(&["verify", d]);
    assert_eq!(
        (
            v["ok"].as_bool(),
            v["records"].as_u64(),
            v["units"].as_u64(),
            // One UNIQ_KEY and one key per message.
            v["index_entries"].as_u64()
        ),
        (Some(true), Some(10), Some(10), Some(20))
    );
    // A progress bar on request (and when stderr is a terminal).
    let out = mqlite(&["verify", d, "--progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    for stage in ["commitlog", "consume queues", "index files", "100%"] {
        assert!(err.contains(stage), "{err}");
    }
    assert!(ok_stdout(&["verify", d]).trim_end().ends_with("ok"));

    let out = ok_stdout(&[
        "--json",
        "tail",
        d,
        "orders",
        "--from-start",
        "--count",
        "5",
        "--tag",
        "created",
    ]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|m| m["tags"] == "created"));

    // Reading changed nothing in the directory: no lock, abort, checkpoint or JSON writes.
    assert_eq!(listing(&dir), before);
}

#[test]
fn errors_are_one_line_and_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let d = dir.to_str().unwrap();
    for args in [
        vec!["topics", "/nonexistent/store"],
        vec!["topic", d, "nosuch"],
        vec!["get", d, "nonsense"],
        vec!["get", d, "7F00000100002A9F00000000FFFFFFFF"],
        vec!["print", d, "orders", "--body", "rot13"],
        vec!["print", d, "orders", "--limit", "x"],
        vec!["print", d, "orders", "--queue", "9"],
        vec!["frobnicate", d],
        vec!["send", d, "orders"],
        vec!["reset", d, "g", "orders"],
        vec!["reset", d, "g", "orders", "--time", "yesterday"],
        vec!["query", d, "orders", "K", "--begin", "2026-13-01"],
        vec!["topics"],
        vec!["topics", d, "--frobnicate"],
        vec!["print", d, "orders", "--sql", "a = = 1"],
        vec!["print", d, "orders", "--sql", "a = 1", "--tag", "x"],
    ] {
        let out = mqlite(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("mqlite: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Damaged config: one line naming the file.
    std::fs::write(dir.join("config/topics.json"), b"{not json").unwrap();
    std::fs::remove_file(dir.join("config/topics.json.bak")).ok();
    let out = mqlite(&["topics", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("topics.json") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn verify_catches_a_flipped_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let d = dir.to_str().unwrap();
    let seg = dir.join("commitlog").join(format!("{:020}", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    // Record 3's body: find "order 3" and flip one bit in it.
    let at = bytes.windows(7).position(|w| w == b"order 3").unwrap();
    bytes[at + 2] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    let out = mqlite(&["verify", d]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DAMAGE") && text.contains("00000000000000000000"),
        "{text}"
    );
    let v = verify_damaged(d);
    assert_eq!(v["ok"], false);
    assert!(!v["problems"].as_array().unwrap().is_empty());
}

#[test]
fn verify_catches_a_damaged_index_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let d = dir.to_str().unwrap();
    let v = json(&["query", d, "orders", "ORDER-3"]);
    let phys = v[0]["commitlog_offset"].as_u64().unwrap();
    let index = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("an index file");
    let mut bytes = std::fs::read(&index).unwrap();
    // An entry is key hash (4), CommitLog offset (8), time difference (4), previous (4):
    // find the first entry of that record and break its key hash.
    let at = bytes[40..]
        .windows(8)
        .position(|w| w == phys.to_be_bytes())
        .expect("an entry for the record")
        + 40;
    bytes[at - 4] ^= 0x5a;
    std::fs::write(&index, &bytes).unwrap();
    let v = verify_damaged(d);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["file"].as_str(), Some(index.to_str().unwrap()));
    assert_eq!(problems[0]["offset"], at as u64 - 4);
    assert!(
        problems[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("commitlog offset {phys}")),
        "{problems:?}"
    );
}

#[test]
fn verify_catches_an_offset_past_a_queue_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let d = dir.to_str().unwrap();
    let path = dir.join("config/consumerOffset.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // billing has committed 3 of queue 0, which holds 5 messages: make it 99.
    let slot = &mut v["offsetTable"]["orders@billing"]["0"];
    assert_eq!(*slot, 3);
    *slot = 99.into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    std::fs::remove_file(dir.join("config/consumerOffset.json.bak")).ok();
    let v = verify_damaged(d);
    let reason = v["problems"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("billing") && reason.contains("99") && reason.contains("orders:0"),
        "{reason}"
    );
}

#[test]
fn help_and_version() {
    let out = mqlite(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for verb in [
        "topics", "progress", "print", "tail", "verify", "stats", "send", "reset",
    ] {
        assert!(text.contains(verb), "{text}");
    }
    let out = mqlite(&["print", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--body"));
    let out = mqlite(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mqlite "));
}

#[test]
fn send_and_reset_take_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let d = dir.to_str().unwrap();
    let held = Store::builder(&dir)
        .commitlog_segment_size(64 << 10)
        .open()
        .unwrap();
    for args in [
        vec!["send", d, "orders", "--body", "x"],
        vec!["reset", d, "billing", "orders", "--time", "0"],
    ] {
        let out = mqlite(&args);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    }
    held.close().unwrap();
    let file = tmp.path().join("body.bin");
    std::fs::write(&file, [0u8, 1, 2, 255]).unwrap();
    let v = json(&[
        "send",
        d,
        "orders",
        "--tag",
        "bin",
        "--key",
        "K1",
        "--key",
        "K2",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(v["status"], "SendOk");
    let v = json(&["get", d, v["msg_id"].as_str().unwrap(), "--body", "hex"]);
    assert_eq!(v["body"], "000102ff");
    assert_eq!(v["keys"], serde_json::json!(["K1", "K2"]));
    let v = json(&["reset", d, "billing", "orders", "--time", "0"]);
    assert_eq!(v["offsets"][0]["offset"], 0);
    let v = json(&["progress", d, "billing"]);
    assert_eq!(v[0]["consumer_offset"], 0);
}

#[test]
fn read_only_store_refuses_writes_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let before = listing(&dir);
    let ro = Store::open_read_only(&dir).unwrap();
    assert!(ro.is_read_only());
    let q = MessageQueue::new("orders", 0);
    assert_eq!(ro.get_messages(&q, 0, 100).unwrap().messages.len(), 5);
    assert!(matches!(
        ro.put(&Message::new("orders", "x"), 0),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(ro.create_topic("t", 1), Err(Error::ReadOnly)));
    assert!(matches!(ro.flush(), Err(Error::ReadOnly)));
    assert!(matches!(
        ro.delete_segments_before(u64::MAX),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        ro.reset_offset_by_time("billing", "orders", 0),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        ro.pull_consumer("g").unwrap().commit_offset(&q, 1),
        Err(Error::ReadOnly)
    ));
    let sent = ro.producer("p").unwrap().send(Message::new("orders", "x"));
    assert!(matches!(
        sent.map_err(|e| e.into_parts().0),
        Err(Error::ReadOnly)
    ));
    let push = ro
        .push_consumer("g")
        .subscribe("orders", "*")
        .start_concurrently(|_| mqlite::ConsumeStatus::Success);
    assert!(matches!(push, Err(Error::ReadOnly)));
    ro.close().unwrap();
    assert_eq!(listing(&dir), before);
    // A read-only open of a missing directory is an error, and creates nothing.
    assert!(Store::open_read_only(tmp.path().join("missing")).is_err());
    assert!(!tmp.path().join("missing").exists());
}

/// The child: opens the store, creates the topic, prints READY, waits for a line on stdin,
/// produces [`LIVE`] messages `live-{i}` into queue 0 (in bursts, rolling 64 KiB segments),
/// prints DONE, and keeps the store open until stdin closes or it is killed.
#[test]
#[ignore = "child process of read_only_follows_a_live_owner; does nothing when run directly"]
fn cli_child() {
    let Ok(dir) = std::env::var(ENV_CHILD) else {
        return;
    };
    let store = Store::builder(&dir)
        .commitlog_segment_size(64 << 10)
        .consume_queue_segment_size(20 * 500)
        .open()
        .unwrap();
    store.create_topic("live", 1).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for i in 0..LIVE {
        let msg =
            Message::new("live", format!("live-{i}")).with_tags(if i % 3 == 0 { "a" } else { "b" });
        store.put(&msg, 0).unwrap();
        if i % 100 == 99 {
            // Pacing, so readers see the log grow while they follow it.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    writeln!(out, "DONE").unwrap();
    out.flush().unwrap();
    let _ = std::io::stdin().read_line(&mut line);
    drop(store);
}

struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, deadline: Instant) -> std::process::ExitStatus {
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn read_only_follows_a_live_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = dir.to_str().unwrap().to_owned();
    let mut owner = Owner(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "cli_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_CHILD, &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(owner.0.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("READY"));
    assert!(ready.is_some(), "child did not start");

    let ro = Store::open_read_only(&dir).unwrap();
    let q = MessageQueue::new("live", 0);
    assert_eq!(ro.max_offset(&q).unwrap(), 0);
    // A long poll waits for the first message, which arrives once the child is told to go.
    let waiter = {
        let ro = ro.clone();
        let q = q.clone();
        std::thread::spawn(move || {
            ro.pull_consumer("g")
                .unwrap()
                .pull_timeout(&q, "*", 0, 32, Duration::from_secs(60))
                .unwrap()
        })
    };
    // The tail verb follows the live store from the start.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_mqlite"))
        .args([
            "--json",
            "tail",
            &d,
            "live",
            "--from-start",
            "--count",
            &LIVE.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tail_out = tail.stdout.take().unwrap();
    let tail_reader = std::thread::spawn(move || {
        BufReader::new(tail_out)
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let mut stdin = owner.0.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    stdin.flush().unwrap();

    let first = waiter.join().unwrap();
    assert_eq!(first.status, PullStatus::Found);
    assert_eq!(first.messages[0].body(), b"live-0");

    // Follow with get_messages while the owner writes: every message served is whole.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = 0u64;
    let mut polls = 0u64;
    while next < LIVE {
        assert!(
            Instant::now() < deadline,
            "read-only store saw only {next} of {LIVE}"
        );
        polls += 1;
        let got = ro.get_messages(&q, next, 64).unwrap();
        for m in &got.messages {
            assert_eq!(m.queue_offset(), next);
            assert_eq!(m.body(), format!("live-{next}").as_bytes());
            next += 1;
        }
        if got.messages.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(polls > 1);
    assert!(
        lines
            .by_ref()
            .map(|l| l.unwrap())
            .any(|l| l.contains("DONE"))
    );

    let status = wait_exit(&mut tail, Instant::now() + Duration::from_secs(120));
    assert!(status.success());
    let tailed = tail_reader.join().unwrap();
    assert_eq!(tailed.len() as u64, LIVE);
    for (i, m) in tailed.iter().enumerate() {
        assert_eq!(m["queue_offset"], i as u64);
        assert_eq!(m["body"], format!("live-{i}"));
    }

    // The other verbs on the live store.
    let v = json(&["topic", &d, "live"]);
    assert_eq!(v["queues"][0]["max_offset"], LIVE);
    let v = json(&["verify", &d]);
    assert_eq!(
        (v["ok"].as_bool(), v["records"].as_u64()),
        (Some(true), Some(LIVE))
    );
    let v = json(&["print", &d, "live", "--tag", "a", "--limit", "3"]);
    let bodies: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["live-0", "live-3", "live-6"]);
    let out = mqlite(&["send", &d, "live", "--body", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    assert!(
        dir.join("commitlog").read_dir().unwrap().count() > 2,
        "segments rolled"
    );

    // The owner dies: the store needs recovery, and is read as it is.
    drop(owner);
    assert!(dir.join("abort").exists());
    let after = Store::open_read_only(&dir).unwrap();
    let all = after.get_messages(&q, 0, LIVE as usize + 10).unwrap();
    assert_eq!(all.messages.len() as u64, LIVE);
    assert!(dir.join("abort").exists());
    drop(after);
    drop(ro);
    let rw = Store::builder(&dir)
        .commitlog_segment_size(64 << 10)
        .consume_queue_segment_size(20 * 500)
        .open()
        .unwrap();
    assert_eq!(rw.max_offset(&q).unwrap(), LIVE);
    rw.close().unwrap();
}

#[test]
fn read_only_never_serves_a_torn_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    sample_store(&dir);
    let d = dir.to_str().unwrap();
    let end = json(&["verify", d])["log_end"].as_u64().unwrap();
    // A crashed owner: `abort` left behind, half of a record written at the end of the log,
    // and its consume queue unit (queue 0, offset 5) already there.
    std::fs::write(dir.join("abort"), b"1").unwrap();
    let cq_path = dir.join("consumequeue/orders/0").join(format!("{:020}", 0));
    let mut cq = std::fs::read(&cq_path).unwrap();
    let size = u32::from_be_bytes(cq[8..12].try_into().unwrap()) as usize;
    let seg = dir.join("commitlog").join(format!("{:020}", 0));
    let mut log = std::fs::read(&seg).unwrap();
    let first = log[..size].to_vec();
    let at = end as usize;
    log[at..at + size / 2].copy_from_slice(&first[..size / 2]);
    std::fs::write(&seg, &log).unwrap();
    let mut unit = Vec::new();
    unit.extend_from_slice(&end.to_be_bytes());
    unit.extend_from_slice(&(size as u32).to_be_bytes());
    unit.extend_from_slice(&cq[12..20]);
    cq[5 * 20..6 * 20].copy_from_slice(&unit);
    std::fs::write(&cq_path, &cq).unwrap();

    let ro = Store::open_read_only(&dir).unwrap();
    let q = MessageQueue::new("orders", 0);
    assert_eq!(ro.max_offset(&q).unwrap(), 5);
    let got = ro.get_messages(&q, 0, 100).unwrap();
    assert_eq!(got.messages.len(), 5);
    assert_eq!(got.messages[4].body(), b"order 8");
    let v = json(&["topic", d, "orders"]);
    assert_eq!(v["queues"][0]["max_offset"], 5);
    assert_eq!(mqlite(&["verify", d]).status.code(), Some(2));
}
