//! Clean close and reopen: after many messages over several CommitLog segment rolls in several
//! topics and queues, a `close()` followed by `open()` (three times in a row) must give back
//! exactly the same store: every queue's min/max offset, every message (body, queue offset,
//! physical offset, msg id, tags, keys, properties, timestamps), the CommitLog end, and appends
//! that continue at the right queue and physical offsets. The raw segment files must end with
//! RocketMQ's 8-byte blank record (TOTALSIZE = remaining bytes, magic `0xCBD43194`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Rng, seed, small};
use mqlite::{Message, MessageExt, MessageQueue, PutResult, Store};

const SEG: u64 = 64 * 1024;
const BLANK_MAGIC: u32 = 0xCBD4_3194;
const TOPICS: &[(&str, u32)] = &[("Orders", 4), ("Payments", 3), ("Audit_log", 1)];

/// A message the test wrote and what it expects to read back.
struct Sent {
    msg: Message,
    put: PutResult,
}

fn random_message(rng: &mut Rng, i: usize) -> (Message, u32) {
    let (topic, queues) = TOPICS[rng.range(0, TOPICS.len() as u64) as usize];
    let queue = rng.range(0, u64::from(queues)) as u32;
    let len = rng.range(1, 1500) as usize;
    let mut msg = Message::new(topic, rng.bytes(len)).with_flag(i as i32);
    match rng.range(0, 4) {
        0 => {}
        1 => msg = msg.with_tags("TagA"),
        2 => msg = msg.with_tags("TagB"),
        _ => msg = msg.with_tags(format!("tag-{}", rng.range(0, 50))),
    }
    let nkeys = rng.range(0, 3);
    if nkeys > 0 {
        msg = msg.with_keys((0..nkeys).map(|k| format!("K{i}_{k}")));
    }
    for p in 0..rng.range(0, 3) {
        msg = msg.with_property(format!("prop{p}"), format!("value-{i}-{}", rng.next_u64()));
    }
    (msg, queue)
}

fn put_many(store: &Store, rng: &mut Rng, n: usize, first_index: usize) -> Vec<Sent> {
    (0..n)
        .map(|k| {
            let (msg, queue) = random_message(rng, first_index + k);
            let put = store.put(&msg, queue).expect("put");
            Sent { msg, put }
        })
        .collect()
}

fn all_queues() -> Vec<MessageQueue> {
    TOPICS
        .iter()
        .flat_map(|&(t, n)| (0..n).map(move |q| MessageQueue::new(t, q)))
        .collect()
}

/// Every queue's (min, max) offsets and messages, read through the public API.
type Snapshot = BTreeMap<(String, u32), (u64, u64, Vec<MessageExt>)>;

fn snapshot(store: &Store) -> Snapshot {
    let mut out = BTreeMap::new();
    for mq in all_queues() {
        let min = store.min_offset(&mq).unwrap();
        let max = store.max_offset(&mq).unwrap();
        let mut msgs = Vec::new();
        let mut off = min;
        while off < max {
            let got = store.get_messages(&mq, off, 64).unwrap();
            assert!(
                !got.messages.is_empty(),
                "{mq:?}: no messages at {off} < max {max}"
            );
            assert_eq!((got.min_offset, got.max_offset), (min, max));
            off = got.next_offset;
            msgs.extend(got.messages);
        }
        assert_eq!(msgs.len() as u64, max - min, "{mq:?}: queue has holes");
        out.insert((mq.topic.clone(), mq.queue_id), (min, max, msgs));
    }
    out
}

/// Checks that each sent message reads back as written, by queue and by physical offset.
fn check_sent(store: &Store, sent: &[Sent], snap: &Snapshot) {
    for s in sent {
        let (_, _, msgs) = &snap[&(s.msg.topic().to_owned(), s.put.queue_id)];
        let m = &msgs[s.put.queue_offset as usize];
        assert_eq!(m.queue_offset(), s.put.queue_offset);
        assert_eq!(m.physical_offset(), s.put.physical_offset);
        assert_eq!(m.store_size(), s.put.size);
        assert_eq!(m.topic(), s.msg.topic());
        assert_eq!(m.queue_id(), s.put.queue_id);
        assert_eq!(m.body(), s.msg.body());
        assert_eq!(m.msg_id(), s.put.msg_id);
        assert_eq!(m.offset_msg_id(), s.put.offset_msg_id);
        assert_eq!(m.tags(), s.msg.tags());
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            s.msg.keys().collect::<Vec<_>>()
        );
        assert_eq!(m.flag(), s.msg.flag());
        assert_eq!(m.store_timestamp() as u64, s.put.store_timestamp);
        for (k, v) in s.msg.properties() {
            assert_eq!(m.property(k), Some(v), "property {k}");
        }
        let by_phys = store.message_at(s.put.physical_offset).unwrap();
        assert_eq!(&by_phys, m);
        let by_id = store
            .view_message(&s.put.offset_msg_id.to_string())
            .unwrap();
        assert_eq!(&by_id, m);
    }
}

