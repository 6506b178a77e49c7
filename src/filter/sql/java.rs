//! The Java conversions and orderings RocketMQ's evaluator relies on: `Integer.valueOf`,
//! `Long.valueOf`, `Double.valueOf`, `Boolean.valueOf` on strings, and `compareTo` of
//! doubles and strings. Nothing here allocates.

use std::cmp::Ordering;

/// `Integer.valueOf(s)`: an optional `+` or `-`, then decimal digits, nothing else (no
/// blanks). Digits outside ASCII, which Java also accepts, are not numbers here.
pub(super) fn parse_int(s: &str) -> Option<i32> {
    s.parse().ok()
}

/// `Long.valueOf(s)`, with the rules of [`parse_int`].
pub(super) fn parse_long(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// `Double.valueOf(s)`: blanks and control characters around it are ignored; then an
/// optional sign and `NaN`, `Infinity`, or a decimal number (`1`, `1.5`, `.5`, `1.`, `1e3`,
/// `1.5E-3`) with an optional `f`, `F`, `d` or `D` suffix. Java's hexadecimal form
/// (`0x1p3`) is not a number here.
pub(super) fn parse_double(s: &str) -> Option<f64> {
    let s = s.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = match body {
        // The common case, and exact: integers below 2^53 are doubles as they are.
        _ if (1..=15).contains(&body.len()) && body.bytes().all(|c| c.is_ascii_digit()) => {
            body.bytes().fold(0u64, |n, c| n * 10 + u64::from(c - b'0')) as f64
        }
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let body = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
            // Rust also reads "inf", "nan" and the like: only digits, '.', exponents.
            let first_ok = body
                .as_bytes()
                .first()
                .is_some_and(|c| c.is_ascii_digit() || *c == b'.');
            let all_ok = body
                .bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
            if !first_ok || !all_ok {
                return None;
            }
            body.parse::<f64>().ok()?
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `Boolean.valueOf(s)`: true for `true` in any case, false for anything else.
pub(super) fn parse_bool(s: &str) -> bool {
    s.eq_ignore_ascii_case("true")
}

/// `Double.compareTo`: `-0.0` is below `0.0`, NaN equals itself and is above everything.
pub(super) fn cmp_double(a: f64, b: f64) -> Ordering {
    let canonical = |x: f64| if x.is_nan() { f64::NAN } else { x };
    canonical(a).total_cmp(&canonical(b))
}

/// `Double.equals`: the same bits, except that every NaN equals every NaN.
pub(super) fn eq_double(a: f64, b: f64) -> bool {
    cmp_double(a, b) == Ordering::Equal
}

/// `String.compareTo`: by UTF-16 code units.
pub(super) fn cmp_str(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_read_as_java_reads_them() {
        for (s, want) in [
            ("1", Some(1.0)),
            ("999999999999999", Some(999_999_999_999_999.0)),
            ("9007199254740993", Some(9_007_199_254_740_992.0)),
            ("-007", Some(-7.0)),
            (" 2.5\t", Some(2.5)),
            ("\u{1}3\u{1f}", Some(3.0)),
            ("-.5", Some(-0.5)),
            ("+1.", Some(1.0)),
            ("1e3", Some(1000.0)),
            ("1.5E-1", Some(0.15)),
            ("1.5f", Some(1.5)),
            ("2D", Some(2.0)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("1e400", Some(f64::INFINITY)),
            ("inf", None),
            ("infinity", None),
            ("nan", None),
            ("", None),
            (".", None),
            ("1e", None),
            ("1,5", None),
            ("1 000", None),
            ("1ff", None),
            ("0x10", None),
            ("--1", None),
            ("\u{a0}1", None),
        ] {
            assert_eq!(parse_double(s), want, "{s:?}");
        }
        assert!(parse_double("NaN").is_some_and(f64::is_nan));
        assert!(parse_double("-NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn integers_read_as_java_reads_them() {
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("-0"), Some(0));
        assert_eq!(parse_int("007"), Some(7));
        assert_eq!(parse_int(" 7"), None);
        assert_eq!(parse_int("7.0"), None);
        assert_eq!(parse_int("2147483648"), None);
        assert_eq!(parse_long("2147483648"), Some(2_147_483_648));
        assert_eq!(parse_long("9223372036854775808"), None);
    }

    #[test]
    fn java_orderings() {
        assert_eq!(cmp_double(-0.0, 0.0), Ordering::Less);
        assert_eq!(cmp_double(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(cmp_double(-f64::NAN, f64::NAN), Ordering::Equal);
        assert!(!eq_double(0.0, -0.0));
        // U+FF5E is above U+1F600 in UTF-16 (0xD83D...), below it in UTF-8.
        assert_eq!(cmp_str("\u{ff5e}", "\u{1f600}"), Ordering::Greater);
        assert!(parse_bool("TrUe") && !parse_bool("yes") && !parse_bool(" true"));
    }
}
