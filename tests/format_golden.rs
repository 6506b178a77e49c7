//! Golden-byte tests of the pure codecs in `mqlite::format`: every expected byte vector here is
//! written out field by field from RocketMQ's documented layouts (shared reference §1–§7), not
//! produced by mqlite's encoders. Java values (`String.hashCode`, `CRC32`) were computed by hand
//! with the documented formulas and cross-checked against a JVM.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mqlite::format::checkpoint::{CHECKPOINT_FILE_SIZE, Checkpoint};
use mqlite::format::cq_unit::{CQ_UNIT_SIZE, CqUnit};
use mqlite::format::hash::{java_string_hash, tag_code};
use mqlite::format::msg_id::MessageIdGenerator;
use mqlite::format::record::{self, Decoded, RecordMeta, RecordView};
use mqlite::format::{DecodeError, masked_crc32, properties};
use mqlite::{MessageId, OffsetMessageId};

// ---------------------------------------------------------------------------------------------
// Independent reference implementations
// ---------------------------------------------------------------------------------------------

/// Bitwise IEEE CRC32 (reflected polynomial 0xEDB88320), i.e. `java.util.zip.CRC32`.
fn ref_crc32(bytes: &[u8]) -> u32 {
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

/// RocketMQ's `UtilAll.crc32`: CRC32 with the top bit cleared.
fn ref_masked_crc32(bytes: &[u8]) -> u32 {
    ref_crc32(bytes) & 0x7FFF_FFFF
}

#[test]
fn reference_crc32_matches_published_check_values() {
    // The standard CRC-32/ISO-HDLC check value.
    assert_eq!(ref_crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(ref_crc32(b""), 0);
    // java.util.zip.CRC32 of "hello".
    assert_eq!(ref_crc32(b"hello"), 0x3610_A686);
    // The crate's masked CRC agrees with the reference, and clears the top bit.
    assert_eq!(masked_crc32(b"123456789"), 0x4BF4_3926);
    for body in [
        &b""[..],
        b"a",
        b"hello",
        b"v6 body",
        b"retry",
        &[0xFFu8; 1000],
    ] {
        assert_eq!(masked_crc32(body), ref_masked_crc32(body), "{body:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn v6(segments: [u16; 8], port: u16) -> SocketAddr {
    let [a, b, c, d, e, f, g, h] = segments;
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), port)
}

/// Encodes with mqlite's encoder, sizing the buffer with `encoded_len`.
fn encode(meta: &RecordMeta, body: &[u8], topic: &str, props: &[u8]) -> (Vec<u8>, u32) {
    let len = record::encoded_len(meta, body.len(), topic.len(), props.len())
        .expect("record fits the format");
    let mut out = vec![0xEE; len];
    let crc = record::encode_into(&mut out, meta, body, topic, props.len(), |dst| {
        assert_eq!(dst.len(), props.len(), "properties region size");
        dst.copy_from_slice(props);
    });
    (out, crc)
}

fn decode_message(buf: &[u8], check_crc: bool) -> RecordView<'_> {
    match record::decode(buf, check_crc) {
        Ok(Decoded::Message(m)) => m,
        other => panic!("expected a message record, got {other:?}"),
    }
}

/// Prints the first differing byte, which makes golden failures readable.
fn assert_bytes_eq(actual: &[u8], expected: &[u8]) {
    if let Some(i) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!(
            "first difference at byte {i}: actual {:#04x}, expected {:#04x}\nactual   {:02x?}\nexpected {:02x?}",
            actual[i], expected[i], actual, expected
        );
    }
    assert_eq!(actual.len(), expected.len(), "lengths differ");
}

// ---------------------------------------------------------------------------------------------
// (a)+(b) CommitLog records
// ---------------------------------------------------------------------------------------------

const PROPS_KEYS_TAGS: &[u8] = b"KEYS\x01k1\x02TAGS\x01t\x02";

fn ipv4_meta() -> RecordMeta {
    RecordMeta {
        queue_id: 3,
        flag: -2,
        queue_offset: 42,
        physical_offset: 0x1_0000_1234,
        sys_flag: 0x8, // TRANSACTION_COMMIT
        born_timestamp: 1_700_000_000_123,
        born_host: v4(10, 0, 0, 1, 54321),
        store_timestamp: 1_700_000_000_456,
        store_host: v4(192, 168, 1, 10, 10911),
        reconsume_times: 2,
        prepared_transaction_offset: 0x1000,
    }
}

