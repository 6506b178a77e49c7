//! Body compression as RocketMQ's producer does it: bodies of at least `compress_over` bytes
//! (4096 by default) are stored zlib-compressed at level 5 with SYSFLAG `COMPRESSED | ZLIB`
//! (0x301). The raw CommitLog record is parsed byte by byte: the body is a complete RFC 1950
//! stream (header 0x78 0x5E as Java's `Deflater(5)` writes it) that flate2 inflates to the
//! original, BODYCRC covers the compressed bytes, TOTALSIZE matches. Consumers (pull,
//! get_messages, view_message, after a reopen) get the original body with `is_compressed()`.
//! The threshold is configurable; batches and `Store::put` are never compressed; every other
//! send variant compresses.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::{Rng, seed};
use mqlite::{Error, Message, MessageExt, MessageQueue, PullStatus, Store};

const SEGMENT: u64 = 1 << 20;

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .commitlog_segment_size(SEGMENT)
        .max_message_size(256 * 1024)
        .open()
        .unwrap()
}

/// A record as it lies in the CommitLog (IPv4 hosts, v1).
#[derive(Debug)]
struct Raw {
    total: usize,
    magic: u32,
    body_crc: u32,
    queue_id: u32,
    queue_offset: u64,
    physical_offset: u64,
    sys_flag: i32,
    body: Vec<u8>,
    topic: String,
    properties: Vec<u8>,
    bytes: Vec<u8>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads the record at CommitLog offset `phys` straight from the segment file.
fn raw_record(dir: &Path, phys: u64) -> Raw {
    let base = phys / SEGMENT * SEGMENT;
    let file = dir.join("commitlog").join(format!("{base:020}"));
    let seg = std::fs::read(&file).unwrap();
    let at = (phys - base) as usize;
    let total = be32(&seg, at) as usize;
    let b = seg[at..at + total].to_vec();
    let body_len = be32(&b, 84) as usize;
    let body = b[88..88 + body_len].to_vec();
    let topic_len = b[88 + body_len] as usize;
    let topic_at = 89 + body_len;
    let topic = String::from_utf8(b[topic_at..topic_at + topic_len].to_vec()).unwrap();
    let props_at = topic_at + topic_len;
    let props_len = u16::from_be_bytes([b[props_at], b[props_at + 1]]) as usize;
    let properties = b[props_at + 2..props_at + 2 + props_len].to_vec();
    assert_eq!(
        total,
        91 + body_len + topic_len + props_len,
        "TOTALSIZE disagrees with the field lengths"
    );
    Raw {
        total,
        magic: be32(&b, 4),
        body_crc: be32(&b, 8),
        queue_id: be32(&b, 12),
        queue_offset: be64(&b, 20),
        physical_offset: be64(&b, 28),
        sys_flag: be32(&b, 36) as i32,
        body,
        topic,
        properties,
        bytes: b,
    }
}

fn inflate(stream: &[u8]) -> Vec<u8> {
    let mut d = flate2::read::ZlibDecoder::new(stream);
    let mut out = Vec::new();
    d.read_to_end(&mut out)
        .expect("stored body is not a valid zlib stream");
    assert_eq!(
        d.total_in(),
        stream.len() as u64,
        "bytes after the end of the zlib stream"
    );
    out
}

/// A compressible body: repetitive JSON lines.
fn text_body(len: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"order\":{i},\"state\":\"created\",\"items\":[1,2,3]}}\n"
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn masked_crc(b: &[u8]) -> u32 {
    crc32fast::hash(b) & 0x7FFF_FFFF
}

fn check_compressed(raw: &Raw, original: &[u8]) {
    assert_eq!(raw.magic, 0xDAA3_20A7);
    assert_eq!(raw.sys_flag, 0x301, "SYSFLAG must be COMPRESSED | ZLIB");
    assert!(raw.body.len() > 2);
    assert_eq!(raw.body[0], 0x78, "CMF: deflate with a 32 KiB window");
    assert_eq!(
        (u16::from(raw.body[0]) << 8 | u16::from(raw.body[1])) % 31,
        0,
        "FCHECK"
    );
    assert_eq!(raw.body[1] & 0x20, 0, "no preset dictionary");
    assert_eq!(inflate(&raw.body), original);
    assert_eq!(
        raw.body_crc,
        masked_crc(&raw.body),
        "BODYCRC covers the stored bytes"
    );
}

fn check_plain(raw: &Raw, original: &[u8]) {
    assert_eq!(raw.sys_flag & 0x701, 0, "SYSFLAG {:#x}", raw.sys_flag);
    assert_eq!(raw.body, original);
    assert_eq!(raw.body_crc, masked_crc(original));
}

fn one(store: &Store, q: &MessageQueue, off: u64) -> MessageExt {
    store.get_messages(q, off, 1).unwrap().messages.remove(0)
}

#[test]
fn large_bodies_are_stored_as_level_5_zlib_streams() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(seed(0xC0_4D01));
    let bodies: Vec<(&str, Vec<u8>, bool)> = vec![
        ("text 20 KiB", text_body(20 * 1024), true),
        ("random 8 KiB", rng.bytes(8 * 1024), true),
        ("exactly 4096", text_body(4096), true),
        ("4095", text_body(4095), false),
        ("small", b"tiny".to_vec(), false),
        ("zeros 200 KiB", vec![0; 200 * 1024], true),
    ];
    let mut sent = Vec::new();
    {
        let store = open(tmp.path());
        store.create_topic("zip", 1).unwrap();
        let p = store.producer("zip-producer").unwrap();
        for (what, body, _) in &bodies {
            let r = p
                .send(
                    Message::new("zip", body.clone())
                        .with_tags("z")
                        .with_keys([what.replace(" ", "_")]),
                )
                .unwrap();
            sent.push(r);
        }
        store.close().unwrap();
    }
    for ((what, body, compressed), r) in bodies.iter().zip(&sent) {
        let raw = raw_record(tmp.path(), r.offset_msg_id.physical_offset);
        assert_eq!(raw.physical_offset, r.offset_msg_id.physical_offset);
        assert_eq!(raw.queue_offset, r.queue_offset);
        assert_eq!(raw.queue_id, 0);
        assert_eq!(raw.topic, "zip");
        let props = String::from_utf8_lossy(&raw.properties);
        assert!(props.contains("TAGS\u{1}z\u{2}"), "{what}: {props:?}");
        if *compressed {
            check_compressed(&raw, body);
        } else {
            check_plain(&raw, body);
        }
        if *what == "text 20 KiB" || *what == "zeros 200 KiB" {
            assert!(
                raw.body.len() * 4 < body.len(),
                "{what}: {} bytes stored for {}",
                raw.body.len(),
                body.len()
            );
        }
        // The whole-record CRC, when present, covers the record as written.
        if let Some(tail) = raw.bytes.get(raw.total - 20..)
            && tail.starts_with(b"__CRC32#\x01")
        {
            let digits = &tail[9..19];
            let stored = digits
                .iter()
                .rev()
                .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
            assert_eq!(stored, u64::from(masked_crc(&raw.bytes[..raw.total - 20])));
        }
    }
}

/// RocketMQ compresses with `java.util.zip.Deflater(5)`, whose zlib header is 0x78 0x5E
/// (FLEVEL 1, as zlib's `deflate.c` sets it for levels 2 to 5).
#[test]
fn zlib_header_is_the_one_javas_deflater_writes_at_level_5() {
    let tmp = tempfile::tempdir().unwrap();
    let body = text_body(10_000);
    let r = {
        let store = open(tmp.path());
        let r = store
            .producer("zip-producer")
            .unwrap()
            .send(Message::new("zip", body.clone()))
            .unwrap();
        store.close().unwrap();
        r
    };
    let raw = raw_record(tmp.path(), r.offset_msg_id.physical_offset);
    check_compressed(&raw, &body);
    assert_eq!(
        (raw.body[0], raw.body[1]),
        (0x78, 0x5E),
        "zlib header {:#04x} {:#04x}: Java's Deflater(5) writes 0x78 0x5E",
        raw.body[0],
        raw.body[1]
    );
}

#[test]
fn consumers_get_the_original_body() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(seed(0xC0_4D02));
    let text = text_body(30_000);
    let random = rng.bytes(12_345);
    let q = MessageQueue::new("zip", 0);
    let check = |m: &MessageExt, body: &[u8]| {
        assert_eq!(m.body(), body);
        assert!(m.is_compressed());
        assert_eq!(m.sys_flag() & 0x701, 0x301);
        assert_ne!(
            m.body_crc(),
            masked_crc(body),
            "BODYCRC is of the stored bytes"
        );
        assert!((m.store_size() as usize) < 91 + body.len() + 3 + m.raw_properties().len() + 64);
    };
    let ids;
    {
        let store = open(tmp.path());
        store.create_topic("zip", 1).unwrap();
        let p = store.producer("zip-producer").unwrap();
        let a = p
            .send(Message::new("zip", text.clone()).with_tags("text"))
            .unwrap();
        let b = p
            .send(Message::new("zip", random.clone()).with_tags("random"))
            .unwrap();
        p.send(Message::new("zip", "plain").with_tags("text"))
            .unwrap();
        ids = (a.offset_msg_id.to_string(), b.offset_msg_id.to_string());
        let c = store.pull_consumer("zip-consumer").unwrap();
        let r = c.pull(&q, "*", 0, 32).unwrap();
        assert_eq!(r.status, PullStatus::Found);
        assert_eq!(r.messages.len(), 3);
        check(&r.messages[0], &text);
        check(&r.messages[1], &random);
        assert!(!r.messages[2].is_compressed());
        assert_eq!(r.messages[2].body(), b"plain");
        // The tag filter works on compressed messages.
        let r = c.pull(&q, "random", 0, 32).unwrap();
        assert_eq!(r.messages.len(), 1);
        check(&r.messages[0], &random);
        let r = c
            .pull_timeout(&q, "text", 0, 1, Duration::from_secs(1))
            .unwrap();
        check(&r.messages[0], &text);
        check(&store.view_message(&ids.0).unwrap(), &text);
        check(&one(&store, &q, 1), &random);
        store.close().unwrap();
    }
    let store = open(tmp.path());
    check(&one(&store, &q, 0), &text);
    check(&store.view_message(&ids.1).unwrap(), &random);
    store.close().unwrap();
}