fn segment_files(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut files: Vec<(u64, Vec<u8>)> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            assert_eq!(name.len(), 20, "segment name {name}");
            (name.parse().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort_by_key(|f| f.0);
    files
}

/// Every full segment ends with the blank record right after its last message, and the
/// message that follows in the next segment did not fit in the space the blank covers.
fn check_blank_records(dir: &Path, sent: &[Sent]) {
    let files = segment_files(dir);
    assert!(
        files.len() >= 4,
        "expected several segments, got {}",
        files.len()
    );
    for (i, (base, bytes)) in files.iter().enumerate() {
        assert_eq!(*base, i as u64 * SEG, "segments are contiguous");
        assert_eq!(
            bytes.len() as u64,
            SEG,
            "segment {base} has the configured size"
        );
    }
    let mut by_seg: BTreeMap<u64, Vec<&PutResult>> = BTreeMap::new();
    for s in sent {
        let seg = s.put.physical_offset / SEG * SEG;
        assert!(
            s.put.physical_offset + u64::from(s.put.size) <= seg + SEG,
            "record straddles"
        );
        by_seg.entry(seg).or_default().push(&s.put);
    }
    for (base, bytes) in &files[..files.len() - 1] {
        let puts = &by_seg[base];
        let last = puts.iter().max_by_key(|p| p.physical_offset).unwrap();
        let pos = (last.physical_offset + u64::from(last.size) - base) as usize;
        let remaining = SEG as usize - pos;
        let total = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let magic = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        assert_eq!(
            (total as usize, magic),
            (remaining, BLANK_MAGIC),
            "blank record at {base}+{pos}"
        );
        let next = by_seg[&(base + SEG)]
            .iter()
            .min_by_key(|p| p.physical_offset)
            .unwrap();
        assert_eq!(
            next.physical_offset,
            base + SEG,
            "next segment starts with a record"
        );
        assert!(
            next.size as usize + 8 > remaining,
            "a record of {} bytes would have fit in the {remaining} bytes left in segment {base}",
            next.size
        );
        // Records are packed: each one starts where the previous one ends.
        let mut sorted: Vec<_> = puts.iter().map(|p| (p.physical_offset, p.size)).collect();
        sorted.sort();
        let mut expect = *base;
        for (phys, size) in sorted {
            assert_eq!(phys, expect, "records are contiguous in segment {base}");
            assert_eq!(
                u32::from_be_bytes(bytes[(phys - base) as usize..][..4].try_into().unwrap()),
                size
            );
            expect = phys + u64::from(size);
        }
    }
}

#[test]
fn reopen_gives_back_identical_store_and_appends_continue() {
    let mut rng = Rng::new(seed(0xC1EA_0001));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let store = small(dir).open().unwrap();
    for &(t, q) in TOPICS {
        store.create_topic(t, q).unwrap();
    }
    let mut sent = put_many(&store, &mut rng, 900, 0);
    let mut snap = snapshot(&store);
    check_sent(&store, &sent, &snap);
    let mut end = store.commitlog_max_offset();
    assert!(
        end > 6 * SEG,
        "the workload rolls several segments (end {end})"
    );
    store.close().unwrap();
    check_blank_records(dir, &sent);

    for round in 0..3 {
        let store = small(dir).open().unwrap();
        assert_eq!(store.commitlog_max_offset(), end, "round {round}: log end");
        assert_eq!(store.commitlog_min_offset(), 0);
        let again = snapshot(&store);
        assert_eq!(again, snap, "round {round}: content after reopen");
        check_sent(&store, &sent, &again);

        // Appends continue: the first one where the log ended (or at the next segment if it
        // does not fit), with the next offset of its queue.
        let before: BTreeMap<_, _> = snap.iter().map(|(k, v)| (k.clone(), v.1)).collect();
        let more = put_many(&store, &mut rng, 150, sent.len());
        let first = &more[0].put;
        let seg_end = end / SEG * SEG + SEG;
        if first.physical_offset != end {
            assert_eq!(
                first.physical_offset, seg_end,
                "round {round}: first append"
            );
            assert!(end + u64::from(first.size) + 8 > seg_end);
        }
        let mut next = before.clone();
        let mut phys = first.physical_offset;
        for s in &more {
            let key = (s.msg.topic().to_owned(), s.put.queue_id);
            let expect = next.get_mut(&key).unwrap();
            assert_eq!(
                s.put.queue_offset, *expect,
                "round {round}: queue offset of {key:?}"
            );
            *expect += 1;
            if s.put.physical_offset != phys {
                assert_eq!(s.put.physical_offset, phys / SEG * SEG + SEG, "roll");
            }
            phys = s.put.physical_offset + u64::from(s.put.size);
        }
        assert_eq!(store.commitlog_max_offset(), phys);
        sent.extend(more);
        snap = snapshot(&store);
        check_sent(&store, &sent, &snap);
        end = store.commitlog_max_offset();
        store.close().unwrap();
        check_blank_records(dir, &sent);
        assert!(
            !dir.join("abort").exists(),
            "a clean close removes the abort marker"
        );
    }
}

#[test]
fn reopen_of_empty_store_and_store_with_empty_topics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = small(dir).open().unwrap();
    assert_eq!(store.commitlog_max_offset(), 0);
    store.close().unwrap();

    let store = small(dir).open().unwrap();
    assert_eq!(store.commitlog_max_offset(), 0);
    store.create_topic("Empty", 2).unwrap();
    store.close().unwrap();

    let store = small(dir).open().unwrap();
    assert_eq!(store.topic("Empty").unwrap().write_queue_nums, 2);
    let mq = MessageQueue::new("Empty", 1);
    assert_eq!(store.max_offset(&mq).unwrap(), 0);
    let put = store
        .put(&Message::new("Empty", b"first".to_vec()), 1)
        .unwrap();
    assert_eq!((put.queue_offset, put.physical_offset), (0, 0));
    store.close().unwrap();

    let store = small(dir).open().unwrap();
    assert_eq!(store.max_offset(&mq).unwrap(), 1);
    assert_eq!(store.commitlog_max_offset(), u64::from(put.size));
    let got = store.get_messages(&mq, 0, 10).unwrap();
    assert_eq!(got.messages.len(), 1);
    assert_eq!(got.messages[0].body(), b"first");
    store.close().unwrap();
}
