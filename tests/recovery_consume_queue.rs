//! Damaged or missing ConsumeQueues (RELIABILITY.md Part C, case 10). After a store is written
//! and closed, its consume queues are damaged: one queue's files deleted, a queue directory
//! deleted, the whole `consumequeue/` deleted, a file truncated, a file filled with random
//! bytes, garbage after the last unit, the last units pointed past the CommitLog end, the last
//! units zeroed. Reopening, with and without an `abort` marker, must rebuild or trim every
//! queue from the CommitLog so that each queue's units (queue offset -> physical offset, size,
//! tag code), min/max offsets and messages match the undamaged reference, and appends continue
//! at the right queue offsets.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{Rng, copy_dir, read_queue, seed, small};
use mqlite::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use mqlite::format::hash::tag_code;
use mqlite::{Message, MessageExt, MessageQueue};

const TOPICS: &[(&str, u32)] = &[("CqA", 2), ("CqB", 3)];
const CQ_FILE: u64 = 2000;

fn queues() -> Vec<MessageQueue> {
    TOPICS
        .iter()
        .flat_map(|&(t, n)| (0..n).map(move |q| MessageQueue::new(t, q)))
        .collect()
}

type Key = (String, u32);

fn key(mq: &MessageQueue) -> Key {
    (mq.topic.clone(), mq.queue_id)
}

/// The undamaged store: a closed directory plus what it holds.
struct Reference {
    dir: PathBuf,
    units: BTreeMap<Key, Vec<CqUnit>>,
    messages: BTreeMap<Key, Vec<MessageExt>>,
    /// The queue holding the last record of the log.
    last_queue: Key,
    log_end: u64,
    _tmp: tempfile::TempDir,
}

fn queue_dir(dir: &Path, k: &Key) -> PathBuf {
    dir.join("consumequeue").join(&k.0).join(k.1.to_string())
}

fn cq_files(dir: &Path, k: &Key) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(queue_dir(dir, k))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The units of a queue as stored on disk, from offset 0 to the first empty slot.
fn disk_units(dir: &Path, k: &Key) -> Vec<CqUnit> {
    let mut out = Vec::new();
    for (i, f) in cq_files(dir, k).iter().enumerate() {
        let name: u64 = f.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(
            name,
            i as u64 * CQ_FILE,
            "{k:?}: consume queue files are contiguous"
        );
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(
            bytes.len() as u64,
            CQ_FILE,
            "{k:?}: file size of {}",
            f.display()
        );
        for chunk in bytes.chunks_exact(CQ_UNIT_SIZE) {
            match CqUnit::decode(chunk).unwrap() {
                Some(u) => out.push(u),
                None => return out,
            }
        }
    }
    out
}

fn build_reference(sleep_between_batches: bool) -> Reference {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reference");
    let mut rng = Rng::new(seed(0xC0DE_0001));
    let store = small(&dir).open().unwrap();
    for &(t, q) in TOPICS {
        store.create_topic(t, q).unwrap();
    }
    // CqA queues get ~3 files each, CqB queues ~1.5; the last record goes to CqB/2.
    let mut last = None;
    for batch in 0..2 {
        if batch == 1 && sleep_between_batches {
            std::thread::sleep(std::time::Duration::from_millis(3300));
        }
        for i in 0..450 {
            let (topic, q) = if rng.range(0, 10) < 6 {
                ("CqA", rng.range(0, 2) as u32)
            } else {
                ("CqB", rng.range(0, 3) as u32)
            };
            let len = rng.range(20, 200) as usize;
            let mut msg = Message::new(topic, rng.bytes(len)).with_keys([format!("b{batch}i{i}")]);
            if rng.range(0, 3) > 0 {
                msg = msg.with_tags(format!("tag{}", rng.range(0, 5)));
            }
            store.put(&msg, q).unwrap();
        }
    }
    let p = store
        .put(&Message::new("CqB", b"last".to_vec()).with_tags("end"), 2)
        .unwrap();
    last.get_or_insert(p);
    let log_end = store.commitlog_max_offset();
    let messages: BTreeMap<Key, Vec<MessageExt>> = queues()
        .iter()
        .map(|mq| (key(mq), read_queue(&store, mq)))
        .collect();
    store.close().unwrap();
    let units: BTreeMap<Key, Vec<CqUnit>> = queues()
        .iter()
        .map(|mq| (key(mq), disk_units(&dir, &key(mq))))
        .collect();
    for (k, us) in &units {
        let msgs = &messages[k];
        assert_eq!(us.len(), msgs.len(), "{k:?}");
        for (u, m) in us.iter().zip(msgs) {
            assert_eq!(u.physical_offset, m.physical_offset());
            assert_eq!(u.size, m.store_size());
            assert_eq!(u.tag_code, tag_code(m.tags()));
        }
    }
    assert!(
        units[&("CqA".to_owned(), 0)].len() > 2 * 100,
        "CqA/0 spans three files"
    );
    Reference {
        dir,
        units,
        messages,
        last_queue: ("CqB".to_owned(), 2),
        log_end,
        _tmp: tmp,
    }
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| build_reference(false))
}