#[test]
fn threshold_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.create_topic("zip", 1).unwrap();
    let q = MessageQueue::new("zip", 0);
    let low = store.producer("zip-producer").unwrap().compress_over(100);
    let never = store
        .producer("zip-producer")
        .unwrap()
        .compress_over(usize::MAX);
    let always = store.producer("zip-producer").unwrap().compress_over(0);
    let cases: Vec<(&mqlite::Producer, Vec<u8>, bool)> = vec![
        (&low, text_body(100), true),
        (&low, text_body(99), false),
        (&never, text_body(10_000), false),
        (&never, vec![7; 200_000], false),
        (&always, b"x".to_vec(), true),
    ];
    let mut phys = Vec::new();
    for (p, body, _) in &cases {
        let r = p.send(Message::new("zip", body.clone())).unwrap();
        phys.push(r.offset_msg_id.physical_offset);
        let m = one(&store, &q, r.queue_offset);
        assert_eq!(m.body(), &body[..]);
    }
    // An empty body is refused whatever the threshold.
    let e = always.send(Message::new("zip", Vec::new())).unwrap_err();
    assert!(matches!(e.error(), Error::InvalidMessage(_)), "{e}");
    store.close().unwrap();
    for ((_, body, compressed), at) in cases.iter().zip(phys) {
        let raw = raw_record(tmp.path(), at);
        if *compressed {
            check_compressed(&raw, body);
        } else {
            check_plain(&raw, body);
        }
    }
}

