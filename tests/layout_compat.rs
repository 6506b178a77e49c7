//! On-disk layout compatibility: a store directory written by mqlite is checked, with a minimal
//! std-only parser written here (not mqlite's decoders), against what RocketMQ and other
//! RocketMQ implementations need to open it (shared reference §1, §3, §5, §6 and §17).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Rng;
use mqlite::{Message, PutResult, Store};

const MAGIC_V1: u32 = 0xDAA3_20A7;
const MAGIC_V2: u32 = 0xDAA3_20AB;
const BLANK_MAGIC: u32 = 0xCBD4_3194;

// ---------------------------------------------------------------------------------------------
// A minimal independent reader of the format
// ---------------------------------------------------------------------------------------------

/// Bitwise IEEE CRC32 (`java.util.zip.CRC32`).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Java `String.hashCode()`.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Java's `string2messageProperties`.
fn parse_props(raw: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for seg in raw.split(|&b| b == 2) {
        if seg.len() < 3 {
            continue;
        }
        if let Some(sep) = seg.iter().position(|&b| b == 1)
            && sep > 0
            && sep < seg.len() - 1
        {
            out.insert(
                String::from_utf8(seg[..sep].to_vec()).expect("utf-8 name"),
                String::from_utf8(seg[sep + 1..].to_vec()).expect("utf-8 value"),
            );
        }
    }
    out
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.pos + n <= self.buf.len(),
            "field at {} overruns the record",
            self.pos
        );
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        out
    }
    fn i16(&mut self) -> i16 {
        let b = self.take(2);
        i16::from_be_bytes([b[0], b[1]])
    }
    fn i32(&mut self) -> i32 {
        let b = self.take(4);
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    fn i64(&mut self) -> i64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8));
        i64::from_be_bytes(a)
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A record as found on disk.
#[derive(Debug, Clone)]
struct DiskRecord {
    phys: u64,
    total: u32,
    queue_id: i32,
    flag: i32,
    queue_offset: i64,
    sys_flag: i32,
    store_ts: i64,
    store_host: Vec<u8>,
    body: Vec<u8>,
    topic: String,
    props: HashMap<String, String>,
}

/// Parses one whole record (`rec.len()` == TOTALSIZE) with the §1.1 layout.
fn parse_record(rec: &[u8], phys: u64) -> DiskRecord {
    let mut c = Cursor { buf: rec, pos: 0 };
    let total = c.i32();
    assert_eq!(total as usize, rec.len());
    let magic = c.i32() as u32;
    assert!(
        magic == MAGIC_V1 || magic == MAGIC_V2,
        "magic {magic:#x} at {phys}"
    );
    let body_crc = c.i32();
    let queue_id = c.i32();
    let flag = c.i32();
    let queue_offset = c.i64();
    let physical_offset = c.i64();
    let sys_flag = c.i32();
    let _born_ts = c.i64();
    let born_host_len = if sys_flag & 0x10 != 0 { 20 } else { 8 };
    c.take(born_host_len);
    let store_ts = c.i64();
    let store_host_len = if sys_flag & 0x20 != 0 { 20 } else { 8 };
    let store_host = c.take(store_host_len).to_vec();
    let _reconsume = c.i32();
    let _prepared = c.i64();
    let body_len = c.i32();
    assert!(body_len >= 0);
    let body = c.take(body_len as usize).to_vec();
    let topic_len = if magic == MAGIC_V1 {
        let l = c.take(1)[0];
        assert!(l < 0x80, "v1 topic length is a signed byte");
        usize::from(l)
    } else {
        c.i16() as usize
    };
    let topic = String::from_utf8(c.take(topic_len).to_vec()).expect("utf-8 topic");
    if magic == MAGIC_V1 {
        assert!(topic.len() <= 127);
    } else {
        assert!(topic.len() > 127, "v2 only for long topics");
    }
    let props_len = c.i16();
    assert!(props_len >= 0);
    let props = parse_props(c.take(props_len as usize));
    assert_eq!(c.pos, rec.len(), "fields add up to TOTALSIZE at {phys}");
    // The size formula of §1.1.
    let tl = if magic == MAGIC_V1 { 1 } else { 2 };
    let computed = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + born_host_len
        + 8
        + store_host_len
        + 4
        + 8
        + 4
        + body.len()
        + tl
        + topic.len()
        + 2
        + props_len as usize;
    assert_eq!(computed, rec.len());
    assert_eq!(
        physical_offset as u64, phys,
        "PHYSICALOFFSET equals the record's position"
    );
    assert_eq!(
        body_crc as u32,
        crc32(&body) & 0x7FFF_FFFF,
        "masked body CRC at {phys}"
    );
    DiskRecord {
        phys,
        total: total as u32,
        queue_id,
        flag,
        queue_offset,
        sys_flag,
        store_ts,
        store_host,
        body,
        topic,
        props,
    }
}