/// The v1 record with two IPv4 hosts, written out field by field (§1.1).
fn ipv4_golden() -> Vec<u8> {
    let mut e: Vec<u8> = Vec::new();
    // 1 TOTALSIZE: 91 fixed + 9 body + 9 topic + 15 properties = 124
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0x7C]);
    // 2 MAGICCODE v1
    e.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]);
    // 3 BODYCRC: CRC32("123456789") = 0xCBF43926, masked -> 0x4BF43926
    e.extend_from_slice(&[0x4B, 0xF4, 0x39, 0x26]);
    // 4 QUEUEID 3
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0x03]);
    // 5 FLAG -2
    e.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFE]);
    // 6 QUEUEOFFSET 42
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x2A]);
    // 7 PHYSICALOFFSET 0x1_0000_1234
    e.extend_from_slice(&[0, 0, 0, 0x01, 0, 0, 0x12, 0x34]);
    // 8 SYSFLAG 0x8 (TRANSACTION_COMMIT; host bits clear: both IPv4)
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0x08]);
    // 9 BORNTIMESTAMP 1_700_000_000_123 = 0x18B_CFE5_687B
    e.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B]);
    // 10 BORNHOST 10.0.0.1, port 54321 = 0xD431 as i32
    e.extend_from_slice(&[10, 0, 0, 1, 0x00, 0x00, 0xD4, 0x31]);
    // 11 STORETIMESTAMP 1_700_000_000_456 = 0x18B_CFE5_69C8
    e.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xC8]);
    // 12 STOREHOST 192.168.1.10, port 10911 = 0x2A9F
    e.extend_from_slice(&[192, 168, 1, 10, 0x00, 0x00, 0x2A, 0x9F]);
    // 13 RECONSUMETIMES 2
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0x02]);
    // 14 PREPARED TX OFFSET 0x1000
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x10, 0x00]);
    // 15 BODY length 9, then the body
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0x09]);
    e.extend_from_slice(b"123456789");
    // 16 TOPIC length (1 byte, v1) 9, then the topic
    e.push(0x09);
    e.extend_from_slice(b"TopicTest");
    // 17 PROPERTIES length (i16) 15, then "KEYS\1k1\2TAGS\1t\2"
    e.extend_from_slice(&[0x00, 0x0F]);
    e.extend_from_slice(&[b'K', b'E', b'Y', b'S', 0x01, b'k', b'1', 0x02]);
    e.extend_from_slice(&[b'T', b'A', b'G', b'S', 0x01, b't', 0x02]);
    e
}

#[test]
fn ipv4_v1_record_golden_bytes() {
    let expected = ipv4_golden();
    assert_eq!(expected.len(), 124);
    assert_eq!(record::V1_V4_OVERHEAD, 91);
    let meta = ipv4_meta();
    assert_eq!(record::encoded_len(&meta, 9, 9, 15), Some(124));
    let (bytes, crc) = encode(&meta, b"123456789", "TopicTest", PROPS_KEYS_TAGS);
    assert_bytes_eq(&bytes, &expected);
    assert_eq!(
        crc, 0x4BF4_3926,
        "encode_into returns the stored masked CRC"
    );
    // Documented field positions (§1.1).
    assert_eq!(record::QUEUE_ID_POS, 12);
    assert_eq!(record::FLAG_POS, 16);
    assert_eq!(record::QUEUE_OFFSET_POS, 20);
    assert_eq!(record::PHYSICAL_OFFSET_POS, 28);
    assert_eq!(record::SYS_FLAG_POS, 36);
    assert_eq!(record::BORN_HOST_POS, 48);
    assert_eq!(record::STORE_TIMESTAMP_POS_V4, 56);
    assert_eq!(
        &expected[56..64],
        &[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xC8]
    );
    assert_eq!(&expected[84..88], &[0, 0, 0, 9], "body length sits at 84");
}

#[test]
fn ipv4_v1_record_decodes_every_field() {
    let bytes = ipv4_golden();
    for check_crc in [false, true] {
        let rec = decode_message(&bytes, check_crc);
        assert_eq!(rec.total_size, 124);
        assert_eq!(rec.version, 1);
        assert_eq!(rec.body_crc, 0x4BF4_3926);
        assert_eq!(rec.meta, ipv4_meta());
        assert_eq!(rec.meta.born_host, v4(10, 0, 0, 1, 54321));
        assert_eq!(rec.meta.store_host, v4(192, 168, 1, 10, 10911));
        assert_eq!(rec.body, b"123456789");
        assert_eq!(rec.topic, "TopicTest");
        assert_eq!(rec.properties, PROPS_KEYS_TAGS);
    }
    // The buffer may extend past the record (the rest of the segment).
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0xAB; 50]);
    let rec = decode_message(&longer, true);
    assert_eq!(rec.total_size, 124);
    assert_eq!(rec.properties, PROPS_KEYS_TAGS);
}

fn ipv6_meta() -> RecordMeta {
    RecordMeta {
        queue_id: 1,
        flag: 0,
        queue_offset: 7,
        physical_offset: 128,
        sys_flag: 0, // the encoder derives the host bits from the addresses
        born_timestamp: 1_700_000_000_123,
        born_host: v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 1], 40000),
        store_timestamp: 1_700_000_000_456,
        store_host: v6([0, 0, 0, 0, 0, 0, 0, 1], 10911),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// The v1 record with two IPv6 hosts: each host is 16 address bytes + i32 port.
