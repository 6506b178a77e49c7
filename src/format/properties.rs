//! The properties string (`MessageDecoder.messageProperties2String`): `name 0x01 value 0x02`
//! repeated, the last pair ending with 0x02 too.

/// Separates a name from its value.
pub const NAME_VALUE_SEPARATOR: u8 = 0x01;
/// Ends each name/value pair.
pub const PROPERTY_SEPARATOR: u8 = 0x02;

/// Well-known property names (`MessageConst`).
pub mod keys {
    /// Space-separated business keys.
    pub const KEYS: &str = "KEYS";
    /// The message tag.
    pub const TAGS: &str = "TAGS";
    /// `"false"` means the producer does not wait for the store.
    pub const WAIT: &str = "WAIT";
    /// Delay level.
    pub const DELAY: &str = "DELAY";
    /// Original topic of a retried message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Real topic of a rewritten (scheduled, half) message.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Real queue id of a rewritten message.
    pub const REAL_QUEUE_ID: &str = "REAL_QID";
    /// Marks a transactional send.
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    /// Producer group of a transactional send.
    pub const PRODUCER_GROUP: &str = "PGROUP";
    /// Client unique message id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Maximum reconsume times.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Message id before a retry or a dead-letter move.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Set when consumption starts.
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    /// Transaction id.
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// Delivery time the producer asked for, ms since the Unix epoch (set by the client;
    /// kept in the timer record).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Delay the producer asked for, in seconds (a client alternative to
    /// [`TIMER_DELIVER_MS`]).
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Delay the producer asked for, in ms (a client alternative to [`TIMER_DELIVER_MS`]).
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// Delivery time the broker settled on for a timer message, ms since the Unix epoch:
    /// written by the broker into the `rmq_sys_wheel_timer` record, and read back from it
    /// when the message is due (never from the consume queue).
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    /// Marks a message delivered by the schedule service: where its scheduled copy was.
    pub const SCHEDULE_SRC: &str = "SCHEDULE_SRC";
    /// Original topic of a dead-lettered message.
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    /// Original msgId of a dead-lettered message.
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    /// The whole-record CRC property (RocketMQ's `__CRC32#`).
    pub const RECORD_CRC: &str = "__CRC32#";
    /// Prefix of properties that are never stored.
    pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";
}

/// Bytes that `pairs` take once encoded.
pub fn encoded_len<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    pairs.into_iter().map(|(k, v)| k.len() + v.len() + 2).sum()
}

/// Writes `pairs` into `out` and returns the bytes written.
///
/// # Panics
/// If `out` is shorter than [`encoded_len`] of the same pairs.
pub fn write<'a>(out: &mut [u8], pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    let mut pos = 0;
    for (k, v) in pairs {
        out[pos..pos + k.len()].copy_from_slice(k.as_bytes());
        pos += k.len();
        out[pos] = NAME_VALUE_SEPARATOR;
        pos += 1;
        out[pos..pos + v.len()].copy_from_slice(v.as_bytes());
        pos += v.len();
        out[pos] = PROPERTY_SEPARATOR;
        pos += 1;
    }
    pos
}

/// Encodes `pairs` into a new buffer.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> Vec<u8> {
    let mut out = vec![0; encoded_len(pairs.clone())];
    write(&mut out, pairs);
    out
}

/// Iterates the name/value pairs of an encoded properties string with Java's parse rules:
/// split on 0x02, skip pieces shorter than 3 bytes, split each at its first 0x01, drop empty
/// names and values. Pairs that are not UTF-8 are skipped. Never panics.
pub fn iter(raw: &[u8]) -> impl Iterator<Item = (&str, &str)> + '_ {
    raw.split(|&b| b == PROPERTY_SEPARATOR).filter_map(|piece| {
        if piece.len() < 3 {
            return None;
        }
        let sep = piece.iter().position(|&b| b == NAME_VALUE_SEPARATOR)?;
        if sep == 0 || sep + 1 >= piece.len() {
            return None;
        }
        let name = std::str::from_utf8(&piece[..sep]).ok()?;
        let value = std::str::from_utf8(&piece[sep + 1..]).ok()?;
        Some((name, value))
    })
}

/// Looks up one property in an encoded properties string (the last occurrence wins, as a Java
/// `HashMap` filled in order would have it).
pub fn get<'a>(raw: &'a [u8], name: &str) -> Option<&'a str> {
    let [v] = get_many(raw, [name]);
    v
}

/// Looks up several properties in one pass; the same answers as [`get`] for each name. Only
/// the matching values are checked for UTF-8.
pub fn get_many<'a, const N: usize>(raw: &'a [u8], names: [&str; N]) -> [Option<&'a str>; N] {
    let mut out = [None; N];
    get_into(raw, &names, &mut out);
    out
}

/// [`get_many`] for any number of names: `out[i]` becomes the value of `names[i]` (the same
/// answer as [`get`]), for `i` below the shorter of the two lengths. One pass over `raw`; no
/// allocation.
pub fn get_into<'a, S: AsRef<str>>(raw: &'a [u8], names: &[S], out: &mut [Option<&'a str>]) {
    let n = names.len().min(out.len());
    let (names, out) = (&names[..n], &mut out[..n]);
    out.fill(None);
    // A pair's name is what precedes its first 0x01, and its value (up to the 0x02) must not
    // be empty.
    let mut take = |piece: &'a [u8], name_end: Option<usize>| {
        let Some(sep) = name_end else { return };
        let (name, value) = (&piece[..sep], &piece[sep + 1..]);
        if name.is_empty() || value.is_empty() {
            return;
        }
        for (i, n) in names.iter().enumerate() {
            if n.as_ref().as_bytes() == name
                && let Ok(v) = std::str::from_utf8(value)
            {
                out[i] = Some(v);
            }
        }
    };
    // One pass over both separators (a short string: one or two vector steps).
    let (mut start, mut name_end) = (0, None);
    for pos in memchr::memchr2_iter(NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, raw) {
        if raw[pos] == NAME_VALUE_SEPARATOR {
            name_end.get_or_insert(pos - start);
        } else {
            take(&raw[start..pos], name_end.take());
            start = pos + 1;
        }
    }
    take(&raw[start..], name_end);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get_many` answers as the reference parser (`iter`, last occurrence wins) on random
    /// strings of names, values, separators and non-UTF-8 bytes.
    #[test]
    fn get_many_matches_the_reference_parser() {
        let alphabet: &[u8] = b"ABK\x01\x02\xffx";
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 48)) as usize + i * 7) % alphabet.len()])
                .collect();
            let names = ["A", "AB", "K", "A\x01B", ""];
            let got = get_many(&raw, names);
            for (i, n) in names.iter().enumerate() {
                let want = iter(&raw).filter(|(k, _)| k == n).map(|(_, v)| v).last();
                assert_eq!(got[i], want, "{raw:?} {n}");
            }
        }
    }

    /// Names with a 0x01 of their own, empty names and empty values never match; the
    /// name/value split is at the first 0x01.
    #[test]
    fn get_into_splits_at_the_first_separator() {
        let raw = b"A\x01B\x01x\x02C\x01\x02\x01D\x02K\x01v\x02";
        let names = ["A", "A\x01B", "C", "", "K", "Kx"];
        let mut out = [Some("stale"); 6];
        get_into(raw, &names, &mut out);
        assert_eq!(out, [Some("B\x01x"), None, None, None, Some("v"), None]);
        let mut short = [None; 1];
        get_into(raw, &names, &mut short);
        assert_eq!(short, [Some("B\x01x")]);
    }
}
