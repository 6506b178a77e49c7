//! RELIABILITY.md Part C case 15 (first half): SIGKILL while the store is recovering.
//!
//! A child produces for 1.5 s under `FlushPolicy::Async` with a flush interval longer than its
//! life, and is SIGKILLed: the store is left unclean with a large unflushed tail behind an old
//! checkpoint. Then 10 children (20 per round in the soak) that only open (recover) the
//! store are SIGKILLed, half of them 1..20 ms after spawn and half at a random point of a full
//! open (timed beforehand on a copy of the store), so recovery is interrupted at different
//! stages and restarted each time. A final reopen must succeed and satisfy the oracle (a)-(e)
//! of `crash::verify`: no acknowledged message lost, dense queues, queues agreeing with the
//! CommitLog. `MQLITE_SEED` reproduces a run.

mod common;
#[path = "crash/mod.rs"]
mod crash;

/// The child process body; returns at once unless `MQLITE_CRASH_CHILD` is set, so running
/// the ignored tests by hand does nothing here.
#[test]
#[ignore = "child process of the crash tests; does nothing when run directly"]
fn crash_child() {
    crash::child_entry();
}

#[test]
fn kill_during_recovery_10_times() {
    crash::reopen_during_recovery(1, 10, 1500, 0x4EC0_0001);
}

#[test]
#[ignore = "soak: 10 rounds of produce + 20 kills during recovery, run by hand"]
fn soak_kill_during_recovery() {
    crash::reopen_during_recovery(10, 20, 1500, 0x4EC0_0010);
}