fn ipv6_golden() -> Vec<u8> {
    let mut e: Vec<u8> = Vec::new();
    // TOTALSIZE: 91 + 12 + 12 + 7 body + 2 topic + 4 properties = 128
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0x80]);
    // MAGICCODE v1
    e.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]);
    // BODYCRC: CRC32("v6 body") = 0xFBDA2575, masked (top bit cleared) -> 0x7BDA2575
    e.extend_from_slice(&[0x7B, 0xDA, 0x25, 0x75]);
    // QUEUEID 1
    e.extend_from_slice(&[0, 0, 0, 1]);
    // FLAG 0
    e.extend_from_slice(&[0, 0, 0, 0]);
    // QUEUEOFFSET 7
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
    // PHYSICALOFFSET 128
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80]);
    // SYSFLAG: BORNHOST_V6 0x10 | STOREHOSTADDRESS_V6 0x20
    e.extend_from_slice(&[0, 0, 0, 0x30]);
    // BORNTIMESTAMP
    e.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B]);
    // BORNHOST 2001:db8::1, port 40000 = 0x9C40
    e.extend_from_slice(&[
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ]);
    e.extend_from_slice(&[0x00, 0x00, 0x9C, 0x40]);
    // STORETIMESTAMP (at 48 + 20 = 68)
    e.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xC8]);
    // STOREHOST ::1, port 10911
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]);
    e.extend_from_slice(&[0x00, 0x00, 0x2A, 0x9F]);
    // RECONSUMETIMES 0
    e.extend_from_slice(&[0, 0, 0, 0]);
    // PREPARED TX OFFSET 0
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    // BODY
    e.extend_from_slice(&[0, 0, 0, 7]);
    e.extend_from_slice(b"v6 body");
    // TOPIC (v1: 1-byte length)
    e.push(2);
    e.extend_from_slice(b"T6");
    // PROPERTIES "A\1B\2"
    e.extend_from_slice(&[0x00, 0x04]);
    e.extend_from_slice(&[b'A', 0x01, b'B', 0x02]);
    e
}

#[test]
fn ipv6_record_golden_bytes_and_decode() {
    let expected = ipv6_golden();
    assert_eq!(expected.len(), 128);
    let meta = ipv6_meta();
    let (bytes, crc) = encode(&meta, b"v6 body", "T6", b"A\x01B\x02");
    assert_bytes_eq(&bytes, &expected);
    assert_eq!(crc, 0x7BDA_2575);
    // STORETIMESTAMP moved by 12 behind the IPv6 born host.
    assert_eq!(
        &expected[68..76],
        &[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xC8]
    );

    let rec = decode_message(&expected, true);
    assert_eq!(rec.total_size, 128);
    assert_eq!(rec.version, 1);
    assert_eq!(rec.body_crc, 0x7BDA_2575);
    assert_eq!(
        rec.meta,
        RecordMeta {
            sys_flag: 0x30,
            ..meta
        }
    );
    assert_eq!(rec.body, b"v6 body");
    assert_eq!(rec.topic, "T6");
    assert_eq!(rec.properties, b"A\x01B\x02");
}

#[test]
fn host_flags_follow_the_addresses() {
    let sys_flag_of =
        |bytes: &[u8]| i32::from_be_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]);
    // Born IPv4, store IPv6: only STOREHOSTADDRESS_V6, record 12 bytes longer than v4/v4.
    let meta = RecordMeta {
        born_host: v4(1, 2, 3, 4, 5),
        ..ipv6_meta()
    };
    let (bytes, _) = encode(&meta, b"x", "t", b"");
    assert_eq!(bytes.len(), 91 + 12 + 1 + 1);
    assert_eq!(sys_flag_of(&bytes), 0x20);
    // Born host at 48 is 4 address bytes + port (5).
    assert_eq!(&bytes[48..56], &[1, 2, 3, 4, 0, 0, 0, 5]);
    let rec = decode_message(&bytes, true);
    assert_eq!(rec.meta.born_host, v4(1, 2, 3, 4, 5));
    assert_eq!(rec.meta.store_host, v6([0, 0, 0, 0, 0, 0, 0, 1], 10911));

    // Born IPv6, store IPv4: only BORNHOST_V6.
    let meta = RecordMeta {
        store_host: v4(9, 8, 7, 6, 1),
        ..ipv6_meta()
    };
    let (bytes, _) = encode(&meta, b"x", "t", b"");
    assert_eq!(sys_flag_of(&bytes), 0x10);
    let rec = decode_message(&bytes, true);
    assert_eq!(rec.meta.store_host, v4(9, 8, 7, 6, 1));

    // Host bits set by the caller on IPv4 hosts are cleared; other bits kept.
    let meta = RecordMeta {
        sys_flag: 0x30 | 0x4 | 0x1,
        ..ipv4_meta()
    };
    let (bytes, _) = encode(&meta, b"x", "t", b"");
    assert_eq!(bytes.len(), 91 + 1 + 1);
    assert_eq!(sys_flag_of(&bytes), 0x5);
}

fn retry_topic() -> String {
    // 130 bytes: longer than 127, so the record must be v2.
    format!("%RETRY%{}", "g".repeat(123))
}