/// Copies the reference, damages it, reopens (with or without an abort marker) and checks the
/// queues against the reference, appends one message per queue, reopens and checks again.
fn scenario(r: &Reference, name: &str, abort: bool, damage: impl FnOnce(&Path, &mut Rng)) {
    let ctx = format!("{name}, abort marker {abort}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_dir(&r.dir, &dir);
    let mut rng = Rng::new(seed(0xC0DE_0002));
    damage(&dir, &mut rng);
    if abort {
        std::fs::write(dir.join("abort"), b"1").unwrap();
    }
    let store = small(&dir)
        .open()
        .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    assert_eq!(store.commitlog_max_offset(), r.log_end, "{ctx}: log end");
    for mq in queues() {
        let want = &r.messages[&key(&mq)];
        assert_eq!(
            store.min_offset(&mq).unwrap(),
            0,
            "{ctx}: {mq:?} min offset"
        );
        assert_eq!(
            store.max_offset(&mq).unwrap(),
            want.len() as u64,
            "{ctx}: {mq:?} max offset"
        );
        let got = read_queue(&store, &mq);
        assert!(
            got == *want,
            "{ctx}: {mq:?} messages differ from the reference"
        );
    }
    let mut added = BTreeMap::new();
    for mq in queues() {
        let msg = Message::new(mq.topic.as_str(), b"appended".to_vec()).with_tags("new");
        let put = store.put(&msg, mq.queue_id).unwrap();
        assert_eq!(
            put.queue_offset,
            r.messages[&key(&mq)].len() as u64,
            "{ctx}: {mq:?} queue offset of an append"
        );
        added.insert(key(&mq), put);
    }
    store.close().unwrap();
    for mq in queues() {
        let k = key(&mq);
        let units = disk_units(&dir, &k);
        let want = &r.units[&k];
        assert_eq!(units.len(), want.len() + 1, "{ctx}: {k:?} units on disk");
        assert!(
            units[..want.len()] == want[..],
            "{ctx}: {k:?} units differ from the reference"
        );
        let put = &added[&k];
        assert_eq!(
            units[want.len()],
            CqUnit {
                physical_offset: put.physical_offset,
                size: put.size,
                tag_code: tag_code(Some("new")),
            },
            "{ctx}: {k:?} appended unit"
        );
    }
    let store = small(&dir).open().unwrap();
    for mq in queues() {
        let got = read_queue(&store, &mq);
        let want = &r.messages[&key(&mq)];
        assert_eq!(
            got.len(),
            want.len() + 1,
            "{ctx}: {mq:?} after the second reopen"
        );
        assert!(
            got[..want.len()] == want[..],
            "{ctx}: {mq:?} after the second reopen"
        );
        assert_eq!(got[want.len()].body(), b"appended");
    }
    store.close().unwrap();
}

/// A queue that does not hold the last record of the log.
fn inner() -> Key {
    ("CqA".to_owned(), 1)
}

fn delete_files(dir: &Path, k: &Key) {
    for f in cq_files(dir, k) {
        std::fs::remove_file(f).unwrap();
    }
}

fn overwrite_last_units_past_end(dir: &Path, k: &Key, log_end: u64, n: usize) {
    let files = cq_files(dir, k);
    let count = reference().units[k].len();
    for i in count - n..count {
        let unit = CqUnit {
            physical_offset: log_end + 1000 * i as u64,
            size: 200,
            tag_code: 7,
        };
        let f = &files[i * CQ_UNIT_SIZE / CQ_FILE as usize];
        let pos = (i * CQ_UNIT_SIZE) % CQ_FILE as usize;
        let mut bytes = std::fs::read(f).unwrap();
        bytes[pos..pos + CQ_UNIT_SIZE].copy_from_slice(&unit.encode());
        std::fs::write(f, bytes).unwrap();
    }
}

fn edit_file(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// Generates a test with and one without the abort marker.
macro_rules! both {
    ($name:ident, $abort:ident, $clean:ident, $damage:expr) => {
        #[test]
        fn $abort() {
            scenario(reference(), stringify!($name), true, $damage);
        }
        #[test]
        fn $clean() {
            scenario(reference(), stringify!($name), false, $damage);
        }
    };
}

both!(
    delete_files_of_inner_queue,
    delete_files_of_inner_queue_with_abort,
    delete_files_of_inner_queue_clean,
    |dir, _| delete_files(dir, &inner())
);

both!(
    delete_files_of_last_queue,
    delete_files_of_last_queue_with_abort,
    delete_files_of_last_queue_clean,
    |dir, _| delete_files(dir, &reference().last_queue)
);

both!(
    delete_queue_dir,
    delete_queue_dir_with_abort,
    delete_queue_dir_clean,
    |dir, _| std::fs::remove_dir_all(queue_dir(dir, &inner())).unwrap()
);

both!(
    delete_consumequeue_dir,
    delete_consumequeue_dir_with_abort,
    delete_consumequeue_dir_clean,
    |dir, _| std::fs::remove_dir_all(dir.join("consumequeue")).unwrap()
);

both!(
    truncate_files,
    truncate_files_with_abort,
    truncate_files_clean,
    |dir, _| {
        // The middle file of one queue to 50 units, the last file of another to 7 bytes, the
        // only file of a third to nothing.
        let a = cq_files(dir, &inner());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&a[1])
            .unwrap()
            .set_len(1000)
            .unwrap();
        let b = cq_files(dir, &("CqA".to_owned(), 0));
        let last = b.last().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(7)
            .unwrap();
        let c = cq_files(dir, &("CqB".to_owned(), 0));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&c[0])
            .unwrap()
            .set_len(0)
            .unwrap();
    }
);

