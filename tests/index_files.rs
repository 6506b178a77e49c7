//! Index files (`index/yyyyMMddHHmmssSSS`): RocketMQ's layout byte for byte, hash-slot
//! collisions, lookups across file rolls, answers equal to a scan, rebuild after a power cut,
//! and RocketMQ-sized files read as they are.

mod common;

use std::path::{Path, PathBuf};

use common::Rng;
use mqlite::format::index::{self as fmt, IndexEntry, IndexHeader};
use mqlite::sim::{Keep, SimStorage};
use mqlite::{IndexConfig, Message, MessageExt, Store, StoreBuilder};

fn tiny_index(slots: u32, entries: u32) -> IndexConfig {
    IndexConfig {
        enabled: true,
        max_hash_slots: slots,
        max_index_entries: entries,
    }
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("index"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn offsets(ms: &[MessageExt]) -> Vec<u64> {
    ms.iter().map(MessageExt::physical_offset).collect()
}

#[test]
fn golden_header_and_entry_bytes() {
    // Computed by hand: big-endian i64 x4, i32 x2; i32, i64, i32, i32.
    let h = IndexHeader {
        begin_timestamp: 1_700_000_000_000, // 0x0000018B_CFE56800
        end_timestamp: 1_700_000_001_000,   // 0x0000018B_CFE56BE8
        begin_phy_offset: 0,
        end_phy_offset: 0x1234,
        hash_slot_count: 2,
        index_count: 3,
    };
    let want_h: [u8; 40] = [
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, //
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x6b, 0xe8, //
        0, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0, 0, 0, 0, 0x12, 0x34, //
        0, 0, 0, 2, 0, 0, 0, 3,
    ];
    assert_eq!(h.encode(), want_h);
    assert_eq!(IndexHeader::decode(&want_h).unwrap(), h);
    let e = IndexEntry {
        key_hash: 0x0102_0304,
        phy_offset: 0x0A_0B0C_0D0E,
        time_diff: 5,
        prev_index: 2,
    };
    let want_e: [u8; 20] = [
        0x01, 0x02, 0x03, 0x04, //
        0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, //
        0, 0, 0, 5, //
        0, 0, 0, 2,
    ];
    assert_eq!(e.encode(), want_e);
    assert_eq!(IndexEntry::decode(&want_e).unwrap(), e);
}

#[test]
fn written_file_has_rocketmq_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .index(tiny_index(4, 8))
        .open()
        .unwrap();
    let sent = store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "x").with_keys(["k"]))
        .unwrap();
    store.close().unwrap();
    let files = index_files(dir.path());
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(fmt::is_file_name(&name), "{name}");
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes.len(), 40 + 4 * 4 + 8 * 20);
    let h = IndexHeader::decode(&bytes).unwrap();
    assert_eq!(h.index_count, 3, "two entries: msgId and key");
    assert_eq!((h.begin_phy_offset, h.end_phy_offset), (0, 0));
    assert_eq!(h.begin_timestamp, h.end_timestamp);
    // "t#k" = 116*31^2 + 35*31 + 107 = 112668, slot 112668 % 4 = 0; the key is entry 2 (the
    // msgId is entry 1).
    assert_eq!(fmt::key_hash("t", "k"), 112_668);
    assert_eq!(&bytes[40..44], &[0, 0, 0, 2]);
    let uniq_hash = fmt::key_hash("t", sent.msg_id.as_str());
    let prev: u8 = if uniq_hash % 4 == 0 { 1 } else { 0 };
    let e2 = &bytes[40 + 16 + 2 * 20..40 + 16 + 3 * 20];
    assert_eq!(
        e2,
        &[
            0x00, 0x01, 0xb8, 0x1c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, prev
        ]
    );
    let e1 = IndexEntry::decode(&bytes[40 + 16 + 20..]).unwrap();
    assert_eq!(e1.key_hash, uniq_hash);
}

/// Sends `n` messages, each with a shared key `K{i % groups}` and a unique key `U{i}`, spread
/// over the queues.
fn fill(store: &Store, n: usize, groups: usize) {
    let p = store.producer("p").unwrap();
    for i in 0..n {
        p.send(
            Message::new("orders", format!("m{i}"))
                .with_keys([format!("K{}", i % groups), format!("U{i}")]),
        )
        .unwrap();
    }
}