/// A v2 record (topic > 127 bytes): magic 0xDAA320AB and a 2-byte topic length.
fn v2_golden() -> Vec<u8> {
    let mut e: Vec<u8> = Vec::new();
    // TOTALSIZE: 91 + 1 (2-byte topic length) + 5 body + 130 topic + 0 properties = 227
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0xE3]);
    // MAGICCODE v2
    e.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xAB]);
    // BODYCRC: CRC32("retry") = 0x2EE051E3 (top bit already clear)
    e.extend_from_slice(&[0x2E, 0xE0, 0x51, 0xE3]);
    // QUEUEID 0, FLAG 0
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    // QUEUEOFFSET 5
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
    // PHYSICALOFFSET 65536
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    // SYSFLAG 0
    e.extend_from_slice(&[0, 0, 0, 0]);
    // BORNTIMESTAMP
    e.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B]);
    // BORNHOST 127.0.0.1:10911
    e.extend_from_slice(&[127, 0, 0, 1, 0x00, 0x00, 0x2A, 0x9F]);
    // STORETIMESTAMP
    e.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xC8]);
    // STOREHOST 127.0.0.1:10911
    e.extend_from_slice(&[127, 0, 0, 1, 0x00, 0x00, 0x2A, 0x9F]);
    // RECONSUMETIMES 1
    e.extend_from_slice(&[0, 0, 0, 1]);
    // PREPARED TX OFFSET 0
    e.extend_from_slice(&[0; 8]);
    // BODY
    e.extend_from_slice(&[0, 0, 0, 5]);
    e.extend_from_slice(b"retry");
    // TOPIC: i16 length 130 = 0x0082, then the topic
    e.extend_from_slice(&[0x00, 0x82]);
    e.extend_from_slice(b"%RETRY%");
    e.extend_from_slice(&[b'g'; 123]);
    // PROPERTIES: empty
    e.extend_from_slice(&[0x00, 0x00]);
    e
}

fn v2_meta() -> RecordMeta {
    RecordMeta {
        queue_id: 0,
        flag: 0,
        queue_offset: 5,
        physical_offset: 65536,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_123,
        born_host: v4(127, 0, 0, 1, 10911),
        store_timestamp: 1_700_000_000_456,
        store_host: v4(127, 0, 0, 1, 10911),
        reconsume_times: 1,
        prepared_transaction_offset: 0,
    }
}

#[test]
fn long_topic_v2_record_golden_bytes_and_decode() {
    let expected = v2_golden();
    assert_eq!(expected.len(), 227);
    let topic = retry_topic();
    assert_eq!(topic.len(), 130);
    let (bytes, _) = encode(&v2_meta(), b"retry", &topic, b"");
    assert_bytes_eq(&bytes, &expected);

    let rec = decode_message(&expected, true);
    assert_eq!(rec.version, 2);
    assert_eq!(rec.total_size, 227);
    assert_eq!(rec.meta, v2_meta());
    assert_eq!(rec.body, b"retry");
    assert_eq!(rec.topic, topic);
    assert_eq!(rec.properties, b"");
}

#[test]
fn topic_length_boundaries_pick_the_version() {
    let meta = v2_meta();
    // 127 bytes: still v1, 1-byte length 0x7F.
    let t127 = "a".repeat(127);
    let (b, _) = encode(&meta, b"b", &t127, b"");
    assert_eq!(b.len(), 91 + 1 + 127);
    assert_eq!(&b[4..8], &[0xDA, 0xA3, 0x20, 0xA7]);
    assert_eq!(b[84 + 4 + 1], 0x7F);
    assert_eq!(decode_message(&b, true).topic, t127);
    // 128 bytes: v2, 2-byte length 0x0080.
    let t128 = "a".repeat(128);
    let (b, _) = encode(&meta, b"b", &t128, b"");
    assert_eq!(b.len(), 91 + 1 + 1 + 128);
    assert_eq!(&b[4..8], &[0xDA, 0xA3, 0x20, 0xAB]);
    assert_eq!(&b[89..91], &[0x00, 0x80]);
    let rec = decode_message(&b, true);
    assert_eq!((rec.version, rec.topic), (2, t128.as_str()));
    // 255 is the hard cap; 256 does not fit. Properties are capped at i16::MAX.
    assert!(record::encoded_len(&meta, 1, 255, 0).is_some());
    assert_eq!(record::encoded_len(&meta, 1, 256, 0), None);
    assert!(record::encoded_len(&meta, 1, 10, 32767).is_some());
    assert_eq!(record::encoded_len(&meta, 1, 10, 32768), None);
}

