//! Bit flips and bad lengths (RELIABILITY.md Part C, case 6). Damage to a record within the
//! last 64 KiB of the log (1-8 flipped bits in its checked fields or body, TOTALSIZE of 0,
//! 0x7fffffff, -1 or past the segment end, a bad magic code) is a torn tail: recovery truncates
//! the log at that record, without a panic, and appends continue. With
//! `RecoveryMode::AbsoluteConsistency` the same damage before the checkpoint's durable offset is
//! `Error::Corrupted`. Damage far before the end (an early segment, or more than 64 KiB before
//! the durable offset) is `Error::Corrupted` naming the segment file and the record's offset in
//! it, and leaves the files untouched: never a silent truncation.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Rng, copy_dir, read_queue, seed};
use mqlite::{
    Error, Message, MessageExt, MessageQueue, PutResult, RecoveryMode, Store, StoreBuilder,
};

const SEG: u64 = 64 * 1024;
const TOLERANCE: u64 = 64 * 1024;
const TOPICS: &[(&str, u32)] = &[("FlipA", 2), ("FlipB", 3)];
const BODY_POS: u64 = 88;

fn builder(dir: &Path, seg: u64) -> StoreBuilder {
    let mut config = mqlite::StoreConfig::default();
    // Keep the checkpoint where open/close put it: tests control the durable offset.
    config.checkpoint_interval = Duration::from_secs(3600);
    Store::builder(dir)
        .config(config)
        .commitlog_segment_size(seg)
        .consume_queue_segment_size(2000)
}

#[derive(Clone)]
struct Sent {
    topic: &'static str,
    body: Vec<u8>,
    put: PutResult,
}

impl Sent {
    fn start(&self) -> u64 {
        self.put.physical_offset
    }
    fn end(&self) -> u64 {
        self.put.physical_offset + u64::from(self.put.size)
    }
}

fn put_random(store: &Store, rng: &mut Rng, n: usize) -> Vec<Sent> {
    for &(t, q) in TOPICS {
        store.create_topic(t, q).unwrap();
    }
    (0..n)
        .map(|i| {
            let (topic, queues) = TOPICS[rng.range(0, TOPICS.len() as u64) as usize];
            let queue = rng.range(0, u64::from(queues)) as u32;
            let len = rng.range(20, 700) as usize;
            let body = rng.bytes(len);
            let msg = Message::new(topic, body.clone())
                .with_tags(format!("t{}", i % 3))
                .with_keys([format!("key{i}")]);
            let put = store.put(&msg, queue).expect("put");
            Sent { topic, body, put }
        })
        .collect()
}

fn queues() -> Vec<MessageQueue> {
    TOPICS
        .iter()
        .flat_map(|&(t, n)| (0..n).map(move |q| MessageQueue::new(t, q)))
        .collect()
}

type Content = BTreeMap<(String, u32), Vec<MessageExt>>;

fn read_all(store: &Store) -> Content {
    queues()
        .into_iter()
        .map(|mq| {
            let m = read_queue(store, &mq);
            ((mq.topic, mq.queue_id), m)
        })
        .collect()
}

fn segment_path(dir: &Path, seg: u64, offset: u64) -> PathBuf {
    dir.join("commitlog")
        .join(format!("{:020}", offset / seg * seg))
}

/// Applies `f` to the bytes of the CommitLog segment holding `offset`; `f` gets the position
/// of `offset` in the segment.
fn edit(dir: &Path, seg: u64, offset: u64, f: impl FnOnce(&mut [u8], usize)) {
    let path = segment_path(dir, seg, offset);
    let mut bytes = std::fs::read(&path).unwrap();
    f(&mut bytes, (offset % seg) as usize);
    std::fs::write(&path, bytes).unwrap();
}

/// Flips `n` distinct bits in `[from, to)` of the log.
fn flip_bits(dir: &Path, seg: u64, from: u64, to: u64, n: u64, rng: &mut Rng) -> Vec<u64> {
    let bits = (to - from) * 8;
    let mut chosen: Vec<u64> = Vec::new();
    while (chosen.len() as u64) < n.min(bits) {
        let b = rng.range(0, bits);
        if !chosen.contains(&b) {
            chosen.push(b);
        }
    }
    edit(dir, seg, from, |bytes, pos| {
        for b in &chosen {
            bytes[pos + (b / 8) as usize] ^= 1 << (b % 8);
        }
    });
    chosen
}

