//! Torn tail (RELIABILITY.md Part C, case 5). A store is written over a few CommitLog segments,
//! then closed (or copied while open, which is a crash image with the `abort` marker). The last
//! segment is zero- or random-filled from a random byte X inside one of its last K records,
//! either to the end of the segment or over a random length. Reopening must keep exactly the
//! records that end at or before X (byte-identical), drop every later one and the consume queue
//! entries that pointed at them, continue appending at X's record with dense queue offsets, and
//! keep all of it across another reopen. This holds with the `abort` marker (recovery scan) and
//! without it (a clean-close checkpoint that disagrees with the damaged log).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Rng, copy_dir, read_queue, seed, small};
use mqlite::{Message, MessageExt, MessageQueue, PutResult, RecoveryMode, Store};

const SEG: u64 = 64 * 1024;
/// Damage starts inside one of the last `K` records.
const K: u64 = 5;
const TOPICS: &[(&str, u32)] = &[("TornA", 3), ("TornB", 2)];
/// Offset of the body inside a record with IPv4 hosts (after the 4-byte body length).
const BODY_POS: u64 = 88;

#[derive(Clone)]
struct Sent {
    topic: &'static str,
    body: Vec<u8>,
    put: PutResult,
}

impl Sent {
    fn end(&self) -> u64 {
        self.put.physical_offset + u64::from(self.put.size)
    }
    fn body_end(&self) -> u64 {
        self.put.physical_offset + BODY_POS + self.body.len() as u64
    }
}

/// Random bytes without zeros, so zero-filling any body byte changes it.
fn body(rng: &mut Rng, min: u64, max: u64) -> Vec<u8> {
    let len = rng.range(min, max) as usize;
    let mut b = rng.bytes(len);
    for x in &mut b {
        if *x == 0 {
            *x = 0x5A;
        }
    }
    b
}

fn put_random(store: &Store, rng: &mut Rng, n: usize) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let (topic, queues) = TOPICS[rng.range(0, TOPICS.len() as u64) as usize];
            let queue = rng.range(0, u64::from(queues)) as u32;
            let body = body(rng, 20, 700);
            let mut msg = Message::new(topic, body.clone()).with_keys([format!("k{i}")]);
            if rng.range(0, 2) == 0 {
                msg = msg.with_tags(format!("tag{}", rng.range(0, 4)));
            }
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

/// Each queue's messages, by (topic, queue id).
type Content = BTreeMap<(String, u32), Vec<MessageExt>>;

fn read_all(store: &Store) -> Content {
    queues()
        .into_iter()
        .map(|mq| {
            let msgs = read_queue(store, &mq);
            ((mq.topic, mq.queue_id), msgs)
        })
        .collect()
}

fn segment_path(dir: &Path, base: u64) -> std::path::PathBuf {
    dir.join("commitlog").join(format!("{base:020}"))
}