/// BUG (src/format/record.rs, `decode`): the v1 topic length is a *signed* byte (§1.1: "v1: a
/// signed byte, so at most 127"; RocketMQ's `MessageVersion.MESSAGE_VERSION_V1.getTopicLength`
/// is `buffer.get()`, so 0x80..0xFF is negative and the record is rejected as corrupt). mqlite
/// reads it as `u8` and accepts a v1 record with a 128..255-byte topic that Java would refuse,
/// so recovery can keep a record Java would truncate at.
#[test]
fn bug_v1_topic_length_byte_is_signed() {
    // A v1 record by hand: 128-byte topic behind a 1-byte length 0x80 (-128 as a Java byte).
    let mut e: Vec<u8> = Vec::new();
    // TOTALSIZE: 91 + 1 body + 128 topic = 220
    e.extend_from_slice(&[0x00, 0x00, 0x00, 0xDC]);
    e.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]); // MAGICCODE v1
    // BODYCRC: CRC32("b") = 0x71BEEFF9 (top bit already clear)
    e.extend_from_slice(&[0x71, 0xBE, 0xEF, 0xF9]);
    e.extend_from_slice(&[0; 4 + 4 + 8 + 8 + 4]); // QUEUEID, FLAG, QUEUEOFFSET, PHYSICALOFFSET, SYSFLAG
    e.extend_from_slice(&[0; 8]); // BORNTIMESTAMP
    e.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0x2A, 0x9F]); // BORNHOST
    e.extend_from_slice(&[0; 8]); // STORETIMESTAMP
    e.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0x2A, 0x9F]); // STOREHOST
    e.extend_from_slice(&[0; 4 + 8]); // RECONSUMETIMES, PREPARED TX OFFSET
    e.extend_from_slice(&[0, 0, 0, 1, b'b']); // BODY
    e.push(0x80); // TOPIC length: (byte) 0x80 == -128 in Java
    e.extend_from_slice(&[b'a'; 128]);
    e.extend_from_slice(&[0, 0]); // PROPERTIES: empty
    assert_eq!(e.len(), 220);
    assert_eq!(ref_masked_crc32(b"b"), 0x71BE_EFF9);
    assert!(
        record::decode(&e, true).is_err(),
        "a v1 record with topic length byte 0x80 must be rejected, got {:?}",
        record::decode(&e, true)
    );
}

#[test]
fn blank_record_golden_and_decode() {
    let mut blank = [0u8; record::BLANK_LEN];
    record::encode_blank(&mut blank, 1000);
    // TOTALSIZE 1000 = 0x3E8, magic 0xCBD43194.
    assert_eq!(blank, [0x00, 0x00, 0x03, 0xE8, 0xCB, 0xD4, 0x31, 0x94]);
    assert_eq!(
        record::decode(&blank, true),
        Ok(Decoded::Blank { size: 1000 })
    );
    // A blank record claiming fewer than its own 8 bytes is invalid.
    let short = [0x00, 0x00, 0x00, 0x04, 0xCB, 0xD4, 0x31, 0x94];
    assert!(record::decode(&short, false).is_err());
}

#[test]
fn damaged_records_are_rejected() {
    let good = ipv4_golden();
    // Truncated: TOTALSIZE larger than the buffer.
    assert!(record::decode(&good[..123], false).is_err());
    assert!(record::decode(&good[..4], false).is_err());
    assert!(record::decode(&[], false).is_err());
    // Unknown magic.
    let mut bad = good.clone();
    bad[7] ^= 0x01;
    assert_eq!(
        record::decode(&bad, false),
        Err(DecodeError::BadMagic(0xDAA3_20A6))
    );
    // TOTALSIZE one larger than the contents (buffer long enough): size mismatch.
    let mut bad = good.clone();
    bad[3] = 0x7D;
    bad.push(0);
    assert!(matches!(
        record::decode(&bad, false),
        Err(DecodeError::SizeMismatch { stored: 125, .. })
    ));
    // TOTALSIZE one smaller: the properties no longer fit.
    let mut bad = good.clone();
    bad[3] = 0x7B;
    assert!(record::decode(&bad, false).is_err());
    // A flipped body bit: only caught with the CRC check.
    let mut bad = good.clone();
    bad[88] ^= 0x10;
    assert!(record::decode(&bad, false).is_ok());
    assert_eq!(
        record::decode(&bad, true),
        Err(DecodeError::CrcMismatch {
            stored: 0x4BF4_3926,
            computed: ref_masked_crc32(&bad[88..97]),
        })
    );
    // A negative body length.
    let mut bad = good.clone();
    bad[84] = 0x80;
    assert!(record::decode(&bad, false).is_err());
    // A negative properties length.
    let mut bad = good;
    bad[107] = 0x80;
    assert!(record::decode(&bad, false).is_err());
}

// ---------------------------------------------------------------------------------------------
// (c) ConsumeQueue unit
// ---------------------------------------------------------------------------------------------

