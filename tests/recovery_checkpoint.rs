//! Damaged, missing or lying checkpoint (RELIABILITY.md Part C, case 11). After a store is
//! written and closed, the `checkpoint` file is deleted, truncated to 3 bytes, filled with
//! random bytes, or rewritten with its confirm offset (offset 32) ahead of the log end, past
//! the end of the last segment, far past anything, or behind; or with timestamps in the future.
//! Reopening, with and without an `abort` marker, must give exactly the same content (falling
//! back to a scan), never panic, and appends must continue; another reopen keeps all of it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{Rng, copy_dir, read_queue, seed};
use mqlite::format::checkpoint::{CHECKPOINT_FILE_SIZE, Checkpoint};
use mqlite::{Message, MessageExt, MessageQueue, Store, StoreBuilder};

const TOPICS: &[(&str, u32)] = &[("CpA", 3), ("CpB", 2)];

fn builder(dir: &Path, seg: u64) -> StoreBuilder {
    Store::builder(dir)
        .commitlog_segment_size(seg)
        .consume_queue_segment_size(2000)
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
        .iter()
        .map(|mq| ((mq.topic.clone(), mq.queue_id), read_queue(store, mq)))
        .collect()
}

struct Reference {
    dir: PathBuf,
    seg: u64,
    content: Content,
    log_end: u64,
    checkpoint: Checkpoint,
    _tmp: tempfile::TempDir,
}

fn build(seg: u64, n: usize) -> Reference {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reference");
    let mut rng = Rng::new(seed(0xC4EC_0001));
    let store = builder(&dir, seg).open().unwrap();
    for &(t, q) in TOPICS {
        store.create_topic(t, q).unwrap();
    }
    for i in 0..n {
        let (topic, queues) = TOPICS[rng.range(0, 2) as usize];
        let len = rng.range(20, 800) as usize;
        let msg = Message::new(topic, rng.bytes(len))
            .with_tags(format!("t{}", i % 4))
            .with_keys([format!("k{i}")]);
        store
            .put(&msg, rng.range(0, u64::from(queues)) as u32)
            .unwrap();
    }
    let content = read_all(&store);
    let log_end = store.commitlog_max_offset();
    store.close().unwrap();
    let bytes = std::fs::read(dir.join("checkpoint")).unwrap();
    let checkpoint = Checkpoint::decode(&bytes).unwrap();
    assert_eq!(
        checkpoint.confirm_phy_offset, log_end,
        "a clean close records the log end"
    );
    Reference {
        dir,
        seg,
        content,
        log_end,
        checkpoint,
        _tmp: tmp,
    }
}

/// 64 KiB segments, several of them.
fn small_ref() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| build(64 * 1024, 600))
}

/// One 1 MiB segment, partly used: there is room for a confirm offset far ahead of the end.
fn large_ref() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| build(1024 * 1024, 300))
}

fn write_checkpoint(dir: &Path, cp: &Checkpoint) {
    std::fs::write(dir.join("checkpoint"), cp.encode()).unwrap();
}

fn with_confirm(r: &Reference, confirm: u64) -> Checkpoint {
    Checkpoint {
        confirm_phy_offset: confirm,
        master_flushed_offset: confirm,
        ..r.checkpoint
    }
}