/// Overwrites `[from, to)` of the CommitLog (inside one segment) with zeros or with random
/// bytes that differ from the original ones.
fn damage(dir: &Path, from: u64, to: u64, zero: bool, rng: &mut Rng) {
    let base = from / SEG * SEG;
    assert!(to <= base + SEG && from < to);
    let path = segment_path(dir, base);
    let mut bytes = std::fs::read(&path).unwrap();
    let range = (from - base) as usize..(to - base) as usize;
    if zero {
        bytes[range].fill(0);
    } else {
        for b in &mut bytes[range] {
            let r = rng.range(0, 256) as u8;
            *b = if r == *b { r ^ 0xA5 } else { r };
        }
    }
    std::fs::write(&path, bytes).unwrap();
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Image {
    /// `close()`, then an `abort` file created by hand.
    ClosedWithAbort,
    /// `close()`, no `abort` file: the checkpoint claims a clean end.
    ClosedClean,
    /// The directory copied while the store was open (a crash image).
    Crash,
}

struct Case {
    image: Image,
    zero: bool,
    /// Damage to the end of the segment rather than over a random length.
    to_segment_end: bool,
}

/// Builds a store in `dir` and returns what was written plus the queues' content as read.
fn build(dir: &Path, rng: &mut Rng, image: Image) -> (Vec<Sent>, Content) {
    let work = dir.with_extension("work");
    let store_dir = if image == Image::Crash { &work } else { dir };
    let store = small(store_dir).open().unwrap();
    for &(t, q) in TOPICS {
        store.create_topic(t, q).unwrap();
    }
    let n = rng.range(200, 450) as usize;
    let sent = put_random(&store, rng, n);
    let content = read_all(&store);
    match image {
        Image::Crash => {
            copy_dir(&work, dir);
            std::fs::remove_file(dir.join("lock")).unwrap();
            assert!(dir.join("abort").exists());
            store.close().unwrap();
        }
        Image::ClosedWithAbort => {
            store.close().unwrap();
            std::fs::write(dir.join("abort"), b"1").unwrap();
        }
        Image::ClosedClean => store.close().unwrap(),
    }
    (sent, content)
}

/// One seeded run: build, damage, reopen, check, append, reopen, check.
fn run(rng: &mut Rng, case: &Case, iteration: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (sent, content) = build(&dir, rng, case.image);

    let last_end = sent.iter().map(Sent::end).max().unwrap();
    let seg_base = (last_end - 1) / SEG * SEG;
    let seg_end = seg_base + SEG;
    let mut in_last: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.put.physical_offset >= seg_base)
        .collect();
    in_last.sort_by_key(|s| s.put.physical_offset);
    assert!(seg_base >= SEG, "the workload spans more than one segment");
    let k = rng.range(0, K.min(in_last.len() as u64)) as usize;
    let victim = in_last[in_last.len() - 1 - k];
    let start = victim.put.physical_offset;
    // X lies in the part of the record the format can check (size, magic, CRC, header, body),
    // and the damage always reaches the body, so the record is detectably broken.
    let x = rng.range(start, victim.body_end());
    let lo = x.max(start + BODY_POS) + 1;
    let y = if case.to_segment_end {
        seg_end
    } else if rng.range(0, 2) == 0 {
        // Within the record: every later record stays intact.
        rng.range(lo, victim.end() + 1)
    } else {
        rng.range(lo, seg_end + 1)
    };
    let ctx = format!(
        "iteration {iteration}: image {:?}, zero {}, damage [{x}, {y}) in record [{start}, {}) \
         ({k} from last), segment {seg_base}",
        case.image,
        case.zero,
        victim.end()
    );
    damage(&dir, x, y, case.zero, rng);

    let survivors: Vec<&Sent> = sent.iter().filter(|s| s.end() <= x).collect();
    assert!(survivors.iter().all(|s| s.put.physical_offset < start));
    assert_eq!(
        survivors.len(),
        sent.iter()
            .filter(|s| s.put.physical_offset < start)
            .count()
    );

    let store = if case.image == Image::ClosedClean {
        // A cleanly closed store flushed every record its consume queues reference: damage
        // there is not a torn tail, and the open refuses rather than cut acknowledged data.
        let before = std::fs::read(dir.join("commitlog").join(format!("{seg_base:020}"))).unwrap();
        match small(&dir).open() {
            Err(mqlite::Error::Corrupted { file, .. }) => {
                assert!(file.starts_with(dir.join("commitlog")), "{ctx}: {file:?}")
            }
            Err(e) => panic!("{ctx}: expected Corrupted, got {e}"),
            Ok(_) => panic!("{ctx}: a cleanly closed store with damaged records opened"),
        }
        let after = std::fs::read(dir.join("commitlog").join(format!("{seg_base:020}"))).unwrap();
        assert!(before == after, "{ctx}: a refused open changed the segment");
        // Cutting is the operator's explicit choice.
        small(&dir)
            .recovery_mode(RecoveryMode::TruncateAtDamage)
            .open()
            .unwrap_or_else(|e| panic!("{ctx}: reopen with TruncateAtDamage failed: {e}"))
    } else {
        small(&dir)
            .open()
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"))
    };
    assert_eq!(
        store.commitlog_max_offset(),
        start,
        "{ctx}: log end after recovery"
    );
    let mut expected: Content = BTreeMap::new();
    for ((topic, q), msgs) in &content {
        let keep: Vec<MessageExt> = msgs
            .iter()
            .filter(|m| m.physical_offset() < start)
            .cloned()
            .collect();
        // Queue offsets of the survivors are a prefix of the queue.
        for (i, m) in keep.iter().enumerate() {
            assert_eq!(m.queue_offset(), i as u64);
        }
        expected.insert((topic.clone(), *q), keep);
    }
    for mq in queues() {
        let want = &expected[&(mq.topic.clone(), mq.queue_id)];
        assert_eq!(store.min_offset(&mq).unwrap(), 0, "{ctx}: {mq:?} min");
        assert_eq!(
            store.max_offset(&mq).unwrap(),
            want.len() as u64,
            "{ctx}: {mq:?} max offset after recovery"
        );
        let got = read_queue(&store, &mq);
        assert!(got == *want, "{ctx}: {mq:?} content after recovery differs");
        let past = store.get_messages(&mq, want.len() as u64, 10).unwrap();
        assert!(
            past.messages.is_empty(),
            "{ctx}: {mq:?} serves entries past the end"
        );
    }
    assert!(
        store.message_at(start).is_err(),
        "{ctx}: damaged record still readable"
    );
    for s in &survivors {
        let m = store.message_at(s.put.physical_offset).unwrap();
        assert_eq!(m.body(), &s.body[..], "{ctx}");
    }

    // Appends continue where the valid log ends, with dense queue offsets.
    let mut appended: Vec<(MessageQueue, u64, Vec<u8>)> = Vec::new();
    let mut first = true;
    for mq in queues() {
        for j in 0..2 {
            let b = body(rng, 10, 300);
            let put = store
                .put(&Message::new(mq.topic.as_str(), b.clone()), mq.queue_id)
                .unwrap();
            let want = expected[&(mq.topic.clone(), mq.queue_id)].len() as u64 + j;
            assert_eq!(
                put.queue_offset, want,
                "{ctx}: {mq:?} queue offset of a new append"
            );
            if first {
                first = false;
                if put.physical_offset != start {
                    assert_eq!(put.physical_offset, seg_end, "{ctx}: first append");
                    assert!(
                        start + u64::from(put.size) + 8 > seg_end,
                        "{ctx}: first append"
                    );
                }
            }
            appended.push((mq.clone(), put.queue_offset, b));
        }
    }
    let end = store.commitlog_max_offset();
    store.close().unwrap();

    let store = small(&dir).open().unwrap();
    assert_eq!(
        store.commitlog_max_offset(),
        end,
        "{ctx}: end after second reopen"
    );
    for mq in queues() {
        let want = &expected[&(mq.topic.clone(), mq.queue_id)];
        let got = read_queue(&store, &mq);
        assert_eq!(
            got.len(),
            want.len() + 2,
            "{ctx}: {mq:?} length after second reopen"
        );
        assert!(got[..want.len()] == want[..], "{ctx}: {mq:?} old content");
        for (amq, off, b) in appended.iter().filter(|a| a.0 == mq) {
            assert_eq!(
                got[*off as usize].body(),
                &b[..],
                "{ctx}: {amq:?} new message {off}"
            );
        }
    }
    store.close().unwrap();
}