fn touch_abort(dir: &Path) {
    std::fs::write(dir.join("abort"), b"1").unwrap();
}

fn log_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Opening must fail with `Error::Corrupted` naming the segment of `bad` and `bad`'s offset in
/// it, and must leave the CommitLog files as they were.
fn expect_corrupted(b: StoreBuilder, dir: &Path, seg: u64, bad: u64, ctx: &str) {
    let before = log_files(dir);
    match b.open() {
        Err(Error::Corrupted {
            file,
            offset,
            reason,
        }) => {
            let want = segment_path(dir, seg, bad);
            assert_eq!(file, want, "{ctx}: file named by the error ({reason})");
            assert_eq!(
                offset,
                bad % seg,
                "{ctx}: offset named by the error ({reason})"
            );
        }
        Err(e) => panic!("{ctx}: expected Error::Corrupted, got {e:?}"),
        Ok(s) => {
            let end = s.commitlog_max_offset();
            drop(s);
            panic!("{ctx}: expected Error::Corrupted, the store opened with log end {end}");
        }
    }
    assert!(
        log_files(dir) == before,
        "{ctx}: a failed open changed the CommitLog"
    );
}

/// The store holds exactly the records before `cut`, byte-identical, and appends continue.
fn expect_truncated(b: StoreBuilder, seg: u64, cut: u64, content: &Content, ctx: &str) {
    let store = b
        .open()
        .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    assert_eq!(store.commitlog_max_offset(), cut, "{ctx}: log end");
    let mut first = None;
    for mq in queues() {
        let want: Vec<&MessageExt> = content[&(mq.topic.clone(), mq.queue_id)]
            .iter()
            .filter(|m| m.physical_offset() < cut)
            .collect();
        let got = read_queue(&store, &mq);
        assert_eq!(got.len(), want.len(), "{ctx}: {mq:?} length");
        assert!(
            got.iter().zip(&want).all(|(g, w)| g == *w),
            "{ctx}: {mq:?} content"
        );
        let put = store
            .put(
                &Message::new(mq.topic.as_str(), b"after recovery".to_vec()),
                mq.queue_id,
            )
            .unwrap();
        assert_eq!(
            put.queue_offset,
            want.len() as u64,
            "{ctx}: {mq:?} next offset"
        );
        first.get_or_insert(put);
    }
    // The first append lands at the cut (a record that does not fit rolls to the next
    // segment instead).
    let first = first.unwrap();
    if first.physical_offset != cut {
        assert_eq!(
            first.physical_offset,
            cut / seg * seg + seg,
            "{ctx}: first append"
        );
        assert!(
            cut + u64::from(first.size) + 8 > cut / seg * seg + seg,
            "{ctx}"
        );
    }
    store.close().unwrap();
}

/// Writes `n` records with segment size `seg`, closes, and returns them and what they read as.
fn build(dir: &Path, seg: u64, rng: &mut Rng, n: usize) -> (Vec<Sent>, Content) {
    let store = builder(dir, seg).open().unwrap();
    let sent = put_random(&store, rng, n);
    let content = read_all(&store);
    store.close().unwrap();
    (sent, content)
}

/// A checked region of a record: a header field the scan validates, or the body.
fn checked_region(rng: &mut Rng, s: &Sent) -> (u64, u64, &'static str) {
    let a = s.start();
    match rng.range(0, 10) {
        0 => (a, a + 4, "TOTALSIZE"),
        1 => (a + 4, a + 8, "MAGICCODE"),
        2 => (a + 8, a + 12, "BODYCRC"),
        3 => (a + 28, a + 36, "PHYSICALOFFSET"),
        4 => (a + 84, a + 88, "BODY length"),
        _ => (a + BODY_POS, a + BODY_POS + s.body.len() as u64, "body"),
    }
}

