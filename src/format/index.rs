//! RocketMQ's index files (`IndexFile`, `IndexHeader`): `index/yyyyMMddHHmmssSSS`.
//!
//! ```text
//! header (40 bytes)
//! off size field
//!   0    8 beginTimestamp   store time (ms) of the first entry
//!   8    8 endTimestamp     store time (ms) of the last entry
//!  16    8 beginPhyOffset   CommitLog offset of the first entry's record
//!  24    8 endPhyOffset     CommitLog offset of the last entry's record
//!  32    4 hashSlotCount    slots in use
//!  36    4 indexCount       next entry number; starts at 1 (entry 0 is never written)
//! slots (at 40): hashSlotNum i32s, each the number of the newest entry of the slot (0: none)
//! entries (at 40 + hashSlotNum*4): indexNum entries of 20 bytes
//!   0    4 keyHash          |javaHash(key)|, 0 for Integer.MIN_VALUE
//!   4    8 phyOffset        CommitLog offset of the record
//!  12    4 timeDiff         (storeTimestamp - beginTimestamp) / 1000, in seconds
//!  16    4 prevIndex        the previous entry of the same slot (0: end of the chain)
//! ```
//!
//! Every offset is a multiple of 4, so the file can be read and written as big-endian 32-bit
//! words. The key string is not stored: a lookup matches hashes and times only, and the caller
//! checks the records it finds.

use super::{DecodeError, Reader, Writer};

/// Size of the header.
pub const HEADER_SIZE: usize = 40;
/// Size of a hash slot.
pub const SLOT_SIZE: usize = size_of::<i32>();
/// Size of an entry.
pub const ENTRY_SIZE: usize = 20;

/// Offset of `beginTimestamp`.
pub const BEGIN_TIMESTAMP: usize = 0;
/// Offset of `endTimestamp`.
pub const END_TIMESTAMP: usize = BEGIN_TIMESTAMP + size_of::<i64>();
/// Offset of `beginPhyOffset`.
pub const BEGIN_PHY_OFFSET: usize = END_TIMESTAMP + size_of::<i64>();
/// Offset of `endPhyOffset`.
pub const END_PHY_OFFSET: usize = BEGIN_PHY_OFFSET + size_of::<i64>();
/// Offset of `hashSlotCount`.
pub const HASH_SLOT_COUNT: usize = END_PHY_OFFSET + size_of::<i64>();
/// Offset of `indexCount`.
pub const INDEX_COUNT: usize = HASH_SLOT_COUNT + size_of::<i32>();
const _: () = assert!(INDEX_COUNT + size_of::<i32>() == HEADER_SIZE);

/// Offset of an entry's `keyHash`.
pub const ENTRY_KEY_HASH: usize = 0;
/// Offset of an entry's `phyOffset`.
pub const ENTRY_PHY_OFFSET: usize = ENTRY_KEY_HASH + size_of::<i32>();
/// Offset of an entry's `timeDiff`.
pub const ENTRY_TIME_DIFF: usize = ENTRY_PHY_OFFSET + size_of::<i64>();
/// Offset of an entry's `prevIndex`.
pub const ENTRY_PREV: usize = ENTRY_TIME_DIFF + size_of::<i32>();
const _: () = assert!(ENTRY_PREV + size_of::<i32>() == ENTRY_SIZE);

/// RocketMQ's `maxHashSlotNum` default.
pub const ROCKETMQ_MAX_HASH_SLOTS: u32 = 5_000_000;
/// RocketMQ's `maxIndexNum` default.
pub const ROCKETMQ_MAX_INDEX_ENTRIES: u32 = 20_000_000;

/// The header of an index file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexHeader {
    /// Store time (ms) of the first entry.
    pub begin_timestamp: i64,
    /// Store time (ms) of the last entry.
    pub end_timestamp: i64,
    /// CommitLog offset of the first entry's record.
    pub begin_phy_offset: i64,
    /// CommitLog offset of the last entry's record.
    pub end_phy_offset: i64,
    /// Hash slots in use.
    pub hash_slot_count: i32,
    /// The next entry number (1 in an empty file).
    pub index_count: i32,
}

