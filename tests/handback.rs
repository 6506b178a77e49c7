//! A store handed back by a RocketMQ broker: what the broker leaves behind must read as a
//! good, cleanly closed store.
//! - The broker's retry and schedule copies keep the original's `__CRC32#` property, stale
//!   once their header changed (RocketMQ neither strips nor checks it by default): such a
//!   record, with a good body CRC, is a good record.
//! - The broker may leave the checkpoint's `confirmPhyOffset` behind the end its consume
//!   queues reach; without the `abort` marker the store was closed cleanly.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use mqlite::format::checkpoint::Checkpoint;
use mqlite::{Message, MessageQueue, Store};

const SEG: u64 = 1 << 20;
/// Offset of RECONSUMETIMES in a record with IPv4 hosts.
const RECONSUME_POS: u64 = 72;

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .commitlog_segment_size(SEG)
        .record_crc(true)
        .open()
        .unwrap()
}

/// Twenty messages in `t` queue 0; returns their commitlog offsets.
fn twenty(dir: &Path) -> Vec<u64> {
    let store = open(dir);
    let offsets = (0..20)
        .map(|i| {
            store
                .put(&Message::new("t", format!("m{i}")), 0)
                .unwrap()
                .physical_offset
        })
        .collect();
    store.close().unwrap();
    offsets
}

fn bodies(store: &Store) -> Vec<String> {
    store
        .get_messages(&MessageQueue::new("t", 0), 0, 100)
        .unwrap()
        .messages
        .iter()
        .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
        .collect()
}

#[test]
fn a_stale_whole_record_crc_with_a_good_body_crc_is_a_good_record() {
    for unclean in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let offsets = twenty(dir);
        // The broker's copy of a message: a changed header, the original's `__CRC32#`.
        let path = dir.join("commitlog").join(format!("{:020}", 0));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        for &at in &offsets[15..] {
            f.write_all_at(&3i32.to_be_bytes(), at + RECONSUME_POS)
                .unwrap();
        }
        drop(f);
        if unclean {
            std::fs::write(dir.join("abort"), b"1").unwrap();
        }
        let store = open(dir);
        let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(bodies(&store), want, "unclean: {unclean}");
        assert_eq!(
            store.message_at(offsets[19]).unwrap().reconsume_times(),
            3,
            "unclean: {unclean}"
        );
        store.close().unwrap();
    }
}

#[test]
fn a_damaged_body_is_still_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let offsets = twenty(dir);
    let path = dir.join("commitlog").join(format!("{:020}", 0));
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    // The last record's body ("m19") starts after its 4-byte length, 88 bytes in.
    f.write_all_at(b"X", offsets[19] + 88).unwrap();
    drop(f);
    std::fs::write(dir.join("abort"), b"1").unwrap();
    // A crash image: the last record is a torn tail and is cut.
    let store = open(dir);
    assert_eq!(bodies(&store).len(), 19);
    assert_eq!(store.commitlog_max_offset(), offsets[19]);
    store.close().unwrap();
}

#[test]
fn a_checkpoint_behind_the_queues_after_a_clean_close_is_a_clean_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let offsets = twenty(dir);
    let cp_path = dir.join("checkpoint");
    let cp = Checkpoint::decode(&std::fs::read(&cp_path).unwrap()).unwrap();
    // As a broker leaves it: at the end the store had when the broker took it over.
    let behind = Checkpoint {
        confirm_phy_offset: offsets[10],
        master_flushed_offset: offsets[10],
        ..cp
    };
    std::fs::write(&cp_path, behind.encode()).unwrap();
    // A committed offset past the queue's end survives only a clean open (crash recovery
    // lowers it, as unflushed messages may have been lost).
    std::fs::write(
        dir.join("config").join("consumerOffset.json"),
        r#"{"offsetTable":{"t@g":{"0":500}}}"#,
    )
    .unwrap();
    let store = open(dir);
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies(&store), want);
    let c = store.pull_consumer("g").unwrap();
    assert_eq!(
        c.committed_offset(&MessageQueue::new("t", 0)).unwrap(),
        Some(500),
        "the open went down the crash-recovery path"
    );
    store.close().unwrap();
}
