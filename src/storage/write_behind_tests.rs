//! [`Segment::start_write_back`]: it unmaps and writes back whole pages of published bytes
//! only, and changes none of them, for readers holding slices of the range, for the file, or
//! for appends after it.

use std::sync::Arc;

use super::page_tables::pages_mapped;
use super::{Fs, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE as usize;

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

fn segment(path: &std::path::Path, size: usize) -> Arc<super::Segment> {
    Arc::new(Fs::default().create_segment(path, 0, size as u64).unwrap())
}

#[test]
fn whole_published_pages_are_unmapped_and_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let size = 4 << 20;
    let seg = segment(&path, size);
    let mut w = seg.clone().into_writer().unwrap();
    let first = (2 << 20) + 123; // ends inside a page
    append_pattern(&mut w, first);
    // A reader holds a slice across the write-back.
    let held = seg.read(0, first).unwrap();
    assert!(
        pages_mapped(held).iter().all(|&m| m),
        "the writer mapped them"
    );
    seg.start_write_back(0, size).unwrap();
    // The whole pages below the published end are unmapped; the page the writer is in is not.
    let mapped = pages_mapped(held);
    let whole = first / PAGE;
    assert!(
        mapped[..whole].iter().all(|&m| !m),
        "whole pages still mapped"
    );
    assert!(mapped[whole], "the writer's page was unmapped");
    // The bytes are unchanged, through the held slice (mapped again on access) and anew.
    assert!(holds_pattern(held, 0), "a held slice changed");
    assert!(holds_pattern(seg.read(0, first).unwrap(), 0));
    // The writer goes on in its page, and past it.
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
fn unpublished_bytes_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(&dir.path().join("seg"), 1 << 20);
    let mut w = seg.clone().into_writer().unwrap();
    // Appended but not published: not the write-back's to touch.
    w.append(5 * PAGE, |b| b.fill(7)).unwrap();
    seg.start_write_back(0, 1 << 20).unwrap();
    w.publish();
    let bytes = seg.read(0, 5 * PAGE).unwrap();
    assert!(
        pages_mapped(bytes).iter().all(|&m| m),
        "unpublished pages were unmapped"
    );
    assert!(bytes.iter().all(|&b| b == 7));
}

#[test]
fn a_range_outside_the_mapping_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let storage = super::backend::FileStorage;
    let map = super::backend::Storage::create_mapped(&storage, &path, 1 << 16).unwrap();
    for (from, len) in [(0, (1 << 16) + 1), (1 << 15, 1 << 16), (usize::MAX, 2)] {
        assert!(super::mmap::drop_page_tables(&map, from, len).is_err());
    }
    assert!(super::mmap::drop_page_tables(&map, 0, 1 << 16).is_ok());
}
