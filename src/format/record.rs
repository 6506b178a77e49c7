//! The CommitLog message record (RocketMQ `MessageExtEncoder` / `MessageDecoder`).
//!
//! ```text
//! off  size  field (IPv4 born and store hosts; each IPv6 host adds 12 bytes after it)
//!   0     4  TOTALSIZE           whole record, these 4 bytes included
//!   4     4  MAGICCODE           v1 0xDAA320A7, v2 0xDAA320AB, blank 0xCBD43194
//!   8     4  BODYCRC             masked IEEE CRC32 of the stored body
//!  12     4  QUEUEID
//!  16     4  FLAG
//!  20     8  QUEUEOFFSET
//!  28     8  PHYSICALOFFSET
//!  36     4  SYSFLAG
//!  40     8  BORNTIMESTAMP
//!  48   8|20 BORNHOST            address, then port as i32
//!  56     8  STORETIMESTAMP
//!  64   8|20 STOREHOSTADDRESS
//!  72     4  RECONSUMETIMES
//!  76     8  PREPARED TX OFFSET
//!  84   4+n  BODY                i32 length, then bytes
//!   .   1+n  TOPIC               v1: i8 length; v2: i16 length
//!   .   2+n  PROPERTIES          i16 length, then the properties string
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DecodeError, Reader, Writer, masked_crc32};

/// Magic code of a v1 record (1-byte topic length).
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// Magic code of a v2 record (2-byte topic length).
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// Magic code of the blank record that ends a segment.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// Size of the blank end-of-segment record the writer puts down.
pub const BLANK_LEN: usize = 8;

/// Byte offset of TOTALSIZE.
pub const TOTAL_SIZE_POS: usize = 0;
/// Byte offset of MAGICCODE.
pub const MAGIC_POS: usize = TOTAL_SIZE_POS + 4;
/// Byte offset of BODYCRC.
pub const BODY_CRC_POS: usize = MAGIC_POS + 4;
/// Byte offset of QUEUEID.
pub const QUEUE_ID_POS: usize = BODY_CRC_POS + 4;
/// Byte offset of FLAG.
pub const FLAG_POS: usize = QUEUE_ID_POS + 4;
/// Byte offset of QUEUEOFFSET.
pub const QUEUE_OFFSET_POS: usize = FLAG_POS + 4;
/// Byte offset of PHYSICALOFFSET.
pub const PHYSICAL_OFFSET_POS: usize = QUEUE_OFFSET_POS + 8;
/// Byte offset of SYSFLAG.
pub const SYS_FLAG_POS: usize = PHYSICAL_OFFSET_POS + 8;
/// Byte offset of BORNTIMESTAMP.
pub const BORN_TIMESTAMP_POS: usize = SYS_FLAG_POS + 4;
/// Byte offset of BORNHOST.
pub const BORN_HOST_POS: usize = BORN_TIMESTAMP_POS + 8;
/// Byte offset of STORETIMESTAMP when the born host is IPv4 (RocketMQ's
/// `MESSAGE_STORE_TIMESTAMP_POSITION`).
pub const STORE_TIMESTAMP_POS_V4: usize = BORN_HOST_POS + 8;
/// Byte offset of STOREHOSTADDRESS when the born host is IPv4.
const STORE_HOST_POS_V4: usize = STORE_TIMESTAMP_POS_V4 + 8;
/// Byte offset of RECONSUMETIMES when both hosts are IPv4.
const RECONSUME_TIMES_POS_V4: usize = STORE_HOST_POS_V4 + 8;
/// Byte offset of PREPARED TX OFFSET when both hosts are IPv4.
const PREPARED_OFFSET_POS_V4: usize = RECONSUME_TIMES_POS_V4 + 4;

/// Fixed bytes of a v1 record with two IPv4 hosts: everything but body, topic and properties.
pub const V1_V4_OVERHEAD: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2;

/// SYSFLAG bits (`MessageSysFlag`).
pub mod sys_flag {
    /// The body is compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// Multi-tag filter type (legacy).
    pub const MULTI_TAGS: i32 = 0x2;
    /// Mask of the transaction type bits.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// Not a transactional message.
    pub const TRANSACTION_NOT: i32 = 0x0;
    /// A prepared (half) transactional message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// A committed transactional message.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// A rolled-back transactional message.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// BORNHOST is IPv6 (20 bytes).
    pub const BORN_HOST_V6: i32 = 0x10;
    /// STOREHOST is IPv6 (20 bytes).
    pub const STORE_HOST_V6: i32 = 0x20;
    /// Mask of the compression type bits.
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// zlib compression type (3 << 8).
    pub const COMPRESSION_ZLIB: i32 = 0x300;
}

