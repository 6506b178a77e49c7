//! Message ids: the offset msgId built by the store and the client's unique id (UNIQ_KEY).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use super::{DecodeError, hex_decode_into, hex_upper_into};

/// The offset msgId (`MessageDecoder.createMessageId`): store address, port and the record's
/// CommitLog offset, rendered as uppercase hex (32 characters for IPv4, 56 for IPv6).
///
/// ```
/// use mqlite::OffsetMessageId;
/// let id: OffsetMessageId = "7F00000100002A9F0000000000000400".parse().unwrap();
/// assert_eq!(id.physical_offset, 1024);
/// assert_eq!(id.to_string(), "7F00000100002A9F0000000000000400");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetMessageId {
    /// Address of the store that wrote the record.
    pub store_host: SocketAddr,
    /// CommitLog offset of the record.
    pub physical_offset: u64,
}

impl OffsetMessageId {
    /// Renders the id into `out` and returns the used part (32 or 56 bytes).
    pub fn encode_into<'a>(&self, out: &'a mut [u8; 56]) -> &'a str {
        let mut raw = [0u8; 28];
        let n = match self.store_host.ip() {
            IpAddr::V4(ip) => {
                raw[..4].copy_from_slice(&ip.octets());
                4
            }
            IpAddr::V6(ip) => {
                raw[..16].copy_from_slice(&ip.octets());
                16
            }
        };
        raw[n..n + 4].copy_from_slice(&i32::from(self.store_host.port()).to_be_bytes());
        raw[n + 4..n + 12].copy_from_slice(&(self.physical_offset as i64).to_be_bytes());
        let len = (n + 12) * 2;
        hex_upper_into(&raw[..n + 12], &mut out[..len]);
        // The digits are ASCII, so this cannot fail; fall back to "" rather than panic.
        std::str::from_utf8(&out[..len]).unwrap_or_default()
    }
}

impl fmt::Display for OffsetMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 56];
        f.write_str(self.encode_into(&mut buf))
    }
}

impl FromStr for OffsetMessageId {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        let (ip, rest) = match s.len() {
            32 => {
                let mut b = [0u8; 4];
                hex_decode_into(&s[..8], &mut b)?;
                (IpAddr::V4(Ipv4Addr::from(b)), &s[8..])
            }
            56 => {
                let mut b = [0u8; 16];
                hex_decode_into(&s[..32], &mut b)?;
                (IpAddr::V6(Ipv6Addr::from(b)), &s[32..])
            }
            _ => {
                return Err(DecodeError::BadMessageId(
                    "expected 32 or 56 hex characters",
                ));
            }
        };
        let mut port = [0u8; 4];
        hex_decode_into(&rest[..8], &mut port)?;
        let mut off = [0u8; 8];
        hex_decode_into(&rest[8..], &mut off)?;
        let port = i32::from_be_bytes(port);
        let offset = i64::from_be_bytes(off);
        if !(0..=i32::from(u16::MAX)).contains(&port) || offset < 0 {
            return Err(DecodeError::BadMessageId("port or offset out of range"));
        }
        Ok(OffsetMessageId {
            store_host: SocketAddr::new(ip, port as u16),
            physical_offset: offset as u64,
        })
    }
}

/// A message id: the client's unique id (the `UNIQ_KEY` property), the one id type of the
/// API. [`SendResult::msg_id`](crate::SendResult::msg_id),
/// [`PutResult::msg_id`](crate::PutResult::msg_id) and
/// [`MessageExt::msg_id`](crate::MessageExt::msg_id) all return it, so ids from a send and
/// from a read compare directly.
///
/// Ids the store generates are 32 uppercase hex characters. Layout of the 16 bytes behind the
/// hex: IPv4 address (4), process id as i16 (2), a per-process random i32 (4, RocketMQ's
/// class-loader hash), milliseconds since the start of the current month in UTC as i32 (4),
/// and a wrapping i16 counter (2). Ids read back may have other forms other RocketMQ clients
/// write (56 characters from an IPv6 client, 34 from a RocketMQ 5 client), or be a record's
/// offset msgId when it has no `UNIQ_KEY`: an id holds up to [`MessageId::MAX_LEN`] ASCII
/// characters and is `Copy`.
///
/// ```
/// use mqlite::MessageId;
/// let id = MessageId::parse("7f00000139a4aabbccdd0011223344ff")?;
/// assert_eq!(id.as_str(), "7F00000139A4AABBCCDD0011223344FF");
/// assert_eq!(id, "7F00000139A4AABBCCDD0011223344FF");
/// # Ok::<(), mqlite::format::DecodeError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The characters, zero-padded (so derived comparisons are the text's).
    buf: [u8; MessageId::MAX_LEN],
    len: u8,
}