fn read_exact_at(f: &File, pos: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, pos).expect("read");
    buf
}

fn is_offset_name(name: &str) -> bool {
    name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .expect("utf-8 file name")
        })
        .collect();
    names.sort();
    names
}

/// Lists a directory of offset-named files: checks the names, the sizes and that they are
/// contiguous from `first`; returns (start offset, path).
fn offset_files(dir: &Path, file_size: u64) -> Vec<(u64, PathBuf)> {
    let mut files = Vec::new();
    for name in file_names(dir) {
        assert!(
            is_offset_name(&name),
            "unexpected entry {name:?} in {}",
            dir.display()
        );
        let path = dir.join(&name);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.is_file(), "{name} is not a regular file");
        assert_eq!(
            meta.len(),
            file_size,
            "{} is not the configured size",
            path.display()
        );
        files.push((name.parse::<u64>().unwrap(), path));
    }
    for w in files.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0 + file_size,
            "gap between {} and {}",
            w[0].0,
            w[1].0
        );
    }
    for (start, _) in &files {
        assert_eq!(
            start % file_size,
            0,
            "file name {start} not a multiple of the size"
        );
    }
    files
}

/// Asserts `len` bytes from `pos` are zero, reading in chunks.
fn assert_zero(f: &File, pos: u64, len: u64, what: &str) {
    let mut at = pos;
    while at < pos + len {
        let n = (pos + len - at).min(1 << 20) as usize;
        let chunk = read_exact_at(f, at, n);
        if let Some(i) = chunk.iter().position(|&b| b != 0) {
            panic!("{what}: non-zero byte at {}", at + i as u64);
        }
        at += n as u64;
    }
}