/// Largest topic a v1 record can hold (its length is a signed byte).
pub const MAX_TOPIC_LEN_V1: usize = 127;
/// Largest topic a v2 record can hold.
pub const MAX_TOPIC_LEN_V2: usize = 255;
/// Name of the optional whole-record CRC property (RocketMQ `PROPERTY_CRC32`).
pub const RECORD_CRC_KEY: &str = super::properties::keys::RECORD_CRC;
/// Bytes the record CRC property takes at the end of the properties: name, 0x01, 10 digits,
/// 0x02 (RocketMQ `CRC32_RESERVED_LEN`).
pub const RECORD_CRC_LEN: usize = RECORD_CRC_KEY.len() + 1 + 10 + 1;
/// Placeholder value of the record CRC property, overwritten by [`seal_record_crc`].
pub const RECORD_CRC_PLACEHOLDER: &str = "0000000000";

/// Largest properties string (`Short.MAX_VALUE`).
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// The fields of a record other than the variable-length ones, as the writer fills them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Queue id within the topic.
    pub queue_id: u32,
    /// Application flag, opaque to the store.
    pub flag: i32,
    /// Index of the record in its consume queue.
    pub queue_offset: u64,
    /// Absolute CommitLog offset of the record.
    pub physical_offset: u64,
    /// SYSFLAG bits (host bits are derived from the addresses when encoding).
    pub sys_flag: i32,
    /// Producer clock, ms since the Unix epoch.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Store clock, ms since the Unix epoch.
    pub store_timestamp: i64,
    /// Store address.
    pub store_host: SocketAddr,
    /// Times the message was retried.
    pub reconsume_times: i32,
    /// For a transaction COMMIT record, the CommitLog offset of the half message.
    pub prepared_transaction_offset: i64,
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

/// Topic length field size for a topic of `len` bytes: v1 (1 byte) up to 127, else v2 (2 bytes).
fn topic_len_field(len: usize) -> usize {
    if len <= MAX_TOPIC_LEN_V1 { 1 } else { 2 }
}

/// Size of the encoded record (`calMsgLength`), or `None` if a field is too long for the format.
pub fn encoded_len(
    meta: &RecordMeta,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> Option<usize> {
    if topic_len > MAX_TOPIC_LEN_V2 || properties_len > MAX_PROPERTIES_LEN {
        return None;
    }
    let fixed = V1_V4_OVERHEAD - 8 - 8 - 1 + host_len(&meta.born_host) + host_len(&meta.store_host);
    let total = fixed
        .checked_add(body_len)?
        .checked_add(topic_len_field(topic_len))?
        .checked_add(topic_len)?
        .checked_add(properties_len)?;
    (total <= i32::MAX as usize).then_some(total)
}

/// Encodes a record into `out`, which must be exactly `encoded_len(..)` bytes long.
///
/// `write_properties` fills the properties region of `properties_len` bytes in place, so the
/// caller can render properties straight into the destination without an intermediate buffer.
/// Returns the masked body CRC that was stored.
///
/// # Panics
/// If `out` has the wrong length; callers size it with [`encoded_len`].
pub fn encode_into(
    out: &mut [u8],
    meta: &RecordMeta,
    body: &[u8],
    topic: &str,
    properties_len: usize,
    write_properties: impl FnOnce(&mut [u8]),
) -> u32 {
    let total = out.len();
    let mut sys_flag = meta.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
    if meta.born_host.is_ipv6() {
        sys_flag |= sys_flag::BORN_HOST_V6;
    }
    if meta.store_host.is_ipv6() {
        sys_flag |= sys_flag::STORE_HOST_V6;
    }
    let v2 = topic.len() > MAX_TOPIC_LEN_V1;
    let crc = masked_crc32(body);
    let mut w = Writer::new(out);
    w.i32(total as i32);
    w.i32((if v2 { MAGIC_V2 } else { MAGIC_V1 }) as i32);
    w.i32(crc as i32);
    w.i32(meta.queue_id as i32);
    w.i32(meta.flag);
    w.i64(meta.queue_offset as i64);
    w.i64(meta.physical_offset as i64);
    w.i32(sys_flag);
    w.i64(meta.born_timestamp);
    put_host(&mut w, &meta.born_host);
    w.i64(meta.store_timestamp);
    put_host(&mut w, &meta.store_host);
    w.i32(meta.reconsume_times);
    w.i64(meta.prepared_transaction_offset);
    w.i32(body.len() as i32);
    w.put(body);
    if v2 {
        w.i16(topic.len() as i16);
    } else {
        w.put(&[topic.len() as u8]);
    }
    w.put(topic.as_bytes());
    w.i16(properties_len as i16);
    write_properties(w.rest(properties_len));
    debug_assert_eq!(w.pos(), total);
    crc
}

fn put_host(w: &mut Writer<'_>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => w.put(&ip.octets()),
        IpAddr::V6(ip) => w.put(&ip.octets()),
    }
    w.i32(i32::from(addr.port()));
}