#[test]
fn every_send_variant_compresses_but_batches_and_store_put_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.create_topic("zip", 2).unwrap();
    let p = store.producer("zip-producer").unwrap();
    let body = |i: u8| {
        let mut b = text_body(6000);
        b[0] = b'0' + i;
        b
    };
    let q1 = MessageQueue::new("zip", 1);
    let mut compressed = vec![
        p.send(Message::new("zip", body(0))).unwrap(),
        p.send_to(Message::new("zip", body(1)), &q1).unwrap(),
        p.send_ordered(Message::new("zip", body(2)), "key").unwrap(),
        p.send_with_selector(Message::new("zip", body(3)), |_, _| 0)
            .unwrap(),
    ];
    let (tx, rx) = std::sync::mpsc::channel();
    p.send_async(Message::new("zip", body(4)), move |r| {
        tx.send(r.unwrap()).unwrap();
    })
    .unwrap();
    compressed.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    let before = store.commitlog_max_offset();
    p.send_oneway(Message::new("zip", body(5)).with_tags("oneway"))
        .unwrap();
    let oneway_at = before;
    let batch = p
        .send_batch(vec![
            Message::new("zip", body(6)),
            Message::new("zip", body(7)),
        ])
        .unwrap();
    let put = store.put(&Message::new("zip", body(8)), 0).unwrap();
    store.close().unwrap();
    for (i, r) in compressed.iter().enumerate() {
        check_compressed(
            &raw_record(tmp.path(), r.offset_msg_id.physical_offset),
            &body(i as u8),
        );
    }
    let raw = raw_record(tmp.path(), oneway_at);
    check_compressed(&raw, &body(5));
    for (i, r) in batch.iter().enumerate() {
        check_plain(
            &raw_record(tmp.path(), r.offset_msg_id.physical_offset),
            &body(6 + i as u8),
        );
    }
    check_plain(&raw_record(tmp.path(), put.physical_offset), &body(8));
}

#[test]
fn a_body_of_the_maximum_size_is_compressed_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(SEGMENT)
        .max_message_size(64 * 1024)
        .open()
        .unwrap();
    store.create_topic("zip", 1).unwrap();
    let q = MessageQueue::new("zip", 0);
    let p = store.producer("zip-producer").unwrap();
    // Random data does not shrink: the stored stream is a little larger than the limit.
    let random = Rng::new(seed(0xC0_4D05)).bytes(64 * 1024);
    let text = text_body(64 * 1024);
    let a = p.send(Message::new("zip", random.clone())).unwrap();
    let b = p.send(Message::new("zip", text.clone())).unwrap();
    let e = p
        .send(Message::new("zip", text_body(64 * 1024 + 1)))
        .unwrap_err();
    assert!(matches!(e.error(), Error::InvalidMessage(_)), "{e}");
    assert_eq!(one(&store, &q, a.queue_offset).body(), &random[..]);
    assert_eq!(one(&store, &q, b.queue_offset).body(), &text[..]);
    store.close().unwrap();
    let raw = raw_record(tmp.path(), a.offset_msg_id.physical_offset);
    assert!(raw.body.len() > 64 * 1024);
    check_compressed(&raw, &random);
    check_compressed(
        &raw_record(tmp.path(), b.offset_msg_id.physical_offset),
        &text,
    );
}