/// Walks the whole commitlog by TOTALSIZE; returns the records and the end of the log.
fn walk_commitlog(root: &Path, seg_size: u64) -> (Vec<DiskRecord>, u64) {
    let segments = offset_files(&root.join("commitlog"), seg_size);
    assert!(!segments.is_empty(), "no commitlog segment");
    assert_eq!(
        segments[0].0, 0,
        "nothing was deleted, so the log starts at 0"
    );
    let mut records = Vec::new();
    let mut end = None;
    for (i, (base, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let f = File::open(path).unwrap();
        let mut pos = 0u64;
        loop {
            assert!(
                pos + 8 <= seg_size,
                "segment {base}: no room for a header at {pos}"
            );
            let head = read_exact_at(&f, pos, 8);
            let total = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let magic = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            if magic == BLANK_MAGIC {
                assert!(!last, "blank record in the last segment at {pos}");
                assert!(pos > 0, "segment {base} holds no record");
                assert_eq!(
                    total as u64,
                    seg_size - pos,
                    "blank TOTALSIZE is the rest of segment {base}"
                );
                break;
            }
            if total == 0 && magic == 0 {
                assert!(
                    last,
                    "segment {base} ends in zeros at {pos} without a blank record; Java would \
                     truncate every later segment"
                );
                // The rest is zero (RocketMQ's end of data); check up to 4 MiB of it.
                assert_zero(
                    &f,
                    pos,
                    (seg_size - pos).min(4 << 20),
                    "tail of the last segment",
                );
                end = Some(base + pos);
                break;
            }
            assert!(
                total > 0 && pos + total as u64 <= seg_size,
                "bad TOTALSIZE {total} at {}",
                base + pos
            );
            let rec = read_exact_at(&f, pos, total as usize);
            records.push(parse_record(&rec, base + pos));
            pos += total as u64;
        }
    }
    let end = end.expect("the last segment ends in zeros");
    // The writer's segment is the last one: a segment prepared ahead was removed.
    let last_base = segments.last().unwrap().0;
    assert!(
        end > last_base || (end == 0 && last_base == 0),
        "last segment {last_base} holds nothing (end {end})"
    );
    (records, end)
}

/// Checks every consume queue against the records; returns units found per queue.
fn check_consume_queues(
    root: &Path,
    cq_size: u64,
    records: &[DiskRecord],
) -> BTreeMap<(String, u32), u64> {
    assert_eq!(cq_size % 20, 0);
    let by_phys: HashMap<u64, &DiskRecord> = records.iter().map(|r| (r.phys, r)).collect();
    let mut found = BTreeMap::new();
    for topic in file_names(&root.join("consumequeue")) {
        let tdir = root.join("consumequeue").join(&topic);
        assert!(tdir.is_dir());
        for qname in file_names(&tdir) {
            let qid: u32 = qname
                .parse()
                .unwrap_or_else(|_| panic!("queue directory {qname:?} is not an integer"));
            assert_eq!(qid.to_string(), qname, "canonical integer name");
            let qdir = tdir.join(&qname);
            assert!(qdir.is_dir());
            let files = offset_files(&qdir, cq_size);
            if let Some((first, _)) = files.first() {
                assert_eq!(*first, 0, "queue {topic}/{qid} starts at 0");
            }
            let mut n = 0u64;
            let mut ended = false;
            for (start, path) in &files {
                let data = std::fs::read(path).unwrap();
                for (k, unit) in data.chunks(20).enumerate() {
                    let index = (start + k as u64 * 20) / 20;
                    if ended {
                        assert!(
                            unit.iter().all(|&b| b == 0),
                            "data after the end of {topic}/{qid}"
                        );
                        continue;
                    }
                    if unit.iter().all(|&b| b == 0) {
                        ended = true;
                        continue;
                    }
                    let phys = be_u64(&unit[0..8]);
                    let size = i32::from_be_bytes([unit[8], unit[9], unit[10], unit[11]]);
                    let tag_code = be_u64(&unit[12..20]) as i64;
                    let rec = by_phys.get(&phys).unwrap_or_else(|| {
                        panic!("{topic}/{qid}#{index} points at {phys}, no record")
                    });
                    assert_eq!(size as u32, rec.total, "unit size is TOTALSIZE");
                    assert_eq!(rec.topic, topic);
                    assert_eq!(rec.queue_id as u32, qid);
                    assert_eq!(
                        rec.queue_offset as u64, index,
                        "queue offset of unit {index}"
                    );
                    let expected_tag = rec.props.get("TAGS").map_or(0, |t| i64::from(java_hash(t)));
                    assert_eq!(tag_code, expected_tag, "tag code of {topic}/{qid}#{index}");
                    assert_eq!(index, n, "units are contiguous");
                    n += 1;
                }
            }
            // Files are only created as units need them.
            assert!(
                files.len() as u64 <= n * 20 / cq_size + 1,
                "{topic}/{qid}: spare files"
            );
            found.insert((topic.clone(), qid), n);
        }
    }
    found
}

/// Checks `config/topics.json`: standard JSON with every field RocketMQ expects.
fn check_topics_json(root: &Path, expected: &[(&str, u32)]) {
    let text = std::fs::read_to_string(root.join("config").join("topics.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("topics.json is standard JSON");
    let dv = &v["dataVersion"];
    assert!(dv.is_object(), "dataVersion");
    for k in ["counter", "stateVersion", "timestamp"] {
        assert!(dv[k].is_number(), "dataVersion.{k}: {text}");
    }
    assert!(
        dv["timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "timestamp in ms"
    );
    let table = v["topicConfigTable"].as_object().expect("topicConfigTable");
    for &(name, queues) in expected {
        let t = table
            .get(name)
            .unwrap_or_else(|| panic!("topic {name} missing: {text}"));
        assert_eq!(t["topicName"], name);
        assert_eq!(t["readQueueNums"], queues);
        assert_eq!(t["writeQueueNums"], queues);
        assert_eq!(t["perm"], 6, "read|write");
        assert_eq!(t["topicFilterType"], "SINGLE_TAG");
        assert_eq!(t["topicSysFlag"], 0);
        assert_eq!(t["order"], false);
        assert!(t["attributes"].is_object(), "attributes");
    }
    assert_eq!(table.len(), expected.len(), "{text}");
    // Nothing but the file and its backup (no temporary file left behind), and mqlite's
    // record of the segment sizes (written once, at creation).
    for name in file_names(&root.join("config")) {
        if name == "mqlite.json" {
            let rec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(root.join("config/mqlite.json")).unwrap())
                    .expect("mqlite.json is JSON");
            assert!(rec["mappedFileSizeCommitLog"].is_u64(), "{rec}");
            assert!(rec["mappedFileSizeConsumeQueue"].is_u64(), "{rec}");
            continue;
        }
        assert!(
            name == "topics.json" || name == "topics.json.bak",
            "unexpected config file {name}"
        );
        if name.ends_with(".bak") {
            let bak = std::fs::read_to_string(root.join("config").join(&name)).unwrap();
            let _: serde_json::Value = serde_json::from_str(&bak).expect("the backup is JSON too");
        }
    }
}

/// Checks the 4096-byte checkpoint; returns its fields.
fn check_checkpoint(root: &Path, end: u64) -> [u64; 5] {
    let cp = std::fs::read(root.join("checkpoint")).unwrap();
    assert_eq!(cp.len(), 4096);
    let f = |i: usize| be_u64(&cp[i * 8..]);
    assert_eq!(f(4), end, "confirmPhyOffset is the end of the log");
    assert!(cp[40..48].iter().all(|&b| b == 0), "40..48 is zero");
    assert!(cp[48..].iter().all(|&b| b == 0), "unused bytes are zero");
    [f(0), f(1), f(2), f(3), f(4)]
}

fn check_root_files_open(root: &Path) {
    let abort = std::fs::read_to_string(root.join("abort")).expect("abort file while open");
    assert_eq!(
        abort.trim(),
        std::process::id().to_string(),
        "abort holds the pid"
    );
    assert!(root.join("lock").is_file(), "lock file");
}

fn check_root_files_closed(root: &Path) {
    assert!(
        !root.join("abort").exists(),
        "abort file left after a clean close"
    );
    assert_eq!(std::fs::read(root.join("lock")).unwrap(), b"lock");
}

/// What the test put, from the put results.
struct Sent {
    topic: String,
    body: Vec<u8>,
    tags: Option<String>,
    keys: Vec<String>,
    flag: i32,
    put: PutResult,
}

/// Checks the walked records against what was sent.
fn check_records(records: &[DiskRecord], sent: &[Sent], host: SocketAddr) {
    // Address bytes, then the port as an i32.
    let mut store_host: Vec<u8> = match host.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    store_host.extend_from_slice(&[0, 0, (host.port() >> 8) as u8, host.port() as u8]);
    // mqlite writes its store address as the born host too.
    let expected_sys_flag = if host.is_ipv6() { 0x10 | 0x20 } else { 0 };
    assert_eq!(
        records.len(),
        sent.len(),
        "every message is in the log, once"
    );
    let mut sent_sorted: Vec<&Sent> = sent.iter().collect();
    sent_sorted.sort_by_key(|s| s.put.physical_offset);
    let mut last_ts = i64::MIN;
    for (rec, s) in records.iter().zip(sent_sorted) {
        assert_eq!(rec.phys, s.put.physical_offset);
        assert_eq!(rec.total, s.put.size);
        assert_eq!(rec.topic, s.topic);
        assert_eq!(rec.queue_id as u32, s.put.queue_id);
        assert_eq!(rec.queue_offset as u64, s.put.queue_offset);
        assert_eq!(rec.body, s.body);
        assert_eq!(rec.flag, s.flag);
        assert_eq!(rec.sys_flag, expected_sys_flag, "plain message, host flags");
        assert_eq!(rec.store_ts as u64, s.put.store_timestamp);
        assert!(
            rec.store_ts >= last_ts,
            "store timestamps never go backwards"
        );
        last_ts = rec.store_ts;
        assert_eq!(rec.store_host, store_host);
        assert_eq!(rec.props.get("TAGS"), s.tags.as_ref());
        let keys = s.keys.join(" ");
        assert_eq!(
            rec.props.get("KEYS").map(String::as_str),
            (!keys.is_empty()).then_some(keys.as_str())
        );
        assert_eq!(rec.props.get("UNIQ_KEY"), Some(&s.put.msg_id.to_string()));
        // The offset msgId: store IP, port and the record's offset, in uppercase hex.
        let mut id = String::new();
        for b in store_host.iter().chain(&rec.phys.to_be_bytes()) {
            id.push_str(&format!("{b:02X}"));
        }
        assert_eq!(s.put.offset_msg_id.to_string(), id);
    }
}

/// The default store host.
const DEFAULT_HOST: &str = "127.0.0.1:10911";

fn put_random(
    store: &Store,
    rng: &mut Rng,
    topics: &[(&str, u32)],
    count: usize,
    body_range: (u64, u64),
) -> Vec<Sent> {
    let tags = [
        "TagA",
        "TagB",
        "Hello World!",
        "polygenelubricants",
        "\u{4e2d}\u{6587}",
    ];
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let (topic, queues) = topics[rng.range(0, topics.len() as u64) as usize];
        // Skew towards queue 0 so that some consume queue spans several files.
        let queue = if rng.range(0, 2) == 0 {
            0
        } else {
            rng.range(0, u64::from(queues)) as u32
        };
        let body_len = rng.range(body_range.0, body_range.1) as usize;
        let body = rng.bytes(body_len);
        let mut msg = Message::new(topic, body.clone()).with_flag(i as i32);
        let tag = (rng.range(0, 4) != 0)
            .then(|| tags[rng.range(0, tags.len() as u64) as usize].to_owned());
        if let Some(t) = &tag {
            msg = msg.with_tags(t.clone());
        }
        let keys: Vec<String> = (0..rng.range(0, 3)).map(|k| format!("K{i}-{k}")).collect();
        if !keys.is_empty() {
            msg = msg.with_keys(keys.clone());
        }
        let put = store.put(&msg, queue).expect("put");
        sent.push(Sent {
            topic: topic.to_owned(),
            body,
            tags: tag,
            keys,
            flag: i as i32,
            put,
        });
    }
    sent
}

/// Runs every directory check on a closed store.
fn check_closed_store(
    root: &Path,
    seg_size: u64,
    cq_size: u64,
    topics: &[(&str, u32)],
    sent: &[Sent],
    host: SocketAddr,
) -> u64 {
    check_root_files_closed(root);
    let (records, end) = walk_commitlog(root, seg_size);
    check_records(&records, sent, host);
    let found = check_consume_queues(root, cq_size, &records);
    // Every record was dispatched: per queue, units == messages sent to it.
    let mut expected: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for s in sent {
        *expected
            .entry((s.topic.clone(), s.put.queue_id))
            .or_default() += 1;
    }
    for (k, n) in &expected {
        assert_eq!(found.get(k), Some(n), "units in {k:?}");
    }
    for (k, n) in &found {
        assert_eq!(*n, expected.get(k).copied().unwrap_or(0), "units in {k:?}");
    }
    // Every configured queue has its directory.
    for &(t, q) in topics {
        for qid in 0..q {
            assert!(
                root.join("consumequeue")
                    .join(t)
                    .join(qid.to_string())
                    .is_dir()
            );
        }
    }
    let cp = check_checkpoint(root, end);
    if let Some(last) = records.last() {
        assert_eq!(
            cp[0], last.store_ts as u64,
            "physicMsgTimestamp: last flushed record"
        );
        assert_eq!(
            cp[1], last.store_ts as u64,
            "logicsMsgTimestamp: last dispatched record"
        );
    }
    check_topics_json(root, topics);
    end
}

fn segment_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("commitlog")).map_or(0, |d| d.count())
}