/// A decoded record borrowing its variable-length parts from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// TOTALSIZE.
    pub total_size: u32,
    /// Record version: 1 or 2.
    pub version: u8,
    /// BODYCRC as stored.
    pub body_crc: u32,
    /// The fixed fields.
    pub meta: RecordMeta,
    /// The stored body (compressed if `sys_flag & COMPRESSED`).
    pub body: &'a [u8],
    /// The topic.
    pub topic: &'a str,
    /// The raw properties string.
    pub properties: &'a [u8],
}

/// What sits at a position of the CommitLog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A message record.
    Message(RecordView<'a>),
    /// The blank end-of-segment record; the segment's data ends here.
    Blank {
        /// TOTALSIZE of the blank record (the bytes left in the segment).
        size: u32,
    },
}

/// Decodes the record at the start of `buf` (`checkMessageAndReturnSize`).
///
/// `buf` may extend past the record. With `check_crc` the body CRC is verified. Never panics.
pub fn decode(buf: &[u8], check_crc: bool) -> Result<Decoded<'_>, DecodeError> {
    let (rec, topic) = match decode_v4(buf) {
        Some(found) => found,
        None => match decode_any(buf)? {
            Parsed::Message(rec, topic) => (rec, topic),
            Parsed::Blank(size) => return Ok(Decoded::Blank { size }),
        },
    };
    if check_crc {
        check_record_crc(&buf[..rec.total_size as usize], &rec)?;
    }
    let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::NotUtf8("topic"))?;
    Ok(Decoded::Message(RecordView { topic, ..rec }))
}

/// A record parsed but not yet checked: the view (its topic left empty) and the topic bytes.
enum Parsed<'a> {
    Message(RecordView<'a>, &'a [u8]),
    Blank(u32),
}

/// Where the body length sits in a record whose hosts are both IPv4 (the usual case).
const BODY_LEN_POS_V4: usize = 84;
/// Where the body starts in such a record.
const BODY_POS_V4: usize = BODY_LEN_POS_V4 + 4;

