//! Benchmarks of mqlite live in `benches/`; this crate has no library code.
