//! Times on the command line: ms since the epoch, `now`, ISO-8601 UTC, or a time ago.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses a time argument into ms since the Unix epoch: `1796220185007`, `now`,
/// `2026-12-02T14:03:05Z`, `2026-12-02 14:03:05.007`, `2026-12-02`, or `-90s`, `-15m`,
/// `-2h`, `-1d` (that long ago). ISO times are UTC.
pub(crate) fn parse(s: &str) -> Result<u64, String> {
    parse_at(s, now_ms())
}

fn parse_at(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let split = ago.len().saturating_sub(1);
        let (n, unit) = ago.split_at(split);
        let unit_ms = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad(s)),
        };
        let n: u64 = n.parse().map_err(|_| bad(s))?;
        return Ok(now.saturating_sub(n.saturating_mul(unit_ms)));
    }
    iso(s).ok_or_else(|| bad(s))
}

fn bad(s: &str) -> String {
    format!(
        "{s:?} is not a time (ms since the epoch, now, 2026-12-02T14:03:05Z, or -15m / -2h / -1d)"
    )
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.mmm]]][Z]`, UTC.
fn iso(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let y: i64 = num(d.next()?, 4)?;
    let m: i64 = num(d.next()?, 2)?;
    let day: i64 = num(d.next()?, 2)?;
    if !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&day) {
        return None;
    }
    let mut ms: i64 = 0;
    if let Some(t) = time {
        let (hms, frac) = match t.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (t, None),
        };
        let mut parts = hms.split(':');
        let h: i64 = num(parts.next()?, 2)?;
        let min: i64 = num(parts.next()?, 2)?;
        let sec: i64 = match parts.next() {
            Some(p) => num(p, 2)?,
            None => 0,
        };
        if parts.next().is_some() || h > 23 || min > 59 || sec > 59 {
            return None;
        }
        let milli: i64 = match frac {
            Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
                f.parse::<i64>().ok()? * 10_i64.pow(3 - f.len() as u32)
            }
            Some(_) => return None,
            None => 0,
        };
        ms = ((h * 60 + min) * 60 + sec) * 1000 + milli;
    }
    let days = days_from_civil(y, m, day);
    u64::try_from(days * 86_400_000 + ms).ok()
}

fn num(s: &str, len: usize) -> Option<i64> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (the inverse of `days_from_civil`).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_220_185_007; // 2026-12-02T14:03:05.007Z

    #[test]
    fn every_form() {
        assert_eq!(parse_at("now", NOW), Ok(NOW));
        assert_eq!(parse_at("0", NOW), Ok(0));
        assert_eq!(parse_at("2026-12-02T14:03:05.007Z", NOW), Ok(NOW));
        assert_eq!(parse_at("2026-12-02 14:03:05.007", NOW), Ok(NOW));
        assert_eq!(parse_at("2026-12-02T14:03:05.7", NOW), Ok(NOW - 7 + 700));
        assert_eq!(parse_at("2026-12-02T14:03", NOW), Ok(NOW - 5007));
        assert_eq!(parse_at("2026-12-02", NOW), Ok(NOW - 50_585_007));
        assert_eq!(parse_at("-15m", NOW), Ok(NOW - 900_000));
        assert_eq!(parse_at("-1d", NOW), Ok(NOW - 86_400_000));
        assert_eq!(parse_at("-90s", 1000), Ok(0));
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "-",
            "-5",
            "-5x",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-12-02T24:00",
            "2026-12-02T14:03:05.1234",
            "26-12-02",
            "2026-12-02T14:03:05+01:00",
        ] {
            assert!(parse_at(s, NOW).is_err(), "{s:?}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