/// The big-endian `i32` at `at` of the fixed header `h` (`at + 4 <= h.len()` at every call).
#[inline(always)]
fn be_i32(h: &[u8; BODY_POS_V4], at: usize) -> i32 {
    i32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

#[inline(always)]
fn be_i64(h: &[u8; BODY_POS_V4], at: usize) -> i64 {
    (i64::from(be_i32(h, at)) << 32) | i64::from(be_i32(h, at + 4) as u32)
}

/// The fast path of [`decode`]: a well-formed message record with IPv4 hosts, its fixed
/// header read at constant offsets. `None` for anything else (IPv6 hosts, a blank, any
/// inconsistency), which the general path then decodes or reports, so both paths accept
/// exactly the same records.
#[inline]
fn decode_v4(buf: &[u8]) -> Option<(RecordView<'_>, &[u8])> {
    let h: &[u8; BODY_POS_V4] = buf.get(..BODY_POS_V4)?.try_into().ok()?;
    let total = be_i32(h, TOTAL_SIZE_POS);
    let version = match be_i32(h, MAGIC_POS) as u32 {
        MAGIC_V1 => 1,
        MAGIC_V2 => 2,
        _ => return None,
    };
    let sys_flag = be_i32(h, SYS_FLAG_POS);
    if total <= 0 || sys_flag & (sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6) != 0 {
        return None;
    }
    let record = buf.get(..total as usize)?;
    let body_len = usize::try_from(be_i32(h, BODY_LEN_POS_V4)).ok()?;
    let body_end = BODY_POS_V4.checked_add(body_len)?;
    let body = record.get(BODY_POS_V4..body_end)?;
    let (topic_len, topic_pos) = if version == 1 {
        (
            usize::try_from(*record.get(body_end)? as i8).ok()?,
            body_end + 1,
        )
    } else {
        let b = record.get(body_end..body_end + 2)?;
        (
            usize::try_from(i16::from_be_bytes([b[0], b[1]])).ok()?,
            body_end + 2,
        )
    };
    let topic = record.get(topic_pos..topic_pos + topic_len)?;
    let props_len_pos = topic_pos + topic_len;
    let b = record.get(props_len_pos..props_len_pos + 2)?;
    let props_len = usize::try_from(i16::from_be_bytes([b[0], b[1]])).ok()?;
    let props_pos = props_len_pos + 2;
    if props_pos + props_len != record.len() {
        return None;
    }
    let properties = &record[props_pos..];
    let queue_offset = be_i64(h, QUEUE_OFFSET_POS);
    let physical_offset = be_i64(h, PHYSICAL_OFFSET_POS);
    if queue_offset < 0 || physical_offset < 0 {
        return None;
    }
    let host = |at: usize| {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3])),
            be_i32(h, at + 4) as u16,
        )
    };
    let view = RecordView {
        total_size: total as u32,
        version,
        body_crc: be_i32(h, BODY_CRC_POS) as u32,
        meta: RecordMeta {
            queue_id: be_i32(h, QUEUE_ID_POS) as u32,
            flag: be_i32(h, FLAG_POS),
            queue_offset: queue_offset as u64,
            physical_offset: physical_offset as u64,
            sys_flag,
            born_timestamp: be_i64(h, BORN_TIMESTAMP_POS),
            born_host: host(BORN_HOST_POS),
            store_timestamp: be_i64(h, STORE_TIMESTAMP_POS_V4),
            store_host: host(STORE_HOST_POS_V4),
            reconsume_times: be_i32(h, RECONSUME_TIMES_POS_V4),
            prepared_transaction_offset: be_i64(h, PREPARED_OFFSET_POS_V4),
        },
        body,
        topic: "",
        properties,
    };
    Some((view, topic))
}

/// Checks a parsed record's CRCs: the whole-record CRC when it has a valid one, else the body
/// CRC.
fn check_record_crc(record: &[u8], rec: &RecordView<'_>) -> Result<(), DecodeError> {
    if rec
        .properties
        .last()
        .is_some_and(|&b| b != super::properties::PROPERTY_SEPARATOR)
    {
        return Err(DecodeError::UnterminatedProperties);
    }
    let whole = stored_record_crc(record).map(|stored| {
        (
            stored,
            masked_crc32(&record[..record.len() - RECORD_CRC_LEN]),
        )
    });
    if let Some((stored, computed)) = whole
        && computed == stored
    {
        // The whole-record CRC covers the body and its stored CRC too: one pass suffices.
        return Ok(());
    }
    // No whole-record CRC, or a stale one: a broker's retry and schedule copies keep the
    // original's `__CRC32#` (RocketMQ neither strips nor checks it by default), so the body
    // CRC decides, as it does for RocketMQ.
    let computed = masked_crc32(rec.body);
    if computed != rec.body_crc {
        return Err(match whole {
            Some((stored, computed)) => DecodeError::RecordCrcMismatch { stored, computed },
            None => DecodeError::CrcMismatch {
                stored: rec.body_crc,
                computed,
            },
        });
    }
    Ok(())
}