#[test]
fn small_segments_layout_matches_rocketmq() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng::new(common::seed(0x1A70_0001));
    let long_retry = format!("%RETRY%{}", "g".repeat(130));
    let topics: Vec<(&str, u32)> = vec![("TopicA", 4), ("TopicB", 3), (long_retry.as_str(), 1)];
    let store = common::small(root).open().unwrap();
    check_root_files_open(root);
    for &(t, q) in &topics {
        store.create_topic(t, q).unwrap();
    }
    let mut sent = put_random(&store, &mut rng, &topics[..2], 900, (1, 1500));
    // A handful of v2 records (topic > 127 bytes).
    sent.extend(put_random(&store, &mut rng, &topics[2..], 5, (1, 100)));
    check_root_files_open(root);
    let end = store.commitlog_max_offset();
    assert!(end > 6 * 64 * 1024, "several segment rolls (end {end})");
    store.close().unwrap();

    let log_end = check_closed_store(
        root,
        64 * 1024,
        2000,
        &topics,
        &sent,
        DEFAULT_HOST.parse().unwrap(),
    );
    assert_eq!(log_end, end);
    assert_eq!(segment_count(root) as u64, end.div_ceil(64 * 1024));
    // Some queue spans several consume queue files (100 units each).
    assert!(
        std::fs::read_dir(root.join("consumequeue/TopicA/0"))
            .unwrap()
            .count()
            >= 2,
        "queue 0 rolled"
    );

    // The directory reopens cleanly and is checked again after more writes.
    let store = common::small(root).open().unwrap();
    check_root_files_open(root);
    sent.extend(put_random(&store, &mut rng, &topics[..2], 100, (1, 1500)));
    store.close().unwrap();
    check_closed_store(
        root,
        64 * 1024,
        2000,
        &topics,
        &sent,
        DEFAULT_HOST.parse().unwrap(),
    );
}