#[test]
fn bit_flips_in_the_last_64k_truncate_at_the_damaged_record() {
    let mut rng = Rng::new(seed(0xB17F_0001));
    for it in 0..24 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (sent, content) = build(dir, SEG, &mut rng, 400);
        let end = sent.iter().map(Sent::end).max().unwrap();
        let near: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.start() + TOLERANCE >= end)
            .collect();
        let victim = near[rng.range(0, near.len() as u64) as usize];
        let (from, to, field) = checked_region(&mut rng, victim);
        let n = rng.range(1, 9);
        let bits = flip_bits(dir, SEG, from, to, n, &mut rng);
        let ctx = format!(
            "iteration {it}: {n} bits {bits:?} flipped in {field} of record at {} (log end {end})",
            victim.start()
        );
        touch_abort(dir);
        // The damage is before the durable offset of the clean close: not tolerated in the
        // absolute mode.
        expect_corrupted(
            builder(dir, SEG).recovery_mode(RecoveryMode::AbsoluteConsistency),
            dir,
            SEG,
            victim.start(),
            &format!("{ctx}, AbsoluteConsistency"),
        );
        expect_truncated(builder(dir, SEG), SEG, victim.start(), &content, &ctx);
    }
}

/// Rewrites the record at position `p` of a segment of `seg` bytes.
type Corrupt = fn(&mut [u8], usize, u64);

#[test]
fn bad_total_size_and_magic_truncate_the_tail() {
    let mut rng = Rng::new(seed(0xB17F_0002));
    let cases: [(&str, Corrupt); 6] = [
        ("TOTALSIZE 0", |b, p, _| {
            b[p..p + 4].copy_from_slice(&0i32.to_be_bytes())
        }),
        ("TOTALSIZE 0x7fffffff", |b, p, _| {
            b[p..p + 4].copy_from_slice(&i32::MAX.to_be_bytes())
        }),
        ("TOTALSIZE -1", |b, p, _| {
            b[p..p + 4].copy_from_slice(&(-1i32).to_be_bytes())
        }),
        ("TOTALSIZE past the segment end", |b, p, seg| {
            let past = (seg as usize - p + 1) as i32;
            b[p..p + 4].copy_from_slice(&past.to_be_bytes())
        }),
        ("TOTALSIZE one byte short", |b, p, _| {
            let v = i32::from_be_bytes(b[p..p + 4].try_into().unwrap()) - 1;
            b[p..p + 4].copy_from_slice(&v.to_be_bytes())
        }),
        ("bad magic", |b, p, _| {
            b[p + 4..p + 8].copy_from_slice(&0x1234_5678u32.to_be_bytes())
        }),
    ];
    for (name, apply) in cases {
        for back in [0usize, 3] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let (mut sent, content) = build(dir, SEG, &mut rng, 300);
            sent.sort_by_key(Sent::start);
            let victim = &sent[sent.len() - 1 - back];
            edit(dir, SEG, victim.start(), |b, p| apply(b, p, SEG));
            let ctx = format!(
                "{name} in the record {back} from the last, at {}",
                victim.start()
            );
            touch_abort(dir);
            expect_corrupted(
                builder(dir, SEG).recovery_mode(RecoveryMode::AbsoluteConsistency),
                dir,
                SEG,
                victim.start(),
                &format!("{ctx}, AbsoluteConsistency"),
            );
            expect_truncated(builder(dir, SEG), SEG, victim.start(), &content, &ctx);
        }
    }
}

/// Data written after the last checkpoint (a crash image whose checkpoint is older than the
/// damaged record) may be truncated even in `AbsoluteConsistency` mode; damage before the
/// checkpoint's durable offset may not.
#[test]
fn absolute_consistency_truncates_only_past_the_durable_offset() {
    let mut rng = Rng::new(seed(0xB17F_0003));
    for damage_before_durable in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let dir = tmp.path().join("crash");
        let (first, _) = build(&work, SEG, &mut rng, 250);
        let durable = first.iter().map(Sent::end).max().unwrap();
        // Reopen (the checkpoint records `durable`), write more and take a crash image.
        let store = builder(&work, SEG).open().unwrap();
        let second = put_random(&store, &mut rng, 60);
        let content = read_all(&store);
        copy_dir(&work, &dir);
        std::fs::remove_file(dir.join("lock")).unwrap();
        store.close().unwrap();
        let victim = if damage_before_durable {
            first.iter().max_by_key(|s| s.start()).unwrap()
        } else {
            &second[second.len() / 2]
        };
        assert_eq!(victim.start() < durable, damage_before_durable);
        let bits = flip_bits(
            &dir,
            SEG,
            victim.start() + BODY_POS,
            victim.start() + BODY_POS + 1,
            3,
            &mut rng,
        );
        let ctx = format!(
            "bits {bits:?} in the body of the record at {} (durable {durable})",
            victim.start()
        );
        let absolute = builder(&dir, SEG).recovery_mode(RecoveryMode::AbsoluteConsistency);
        if damage_before_durable {
            expect_corrupted(absolute, &dir, SEG, victim.start(), &ctx);
            expect_truncated(builder(&dir, SEG), SEG, victim.start(), &content, &ctx);
        } else {
            expect_truncated(absolute, SEG, victim.start(), &content, &ctx);
        }
    }
}

