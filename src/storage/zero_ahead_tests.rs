//! [`Segment::zero_ahead`] against a writer appending at the same time: zeros never land on
//! appended bytes, whether the appends are short (covered by the gap) or long (announced).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Fs;
use super::mmap::{ANNOUNCE_ABOVE, ZeroAhead, zero_ahead_min_gap};

/// What byte `pos` of the segment holds once appended (never zero).
fn pattern(pos: usize) -> u8 {
    (pos.wrapping_mul(31) % 251) as u8 + 1
}

fn segment(dir: &std::path::Path, size: usize) -> Arc<super::Segment> {
    Arc::new(
        Fs::default()
            .create_segment(&dir.join("seg"), 0, size as u64)
            .unwrap(),
    )
}

#[test]
fn a_long_append_is_announced_before_it_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 4 << 20);
    let gap = zero_ahead_min_gap(ANNOUNCE_ABOVE);
    let mut w = seg.clone().into_writer().unwrap();
    // A short append, not published: the gap covers it.
    w.append(1000, |b| b.fill(1)).unwrap();
    assert!(
        seg.zero_ahead(gap, gap + 4096, gap, ZeroAhead::PageCache)
            .unwrap()
    );
    // A long one, not published either: zeroing keeps a gap past its end.
    let long = 30 * ANNOUNCE_ABOVE;
    w.append(long, |b| b.fill(2)).unwrap();
    let end = 1000 + long;
    assert_eq!(seg.published(), 0);
    for from in [gap, end - 4096, end, end + gap - 1] {
        assert!(
            !seg.zero_ahead(from, from + 4096, gap, ZeroAhead::PageCache)
                .unwrap(),
            "zeroing from {from} must wait for the append ending at {end}"
        );
    }
    assert!(
        seg.zero_ahead(end + gap, end + gap + 4096, gap, ZeroAhead::PageCache)
            .unwrap()
    );
    w.publish();
    let bytes = seg.read(0, end).unwrap();
    assert!(bytes[..1000].iter().all(|&b| b == 1));
    assert!(bytes[1000..].iter().all(|&b| b == 2));
}

/// A zeroer as close behind a writer as `gap` allows, zeroing `len`-byte ranges, while the
/// writer appends the sizes `next_len` gives (publishing each, with no lock); returns the
/// first appended byte found overwritten, if any, and how many ranges were zeroed.
fn chase(
    size: usize,
    gap: usize,
    len: usize,
    how: ZeroAhead,
    mut next_len: impl FnMut() -> usize,
) -> (Option<usize>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), size);
    let done = Arc::new(AtomicBool::new(false));
    let zeroer = {
        let (seg, done) = (seg.clone(), done.clone());
        std::thread::spawn(move || {
            let mut zeroed = 0usize;
            while !done.load(Ordering::Relaxed) {
                let from = seg.published() + gap;
                if seg.zero_ahead(from, from + len, gap, how).unwrap() {
                    zeroed += 1;
                }
            }
            zeroed
        })
    };
    let mut w = seg.clone().into_writer().unwrap();
    loop {
        let len = next_len();
        let start = w.pos();
        if w.append(len, |b| {
            for (i, v) in b.iter_mut().enumerate() {
                *v = pattern(start + i);
            }
        })
        .is_none()
        {
            break;
        }
        w.publish();
    }
    done.store(true, Ordering::Relaxed);
    let zeroed = zeroer.join().unwrap();
    let written = w.pos();
    let bytes = seg.read(0, written).unwrap();
    ((0..written).find(|&i| bytes[i] != pattern(i)), zeroed)
}

#[test]
fn zeroing_close_behind_a_writer_never_touches_its_bytes() {
    // Seeded sizes: mostly short appends, one in eight longer than ANNOUNCE_ABOVE.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let sizes = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(8) {
            ANNOUNCE_ABOVE + 1 + (x as usize >> 8) % (8 * ANNOUNCE_ABOVE)
        } else {
            1 + (x as usize >> 8) % ANNOUNCE_ABOVE
        }
    };
    let gap = zero_ahead_min_gap(ANNOUNCE_ABOVE);
    let (bad, zeroed) = chase(48 << 20, gap, 16 << 10, ZeroAhead::PageCache, sizes);
    assert_eq!(
        bad, None,
        "an appended byte was overwritten (zeroed {zeroed} times)"
    );
}

/// Tiny appends with the smallest gap allowed: the writer's publications may be seen late
/// (store buffers) by more than one append, which only its periodic fence bounds.
#[test]
fn a_tiny_gap_holds_against_a_stream_of_tiny_appends() {
    const L: usize = 16;
    for how in [ZeroAhead::PageCache, ZeroAhead::Durable] {
        let (bad, zeroed) = chase(4 << 20, zero_ahead_min_gap(L), 4 * L, how, || L);
        assert_eq!(
            bad, None,
            "{how:?}: an appended byte was overwritten (zeroed {zeroed} times)"
        );
    }
}