#[test]
fn small_segments_sync_flush_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng::new(common::seed(0x1A70_0002));
    let topics = [("SyncA", 2), ("SyncB", 2)];
    let store = common::small_sync(root).open().unwrap();
    for &(t, q) in &topics {
        store.create_topic(t, q).unwrap();
    }
    let sent = put_random(&store, &mut rng, &topics, 120, (1000, 2000));
    assert!(store.commitlog_max_offset() > 2 * 64 * 1024);
    store.close().unwrap();
    check_closed_store(
        root,
        64 * 1024,
        2000,
        &topics,
        &sent,
        DEFAULT_HOST.parse().unwrap(),
    );
}

#[test]
fn default_sizes_layout_matches_rocketmq() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng::new(common::seed(0x1A70_0003));
    let topics = [("OrderTopic", 4), ("PayTopic", 2)];
    let store = Store::builder(root)
        .rocketmq_defaults()
        .warm_segments(false)
        .open()
        .unwrap();
    check_root_files_open(root);
    for &(t, q) in &topics {
        store.create_topic(t, q).unwrap();
    }
    let sent = put_random(&store, &mut rng, &topics, 12, (1, 300));
    store.close().unwrap();
    // A broker's defaults: 1 GiB commitlog segments, 300,000-unit (6,000,000-byte) consume
    // queue files.
    let end = check_closed_store(
        root,
        1 << 30,
        6_000_000,
        &topics,
        &sent,
        DEFAULT_HOST.parse().unwrap(),
    );
    assert_eq!(segment_count(root), 1, "only the segment written to");
    assert_eq!(
        file_names(&root.join("commitlog")),
        vec!["00000000000000000000".to_owned()]
    );
    assert!(end > 0);
}