fn scenario(r: &Reference, name: &str, abort: bool, damage: impl FnOnce(&Path, &mut Rng)) {
    let ctx = format!("{name}, abort marker {abort}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_dir(&r.dir, &dir);
    let mut rng = Rng::new(seed(0xC4EC_0002));
    damage(&dir, &mut rng);
    if abort {
        std::fs::write(dir.join("abort"), b"1").unwrap();
    }
    let store = builder(&dir, r.seg)
        .open()
        .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    assert_eq!(store.commitlog_max_offset(), r.log_end, "{ctx}: log end");
    assert!(read_all(&store) == r.content, "{ctx}: content differs");
    let mut added = Vec::new();
    for mq in queues() {
        let put = store
            .put(
                &Message::new(mq.topic.as_str(), b"after".to_vec()),
                mq.queue_id,
            )
            .unwrap();
        let len = r.content[&(mq.topic.clone(), mq.queue_id)].len() as u64;
        assert_eq!(put.queue_offset, len, "{ctx}: {mq:?} next queue offset");
        added.push(put);
    }
    assert_eq!(
        added[0].physical_offset, r.log_end,
        "{ctx}: first append at the log end"
    );
    let end = store.commitlog_max_offset();
    store.close().unwrap();
    let cp = Checkpoint::decode(&std::fs::read(dir.join("checkpoint")).unwrap()).unwrap();
    assert_eq!(
        cp.confirm_phy_offset, end,
        "{ctx}: close rewrites the checkpoint"
    );

    let store = builder(&dir, r.seg).open().unwrap();
    assert_eq!(
        store.commitlog_max_offset(),
        end,
        "{ctx}: end after the second reopen"
    );
    for (mq, put) in queues().iter().zip(&added) {
        let got = read_queue(&store, mq);
        let want = &r.content[&(mq.topic.clone(), mq.queue_id)];
        assert_eq!(got.len(), want.len() + 1, "{ctx}: {mq:?}");
        assert!(got[..want.len()] == want[..], "{ctx}: {mq:?}");
        assert_eq!(got[want.len()].physical_offset(), put.physical_offset);
    }
    store.close().unwrap();
}

macro_rules! both {
    ($r:expr, $name:ident, $abort:ident, $clean:ident, $damage:expr) => {
        #[test]
        fn $abort() {
            scenario($r, stringify!($name), true, $damage);
        }
        #[test]
        fn $clean() {
            scenario($r, stringify!($name), false, $damage);
        }
    };
}

both!(
    small_ref(),
    deleted,
    deleted_with_abort,
    deleted_clean,
    |dir, _| { std::fs::remove_file(dir.join("checkpoint")).unwrap() }
);

both!(
    small_ref(),
    three_bytes,
    three_bytes_with_abort,
    three_bytes_clean,
    |dir, _| {
        let bytes = std::fs::read(dir.join("checkpoint")).unwrap();
        std::fs::write(dir.join("checkpoint"), &bytes[..3]).unwrap()
    }
);

both!(
    small_ref(),
    empty_file,
    empty_file_with_abort,
    empty_file_clean,
    |dir, _| { std::fs::write(dir.join("checkpoint"), b"").unwrap() }
);

both!(
    small_ref(),
    random_bytes,
    random_bytes_with_abort,
    random_bytes_clean,
    |dir, rng: &mut Rng| {
        std::fs::write(dir.join("checkpoint"), rng.bytes(CHECKPOINT_FILE_SIZE)).unwrap()
    }
);

both!(
    small_ref(),
    random_positive_fields,
    random_positive_fields_with_abort,
    random_positive_fields_clean,
    |dir, rng: &mut Rng| {
        // Decodable (non-negative) but meaningless values.
        let mut bytes = rng.bytes(CHECKPOINT_FILE_SIZE);
        for f in 0..5 {
            bytes[f * 8] &= 0x7f;
        }
        std::fs::write(dir.join("checkpoint"), bytes).unwrap()
    }
);

both!(
    small_ref(),
    confirm_ahead,
    confirm_ahead_with_abort,
    confirm_ahead_clean,
    |dir, _| {
        let r = small_ref();
        write_checkpoint(dir, &with_confirm(r, r.log_end + 100))
    }
);

both!(
    small_ref(),
    confirm_at_segment_end,
    confirm_at_segment_end_with_abort,
    confirm_at_segment_end_clean,
    |dir, _| {
        let r = small_ref();
        write_checkpoint(dir, &with_confirm(r, r.log_end / r.seg * r.seg + r.seg))
    }
);

both!(
    small_ref(),
    confirm_past_last_segment,
    confirm_past_last_segment_with_abort,
    confirm_past_last_segment_clean,
    |dir, _| {
        let r = small_ref();
        write_checkpoint(
            dir,
            &with_confirm(r, r.log_end / r.seg * r.seg + 3 * r.seg + 17),
        )
    }
);

both!(
    small_ref(),
    confirm_huge,
    confirm_huge_with_abort,
    confirm_huge_clean,
    |dir, _| { write_checkpoint(dir, &with_confirm(small_ref(), i64::MAX as u64)) }
);

both!(
    small_ref(),
    confirm_zero,
    confirm_zero_with_abort,
    confirm_zero_clean,
    |dir, _| { write_checkpoint(dir, &with_confirm(small_ref(), 0)) }
);

both!(
    small_ref(),
    confirm_mid_record,
    confirm_mid_record_with_abort,
    confirm_mid_record_clean,
    |dir, _| {
        let r = small_ref();
        write_checkpoint(dir, &with_confirm(r, r.log_end - 13))
    }
);

both!(
    small_ref(),
    future_timestamps,
    future_timestamps_with_abort,
    future_timestamps_clean,
    |dir, _| {
        let r = small_ref();
        let year = 365 * 86_400_000;
        write_checkpoint(
            dir,
            &Checkpoint {
                physic_msg_timestamp: r.checkpoint.physic_msg_timestamp + year,
                logics_msg_timestamp: r.checkpoint.logics_msg_timestamp + year,
                ..r.checkpoint
            },
        )
    }
);

both!(
    small_ref(),
    zero_timestamps,
    zero_timestamps_with_abort,
    zero_timestamps_clean,
    |dir, _| {
        let r = small_ref();
        write_checkpoint(
            dir,
            &Checkpoint {
                physic_msg_timestamp: 0,
                logics_msg_timestamp: 0,
                ..r.checkpoint
            },
        )
    }
);

both!(
    large_ref(),
    confirm_far_ahead_in_large_segment,
    confirm_far_ahead_in_large_segment_with_abort,
    confirm_far_ahead_in_large_segment_clean,
    |dir, _| {
        // Still inside the (only) segment, but 512 KiB past the last record.
        let r = large_ref();
        assert!(r.log_end + 600 * 1024 < r.seg);
        write_checkpoint(dir, &with_confirm(r, r.log_end + 512 * 1024))
    }
);