impl MessageId {
    /// Longest id held: the 56 characters of an IPv6 offset msgId or client id.
    pub const MAX_LEN: usize = 56;

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The id's bytes (ASCII), without the check [`MessageId::as_str`] makes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Parses a 32-character hexadecimal id (the form the store generates and accepts as a
    /// message's `UNIQ_KEY`), normalised to uppercase.
    pub fn parse(s: &str) -> Result<MessageId, DecodeError> {
        let mut raw = [0u8; 16];
        hex_decode_into(s.as_bytes(), &mut raw)?;
        let mut out = [0u8; 32];
        hex_upper_into(&raw, &mut out);
        Ok(MessageId::from_ascii(&out))
    }

    /// An id read back from a record: `s` as it is, when it is 1 to [`MessageId::MAX_LEN`]
    /// ASCII graphic characters.
    pub(crate) fn from_stored(s: &str) -> Option<MessageId> {
        let ok = !s.is_empty()
            && s.len() <= MessageId::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| MessageId::from_ascii(s.as_bytes()))
    }

    /// `text` must be ASCII and at most `MAX_LEN` bytes (callers check).
    fn from_ascii(text: &[u8]) -> MessageId {
        let len = text.len().min(MessageId::MAX_LEN);
        let mut buf = [0u8; MessageId::MAX_LEN];
        buf[..len].copy_from_slice(&text[..len]);
        MessageId {
            buf,
            len: len as u8,
        }
    }
}

impl From<OffsetMessageId> for MessageId {
    /// The offset msgId as text (32 or 56 characters).
    fn from(id: OffsetMessageId) -> MessageId {
        let mut buf = [0u8; 56];
        MessageId::from_ascii(id.encode_into(&mut buf).as_bytes())
    }
}

impl PartialEq<str> for MessageId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MessageId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for MessageId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.as_str())
    }
}

/// Generates [`MessageId`]s: a fixed per-process prefix, then time and a counter.
#[derive(Debug)]
pub struct MessageIdGenerator {
    prefix_hex: [u8; 20],
    counter: AtomicU16,
    month_start_ms: AtomicU64,
    next_month_start_ms: AtomicU64,
}

impl MessageIdGenerator {
    /// A generator for the given address (an IPv6 address is folded to its last 4 bytes, as
    /// the 32-character form has room for IPv4 only).
    pub fn new(ip: IpAddr) -> Self {
        let ip4 = match ip {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        let mut raw = [0u8; 10];
        raw[..4].copy_from_slice(&ip4);
        raw[4..6].copy_from_slice(&(std::process::id() as i16).to_be_bytes());
        raw[6..10].copy_from_slice(&random_u32().to_be_bytes());
        let mut prefix_hex = [0u8; 20];
        hex_upper_into(&raw, &mut prefix_hex);
        Self {
            prefix_hex,
            counter: AtomicU16::new(random_u32() as u16),
            month_start_ms: AtomicU64::new(0),
            next_month_start_ms: AtomicU64::new(0),
        }
    }

    /// The next id, given the current time in ms since the Unix epoch.
    pub fn next(&self, now_ms: u64) -> MessageId {
        let mut start = self.month_start_ms.load(Ordering::Relaxed);
        if now_ms < start || now_ms >= self.next_month_start_ms.load(Ordering::Relaxed) {
            let (s, next) = month_bounds_utc(now_ms);
            self.month_start_ms.store(s, Ordering::Relaxed);
            self.next_month_start_ms.store(next, Ordering::Relaxed);
            start = s;
        }
        let since = (now_ms.saturating_sub(start)) as u32;
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; 6];
        raw[..4].copy_from_slice(&since.to_be_bytes());
        raw[4..].copy_from_slice(&count.to_be_bytes());
        let mut out = [0u8; 32];
        out[..20].copy_from_slice(&self.prefix_hex);
        hex_upper_into(&raw, &mut out[20..]);
        MessageId::from_ascii(&out)
    }
}

/// A process-unique pseudo-random number from std's randomly keyed hasher.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// Start of the UTC month containing `ms`, and start of the next one, in ms since the epoch.
fn month_bounds_utc(ms: u64) -> (u64, u64) {
    let days = (ms / 86_400_000) as i64;
    let (y, m, _) = civil_from_days(days);
    let start = days_from_civil(y, m, 1);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = days_from_civil(ny, nm, 1);
    (start as u64 * 86_400_000, next as u64 * 86_400_000)
}

// Howard Hinnant's civil-date algorithms (public domain).
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

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_bounds() {
        // 2024-02-15T00:00:00Z = 1707955200000; Feb 2024 starts 1706745600000, March 1709251200000.
        assert_eq!(
            month_bounds_utc(1_707_955_200_000),
            (1_706_745_600_000, 1_709_251_200_000)
        );
        // 2023-12-31T23:59:59.999Z
        assert_eq!(
            month_bounds_utc(1_704_067_199_999),
            (1_701_388_800_000, 1_704_067_200_000)
        );
    }

    #[test]
    fn ids_are_unique_and_parse_back() {
        let g = MessageIdGenerator::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let a = g.next(1_707_955_200_000);
        let b = g.next(1_707_955_200_000);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("7F000001"));
        assert_eq!(MessageId::parse(a.as_str()).unwrap(), a);
    }
}