#[test]
fn ipv6_store_host_layout() {
    // IPv6 hosts: 20-byte host fields, sysflag bits 0x10|0x20, 56-character offset msgIds.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng::new(common::seed(0x1A70_0005));
    let host: SocketAddr = "[2001:db8::7]:10911".parse().unwrap();
    let topics = [("V6Topic", 2)];
    let store = common::small(root).store_host(host).open().unwrap();
    store.create_topic("V6Topic", 2).unwrap();
    let sent = put_random(&store, &mut rng, &topics, 150, (500, 1500));
    assert!(store.commitlog_max_offset() > 64 * 1024, "rolled");
    store.close().unwrap();
    check_closed_store(root, 64 * 1024, 2000, &topics, &sent, host);
    assert!(
        sent.iter()
            .all(|s| s.put.offset_msg_id.to_string().len() == 56)
    );
}

/// Waits until the commitlog directory holds `n` files (the writer's and a prepared one).
fn wait_for_segments(root: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while segment_count(root) < n {
        assert!(
            Instant::now() < deadline,
            "next segment never prepared: {:?}",
            file_names(&root.join("commitlog"))
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn prepared_next_segment_is_removed_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = common::small(root).open().unwrap();
    // Fill the first 64 KiB segment past its middle without rolling: by then the next segment
    // is being prepared in the background.
    let body = vec![7u8; 1000];
    let mut sizes = 0u64;
    while store.commitlog_max_offset() < 40_000 {
        sizes += u64::from(
            store
                .put(&Message::new("Prep", body.clone()), 0)
                .unwrap()
                .size,
        );
    }
    wait_for_segments(root, 2);
    assert_eq!(
        file_names(&root.join("commitlog")),
        vec![
            "00000000000000000000".to_owned(),
            "00000000000000065536".to_owned()
        ]
    );
    store.close().unwrap();
    assert_eq!(
        file_names(&root.join("commitlog")),
        vec!["00000000000000000000".to_owned()],
        "the unused prepared segment is removed"
    );
    let (records, end) = walk_commitlog(root, 64 * 1024);
    assert_eq!(end, sizes);
    assert!(records.iter().all(|r| r.body == body));
    check_checkpoint(root, end);

    // Same after rolls: the closed log ends in the segment holding its last record.
    let store = common::small(root).open().unwrap();
    let body = vec![7u8; 3000];
    while store.commitlog_max_offset() < 3 * 64 * 1024 + 40_000 {
        store.put(&Message::new("Prep", body.clone()), 0).unwrap();
    }
    wait_for_segments(root, 5);
    let end = store.commitlog_max_offset();
    assert!(end < 4 * 64 * 1024);
    store.close().unwrap();
    assert_eq!(segment_count(root), 4);
    let (_, walked_end) = walk_commitlog(root, 64 * 1024);
    assert_eq!(walked_end, end);
    check_checkpoint(root, end);
}

#[test]
fn empty_store_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = common::small(root).open().unwrap();
    check_root_files_open(root);
    store.create_topic("Empty", 2).unwrap();
    store.close().unwrap();
    check_root_files_closed(root);
    // Whatever commitlog files exist are offset-named and full size; the checkpoint says 0.
    let segs = offset_files(&root.join("commitlog"), 64 * 1024);
    assert!(segs.len() <= 1, "no prepared segment left behind");
    check_checkpoint(root, 0);
    check_topics_json(root, &[("Empty", 2)]);
    for q in 0..2 {
        let qdir = root.join("consumequeue/Empty").join(q.to_string());
        assert!(qdir.is_dir());
        for name in file_names(&qdir) {
            assert!(is_offset_name(&name));
        }
    }
}

/// The checks above can fail: damage a valid closed store in ways RocketMQ would notice and
/// make sure the independent checker notices too.
#[test]
fn checker_detects_damage() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng::new(common::seed(0x1A70_0004));
    let topics = [("DamageA", 2)];
    let store = common::small(root).open().unwrap();
    store.create_topic("DamageA", 2).unwrap();
    let sent = put_random(&store, &mut rng, &topics, 120, (500, 1500));
    store.close().unwrap();
    check_closed_store(
        root,
        64 * 1024,
        2000,
        &topics,
        &sent,
        DEFAULT_HOST.parse().unwrap(),
    );

    let seg0 = root.join("commitlog").join("00000000000000000000");
    let original = std::fs::read(&seg0).unwrap();
    let fails = |what: &str| {
        let r = catch_unwind(AssertUnwindSafe(|| {
            check_closed_store(
                root,
                64 * 1024,
                2000,
                &topics,
                &sent,
                DEFAULT_HOST.parse().unwrap(),
            );
        }));
        assert!(r.is_err(), "damage not detected: {what}");
    };

    // 1. The blank record at the end of segment 0 replaced by zeros.
    let (records, _) = walk_commitlog(root, 64 * 1024);
    let last_in_seg0 = records.iter().rfind(|r| r.phys < 64 * 1024).unwrap();
    let blank_at = (last_in_seg0.phys + u64::from(last_in_seg0.total)) as usize;
    let mut damaged = original.clone();
    damaged[blank_at..blank_at + 8].fill(0);
    std::fs::write(&seg0, &damaged).unwrap();
    fails("missing blank record");

    // 2. One flipped body bit (CRC mismatch).
    let mut damaged = original.clone();
    // The body of record 0 starts at 88 (IPv4 hosts) and is at least 500 bytes.
    assert!(records[0].body.len() >= 500);
    damaged[88 + 10] ^= 0x01;
    std::fs::write(&seg0, &damaged).unwrap();
    fails("flipped bit");

    // 3. A wrong PHYSICALOFFSET in the second record.
    let mut damaged = original.clone();
    let second = records[1].phys as usize;
    damaged[second + 35] ^= 0x08;
    std::fs::write(&seg0, &damaged).unwrap();
    fails("wrong physical offset");

    std::fs::write(&seg0, &original).unwrap();
    check_closed_store(
        root,
        64 * 1024,
        2000,
        &topics,
        &sent,
        DEFAULT_HOST.parse().unwrap(),
    );

    // 4. A consume queue unit with a wrong tag code.
    let cq = root.join("consumequeue/DamageA/0/00000000000000000000");
    let cq_original = std::fs::read(&cq).unwrap();
    let mut damaged = cq_original.clone();
    damaged[19] ^= 0x01;
    std::fs::write(&cq, &damaged).unwrap();
    fails("tag code");
    std::fs::write(&cq, &cq_original).unwrap();

    // 5. A stray file in commitlog/.
    std::fs::write(root.join("commitlog").join("00000000000000000000.tmp"), b"").unwrap();
    fails("stray file");
}