#[test]
fn cq_unit_golden_bytes_and_decode() {
    assert_eq!(CQ_UNIT_SIZE, 20);
    let unit = CqUnit {
        physical_offset: 0x1_0000_0010,
        size: 124,
        tag_code: 2_598_919, // Java "TagA".hashCode()
    };
    let expected: [u8; 20] = [
        // physical offset (i64) 0x1_0000_0010
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, //
        // size (i32) 124
        0x00, 0x00, 0x00, 0x7C, //
        // tag code (i64) 2598919 = 0x27A807
        0x00, 0x00, 0x00, 0x00, 0x00, 0x27, 0xA8, 0x07,
    ];
    assert_eq!(unit.encode(), expected);
    assert_eq!(CqUnit::decode(&expected), Ok(Some(unit)));

    // A negative tag code is sign-extended over all 8 bytes.
    let unit = CqUnit {
        physical_offset: 0,
        size: 91,
        tag_code: -969_099_747, // Java "Hello World!".hashCode()
    };
    let expected: [u8; 20] = [
        0, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0, 91, //
        0xFF, 0xFF, 0xFF, 0xFF, 0xC6, 0x3C, 0xB6, 0x1D,
    ];
    assert_eq!(unit.encode(), expected);
    assert_eq!(CqUnit::decode(&expected), Ok(Some(unit)));

    // Zero-filled space is the end of the queue; so are size <= 0 and negative offsets.
    assert_eq!(CqUnit::decode(&[0u8; 20]), Ok(None));
    let mut no_size = expected;
    no_size[8..12].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(CqUnit::decode(&no_size), Ok(None));
    let mut neg_size = expected;
    neg_size[8..12].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(CqUnit::decode(&neg_size), Ok(None));
    let mut neg_off = expected;
    neg_off[0] = 0x80;
    assert_eq!(CqUnit::decode(&neg_off), Ok(None));
    // The pre-blank unit (0, Integer.MAX_VALUE, 0).
    assert_eq!(
        CqUnit::PRE_BLANK.encode(),
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    // Shorter than a unit: an error; longer: only the first 20 bytes count.
    assert!(CqUnit::decode(&expected[..19]).is_err());
    let mut longer = expected.to_vec();
    longer.extend_from_slice(&[0xFF; 7]);
    assert_eq!(CqUnit::decode(&longer), Ok(Some(unit)));
}

// ---------------------------------------------------------------------------------------------
// (d) Checkpoint
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoint_golden_layout() {
    let cp = Checkpoint {
        physic_msg_timestamp: 1_700_000_000_123,
        logics_msg_timestamp: 1_700_000_000_456,
        index_msg_timestamp: 1,
        master_flushed_offset: 65536,
        confirm_phy_offset: 0x1_0000_1234,
    };
    let mut expected = vec![0u8; 4096];
    // 0: physicMsgTimestamp
    expected[0..8].copy_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B]);
    // 8: logicsMsgTimestamp
    expected[8..16].copy_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xC8]);
    // 16: indexMsgTimestamp
    expected[16..24].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    // 24: masterFlushedOffset
    expected[24..32].copy_from_slice(&[0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    // 32: confirmPhyOffset
    expected[32..40].copy_from_slice(&[0, 0, 0, 0x01, 0, 0, 0x12, 0x34]);
    // 40..4096: zero (40..48 is read as an extra field by some implementations).
    assert_eq!(CHECKPOINT_FILE_SIZE, 4096);
    let encoded = cp.encode();
    assert_bytes_eq(&encoded, &expected);
    assert!(encoded[40..48].iter().all(|&b| b == 0));
    assert_eq!(Checkpoint::decode(&expected), Ok(cp));
    // getMinTimestamp = max(0, min(physic, logics) - 3000)
    assert_eq!(cp.min_timestamp(), 1_700_000_000_123 - 3000);
    assert_eq!(Checkpoint::default().min_timestamp(), 0);
}

#[test]
fn checkpoint_decode_accepts_4x_and_rejects_short_or_negative() {
    // RocketMQ 4.x: only the first three fields.
    let mut old = [0u8; 24];
    old[7] = 5;
    old[15] = 6;
    old[23] = 7;
    assert_eq!(
        Checkpoint::decode(&old),
        Ok(Checkpoint {
            physic_msg_timestamp: 5,
            logics_msg_timestamp: 6,
            index_msg_timestamp: 7,
            master_flushed_offset: 0,
            confirm_phy_offset: 0,
        })
    );
    assert!(Checkpoint::decode(&old[..23]).is_err());
    assert!(Checkpoint::decode(&[]).is_err());
    let mut neg = [0u8; 4096];
    neg[32] = 0x80;
    assert!(Checkpoint::decode(&neg).is_err());
}

// ---------------------------------------------------------------------------------------------
// (e) Java String.hashCode and tag codes
// ---------------------------------------------------------------------------------------------

/// h = 31*h + c over UTF-16 code units, 32-bit wrapping: the test's own implementation.
fn ref_java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[test]
fn java_string_hash_matches_java() {
    let cases: &[(&str, i32)] = &[
        ("", 0),
        ("a", 97),
        // T=84 a=97 g=103 A=65: ((84*31+97)*31+103)*31+65 = 2598919
        ("TagA", 2_598_919),
        ("TagB", 2_598_920),
        ("hello", 99_162_322),
        // The classic collision.
        ("Aa", 2112),
        ("BB", 2112),
        // Overflows to exactly Integer.MIN_VALUE.
        ("polygenelubricants", i32::MIN),
        ("Hello World!", -969_099_747),
        ("TopicTest#ORDER-1", -1_111_209_712),
        ("zzzzzzzzzzzzzz", -1_886_561_600),
        // U+00E9: one UTF-16 unit (233), two UTF-8 bytes.
        ("\u{e9}", 233),
        ("caf\u{e9}", 3_045_921),
        // U+1F600 is the surrogate pair D83D DE00: 0xD83D*31 + 0xDE00 = 1772899.
        ("\u{1F600}", 1_772_899),
        ("a\u{1F600}b", 57_849_694),
        ("\u{4e2d}\u{6587}\u{6807}\u{7b7e}", 622_041_809),
    ];
    for &(s, h) in cases {
        assert_eq!(ref_java_hash(s), h, "reference hash of {s:?}");
        assert_eq!(java_string_hash(s), h, "java_string_hash({s:?})");
    }
    // Not the UTF-8 bytes, and not code points.
    let utf8_hash = "\u{1F600}"
        .bytes()
        .fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b)));
    assert_ne!(java_string_hash("\u{1F600}"), utf8_hash);
    assert_ne!(java_string_hash("\u{1F600}"), 0x1F600);
}