impl IndexHeader {
    /// The header of a new, empty file.
    pub const EMPTY: IndexHeader = IndexHeader {
        begin_timestamp: 0,
        end_timestamp: 0,
        begin_phy_offset: 0,
        end_phy_offset: 0,
        hash_slot_count: 0,
        index_count: 1,
    };

    /// Encodes the 40 header bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let mut w = Writer::new(&mut out);
        w.i64(self.begin_timestamp);
        w.i64(self.end_timestamp);
        w.i64(self.begin_phy_offset);
        w.i64(self.end_phy_offset);
        w.i32(self.hash_slot_count);
        w.i32(self.index_count);
        out
    }

    /// Decodes a header. An `indexCount` of 0 or less reads as 1, as RocketMQ loads it.
    pub fn decode(buf: &[u8]) -> Result<IndexHeader, DecodeError> {
        let mut r = Reader::new(buf);
        let mut h = IndexHeader {
            begin_timestamp: r.i64()?,
            end_timestamp: r.i64()?,
            begin_phy_offset: r.i64()?,
            end_phy_offset: r.i64()?,
            hash_slot_count: r.i32()?,
            index_count: r.i32()?,
        };
        if h.index_count <= 0 {
            h.index_count = 1;
        }
        Ok(h)
    }
}

/// One index entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// The key's hash ([`key_hash`]).
    pub key_hash: i32,
    /// CommitLog offset of the record.
    pub phy_offset: i64,
    /// Seconds between the file's `beginTimestamp` and the record's store time.
    pub time_diff: i32,
    /// The previous entry of the same slot (0: none).
    pub prev_index: i32,
}

impl IndexEntry {
    /// Encodes the 20 entry bytes.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut out = [0u8; ENTRY_SIZE];
        let mut w = Writer::new(&mut out);
        w.i32(self.key_hash);
        w.i64(self.phy_offset);
        w.i32(self.time_diff);
        w.i32(self.prev_index);
        out
    }

    /// Decodes an entry.
    pub fn decode(buf: &[u8]) -> Result<IndexEntry, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(IndexEntry {
            key_hash: r.i32()?,
            phy_offset: r.i64()?,
            time_diff: r.i32()?,
            prev_index: r.i32()?,
        })
    }
}

/// The size of an index file with `slots` hash slots and room for `entries` entries
/// (`40 + slots*4 + entries*20`; 420,000,040 bytes with RocketMQ's defaults).
pub fn file_size(slots: u32, entries: u32) -> u64 {
    HEADER_SIZE as u64
        + u64::from(slots) * SLOT_SIZE as u64
        + u64::from(entries) * ENTRY_SIZE as u64
}

/// Byte offset of hash slot `slot`.
pub fn slot_pos(slot: u32) -> u64 {
    HEADER_SIZE as u64 + u64::from(slot) * SLOT_SIZE as u64
}

/// Byte offset of entry `n` in a file with `slots` hash slots.
pub fn entry_pos(slots: u32, n: u32) -> u64 {
    slot_pos(slots) + u64::from(n) * ENTRY_SIZE as u64
}

/// The index key of a message key: `topic#key`.
pub fn build_key(topic: &str, key: &str) -> String {
    format!("{topic}#{key}")
}

/// RocketMQ's `IndexFile.indexKeyHashMethod` of `topic#key`: the absolute Java hash, 0 if
/// that is still negative (`Integer.MIN_VALUE`). Computed without building the string.
pub fn key_hash(topic: &str, key: &str) -> i32 {
    let h = java_hash_extend(java_hash_extend(0, topic), "#");
    let h = java_hash_extend(h, key);
    let abs = h.wrapping_abs();
    if abs < 0 { 0 } else { abs }
}

