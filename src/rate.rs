//! Per-second counters over the last minute (RocketMQ's `StatsItem` "in minute" figures):
//! a ring of 60 one-second buckets of (count, bytes), plus totals. Adding is a few relaxed
//! atomic operations and never allocates or blocks; reading sums the buckets of the last 60
//! seconds. Figures read while another thread adds may miss that addition: they are
//! statistics, not accounting.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds the window covers.
pub(crate) const WINDOW_SECS: u64 = 60;

#[derive(Debug, Default)]
struct Bucket {
    /// The second (since the epoch) the counts belong to.
    sec: AtomicU64,
    count: AtomicU64,
    bytes: AtomicU64,
}

/// Counts and bytes per second over the last minute, and since creation.
#[derive(Debug)]
pub(crate) struct RateWindow {
    buckets: Box<[Bucket]>,
    total_count: AtomicU64,
    total_bytes: AtomicU64,
}

/// What a [`RateWindow`] holds at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    /// Counted since creation.
    pub(crate) total_count: u64,
    /// Bytes since creation.
    pub(crate) total_bytes: u64,
    /// Counted in the last 60 seconds.
    pub(crate) minute_count: u64,
    /// Bytes in the last 60 seconds.
    pub(crate) minute_bytes: u64,
}

impl Rates {
    /// Per second over the last minute.
    pub(crate) fn per_sec(&self) -> f64 {
        self.minute_count as f64 / WINDOW_SECS as f64
    }

    /// Bytes per second over the last minute.
    pub(crate) fn bytes_per_sec(&self) -> f64 {
        self.minute_bytes as f64 / WINDOW_SECS as f64
    }
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow {
            buckets: (0..WINDOW_SECS).map(|_| Bucket::default()).collect(),
            total_count: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
        }
    }
}

impl RateWindow {
    /// Adds `count` events of `bytes` in all at `now_ms` (ms since the epoch). Safe from any
    /// number of threads; a bucket being recycled for a new second while another thread adds
    /// to it may lose that addition from the minute figures (never from the totals).
    pub(crate) fn add(&self, now_ms: u64, count: u64, bytes: u64) {
        self.total_count.fetch_add(count, Ordering::Relaxed);
        self.total_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = self.bucket(now_ms / 1000) {
            b.count.fetch_add(count, Ordering::Relaxed);
            b.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// [`RateWindow::add`] for a caller that is the only one adding at a time (the
    /// dispatcher, under its lock): plain loads and stores, no locked read-modify-writes on
    /// the append path.
    pub(crate) fn add_exclusive(&self, now_ms: u64, count: u64, bytes: u64) {
        let bump =
            |a: &AtomicU64, n: u64| a.store(a.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        bump(&self.total_count, count);
        bump(&self.total_bytes, bytes);
        if let Some(b) = self.bucket(now_ms / 1000) {
            bump(&b.count, count);
            bump(&b.bytes, bytes);
        }
    }

    /// The bucket of second `sec`, emptied first if it held an older second; `None` for a
    /// second older than the bucket's (a clock step back: counted in the totals only).
    fn bucket(&self, sec: u64) -> Option<&Bucket> {
        let b = &self.buckets[(sec % WINDOW_SECS) as usize];
        let old = b.sec.load(Ordering::Acquire);
        if old == sec {
            return Some(b);
        }
        if old > sec {
            return None;
        }
        if b.sec
            .compare_exchange(old, sec, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            b.count.store(0, Ordering::Relaxed);
            b.bytes.store(0, Ordering::Relaxed);
        }
        Some(b)
    }

    /// The figures at `now_ms`: totals, and what was added in the 60 seconds up to it.
    pub(crate) fn read(&self, now_ms: u64) -> Rates {
        let now = now_ms / 1000;
        let mut r = Rates {
            total_count: self.total_count.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            ..Rates::default()
        };
        for b in self.buckets.iter() {
            let sec = b.sec.load(Ordering::Acquire);
            if sec + WINDOW_SECS > now && sec <= now {
                r.minute_count += b.count.load(Ordering::Relaxed);
                r.minute_bytes += b.bytes.load(Ordering::Relaxed);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_796_220_185_007;

    #[test]
    fn counts_the_last_minute_and_the_totals() {
        let w = RateWindow::default();
        for s in 0..90 {
            w.add(T0 + s * 1000, 2, 200);
        }
        let r = w.read(T0 + 89_000);
        assert_eq!((r.total_count, r.total_bytes), (180, 18_000));
        assert_eq!((r.minute_count, r.minute_bytes), (120, 12_000));
        assert_eq!(r.per_sec(), 2.0);
        // Ten seconds of silence: those seconds drop out of the minute.
        let r = w.read(T0 + 99_000);
        assert_eq!(r.minute_count, 100);
        // An hour later nothing is in the minute.
        assert_eq!(w.read(T0 + 3_600_000).minute_count, 0);
    }

    #[test]
    fn exclusive_adds_count_like_shared_ones() {
        let (a, b) = (RateWindow::default(), RateWindow::default());
        for s in 0..90 {
            a.add(T0 + s * 700, 1, 3);
            b.add_exclusive(T0 + s * 700, 1, 3);
        }
        assert_eq!(a.read(T0 + 62_300), b.read(T0 + 62_300));
        assert_eq!(b.read(T0 + 62_300).total_count, 90);
    }

    #[test]
    fn a_recycled_bucket_starts_from_zero() {
        let w = RateWindow::default();
        w.add(T0, 5, 5);
        w.add(T0 + 60_000, 1, 1);
        let r = w.read(T0 + 60_000);
        assert_eq!((r.minute_count, r.total_count), (1, 6));
    }

    #[test]
    fn a_clock_step_back_counts_in_the_totals_only() {
        let w = RateWindow::default();
        w.add(T0 + 60_000, 1, 1);
        w.add(T0, 7, 7);
        let r = w.read(T0 + 60_000);
        assert_eq!((r.minute_count, r.total_count), (1, 8));
    }

    #[test]
    fn many_threads_lose_nothing_from_the_totals() {
        let w = std::sync::Arc::new(RateWindow::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.add(T0 + i, 1, 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let r = w.read(T0 + 10_000);
        assert_eq!((r.total_count, r.total_bytes), (40_000, 120_000));
        // A bucket recycled under a racing add may drop that add from the minute.
        assert!(r.minute_count <= 40_000 && r.minute_count > 30_000);
    }
}