#[test]
fn tag_code_is_the_sign_extended_hash() {
    assert_eq!(tag_code(None), 0);
    assert_eq!(tag_code(Some("")), 0);
    assert_eq!(tag_code(Some("TagA")), 2_598_919);
    assert_eq!(tag_code(Some("Hello World!")), -969_099_747);
    assert_eq!(tag_code(Some("polygenelubricants")), -2_147_483_648);
    assert_eq!(
        tag_code(Some("polygenelubricants")) as u64,
        0xFFFF_FFFF_8000_0000,
        "sign-extended, not zero-extended"
    );
    // The whole TAGS string is hashed, separators included.
    assert_eq!(tag_code(Some("a||b")), i64::from(ref_java_hash("a||b")));
}

// ---------------------------------------------------------------------------------------------
// (f) Properties
// ---------------------------------------------------------------------------------------------

fn parsed(raw: &[u8]) -> Vec<(String, String)> {
    properties::iter(raw)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn properties_encode_golden() {
    let p = [("KEYS", "k1"), ("TAGS", "t")];
    assert_eq!(properties::encoded_len(p), 15);
    assert_eq!(properties::encode(p), b"KEYS\x01k1\x02TAGS\x01t\x02");
    let mut buf = [0xEEu8; 20];
    assert_eq!(properties::write(&mut buf, p), 15);
    assert_eq!(&buf[..15], b"KEYS\x01k1\x02TAGS\x01t\x02");
    assert_eq!(&buf[15..], &[0xEE; 5], "nothing written past the end");
    let empty: [(&str, &str); 0] = [];
    assert_eq!(properties::encode(empty), b"");
    // UTF-8 on disk.
    assert_eq!(properties::encode([("k", "\u{e9}")]), b"k\x01\xC3\xA9\x02");
    assert_eq!(properties::NAME_VALUE_SEPARATOR, 0x01);
    assert_eq!(properties::PROPERTY_SEPARATOR, 0x02);
}

#[test]
fn properties_parse_rules() {
    assert_eq!(
        parsed(b"KEYS\x01k1\x02TAGS\x01t\x02"),
        pairs(&[("KEYS", "k1"), ("TAGS", "t")])
    );
    // The last pair does not need its trailing 0x02.
    assert_eq!(
        parsed(b"A\x01B\x02C\x01D"),
        pairs(&[("A", "B"), ("C", "D")])
    );
    // Segments shorter than 3 chars are skipped; 3 is enough.
    assert_eq!(
        parsed(b"a\x01\x02\x01b\x02ab\x02x\x01y\x02"),
        pairs(&[("x", "y")])
    );
    assert_eq!(parsed(b"\x02\x02\x02"), pairs(&[]));
    // The first 0x01 splits: later ones belong to the value.
    assert_eq!(parsed(b"k\x01v\x01w\x02"), pairs(&[("k", "v\x01w")]));
    // Empty names and empty values are dropped.
    assert_eq!(
        parsed(b"\x01value\x02name\x01\x02ok\x011\x02"),
        pairs(&[("ok", "1")])
    );
    // No separator at all: dropped.
    assert_eq!(parsed(b"novalue\x02k\x01v\x02"), pairs(&[("k", "v")]));
    // Empty input.
    assert_eq!(parsed(b""), pairs(&[]));
    // Non-ASCII text round-trips.
    assert_eq!(
        parsed(&properties::encode([("\u{4e2d}", "\u{1F600}")])),
        pairs(&[("\u{4e2d}", "\u{1F600}")])
    );
    // get: the last occurrence wins (a Java HashMap filled in order).
    let raw = b"K\x01first\x02X\x01y\x02K\x01second\x02";
    assert_eq!(properties::get(raw, "K"), Some("second"));
    assert_eq!(properties::get(raw, "X"), Some("y"));
    assert_eq!(properties::get(raw, "missing"), None);
}

// ---------------------------------------------------------------------------------------------
// (g) Message ids
// ---------------------------------------------------------------------------------------------

#[test]
fn offset_message_id_golden_ipv4() {
    let id = OffsetMessageId {
        store_host: v4(192, 168, 1, 10, 10911),
        physical_offset: 0x0123_4567_89AB,
    };
    // IP C0A8010A, port 10911 = 00002A9F (i32), offset 00000123456789AB (i64).
    let text = "C0A8010A00002A9F00000123456789AB";
    assert_eq!(text.len(), 32);
    assert_eq!(id.to_string(), text);
    let mut buf = [0u8; 56];
    assert_eq!(id.encode_into(&mut buf), text);
    assert_eq!(text.parse::<OffsetMessageId>(), Ok(id));
    // Lower case is accepted and renders back in upper case.
    let lower: OffsetMessageId = text.to_lowercase().parse().unwrap();
    assert_eq!(lower, id);
    assert_eq!(lower.to_string(), text);
    // Offset 0, port 0.
    let zero = OffsetMessageId {
        store_host: v4(0, 0, 0, 0, 0),
        physical_offset: 0,
    };
    assert_eq!(zero.to_string(), "0".repeat(32));
}

#[test]
fn offset_message_id_golden_ipv6() {
    let id = OffsetMessageId {
        store_host: v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 1], 8080),
        physical_offset: 5,
    };
    let text = concat!(
        "20010DB8000000000000000000000001", // 16 address bytes
        "00001F90",                         // port 8080 as i32
        "0000000000000005",                 // offset as i64
    );
    assert_eq!(text.len(), 56);
    assert_eq!(id.to_string(), text);
    assert_eq!(text.parse::<OffsetMessageId>(), Ok(id));
}