/// The general path of [`decode`], field by field: any host kind, and the precise error.
fn decode_any(buf: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let total = r.i32()?;
    let magic = r.i32()? as u32;
    if magic == BLANK_MAGIC {
        if total < BLANK_LEN as i32 {
            return Err(DecodeError::BadLength {
                field: "blank TOTALSIZE",
                value: i64::from(total),
            });
        }
        return Ok(Parsed::Blank(total as u32));
    }
    let version = match magic {
        MAGIC_V1 => 1,
        MAGIC_V2 => 2,
        other => return Err(DecodeError::BadMagic(other)),
    };
    if total <= 0 || total as usize > buf.len() {
        return Err(DecodeError::BadLength {
            field: "TOTALSIZE",
            value: i64::from(total),
        });
    }
    // Only look at the record's own bytes from here on.
    let mut r = Reader::new(&buf[..total as usize]);
    r.bytes(8)?;
    let body_crc = r.i32()? as u32;
    let queue_id = r.i32()? as u32;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let physical_offset = r.i64()?;
    let sys_flag = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = read_host(&mut r, sys_flag & sys_flag::BORN_HOST_V6 != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = read_host(&mut r, sys_flag & sys_flag::STORE_HOST_V6 != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = r.i32()?;
    if body_len < 0 {
        return Err(DecodeError::BadLength {
            field: "body length",
            value: i64::from(body_len),
        });
    }
    let body = r.bytes(body_len as usize)?;
    let topic_len = if version == 1 {
        // A signed byte in Java: lengths 128..=255 read as negative there, i.e. corrupt.
        let len = r.u8()? as i8;
        if len < 0 {
            return Err(DecodeError::BadLength {
                field: "topic length",
                value: i64::from(len),
            });
        }
        len as usize
    } else {
        let len = r.i16()?;
        if len < 0 {
            return Err(DecodeError::BadLength {
                field: "topic length",
                value: i64::from(len),
            });
        }
        len as usize
    };
    let topic = r.bytes(topic_len)?;
    let props_len = r.i16()?;
    if props_len < 0 {
        return Err(DecodeError::BadLength {
            field: "properties length",
            value: i64::from(props_len),
        });
    }
    let properties = r.bytes(props_len as usize)?;
    if r.pos() != total as usize {
        return Err(DecodeError::SizeMismatch {
            stored: i64::from(total),
            computed: r.pos() as i64,
        });
    }
    if queue_offset < 0 || physical_offset < 0 {
        return Err(DecodeError::BadLength {
            field: "offset",
            value: queue_offset.min(physical_offset),
        });
    }
    Ok(Parsed::Message(
        RecordView {
            total_size: total as u32,
            version,
            body_crc,
            meta: RecordMeta {
                queue_id,
                flag,
                queue_offset: queue_offset as u64,
                physical_offset: physical_offset as u64,
                sys_flag,
                born_timestamp,
                born_host,
                store_timestamp,
                store_host,
                reconsume_times,
                prepared_transaction_offset,
            },
            body,
            topic: "",
            properties,
        },
        topic,
    ))
}

#[inline(always)]
fn read_host(r: &mut Reader<'_>, v6: bool) -> Result<SocketAddr, DecodeError> {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))
    };
    let port = r.i32()?;
    // Java stores the port as an int; anything outside u16 is kept modulo 2^16.
    Ok(SocketAddr::new(ip, port as u16))
}

/// Whether `buf` starts with what looks like the header of a message record stored at
/// commitlog offset `offset`: a known magic code, a positive length and the record's own
/// physical offset in its place. Recovery uses it to tell records left behind a torn write
/// (as a power cut leaves them) from bytes that never were records.
pub fn looks_like_record_at(buf: &[u8], offset: u64) -> bool {
    let (Some(size), Some(magic), Some(phys)) = (
        buf.get(0..4),
        buf.get(4..8),
        buf.get(PHYSICAL_OFFSET_POS..PHYSICAL_OFFSET_POS + 8),
    ) else {
        return false;
    };
    let magic = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
    let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    let mut p = [0u8; 8];
    p.copy_from_slice(phys);
    (magic == MAGIC_V1 || magic == MAGIC_V2) && size > 0 && u64::from_be_bytes(p) == offset
}

/// Writes the 8-byte blank end-of-segment record: TOTALSIZE = `remaining`, then the blank magic.
pub fn encode_blank(out: &mut [u8; BLANK_LEN], remaining: u32) {
    out[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
    out[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
}

/// Whether a record's properties end with the `__CRC32#` property; returns the stored CRC.
#[inline]
fn stored_record_crc(record: &[u8]) -> Option<u32> {
    let tail = record.get(record.len().checked_sub(RECORD_CRC_LEN)?..)?;
    let (name, rest) = tail.split_at(RECORD_CRC_KEY.len());
    if name != RECORD_CRC_KEY.as_bytes() || rest[0] != 0x01 || rest[11] != 0x02 {
        return None;
    }
    // Ten digits, least significant first.
    let mut crc: u64 = 0;
    for &d in rest[1..11].iter().rev() {
        if !d.is_ascii_digit() {
            return None;
        }
        crc = crc * 10 + u64::from(d - b'0');
    }
    u32::try_from(crc).ok()
}

/// Checks the whole-record CRC (RocketMQ's optional `__CRC32#` property) when the record has
/// one: the masked CRC of everything before the property.
pub fn verify_record_crc(record: &[u8]) -> Result<(), DecodeError> {
    if let Some(stored) = stored_record_crc(record) {
        let computed = masked_crc32(&record[..record.len() - RECORD_CRC_LEN]);
        if computed != stored {
            return Err(DecodeError::RecordCrcMismatch { stored, computed });
        }
    }
    Ok(())
}

/// Fills in the whole-record CRC of an encoded record whose properties end with the
/// `__CRC32#` property holding [`RECORD_CRC_PLACEHOLDER`]: the digits are written least
/// significant first, as RocketMQ does.
///
/// # Panics
/// If the record is shorter than [`RECORD_CRC_LEN`].
pub fn seal_record_crc(record: &mut [u8]) {
    let body_end = record.len() - RECORD_CRC_LEN;
    let mut crc = masked_crc32(&record[..body_end]);
    let digits = &mut record[body_end + RECORD_CRC_KEY.len() + 1..body_end + RECORD_CRC_LEN - 1];
    for d in digits.iter_mut() {
        *d = b'0' + (crc % 10) as u8;
        crc /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator (xorshift64*), enough to vary test records.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn record(rng: &mut Rng, v6: i32, magic_v2: bool) -> Vec<u8> {
        let v4 = SocketAddr::from(([10, 0, 0, rng.below(255) as u8], 10911));
        let v6addr = SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], 10911));
        let meta = RecordMeta {
            queue_id: rng.below(8) as u32,
            flag: rng.next() as i32,
            queue_offset: rng.below(1 << 40),
            physical_offset: rng.below(1 << 40),
            sys_flag: v6,
            born_timestamp: rng.next() as i64,
            born_host: if v6 & sys_flag::BORN_HOST_V6 != 0 {
                v6addr
            } else {
                v4
            },
            store_timestamp: rng.next() as i64,
            store_host: if v6 & sys_flag::STORE_HOST_V6 != 0 {
                v6addr
            } else {
                v4
            },
            reconsume_times: rng.below(16) as i32,
            prepared_transaction_offset: rng.next() as i64,
        };
        let body: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        let topic = if magic_v2 {
            "t".repeat(200)
        } else {
            "topic".to_string()
        };
        let props = b"UNIQ_KEY\x01abc\x02";
        let len = encoded_len(&meta, body.len(), topic.len(), props.len()).unwrap();
        let mut buf = vec![0u8; len];
        encode_into(&mut buf, &meta, &body, &topic, props.len(), |out| {
            out.copy_from_slice(props)
        });
        buf
    }

    fn parsed_eq(buf: &[u8]) -> Option<bool> {
        let fast = decode_v4(buf)?;
        let Ok(Parsed::Message(slow, topic)) = decode_any(buf) else {
            return Some(false);
        };
        Some(fast.0 == slow && fast.1 == topic)
    }

    #[test]
    fn the_fixed_offset_path_takes_ipv4_records_and_agrees_with_the_general_one() {
        let mut rng = Rng(0x5EED_0001);
        for i in 0..2_000 {
            let v2 = i % 3 == 0;
            let buf = record(&mut rng, 0, v2);
            assert_eq!(parsed_eq(&buf), Some(true), "record {i}");
            // IPv6 hosts are the general path's.
            for flags in [sys_flag::BORN_HOST_V6, sys_flag::STORE_HOST_V6] {
                let buf = record(&mut rng, flags, v2);
                assert!(decode_v4(&buf).is_none());
                assert!(matches!(decode(&buf, true), Ok(Decoded::Message(_))));
            }
            // Damaged copies: whatever the fast path accepts, the general path accepts alike.
            for _ in 0..20 {
                let mut bad = buf.clone();
                let at = rng.below(bad.len() as u64) as usize;
                bad[at] = rng.next() as u8;
                let cut = rng.below(bad.len() as u64 + 1) as usize;
                for damaged in [&bad[..], &buf[..cut]] {
                    assert_ne!(parsed_eq(damaged), Some(false), "record {i}, byte {at}");
                }
            }
        }
    }
}
