//! RELIABILITY.md Part C case 2: kill -9 during concurrent produce under `FlushPolicy::Async`.
//!
//! A child process (this test binary re-executed, see `crash_child`) runs 4 producer threads
//! on a store with 64 KiB CommitLog segments and prints an ACK line after every put that
//! returned `PutOk`. Under Async a put returns once its record is in the page cache, which
//! survives a process crash, so nothing acknowledged may be lost here either. The parent
//! SIGKILLs the child 5..300 ms after it is ready, reopens the same directory and checks the
//! oracle (a)-(e) of `crash::verify`, cycle after cycle, so the store grows, rolls segments and
//! recovers repeatedly. Every acknowledged message of every cycle must stay readable. Each
//! cycle picks the default Async policy or a 1 ms / 10 ms flush interval. The default test
//! runs 20 cycles and paces each producer thread to at most 3000 puts/s, so it takes about
//! 25 s in a debug build on a busy 2-core machine; the soak (500 cycles, unpaced) runs by hand:
//! `cargo test --release --test crash_kill_async -- --ignored soak`. `MQLITE_SEED` reproduces a run.

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
fn kill_during_async_produce_20_cycles() {
    crash::kill_loop(Family::Async, 20, 20, 3000, 0xA5C_0001);
}

#[test]
#[ignore = "soak: 500 kill cycles (a fresh directory every 100), run by hand"]
fn soak_kill_during_async_produce_500_cycles() {
    crash::kill_loop(Family::Async, 500, 100, 0, 0xA5C_0500);
}
