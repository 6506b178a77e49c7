//! Helpers shared by the benches: waiting for mqlite's background segment preparation to
//! settle before measuring, and reading criterion's medians back for derived figures.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Linux truncates thread names to 15 bytes: `mqlite-segment-preparer` shows as this.
const PREPARER_COMM: &str = "mqlite-segment-";

/// CPU time (utime + stime, in clock ticks) used so far by this process's threads whose name
/// starts with `prefix`.
fn threads_cpu(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += tick(11) + tick(12);
    }
    total
}

/// Waits until mqlite's segment preparer thread has stopped burning CPU (under `Sync` it
/// zero-fills and flushes the next CommitLog segment once the current one is half full: ~3 s
/// of CPU and disk for a 1 GiB segment on the reference machine), so that it does not compete
/// with the measurement. Gives up after `max`. Returns how long it waited.
pub fn wait_for_preparer_idle(max: Duration) -> Duration {
    let start = Instant::now();
    let mut last = threads_cpu(PREPARER_COMM);
    let mut quiet = 0;
    while start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(100));
        let now = threads_cpu(PREPARER_COMM);
        if now == last {
            quiet += 1;
            // 300 ms with no CPU tick at all (ticks are 10 ms).
            if quiet >= 3 {
                break;
            }
        } else {
            quiet = 0;
        }
        last = now;
    }
    start.elapsed()
}

/// Where criterion writes its results (same rule as criterion itself, minus `cargo metadata`).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from("target/criterion")
}

/// The median time per iteration, in ns, of benchmark `group/function/param`, if criterion saved
/// one at or after `since` (so a benchmark filtered out of this run yields `None`, not a stale
/// figure).
#[allow(dead_code)] // Not every bench file derives figures.
pub fn median_ns(since: SystemTime, group: &str, function: &str, param: &str) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(function)
        .join(param)
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}
