//! RELIABILITY.md Part C case 1: kill -9 during concurrent produce under `FlushPolicy::Sync`.
//!
//! A child process (this test binary re-executed, see `crash_child`) runs 4 producer threads
//! on a store with 64 KiB CommitLog segments and prints an ACK line after every put that
//! returned `PutOk`; the parent SIGKILLs it 5..300 ms after it is ready, reopens the same
//! directory and checks the oracle (a)-(e) of `crash::verify`, cycle after cycle, so the store
//! grows, rolls segments and recovers repeatedly. Every acknowledged message of every cycle
//! must stay readable. One cycle in four uses a 10 ms flush timeout, so some puts return
//! `FlushDiskTimeout` (not acknowledged, but their records may survive). `MQLITE_SEED`
//! reproduces a run. The default test runs 20 cycles; the soak (500) runs by hand:
//! `cargo test --release --test crash_kill_sync -- --ignored soak`.

mod common;
#[path = "crash/mod.rs"]
mod crash;

use crash::Family;

/// The child process body; returns at once unless `MQLITE_CRASH_CHILD` is set, so running
/// the ignored tests by hand does nothing here.
#[test]
#[ignore = "child process of the crash tests; does nothing when run directly"]
fn crash_child() {
    crash::child_entry();
}

#[test]
fn kill_during_sync_produce_20_cycles() {
    crash::kill_loop(Family::Sync, 20, 20, 0, 0x5157_0001);
}

#[test]
#[ignore = "soak: 500 kill cycles (a fresh directory every 100), run by hand"]
fn soak_kill_during_sync_produce_500_cycles() {
    crash::kill_loop(Family::Sync, 500, 100, 0, 0x5157_0500);
}