both!(
    random_file_contents,
    random_file_contents_with_abort,
    random_file_contents_clean,
    |dir, rng: &mut Rng| {
        let a = cq_files(dir, &inner());
        std::fs::write(&a[0], rng.bytes(CQ_FILE as usize)).unwrap();
        let b = cq_files(dir, &("CqB".to_owned(), 1));
        std::fs::write(b.last().unwrap(), rng.bytes(CQ_FILE as usize)).unwrap();
    }
);

both!(
    garbage_after_last_unit,
    garbage_after_last_unit_with_abort,
    garbage_after_last_unit_clean,
    |dir, rng: &mut Rng| {
        for k in [inner(), reference().last_queue.clone()] {
            let n = reference().units[&k].len();
            let files = cq_files(dir, &k);
            let pos = (n * CQ_UNIT_SIZE) % CQ_FILE as usize;
            edit_file(&files[n * CQ_UNIT_SIZE / CQ_FILE as usize], |b| {
                let end = b.len().min(pos + 5 * CQ_UNIT_SIZE);
                rng.fill(&mut b[pos..end]);
            });
        }
    }
);

both!(
    last_units_past_log_end_inner,
    last_units_past_log_end_inner_with_abort,
    last_units_past_log_end_inner_clean,
    |dir, _| overwrite_last_units_past_end(dir, &inner(), reference().log_end, 3)
);

both!(
    last_units_past_log_end_last,
    last_units_past_log_end_last_with_abort,
    last_units_past_log_end_last_clean,
    |dir, _| overwrite_last_units_past_end(dir, &reference().last_queue, reference().log_end, 3)
);

both!(
    last_units_zeroed_inner,
    last_units_zeroed_inner_with_abort,
    last_units_zeroed_inner_clean,
    |dir, _| {
        // The last 30 units of a queue lost (a consume queue flush that never happened).
        let k = inner();
        let n = reference().units[&k].len();
        let files = cq_files(dir, &k);
        for i in n - 30..n {
            let pos = (i * CQ_UNIT_SIZE) % CQ_FILE as usize;
            edit_file(&files[i * CQ_UNIT_SIZE / CQ_FILE as usize], |b| {
                b[pos..pos + CQ_UNIT_SIZE].fill(0)
            });
        }
    }
);

/// The recovery scan after an unclean exit starts at the segment the checkpoint's timestamps
/// point to (RocketMQ's rule), which is not the first one when the log was written over more
/// than 3 seconds. A queue whose files were lost still has to be rebuilt from the whole log.
#[test]
fn lost_queue_files_rebuilt_when_the_scan_starts_late() {
    let r = build_reference(true);
    scenario(
        &r,
        "delete_files_of_inner_queue, log written over 3.3 s",
        true,
        |dir, _| delete_files(dir, &inner()),
    );
}
