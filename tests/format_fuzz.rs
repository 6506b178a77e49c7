//! Seeded fuzz tests of the pure codecs in `mqlite::format`: decoders must never panic on
//! arbitrary or mutated input, whatever they accept must be structurally consistent (checked
//! with the test's own parser), and random records must survive an encode/decode round trip.
//! Set `MQLITE_SEED` to reproduce a failure.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::Rng;
use mqlite::format::checkpoint::Checkpoint;
use mqlite::format::cq_unit::CqUnit;
use mqlite::format::record::{self, Decoded, RecordMeta, RecordView};
use mqlite::format::{DecodeError, properties};
use mqlite::{MessageId, OffsetMessageId};

/// Bitwise IEEE CRC32 (`java.util.zip.CRC32`), masked as RocketMQ stores it.
fn ref_masked_crc32(bytes: &[u8]) -> u32 {
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
    !crc & 0x7FFF_FFFF
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Checks a record the decoder accepted against the raw bytes with the documented layout.
fn check_accepted(buf: &[u8], rec: &RecordView<'_>, check_crc: bool) {
    let total = rec.total_size as usize;
    assert!(total <= buf.len(), "record larger than its buffer");
    assert_eq!(be_i32(buf, 0) as usize, total, "TOTALSIZE");
    let magic = be_i32(buf, 4) as u32;
    match rec.version {
        1 => assert_eq!(magic, 0xDAA3_20A7),
        2 => assert_eq!(magic, 0xDAA3_20AB),
        v => panic!("unknown version {v}"),
    }
    let sys_flag = be_i32(buf, 36);
    assert_eq!(rec.meta.sys_flag, sys_flag);
    let bh = if sys_flag & 0x10 != 0 { 20 } else { 8 };
    let sh = if sys_flag & 0x20 != 0 { 20 } else { 8 };
    let tl = if rec.version == 1 { 1 } else { 2 };
    let body_pos = 48 + bh + 8 + sh + 4 + 8 + 4;
    let body_len = be_i32(buf, body_pos - 4);
    assert!(body_len >= 0);
    assert_eq!(rec.body, &buf[body_pos..body_pos + body_len as usize]);
    let tpos = body_pos + body_len as usize;
    let topic_len = if tl == 1 {
        usize::from(buf[tpos])
    } else {
        usize::try_from(be_i16(buf, tpos)).expect("non-negative topic length")
    };
    assert_eq!(rec.topic.as_bytes(), &buf[tpos + tl..tpos + tl + topic_len]);
    let ppos = tpos + tl + topic_len;
    let props_len = usize::try_from(be_i16(buf, ppos)).expect("non-negative properties length");
    assert_eq!(rec.properties, &buf[ppos + 2..ppos + 2 + props_len]);
    assert_eq!(ppos + 2 + props_len, total, "fields add up to TOTALSIZE");
    assert_eq!(rec.body_crc, be_i32(buf, 8) as u32);
    assert_eq!(
        i64::from(rec.meta.queue_id as i32),
        i64::from(be_i32(buf, 12))
    );
    assert_eq!(rec.meta.flag, be_i32(buf, 16));
    assert_eq!(rec.meta.queue_offset as i64, be_i64(buf, 20));
    assert_eq!(rec.meta.physical_offset as i64, be_i64(buf, 28));
    assert!(be_i64(buf, 20) >= 0 && be_i64(buf, 28) >= 0);
    assert_eq!(rec.meta.born_timestamp, be_i64(buf, 40));
    assert_eq!(rec.meta.store_timestamp, be_i64(buf, 48 + bh));
    if check_crc {
        assert_eq!(rec.body_crc, ref_masked_crc32(rec.body), "CRC checked");
    }
}

/// Decodes `buf` both ways; asserts the documented invariants of whatever comes back.
fn decode_checked(buf: &[u8]) {
    for check_crc in [false, true] {
        match record::decode(buf, check_crc) {
            Ok(Decoded::Message(rec)) => check_accepted(buf, &rec, check_crc),
            Ok(Decoded::Blank { size }) => {
                assert_eq!(be_i32(buf, 4) as u32, 0xCBD4_3194);
                assert_eq!(be_i32(buf, 0) as u32, size);
                assert!(size >= 8);
            }
            Err(_) => {}
        }
    }
}

/// Random bytes, sometimes shaped like a record header so decoding gets past the first checks.
fn random_record_like(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut buf = rng.bytes(len);
    if len >= 8 && rng.range(0, 2) == 0 {
        let magic: u32 = match rng.range(0, 4) {
            0 => 0xCBD4_3194,
            1 => 0xDAA3_20AB,
            _ => 0xDAA3_20A7,
        };
        buf[4..8].copy_from_slice(&magic.to_be_bytes());
        let total = rng.range(0, len as u64 + 1) as i32;
        buf[0..4].copy_from_slice(&total.to_be_bytes());
        if len >= 92 && rng.range(0, 2) == 0 {
            // Plausible offsets, host flags and lengths that add up to TOTALSIZE, so the
            // decoder gets to its later checks (UTF-8, CRC) with random field contents.
            let total = if rng.range(0, 2) == 0 {
                len
            } else {
                rng.range(92, len as u64 + 1) as usize
            };
            buf[0..4].copy_from_slice(&(total as i32).to_be_bytes());
            buf[20] &= 0x7F;
            buf[28] &= 0x7F;
            let sf = (be_i32(&buf, 36) & !0x30) | ((rng.range(0, 4) as i32) << 4);
            buf[36..40].copy_from_slice(&sf.to_be_bytes());
            let bh = if sf & 0x10 != 0 { 20 } else { 8 };
            let sh = if sf & 0x20 != 0 { 20 } else { 8 };
            let tl = if magic == 0xDAA3_20AB { 2 } else { 1 };
            let body_pos = 48 + bh + 8 + sh + 16;
            if body_pos + tl + 2 <= total {
                let room = total - body_pos - tl - 2;
                let body_len = rng.range(0, room as u64 + 1) as usize;
                buf[body_pos - 4..body_pos].copy_from_slice(&(body_len as i32).to_be_bytes());
                if rng.range(0, 2) == 0 {
                    // Half the time with a matching CRC, so check_crc=true can accept.
                    let crc = ref_masked_crc32(&buf[body_pos..body_pos + body_len]);
                    buf[8..12].copy_from_slice(&crc.to_be_bytes());
                }
                let tpos = body_pos + body_len;
                let room = room - body_len;
                let topic_len = rng.range(0, room.min(255) as u64 + 1) as usize;
                if tl == 1 {
                    buf[tpos] = topic_len as u8;
                } else {
                    buf[tpos..tpos + 2].copy_from_slice(&(topic_len as i16).to_be_bytes());
                }
                if rng.range(0, 2) == 0 {
                    // Mostly ASCII topics, so UTF-8 validation passes now and then.
                    for b in &mut buf[tpos + tl..tpos + tl + topic_len] {
                        *b &= 0x7F;
                    }
                }
                let ppos = tpos + tl + topic_len;
                let props_len = (room - topic_len) as i16;
                buf[ppos..ppos + 2].copy_from_slice(&props_len.to_be_bytes());
            }
        }
    }
    buf
}

#[test]
fn decoders_never_panic_on_random_bytes() {
    let mut rng = Rng::new(common::seed(0xF022_0001));
    let mut accepted_records = 0;
    for _ in 0..200_000 {
        let len = rng.range(0, 300) as usize;
        let buf = random_record_like(&mut rng, len);
        decode_checked(&buf);
        if let Ok(Decoded::Message(_)) = record::decode(&buf, true) {
            accepted_records += 1;
        }

        // Consume queue unit.
        match CqUnit::decode(&buf) {
            Err(_) => assert!(len < 20, "a 20-byte unit always decodes"),
            Ok(None) => assert!(be_i64(&buf, 0) < 0 || be_i32(&buf, 8) <= 0),
            Ok(Some(u)) => {
                assert!(len >= 20);
                assert_eq!(u.physical_offset as i64, be_i64(&buf, 0));
                assert!(be_i64(&buf, 0) >= 0);
                assert_eq!(u.size as i32, be_i32(&buf, 8));
                assert!(be_i32(&buf, 8) > 0);
                assert_eq!(u.tag_code, be_i64(&buf, 12));
            }
        }

        // Checkpoint.
        match Checkpoint::decode(&buf) {
            Err(_) => {}
            Ok(cp) => {
                assert!(len >= 24, "needs the three 4.x fields");
                assert_eq!(cp.physic_msg_timestamp as i64, be_i64(&buf, 0));
                assert_eq!(cp.logics_msg_timestamp as i64, be_i64(&buf, 8));
                assert_eq!(cp.index_msg_timestamp as i64, be_i64(&buf, 16));
                if len >= 40 {
                    assert_eq!(cp.confirm_phy_offset as i64, be_i64(&buf, 32));
                }
            }
        }

        // Properties.
        let pieces = buf.split(|&b| b == 0x02).count();
        let mut n = 0;
        for (k, v) in properties::iter(&buf) {
            n += 1;
            assert!(!k.is_empty() && !v.is_empty());
            assert!(!k.contains('\u{1}') && !k.contains('\u{2}') && !v.contains('\u{2}'));
        }
        assert!(n <= pieces);

        // Message ids from arbitrary (lossy) text.
        let text = String::from_utf8_lossy(&buf);
        check_offset_msg_id(&text);
        check_message_id(&text);
    }
    eprintln!("accepted {accepted_records} random records");
    // The shaped inputs must reach the decoder's later checks, or this fuzzes nothing deep.
    assert!(accepted_records > 1000, "only {accepted_records} accepted");
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_offset_msg_id(s: &str) {
    if let Ok(id) = s.parse::<OffsetMessageId>() {
        assert!(s.len() == 32 || s.len() == 56, "{s:?}");
        assert!(is_hex(s), "{s:?}");
        assert_eq!(id.to_string(), s.to_ascii_uppercase());
        assert_eq!(id.store_host.is_ipv4(), s.len() == 32);
    }
}

fn check_message_id(s: &str) {
    match MessageId::parse(s) {
        Ok(id) => {
            assert!(s.len() == 32 && is_hex(s), "{s:?}");
            assert_eq!(id.as_str(), s.to_ascii_uppercase());
        }
        Err(_) => assert!(s.len() != 32 || !is_hex(s), "{s:?} should parse"),
    }
}

#[test]
fn message_id_parsers_never_panic_on_near_valid_text() {
    let mut rng = Rng::new(common::seed(0xF022_0002));
    const ALPHABET: &[u8] = b"0123456789ABCDEFabcdef";
    const JUNK: &[&str] = &[
        "G",
        "z",
        " ",
        "-",
        "\u{e9}",
        "\u{4e2d}",
        "\u{1F600}",
        "\0",
        "+",
    ];
    for _ in 0..100_000 {
        let target = match rng.range(0, 3) {
            0 => 32,
            1 => 56,
            _ => rng.range(0, 70) as usize,
        };
        let mut s = String::new();
        while s.len() < target {
            if rng.range(0, 40) == 0 {
                s.push_str(JUNK[rng.range(0, JUNK.len() as u64) as usize]);
            } else {
                s.push(char::from(
                    ALPHABET[rng.range(0, ALPHABET.len() as u64) as usize],
                ));
            }
        }
        check_offset_msg_id(&s);
        check_message_id(&s);
        if s.len() == 32 && is_hex(&s) {
            // Any 32 hex digits are a valid client id.
            assert!(MessageId::parse(&s).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random valid records
// ---------------------------------------------------------------------------------------------

fn random_host(rng: &mut Rng) -> SocketAddr {
    let port = rng.range(0, 65536) as u16;
    if rng.range(0, 3) == 0 {
        let mut o = [0u8; 16];
        rng.fill(&mut o);
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)
    } else {
        let mut o = [0u8; 4];
        rng.fill(&mut o);
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port)
    }
}

fn random_meta(rng: &mut Rng) -> RecordMeta {
    RecordMeta {
        queue_id: rng.next_u64() as u32,
        flag: rng.next_u64() as i32,
        queue_offset: rng.next_u64() >> 1,
        physical_offset: rng.next_u64() >> rng.range(1, 64),
        sys_flag: rng.next_u64() as i32,
        born_timestamp: rng.next_u64() as i64,
        born_host: random_host(rng),
        store_timestamp: rng.next_u64() as i64,
        store_host: random_host(rng),
        reconsume_times: rng.next_u64() as i32,
        prepared_transaction_offset: rng.next_u64() as i64,
    }
}

fn random_text(rng: &mut Rng, max_bytes: usize, min_chars: usize) -> String {
    const CHARS: &[char] = &[
        'a',
        'b',
        'Z',
        '0',
        '9',
        '_',
        '-',
        '%',
        '|',
        ' ',
        '#',
        '\u{e9}',
        '\u{4e2d}',
        '\u{1F600}',
    ];
    loop {
        let n = rng.range(min_chars as u64, max_bytes as u64 + 1) as usize;
        let s: String = (0..n)
            .map(|_| CHARS[rng.range(0, CHARS.len() as u64) as usize])
            .collect();
        if s.len() <= max_bytes {
            return s;
        }
    }
}

struct Sample {
    meta: RecordMeta,
    body: Vec<u8>,
    topic: String,
    pairs: Vec<(String, String)>,
    bytes: Vec<u8>,
}

fn random_sample(rng: &mut Rng) -> Sample {
    let meta = random_meta(rng);
    let body_len = match rng.range(0, 4) {
        0 => 0,
        1 => rng.range(0, 8),
        _ => rng.range(0, 400),
    } as usize;
    let body = rng.bytes(body_len);
    let topic = if rng.range(0, 4) == 0 {
        random_text(rng, 255, 1)
    } else {
        random_text(rng, 40, 1)
    };
    let pairs: Vec<(String, String)> = (0..rng.range(0, 6))
        .map(|_| (random_text(rng, 12, 1), random_text(rng, 30, 1)))
        .collect();
    let props = properties::encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let len = record::encoded_len(&meta, body.len(), topic.len(), props.len()).expect("fits");
    let mut bytes = vec![0u8; len];
    let crc = record::encode_into(&mut bytes, &meta, &body, &topic, props.len(), |dst| {
        dst.copy_from_slice(&props)
    });
    assert_eq!(crc, ref_masked_crc32(&body));
    Sample {
        meta,
        body,
        topic,
        pairs,
        bytes,
    }
}

fn expected_sys_flag(meta: &RecordMeta) -> i32 {
    let mut f = meta.sys_flag & !0x30;
    if meta.born_host.is_ipv6() {
        f |= 0x10;
    }
    if meta.store_host.is_ipv6() {
        f |= 0x20;
    }
    f
}

#[test]
fn random_records_round_trip() {
    let mut rng = Rng::new(common::seed(0xF022_0003));
    for case in 0..1000 {
        let s = random_sample(&mut rng);
        let bh = if s.meta.born_host.is_ipv6() { 20 } else { 8 };
        let sh = if s.meta.store_host.is_ipv6() { 20 } else { 8 };
        let tl = if s.topic.len() > 127 { 2 } else { 1 };
        let props_len: usize = s.pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let expected_len = 4
            + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + bh
            + 8
            + sh
            + 4
            + 8
            + 4
            + s.body.len()
            + tl
            + s.topic.len()
            + 2
            + props_len;
        assert_eq!(s.bytes.len(), expected_len, "case {case}");
        // Trailing bytes after the record must not matter.
        let mut padded = s.bytes.clone();
        let extra = rng.range(0, 16) as usize;
        padded.extend_from_slice(&rng.bytes(extra));
        for buf in [&s.bytes, &padded] {
            let rec = match record::decode(buf, true) {
                Ok(Decoded::Message(rec)) => rec,
                other => panic!("case {case}: {other:?}"),
            };
            check_accepted(buf, &rec, true);
            assert_eq!(rec.total_size as usize, expected_len);
            assert_eq!(rec.version, if tl == 2 { 2 } else { 1 });
            assert_eq!(
                rec.meta,
                RecordMeta {
                    sys_flag: expected_sys_flag(&s.meta),
                    ..s.meta
                },
                "case {case}"
            );
            assert_eq!(rec.body, s.body.as_slice());
            assert_eq!(rec.topic, s.topic);
            let got: Vec<(String, String)> = properties::iter(rec.properties)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(got, s.pairs, "case {case}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutation fuzzing
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_records_are_errors_at_every_length() {
    let mut rng = Rng::new(common::seed(0xF022_0004));
    for _ in 0..60 {
        let s = random_sample(&mut rng);
        for len in 0..s.bytes.len() {
            for check_crc in [false, true] {
                assert!(
                    record::decode(&s.bytes[..len], check_crc).is_err(),
                    "a record cut to {len} of {} bytes decoded",
                    s.bytes.len()
                );
            }
        }
        assert!(matches!(
            record::decode(&s.bytes, true),
            Ok(Decoded::Message(_))
        ));
    }
}

#[test]
fn flipped_body_bits_fail_the_crc_check() {
    let mut rng = Rng::new(common::seed(0xF022_0005));
    let mut flipped = 0;
    while flipped < 20_000 {
        let s = random_sample(&mut rng);
        if s.body.is_empty() {
            continue;
        }
        let body_pos = s.bytes.len()
            - s.body.len()
            - (if s.topic.len() > 127 { 2 } else { 1 })
            - s.topic.len()
            - 2
            - s.pairs
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        assert_eq!(
            &s.bytes[body_pos..body_pos + s.body.len()],
            s.body.as_slice()
        );
        let stored_crc = ref_masked_crc32(&s.body);
        for bit in 0..s.body.len() * 8 {
            let mut buf = s.bytes.clone();
            buf[body_pos + bit / 8] ^= 1 << (bit % 8);
            match record::decode(&buf, true) {
                Err(DecodeError::CrcMismatch { stored, computed }) => {
                    assert_eq!(stored, stored_crc);
                    assert_eq!(
                        computed,
                        ref_masked_crc32(&buf[body_pos..body_pos + s.body.len()])
                    );
                }
                other => panic!("flipped body bit {bit} not detected: {other:?}"),
            }
            // Without the CRC check the record still decodes, with the damaged body.
            match record::decode(&buf, false) {
                Ok(Decoded::Message(rec)) => assert_ne!(rec.body, s.body.as_slice()),
                other => panic!("{other:?}"),
            }
            flipped += 1;
        }
        // A flipped bit in the stored CRC is caught as well.
        for bit in 0..32 {
            let mut buf = s.bytes.clone();
            buf[8 + bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(
                record::decode(&buf, true),
                Err(DecodeError::CrcMismatch { .. })
            ));
        }
    }
}

#[test]
fn mutated_records_never_panic() {
    let mut rng = Rng::new(common::seed(0xF022_0006));
    let samples: Vec<Sample> = (0..64).map(|_| random_sample(&mut rng)).collect();
    for _ in 0..30_000 {
        let s = &samples[rng.range(0, samples.len() as u64) as usize];
        let mut buf = s.bytes.clone();
        for _ in 0..rng.range(1, 5) {
            let i = rng.range(0, buf.len() as u64) as usize;
            match rng.range(0, 4) {
                // Flip one bit.
                0 => buf[i] ^= 1 << rng.range(0, 8),
                // Overwrite one byte.
                1 => buf[i] = rng.next_u64() as u8,
                // Overwrite a header or length byte with an extreme value.
                2 => buf[i] = [0x00, 0x7F, 0x80, 0xFF][rng.range(0, 4) as usize],
                // Cut or extend.
                _ => buf.resize(rng.range(0, buf.len() as u64 + 20) as usize, 0),
            }
            if buf.is_empty() {
                break;
            }
        }
        decode_checked(&buf);
        let _ = CqUnit::decode(&buf);
        let _ = Checkpoint::decode(&buf);
        let _ = properties::iter(&buf).count();
    }
}