#[test]
fn malformed_offset_message_ids_are_errors() {
    let good = "C0A8010A00002A9F00000123456789AB";
    let bad: Vec<String> = vec![
        String::new(),
        good[..31].to_owned(),
        format!("{good}0"),
        format!(" {}", &good[1..]),
        format!("G{}", &good[1..]),
        format!("{}-", &good[..31]),
        // 32 bytes but a two-byte character.
        format!("\u{e9}{}", &good[2..]),
        // 56 characters with a non-hex one.
        format!("{}Z", &"0".repeat(55)),
        // 40 characters: neither form.
        "0".repeat(40),
        // Port 65536 cannot be a TCP port.
        "C0A8010A0001000000000123456789AB".to_owned(),
        // Negative offset.
        "C0A8010A00002A9F8000000000000000".to_owned(),
    ];
    for s in &bad {
        assert!(
            s.parse::<OffsetMessageId>().is_err(),
            "{s:?} should not parse"
        );
    }
}

#[test]
fn message_id_parse_and_errors() {
    let id = MessageId::parse("7f00000139a4aabbccdd0011223344ff").unwrap();
    assert_eq!(id.as_str(), "7F00000139A4AABBCCDD0011223344FF");
    assert_eq!(id.to_string(), "7F00000139A4AABBCCDD0011223344FF");
    assert_eq!(MessageId::parse(id.as_str()), Ok(id));
    for s in [
        "",
        "7F00000139A4AABBCCDD0011223344F",
        "7F00000139A4AABBCCDD0011223344FF0",
        "7F00000139A4AABBCCDD0011223344FG",
        // 32 bytes, the last two a two-byte character.
        "7F00000139A4AABBCCDD0011223344\u{e9}",
    ] {
        assert!(MessageId::parse(s).is_err(), "{s:?} should not parse");
    }
}

fn is_upper_hex_32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[test]
fn message_id_generator_layout() {
    let g = MessageIdGenerator::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)));
    // 2024-02-15T00:00:00Z: 14 days (1_209_600_000 ms = 0x48190800) after 2024-02-01T00:00Z.
    let now = 1_707_955_200_000;
    let a = g.next(now);
    let b = g.next(now);
    for id in [a, b] {
        let s = id.as_str();
        assert!(is_upper_hex_32(s), "{s}");
        // IP (4 bytes), then the pid as a short.
        assert_eq!(&s[..8], "C0A8010A");
        assert_eq!(&s[8..12], format!("{:04X}", std::process::id() as u16));
        // Milliseconds since the start of the month.
        assert_eq!(&s[20..28], "48190800");
        assert_eq!(MessageId::parse(s), Ok(id));
    }
    // The first 20 characters are fixed per generator; the counter steps by one.
    assert_eq!(&a.as_str()[..20], &b.as_str()[..20]);
    let ca = u16::from_str_radix(&a.as_str()[28..], 16).unwrap();
    let cb = u16::from_str_radix(&b.as_str()[28..], 16).unwrap();
    assert_eq!(cb, ca.wrapping_add(1));
    // The last millisecond of February 2024 (a leap year): 2_505_599_999 = 0x95586BFF.
    assert_eq!(&g.next(1_709_251_199_999).as_str()[20..28], "95586BFF");
    // The first of March starts again at 0.
    assert_eq!(&g.next(1_709_251_200_000).as_str()[20..28], "00000000");
    // An IPv6 address is folded to its last 4 bytes.
    let g6 = MessageIdGenerator::new(IpAddr::V6(Ipv6Addr::new(
        0x2001, 0xdb8, 0, 0, 0, 0, 0x0a0b, 0x0c0d,
    )));
    assert_eq!(&g6.next(now).as_str()[..8], "0A0B0C0D");
}

#[test]
fn message_ids_are_unique() {
    let g = MessageIdGenerator::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // Within one millisecond the 16-bit counter gives 65536 distinct ids.
    let now = 1_707_955_200_000u64;
    let mut seen = HashSet::new();
    for _ in 0..65536 {
        let id = g.next(now);
        assert!(seen.insert(id), "duplicate {id} within one millisecond");
    }
    // 100k ids with a clock advancing one millisecond per 1000 ids (a million ids a second).
    let g = MessageIdGenerator::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut seen = HashSet::new();
    for i in 0..100_000u64 {
        let id = g.next(now + i / 1000);
        assert!(is_upper_hex_32(id.as_str()));
        assert!(seen.insert(id), "duplicate {id} at call {i}");
    }
    // 100k ids against the real clock.
    let g = MessageIdGenerator::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut seen = HashSet::new();
    for i in 0..100_000 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = g.next(now);
        assert!(seen.insert(id), "duplicate {id} at call {i}");
    }
}