/// Continues Java's `String.hashCode` (`h = 31*h + c` over UTF-16 code units) from `h` over
/// `s`. ASCII text (msgIds, most keys) is hashed four bytes per step.
fn java_hash_extend(mut h: i32, s: &str) -> i32 {
    if !s.is_ascii() {
        for unit in s.encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
        }
        return h;
    }
    const P2: i32 = 31 * 31;
    const P3: i32 = 31 * 31 * 31;
    const P4: i32 = 31 * 31 * 31 * 31;
    let mut chunks = s.as_bytes().chunks_exact(4);
    for c in &mut chunks {
        h = h
            .wrapping_mul(P4)
            .wrapping_add(i32::from(c[0]).wrapping_mul(P3))
            .wrapping_add(i32::from(c[1]).wrapping_mul(P2))
            .wrapping_add(i32::from(c[2]).wrapping_mul(31))
            .wrapping_add(i32::from(c[3]));
    }
    for &b in chunks.remainder() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(b));
    }
    h
}

/// An upper bound of the index entries a message gets: one for its msgId (if any), one per
/// space-separated KEYS entry (empty ones, which get none, are counted too).
pub fn key_count_bound(uniq: Option<&str>, keys: Option<&str>) -> u64 {
    u64::from(uniq.is_some())
        + keys.map_or(0, |k| k.bytes().filter(|&b| b == b' ').count() as u64 + 1)
}

/// The slot of `key_hash` in a file with `slots` slots.
pub fn slot_of(key_hash: i32, slots: u32) -> u32 {
    (key_hash.unsigned_abs()) % slots.max(1)
}

/// An entry's `timeDiff`: whole seconds from the file's begin time, clamped to `[0, i32::MAX]`;
/// 0 when the file has no begin time yet.
pub fn time_diff(store_ts: i64, begin_ts: i64) -> i32 {
    if begin_ts <= 0 {
        return 0;
    }
    let d = store_ts.saturating_sub(begin_ts) / 1000;
    d.clamp(0, i64::from(i32::MAX)) as i32
}

/// The file name of an index file created at `ms` (ms since the Unix epoch):
/// `yyyyMMddHHmmssSSS`. RocketMQ uses local time; mqlite uses UTC (the names only order the
/// files, and both sort the same way within one time zone).
pub fn file_name(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Whether `name` looks like an index file name (17 decimal digits).
pub fn is_file_name(name: &str) -> bool {
    name.len() == 17 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Year, month, day of a day number since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_count_floor() {
        let h = IndexHeader {
            begin_timestamp: 1,
            end_timestamp: 2,
            begin_phy_offset: 3,
            end_phy_offset: 4,
            hash_slot_count: 5,
            index_count: 6,
        };
        assert_eq!(IndexHeader::decode(&h.encode()), Ok(h));
        let zero = IndexHeader::decode(&[0u8; 40]).unwrap();
        assert_eq!(zero.index_count, 1);
        assert!(IndexHeader::decode(&[0u8; 39]).is_err());
    }

    #[test]
    fn names_and_hashes() {
        assert_eq!(file_name(0), "19700101000000000");
        assert_eq!(file_name(1_758_302_740_123), "20250919172540123");
        assert!(is_file_name("20250919172540123"));
        assert!(!is_file_name("2025091917254012x"));
        // "a#b": 97*961 + 35*31 + 98
        assert_eq!(key_hash("a", "b"), 97 * 961 + 35 * 31 + 98);
        assert_eq!(time_diff(5_999, 1_000), 4);
        assert_eq!(time_diff(500, 1_000), 0);
        assert_eq!(time_diff(5_000, 0), 0);
        assert_eq!(file_size(5_000_000, 20_000_000), 420_000_040);
        // The fast path equals String.hashCode over UTF-16, ASCII or not.
        for (t, k) in [
            ("topic", "0A1B2C3D4E5F60718293A4B5C6D7E8F9"),
            ("tö", "ключ 🔑"),
            ("", ""),
        ] {
            let whole = crate::format::hash::java_string_hash(&format!("{t}#{k}"));
            let abs = whole.wrapping_abs();
            assert_eq!(key_hash(t, k), if abs < 0 { 0 } else { abs });
        }
    }
}
