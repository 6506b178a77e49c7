//! Pure byte codecs for RocketMQ's on-disk structures. No I/O happens here.
//!
//! Every multi-byte integer on disk is big-endian (Java's `ByteBuffer` default). Decoders take
//! arbitrary bytes and return [`DecodeError`] instead of panicking.

pub mod checkpoint;
pub mod cq_unit;
pub mod hash;
pub mod index;
pub mod msg_id;
pub mod properties;
pub mod record;
pub mod system;
pub mod timer_checkpoint;

/// Why a byte sequence could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ended before the structure did.
    #[error("truncated: need {needed} bytes at offset {at}, have {available}")]
    Truncated {
        /// Offset inside the structure where the read started.
        at: usize,
        /// Bytes the read needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// The magic code is not one this crate knows.
    #[error("unknown magic code {0:#010x}")]
    BadMagic(u32),
    /// The TOTALSIZE field disagrees with the lengths inside the record, or is out of range.
    #[error("record size {stored} does not match its contents ({computed})")]
    SizeMismatch {
        /// TOTALSIZE as stored.
        stored: i64,
        /// Size recomputed from the field lengths.
        computed: i64,
    },
    /// A length field is negative or larger than the format allows.
    #[error("invalid length {value} for {field}")]
    BadLength {
        /// Which field.
        field: &'static str,
        /// The value read.
        value: i64,
    },
    /// The body CRC stored in the record does not match the body.
    #[error("body crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// Stored BODYCRC.
        stored: u32,
        /// CRC of the body bytes.
        computed: u32,
    },
    /// A text field is not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// The whole-record CRC in the `__CRC32#` property does not match the record.
    #[error("record crc mismatch: stored {stored}, computed {computed}")]
    RecordCrcMismatch {
        /// CRC from the property.
        stored: u32,
        /// CRC of the record bytes.
        computed: u32,
    },
    /// The properties string is not terminated by 0x02 (a torn or damaged record).
    #[error("properties not terminated by 0x02")]
    UnterminatedProperties,
    /// A message id string is malformed.
    #[error("malformed message id: {0}")]
    BadMessageId(&'static str),
}

/// A bounds-checked big-endian reader over a byte slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline(always)]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let available = self.buf.len().saturating_sub(self.pos);
        if n > available {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n,
                available,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    #[inline(always)]
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline(always)]
    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    #[inline(always)]
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    #[inline(always)]
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
}

/// A big-endian writer into a byte slice whose size the caller computed beforehand.
///
/// Writing past the end is a bug in the caller's size computation; it panics like slice
/// indexing would, and the encoders in this module size their buffers exactly.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    #[inline]
    pub(crate) fn i16(&mut self, v: i16) {
        self.put(&v.to_be_bytes());
    }

    #[inline]
    pub(crate) fn i32(&mut self, v: i32) {
        self.put(&v.to_be_bytes());
    }

    #[inline]
    pub(crate) fn i64(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }

    /// The unwritten rest of the buffer, for callers that fill a region in place.
    pub(crate) fn rest(&mut self, len: usize) -> &mut [u8] {
        let start = self.pos;
        self.pos += len;
        &mut self.buf[start..start + len]
    }
}

/// RocketMQ's masked CRC32 (`UtilAll.crc32`): IEEE CRC32 with the top bit cleared.
pub fn masked_crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

/// Renders bytes as uppercase hexadecimal into `out` (which must be twice as long).
pub(crate) fn hex_upper_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xF)];
    }
}

/// Parses hexadecimal (either case) into `out`, which must be half as long as `hex`.
pub(crate) fn hex_decode_into(hex: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    if hex.len() != out.len() * 2 {
        return Err(DecodeError::BadMessageId("wrong length"));
    }
    fn nibble(c: u8) -> Result<u8, DecodeError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(DecodeError::BadMessageId("not hexadecimal")),
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(hex[2 * i])? << 4) | nibble(hex[2 * i + 1])?;
    }
    Ok(())
}