/// 100k keys into files of 16 slots (every slot chain is thousands of entries long) and
/// 6,000 entries (17 files): every lookup equals what a scan of the same store finds, in the
/// same (newest first) order, also within time ranges.
#[test]
fn collisions_and_rolls_answer_like_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let open = |index: IndexConfig| {
        common::small(dir.path())
            .commitlog_segment_size(1 << 20)
            .index(index)
            .open()
            .unwrap()
    };
    let store = open(tiny_index(16, 6000));
    store.create_topic("orders", 4).unwrap();
    let n = 34_000;
    fill(&store, n, 1000);
    store.flush().unwrap(); // the index writer has caught up
    let files = index_files(dir.path());
    assert!(files.len() >= 17, "{} index files", files.len());
    let all = store.messages_between("orders", 0, u64::MAX, n).unwrap();
    assert_eq!(all.len(), n);
    let (t1, t2) = (
        all[n / 3].store_timestamp() as u64,
        all[2 * n / 3].store_timestamp() as u64,
    );
    let mut rng = Rng::new(common::seed(7));
    let mut keys: Vec<String> = (0..40)
        .map(|_| format!("K{}", rng.range(0, 1000)))
        .collect();
    keys.extend((0..40).map(|_| format!("U{}", rng.range(0, n as u64))));
    keys.push("K1000".into()); // never sent
    let ranges = [(0, u64::MAX), (t1, t2), (t2, u64::MAX), (0, t1)];
    // The model: every message by key, newest first.
    let mut by_key: std::collections::HashMap<String, Vec<(u64, u64)>> = Default::default();
    for m in all.iter().rev() {
        for k in m.keys() {
            by_key
                .entry(k.to_owned())
                .or_default()
                .push((m.store_timestamp() as u64, m.physical_offset()));
        }
    }
    let model = |k: &str, b: u64, e: u64| -> Vec<u64> {
        by_key
            .get(k)
            .into_iter()
            .flatten()
            .filter(|(ts, _)| (b..=e).contains(ts))
            .map(|&(_, p)| p)
            .take(64)
            .collect()
    };
    let mut by_index = Vec::new();
    for k in &keys {
        for &(b, e) in &ranges {
            let got = offsets(&store.query_by_key("orders", k, b, e, 64).unwrap());
            assert_eq!(got, model(k, b, e), "key {k} range {b}..{e}");
            by_index.push(got);
        }
    }
    // A shared key is found 34 times, a unique key once.
    assert_eq!(by_index[0].len(), 34);
    assert_eq!(by_index[40 * 4].len(), 1);
    let id = all[123].msg_id();
    assert_eq!(
        store
            .view_message_by_id("orders", id.as_str())
            .unwrap()
            .body(),
        b"m123"
    );
    store.close().unwrap();
    // Full files were flushed and their end time recorded as indexMsgTimestamp.
    let cp = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let index_ts = i64::from_be_bytes(cp[16..24].try_into().unwrap());
    assert!(
        index_ts >= all[0].store_timestamp() && index_ts <= all[n - 1].store_timestamp(),
        "indexMsgTimestamp {index_ts}"
    );

    // The scan of the same store (index off) answers the same, for a few keys.
    let scan = open(IndexConfig::DISABLED);
    for (i, k) in keys.iter().enumerate().step_by(40) {
        for (j, &(b, e)) in ranges.iter().enumerate() {
            let want = offsets(&scan.query_by_key("orders", k, b, e, 64).unwrap());
            assert_eq!(by_index[i * 4 + j], want, "key {k} range {b}..{e}");
        }
    }
    scan.close().unwrap();
}

/// Under `Sync` a record is indexed once it is durable, and found at once after its put.
#[test]
fn sync_puts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small_sync(dir.path())
        .index(tiny_index(8, 40))
        .open()
        .unwrap();
    fill(&store, 60, 7);
    for i in 0..60 {
        let found = store
            .query_by_key("orders", &format!("U{i}"), 0, u64::MAX, 4)
            .unwrap();
        assert_eq!(found.len(), 1, "U{i}");
        assert_eq!(found[0].body(), format!("m{i}").as_bytes());
    }
    assert_eq!(
        store
            .query_by_key("orders", "K3", 0, u64::MAX, 64)
            .unwrap()
            .len(),
        9
    );
    store.close().unwrap();
    assert!(index_files(dir.path()).len() >= 4);
}

#[test]
fn disabled_index_writes_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .index(IndexConfig::DISABLED)
        .open()
        .unwrap();
    fill(&store, 10, 3);
    assert_eq!(
        store
            .query_by_key("orders", "K1", 0, u64::MAX, 64)
            .unwrap()
            .len(),
        3
    );
    store.close().unwrap();
    assert!(index_files(dir.path()).is_empty());
}