/// A record more than `tail_tolerance` before the durable offset, even in the last segment, is
/// mid-log damage; one within it is a torn tail.
#[test]
fn tail_tolerance_boundary_in_the_last_segment() {
    let seg = 512 * 1024;
    let mut rng = Rng::new(seed(0xB17F_0004));
    for far in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (sent, content) = build(dir, seg, &mut rng, 500);
        let end = sent.iter().map(Sent::end).max().unwrap();
        assert!(
            end < seg && end > 2 * TOLERANCE,
            "one segment, well over 64 KiB"
        );
        let victim = if far {
            // The last record that starts more than 64 KiB (plus a margin) before the end.
            sent.iter()
                .filter(|s| s.start() + TOLERANCE + 1024 < end)
                .max_by_key(|s| s.start())
                .unwrap()
        } else {
            sent.iter()
                .filter(|s| s.start() + TOLERANCE > end + 1024)
                .min_by_key(|s| s.start())
                .unwrap()
        };
        flip_bits(
            dir,
            seg,
            victim.start() + BODY_POS,
            victim.start() + BODY_POS + 4,
            2,
            &mut rng,
        );
        touch_abort(dir);
        let ctx = format!("record at {} with the log end at {end}", victim.start());
        if far {
            expect_corrupted(builder(dir, seg), dir, seg, victim.start(), &ctx);
        } else {
            expect_truncated(builder(dir, seg), seg, victim.start(), &content, &ctx);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum MidLog {
    /// Closed, then an abort marker.
    Abort,
    /// A crash image: abort marker and a checkpoint from the open.
    Crash,
    /// Closed, abort marker, checkpoint deleted.
    AbortNoCheckpoint,
}

/// Builds a log of several `seg`-byte segments, damages one record in the first segment (the
/// one `pick` chooses) three ways, and expects `Error::Corrupted` naming the file and offset,
/// with the files left alone.
fn mid_log(
    variant: MidLog,
    seg: u64,
    n: usize,
    seed_default: u64,
    pick: fn(&[Sent], u64) -> usize,
) {
    let mut rng = Rng::new(seed(seed_default));
    for kind in ["body bits", "magic", "TOTALSIZE 0x7fffffff"] {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let dir = tmp.path().join("store");
        let store = builder(&work, seg).open().unwrap();
        let mut sent = put_random(&store, &mut rng, n);
        sent.sort_by_key(Sent::start);
        copy_dir(&work, &dir);
        std::fs::remove_file(dir.join("lock")).unwrap();
        store.close().unwrap();
        match variant {
            MidLog::Crash => {}
            MidLog::Abort | MidLog::AbortNoCheckpoint => {
                std::fs::remove_dir_all(&dir).unwrap();
                copy_dir(&work, &dir);
                touch_abort(&dir);
                if let MidLog::AbortNoCheckpoint = variant {
                    std::fs::remove_file(dir.join("checkpoint")).unwrap();
                }
            }
        }
        let end = sent.last().unwrap().end();
        assert!(end > 3 * seg, "log spans several segments");
        let victim = &sent[pick(&sent, seg)];
        assert!(victim.end() <= seg && victim.start() + 2 * TOLERANCE < end);
        match kind {
            "body bits" => {
                let b = victim.start() + BODY_POS;
                flip_bits(
                    &dir,
                    seg,
                    b,
                    b + victim.body.len() as u64,
                    rng.range(1, 9),
                    &mut rng,
                );
            }
            "magic" => edit(&dir, seg, victim.start(), |b, p| b[p + 4..p + 8].fill(0xEE)),
            _ => edit(&dir, seg, victim.start(), |b, p| {
                b[p..p + 4].copy_from_slice(&i32::MAX.to_be_bytes())
            }),
        }
        let ctx = format!(
            "{variant:?}, {kind} at {} in segment 0 of {seg} bytes (log end {end})",
            victim.start()
        );
        expect_corrupted(builder(&dir, seg), &dir, seg, victim.start(), &ctx);
        // Still refused on a second attempt: nothing was truncated in between.
        expect_corrupted(builder(&dir, seg), &dir, seg, victim.start(), &ctx);
    }
}

/// A record in the first half of the first segment.
fn early(sent: &[Sent], seg: u64) -> usize {
    sent.iter().rposition(|s| s.end() < seg / 2).unwrap()
}

/// The last record of the first segment.
fn end_of_first_segment(sent: &[Sent], seg: u64) -> usize {
    sent.iter().rposition(|s| s.end() <= seg).unwrap()
}

#[test]
fn mid_log_damage_with_abort_marker_is_corrupted() {
    mid_log(MidLog::Abort, SEG, 600, 0xB17F_0005, early);
}

#[test]
fn mid_log_damage_in_crash_image_is_corrupted() {
    mid_log(MidLog::Crash, SEG, 600, 0xB17F_0007, early);
}

#[test]
fn mid_log_damage_without_checkpoint_is_corrupted() {
    mid_log(MidLog::AbortNoCheckpoint, SEG, 600, 0xB17F_0008, early);
}

/// Damage in the last record of the first of four 256 KiB segments, in a crash image whose
/// checkpoint predates all the data: three full segments of valid records follow, so this is
/// mid-log damage, not a torn tail.
#[test]
fn damage_at_the_end_of_an_early_segment_in_crash_image_is_corrupted() {
    mid_log(
        MidLog::Crash,
        256 * 1024,
        2400,
        0xB17F_0009,
        end_of_first_segment,
    );
}

/// After a clean close (no abort marker, so no recovery scan), a record damaged mid-log must
/// still not be served as if it were intact: either the open or the read reports corruption.
#[test]
fn mid_log_body_damage_after_clean_close_is_not_served() {
    let mut rng = Rng::new(seed(0xB17F_0006));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (sent, _) = build(dir, SEG, &mut rng, 600);
    let victim = sent.iter().find(|s| s.start() > 1000).unwrap();
    let b = victim.start() + BODY_POS;
    flip_bits(dir, SEG, b, b + victim.body.len() as u64, 3, &mut rng);
    let store = match builder(dir, SEG).open() {
        Err(Error::Corrupted { .. }) => return,
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(s) => s,
    };
    let mq = MessageQueue::new(victim.topic, victim.put.queue_id);
    match store.get_messages(&mq, victim.put.queue_offset, 1) {
        Err(Error::Corrupted { .. }) => {}
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(got) => {
            let m = got.messages.first();
            assert!(
                m.is_none_or(|m| m.body() == &victim.body[..]),
                "get_messages serves the record at {} with a body that fails its CRC",
                victim.start()
            );
        }
    }
    match store.message_at(victim.start()) {
        Err(Error::Corrupted { .. }) => {}
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(m) => assert!(
            m.body() == &victim.body[..],
            "message_at serves the record at {} with a body that fails its CRC",
            victim.start()
        ),
    }
    store.close().unwrap();
}

/// `AbsoluteConsistency` allows truncating only past the checkpoint's durable offset. Records
/// before it that now read as zeros (durable data lost) are damage like any other:
/// `Error::Corrupted`, not a silent truncation at the first zero byte.
#[test]
fn absolute_consistency_zeroed_records_before_durable_offset_are_corrupted() {
    let mut rng = Rng::new(seed(0xB17F_000A));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut sent, content) = build(dir, SEG, &mut rng, 300);
    sent.sort_by_key(Sent::start);
    let victim = &sent[sent.len() - 4];
    edit(dir, SEG, victim.start(), |b, p| b[p..].fill(0));
    touch_abort(dir);
    let ctx = format!(
        "records from {} to the durable end {} zeroed",
        victim.start(),
        sent.last().unwrap().end()
    );
    expect_corrupted(
        builder(dir, SEG).recovery_mode(RecoveryMode::AbsoluteConsistency),
        dir,
        SEG,
        victim.start(),
        &ctx,
    );
    // The default mode takes it as a torn tail (within 64 KiB of the end).
    expect_truncated(builder(dir, SEG), SEG, victim.start(), &content, &ctx);
}
