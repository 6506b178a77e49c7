//! [`Segment::start_write_back`]: writing published bytes back early changes none of them,
//! for readers holding slices of the range, for the file, or for appends after it.

use std::sync::Arc;

use super::Fs;

/// What byte `pos` of the segment holds once appended (never zero).
fn pattern(pos: usize) -> u8 {
    (pos.wrapping_mul(131) % 253) as u8 + 1
}

fn append_pattern(w: &mut super::SegmentWriter, len: usize) {
    let at = w.pos();
    w.append(len, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = pattern(at + i);
        }
    })
    .unwrap();
    w.publish();
}

fn holds_pattern(bytes: &[u8], from: usize) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(from + i))
}

#[test]
fn written_back_bytes_stay_what_readers_and_the_file_see() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let size = 4 << 20;
    let seg = Arc::new(Fs::default().create_segment(&path, 0, size as u64).unwrap());
    let mut w = seg.clone().into_writer().unwrap();
    let first = (2 << 20) + 123;
    append_pattern(&mut w, first);
    // A reader holds a slice across the write-back (which unmaps the range's pages).
    let held = seg.read(0, first).unwrap();
    seg.start_write_back(0, first).unwrap();
    // Again over part of it, and past what is published (clamped: nothing there to write).
    seg.start_write_back(4096, size).unwrap();
    assert!(holds_pattern(held, 0), "a held slice changed");
    assert!(holds_pattern(seg.read(0, first).unwrap(), 0));
    // The writer goes on in the page the write-back stopped in, and past it.
    append_pattern(&mut w, 10_000);
    let end = first + 10_000;
    assert!(holds_pattern(seg.read(0, end).unwrap(), 0));
    // The file holds the same bytes (its pages were neither dropped nor replaced).
    let file = std::fs::read(&path).unwrap();
    assert!(holds_pattern(&file[..end], 0));
    assert!(file[end..].iter().all(|&b| b == 0));
    // And a flush after the write-back still succeeds over the whole range.
    seg.flush(0, end).unwrap();
}

#[test]
fn a_segment_without_published_bytes_writes_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = Arc::new(Fs::default().create_segment(&path, 0, 1 << 20).unwrap());
    let mut w = seg.clone().into_writer().unwrap();
    // Appended but not published: not the write-back's to touch.
    w.append(5000, |b| b.fill(7)).unwrap();
    seg.start_write_back(0, 1 << 20).unwrap();
    w.publish();
    assert!(seg.read(0, 5000).unwrap().iter().all(|&b| b == 7));
}
