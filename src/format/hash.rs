//! Java `String.hashCode()`, which RocketMQ uses for tag codes and index keys.

/// `String.hashCode()`: `h = 31*h + c` over the UTF-16 code units, wrapping in 32 bits.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// The ConsumeQueue tag code of a message (`tagsString2tagsCode`): the sign-extended Java hash of
/// the whole TAGS string, 0 when there is no tag.
pub fn tag_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => i64::from(java_string_hash(t)),
        _ => 0,
    }
}
