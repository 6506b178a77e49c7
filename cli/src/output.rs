//! Output: tables, JSON, times and bodies.

use std::collections::BTreeMap;

use mqlite::MessageExt;
use serde_json::{Value, json};

use crate::Res;

/// How a message body is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BodyFormat {
    /// As text (invalid UTF-8 replaced).
    Utf8,
    /// Hexadecimal.
    Hex,
    /// Base64 (standard alphabet, padded).
    Base64,
}

/// Prints `rows` under `header`, columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub(crate) fn print_json(v: &Value) -> Res {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints a JSON object's fields as `name  value` lines.
pub(crate) fn print_fields(v: &Value, width: usize) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k:<width$} {text}");
        }
    }
}

/// `2026-12-02T14:03:05.123Z` for ms since the epoch.
pub(crate) fn iso(ms: u64) -> String {
    let (y, m, d) = crate::time::civil_from_days((ms / 86_400_000) as i64);
    let rem = ms / 1000 % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// `-` for nothing.
pub(crate) fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `1.5 MiB` and the like.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn body_text(body: &[u8], how: BodyFormat) -> String {
    match how {
        BodyFormat::Utf8 => String::from_utf8_lossy(body).into_owned(),
        BodyFormat::Hex => body.iter().map(|b| format!("{b:02x}")).collect(),
        BodyFormat::Base64 => base64(body),
    }
}

pub(crate) fn message_json(m: &MessageExt, how: BodyFormat) -> Value {
    let props: BTreeMap<&str, &str> = m.properties().collect();
    json!({
        "topic": m.topic(),
        "queue_id": m.queue_id(),
        "queue_offset": m.queue_offset(),
        "msg_id": m.msg_id().as_str(),
        "offset_msg_id": m.offset_msg_id().to_string(),
        "commitlog_offset": m.physical_offset(),
        "store_timestamp": m.store_timestamp(),
        "store_time": iso(m.store_timestamp().max(0) as u64),
        "born_timestamp": m.born_timestamp(),
        "tags": m.tags(),
        "keys": m.keys().collect::<Vec<_>>(),
        "reconsume_times": m.reconsume_times(),
        "properties": props,
        "body": body_text(m.body(), how),
        "body_len": m.body().len(),
    })
}

pub(crate) fn message_row(m: &MessageExt, how: BodyFormat) -> Vec<String> {
    vec![
        m.queue_id().to_string(),
        m.queue_offset().to_string(),
        iso(m.store_timestamp().max(0) as u64),
        m.tags().unwrap_or("").to_owned(),
        m.keys().collect::<Vec<_>>().join(" "),
        m.msg_id().to_string(),
        body_text(m.body(), how),
    ]
}

pub(crate) const MESSAGE_HEADER: &[&str] = &[
    "QUEUE", "OFFSET", "STORED", "TAGS", "KEYS", "MSG_ID", "BODY",
];

pub(crate) fn print_messages(json: bool, msgs: &[MessageExt], how: BodyFormat) -> Res {
    if json {
        let v: Vec<Value> = msgs.iter().map(|m| message_json(m, how)).collect();
        return print_json(&Value::Array(v));
    }
    let rows: Vec<Vec<String>> = msgs.iter().map(|m| message_row(m, how)).collect();
    table(MESSAGE_HEADER, &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0, 1, 2, 255]), "AAEC/w==");
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso(1_796_220_185_007), "2026-12-02T14:03:05.007Z");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(394), "394 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