fn run_many(seed_default: u64, iterations: usize, pick: impl Fn(&mut Rng) -> Case) {
    let mut rng = Rng::new(seed(seed_default));
    for i in 0..iterations {
        let case = pick(&mut rng);
        run(&mut rng, &case, i);
    }
}

#[test]
fn torn_tail_after_close_with_abort_marker() {
    run_many(0x7041_0001, 16, |rng| Case {
        image: Image::ClosedWithAbort,
        zero: rng.range(0, 2) == 0,
        to_segment_end: rng.range(0, 2) == 0,
    });
}

#[test]
fn torn_tail_in_crash_image() {
    run_many(0x7041_0002, 16, |rng| Case {
        image: Image::Crash,
        zero: rng.range(0, 2) == 0,
        to_segment_end: rng.range(0, 2) == 0,
    });
}

/// Without the `abort` marker the checkpoint claims a clean end that the damaged log
/// contradicts; damage reaching the end of the segment wipes the last records, which the
/// store must notice.
#[test]
fn torn_tail_to_segment_end_without_abort_marker() {
    run_many(0x7041_0003, 12, |rng| Case {
        image: Image::ClosedClean,
        zero: rng.range(0, 2) == 0,
        to_segment_end: true,
    });
}

/// Without the `abort` marker, damage over a random length inside the last records (later
/// records intact): the store must still not serve the damaged record.
#[test]
fn torn_range_without_abort_marker() {
    run_many(0x7041_0004, 12, |rng| Case {
        image: Image::ClosedClean,
        zero: rng.range(0, 2) == 0,
        to_segment_end: false,
    });
}

/// Damage confined to the part of a record that no checksum covers (topic and properties,
/// after the body), from X to the end of the segment: the record is torn, so it must not be
/// served with altered bytes, and the log must end before it.
#[test]
fn torn_tail_inside_properties_is_not_served() {
    let mut rng = Rng::new(seed(0x7041_0005));
    for zero in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let (sent, content) = build(&dir, &mut rng, Image::ClosedWithAbort);
        let victim = sent.iter().max_by_key(|s| s.put.physical_offset).unwrap();
        let start = victim.put.physical_offset;
        // The last 10 bytes of the record: the end of the UNIQ_KEY property value.
        let x = victim.end() - 10;
        damage(&dir, x, (start / SEG + 1) * SEG, zero, &mut rng);
        let store = small(&dir).open().unwrap();
        let key = (victim.topic.to_owned(), victim.put.queue_id);
        let original = content[&key]
            .iter()
            .find(|m| m.physical_offset() == start)
            .unwrap();
        let mq = MessageQueue::new(victim.topic, victim.put.queue_id);
        for m in read_queue(&store, &mq) {
            assert!(
                m.physical_offset() != start || &m == original,
                "zero {zero}: the torn record at {start} is served with altered properties: \
                 msg id {:?} (was {:?})",
                m.msg_id(),
                original.msg_id()
            );
        }
        if let Ok(m) = store.message_at(start) {
            assert!(
                &m == original,
                "zero {zero}: message_at({start}) serves the torn record with msg id {:?} (was {:?})",
                m.msg_id(),
                original.msg_id()
            );
        }
        assert_eq!(store.commitlog_max_offset(), start, "zero {zero}: log end");
        store.close().unwrap();
    }
}
