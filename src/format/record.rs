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
        return Ok(Decoded::Blank { size: total as u32 });
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
    if check_crc {
        if properties
            .last()
            .is_some_and(|&b| b != super::properties::PROPERTY_SEPARATOR)
        {
            return Err(DecodeError::UnterminatedProperties);
        }
        let record = &buf[..total as usize];
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
        } else {
            // No whole-record CRC, or a stale one: a broker's retry and schedule copies keep
            // the original's `__CRC32#` (RocketMQ neither strips nor checks it by default),
            // so the body CRC decides, as it does for RocketMQ.
            let computed = masked_crc32(body);
            if computed != body_crc {
                return Err(match whole {
                    Some((stored, computed)) => DecodeError::RecordCrcMismatch { stored, computed },
                    None => DecodeError::CrcMismatch {
                        stored: body_crc,
                        computed,
                    },
                });
            }
        }
    }
    let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::NotUtf8("topic"))?;
    Ok(Decoded::Message(RecordView {
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
        topic,
        properties,
    }))
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
