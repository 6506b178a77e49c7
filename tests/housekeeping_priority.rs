//! The store's housekeeping threads run in the `SCHED_IDLE` class by default, so that they
//! never take a CPU from a producer or a consumer; `idle_housekeeping(false)` keeps them in the
//! normal class. Checked through `/proc`, where Linux shows each thread's policy.
//!
//! One test in its own binary: no other store's threads are alive while it looks.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;

/// Linux's policy numbers (`SCHED_OTHER`, `SCHED_IDLE`).
const SCHED_OTHER: u32 = 0;
const SCHED_IDLE: u32 = 5;

/// The scheduling policy of every thread of this process whose name starts with `mqlite-`,
/// by name.
fn policies() -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task entry").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        let comm = comm.trim().to_string();
        if !comm.starts_with("mqlite-") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Field 41 of /proc/<pid>/task/<tid>/stat is the policy; the name (field 2) is in
        // parentheses and may hold spaces, so count from the closing one.
        let rest = &stat[stat.rfind(')').expect("stat has a name") + 2..];
        let policy: u32 = rest
            .split(' ')
            .nth(41 - 3)
            .expect("policy field")
            .parse()
            .expect("policy is a number");
        out.entry(comm).or_default().push(policy);
    }
    out
}

fn open_and_look(idle: bool) -> BTreeMap<String, Vec<u32>> {
    let dir = tempfile::tempdir().unwrap();
    let store = mqlite::Store::builder(dir.path())
        .idle_housekeeping(idle)
        .open()
        .unwrap();
    // Put a message, so that every lazily started thread is up.
    store.put(&mqlite::Message::new("t", "x"), 0).unwrap();
    // Threads set their own class as their first step; wait until each has (a bounded
    // number of looks, not a sleep: the class is set before the thread does anything).
    let mut seen = policies();
    for _ in 0..10_000 {
        let want = if idle { SCHED_IDLE } else { SCHED_OTHER };
        let settled = ["mqlite-flush", "mqlite-indexer", "mqlite-cleaner"]
            .iter()
            .all(|name| seen.get(*name).is_some_and(|p| p == &[want]));
        if settled {
            break;
        }
        std::thread::yield_now();
        seen = policies();
    }
    store.close().unwrap();
    seen
}

#[test]
fn housekeeping_threads_yield_to_the_application_unless_told_not_to() {
    let idle = open_and_look(true);
    for name in ["mqlite-flush", "mqlite-indexer", "mqlite-cleaner"] {
        assert_eq!(idle.get(name), Some(&vec![SCHED_IDLE]), "{name}: {idle:?}");
    }
    // Threads the writer may wait on keep the normal class.
    for name in ["mqlite-prefault", "mqlite-segment-preparer"] {
        let got = idle
            .iter()
            .find(|(comm, _)| name.starts_with(comm.as_str()))
            .map(|(_, p)| p.clone());
        assert_eq!(got, Some(vec![SCHED_OTHER]), "{name}: {idle:?}");
    }

    let normal = open_and_look(false);
    for name in ["mqlite-flush", "mqlite-indexer", "mqlite-cleaner"] {
        assert_eq!(
            normal.get(name),
            Some(&vec![SCHED_OTHER]),
            "{name}: {normal:?}"
        );
    }
}