fn sim_builder(dir: &Path, sim: &SimStorage) -> StoreBuilder {
    Store::builder(dir)
        .simulated(sim)
        .commitlog_segment_size(256 * 1024)
        .consume_queue_segment_size(20 * 256)
        .index(tiny_index(64, 500))
}

/// A power cut loses the index pages written since the last full file was flushed: the
/// files not known durable are dropped and rebuilt from the commitlog, and every surviving
/// message is found again.
#[test]
fn rebuilt_after_power_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimStorage::new(tmp.path()).unwrap();
    let store = sim_builder(&dir, &sim).open().unwrap();
    store.create_topic("orders", 2).unwrap();
    fill(&store, 700, 50);
    store.flush().unwrap();
    fill(&store, 300, 50); // not flushed: may be lost
    sim.power_cut();
    drop(store);
    sim.restart(Keep::Nothing).unwrap();
    let store = sim_builder(&dir, &sim).open().unwrap();
    let all = store.messages_between("orders", 0, u64::MAX, 2000).unwrap();
    assert!(all.len() >= 700, "{} survived", all.len());
    for m in &all {
        let found = store
            .view_message_by_id("orders", m.msg_id().as_str())
            .unwrap();
        assert_eq!(found.physical_offset(), m.physical_offset());
    }
    let k7 = store.query_by_key("orders", "K7", 0, u64::MAX, 64).unwrap();
    let want: Vec<u64> = all
        .iter()
        .rev()
        .filter(|m| m.keys().any(|k| k == "K7"))
        .map(MessageExt::physical_offset)
        .collect();
    assert_eq!(offsets(&k7), want);
    // Appends go on into the rebuilt index.
    store
        .producer("p")
        .unwrap()
        .send(Message::new("orders", "after").with_keys(["AFTER"]))
        .unwrap();
    assert_eq!(
        store
            .query_by_key("orders", "AFTER", 0, u64::MAX, 8)
            .unwrap()
            .len(),
        1
    );
    store.close().unwrap();
}

/// A file the size RocketMQ's defaults give (420,000,040 bytes, sparse here), written by hand
/// as a broker would, is read as it is.
#[test]
fn reads_a_rocketmq_sized_index_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .index(IndexConfig::DISABLED)
        .open()
        .unwrap();
    let p = store.producer("p").unwrap();
    let sent: Vec<_> = (0..3)
        .map(|i| {
            p.send(Message::new("rmq", format!("b{i}")).with_keys(["RK"]))
                .unwrap()
        })
        .collect();
    let msgs: Vec<MessageExt> = sent
        .iter()
        .map(|s| store.view_message(&s.offset_msg_id).unwrap())
        .collect();
    store.close().unwrap();

    let slots = fmt::ROCKETMQ_MAX_HASH_SLOTS;
    let path = dir.path().join("index").join("20250101000000000");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(fmt::file_size(slots, fmt::ROCKETMQ_MAX_INDEX_ENTRIES))
        .unwrap();
    use std::os::unix::fs::FileExt;
    let hash = fmt::key_hash("rmq", "RK");
    let slot = fmt::slot_of(hash, slots);
    let begin = msgs[0].store_timestamp();
    for (i, m) in msgs.iter().enumerate() {
        let n = i as u32 + 1;
        let e = IndexEntry {
            key_hash: hash,
            phy_offset: m.physical_offset() as i64,
            time_diff: fmt::time_diff(m.store_timestamp(), begin),
            prev_index: i as i32,
        };
        f.write_all_at(&e.encode(), fmt::entry_pos(slots, n))
            .unwrap();
    }
    f.write_all_at(&3u32.to_be_bytes(), fmt::slot_pos(slot))
        .unwrap();
    let h = IndexHeader {
        begin_timestamp: begin,
        end_timestamp: msgs[2].store_timestamp(),
        begin_phy_offset: msgs[0].physical_offset() as i64,
        end_phy_offset: msgs[2].physical_offset() as i64,
        hash_slot_count: 1,
        index_count: 4,
    };
    f.write_all_at(&h.encode(), 0).unwrap();
    drop(f);

    let store = common::small(dir.path()).open().unwrap();
    let found = store.query_by_key("rmq", "RK", 0, u64::MAX, 64).unwrap();
    assert_eq!(
        offsets(&found),
        msgs.iter()
            .rev()
            .map(|m| m.physical_offset())
            .collect::<Vec<_>>()
    );
    store.close().unwrap();
}
