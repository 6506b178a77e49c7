//! Argument validation: every check runs before anything is written.

use crate::error::{Error, Result};
use crate::format::properties::{NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, keys};
use crate::format::system;

/// Longest user topic name (`TopicValidator`).
pub const MAX_TOPIC_LEN: usize = 127;
/// Longest system (`%RETRY%…`, `%DLQ%…`) topic name.
pub const MAX_SYSTEM_TOPIC_LEN: usize = 255;

/// Topics the store uses itself; users may not send to them.
pub const RESERVED_TOPICS: &[&str] = &[
    system::SCHEDULE_TOPIC,
    system::TRANS_HALF_TOPIC,
    system::TRANS_OP_HALF_TOPIC,
    system::TRANS_CHECK_MAX_TIME_TOPIC,
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "TBW102",
    system::TIMER_TOPIC,
];

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'%' | b'|' | b'_' | b'-')
}

/// Checks a topic name's syntax: non-empty, at most 127 characters (255 for retry and
/// dead-letter topics), only `[%|a-zA-Z0-9_-]`.
pub(crate) fn topic_syntax(topic: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidTopic {
            topic: topic.to_owned(),
            reason,
        })
    };
    if topic.is_empty() {
        return bad("empty");
    }
    let max = if system::is_group_topic(topic) {
        MAX_SYSTEM_TOPIC_LEN
    } else {
        MAX_TOPIC_LEN
    };
    if topic.len() > max {
        return bad("too long");
    }
    if !topic.bytes().all(valid_char) {
        return bad("only [%|a-zA-Z0-9_-] allowed");
    }
    Ok(())
}

/// Whether `topic`, found on disk (a consume queue directory or a record in the log), names a
/// topic the store can serve. A RocketMQ broker writes names the client rules refuse (topics
/// over 127 bytes as v2 records, pop-retry topics `%RETRY%{group}+{topic}`), so anything that
/// can be a directory name is accepted: not empty, not `.` or `..`, no `/` or NUL, and no
/// longer than a v2 record's topic field.
pub(crate) fn stored_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic != "."
        && topic != ".."
        && !topic.bytes().any(|b| b == b'/' || b == 0)
        && topic.len() <= i16::MAX as usize
}

/// Checks a topic a user writes to: valid syntax and not one of [`RESERVED_TOPICS`].
pub(crate) fn user_topic(topic: &str) -> Result<()> {
    topic_syntax(topic)?;
    if RESERVED_TOPICS.contains(&topic) {
        return Err(Error::InvalidTopic {
            topic: topic.to_owned(),
            reason: "reserved for the store",
        });
    }
    Ok(())
}

/// Checks a topic a client sends to or subscribes to: as [`user_topic`], and at most 127
/// characters even for names that look like retry topics (RocketMQ's client limit; the store
/// itself, like the broker, accepts 255 for `%RETRY%`/`%DLQ%` names).
pub(crate) fn client_topic(topic: &str) -> Result<()> {
    user_topic(topic)?;
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Error::InvalidTopic {
            topic: topic.to_owned(),
            reason: "too long",
        });
    }
    Ok(())
}

/// Checks a property name or value: no 0x01/0x02 separators (they would corrupt the encoding).
pub(crate) fn property_text(what: &str, s: &str) -> Result<()> {
    if s.bytes()
        .any(|b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR)
    {
        return Err(Error::InvalidMessage(format!(
            "{what} {s:?} contains a reserved separator byte (0x01 or 0x02)"
        )));
    }
    Ok(())
}

/// Longest group name (`Validators.CHARACTER_MAX_LENGTH` for groups).
pub const MAX_GROUP_LEN: usize = 120;

/// Checks a producer or consumer group name.
pub(crate) fn group(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidGroup {
            group: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_GROUP_LEN {
        return bad("longer than 120 characters");
    }
    if !name.bytes().all(valid_char) {
        return bad("only [%|a-zA-Z0-9_-] allowed");
    }
    Ok(())
}

/// Property names the store and RocketMQ's client reserve (`MessageConst.STRING_HASH_SET`);
/// users set these through the message's own fields, never as user properties.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "TRACE_ON",
    "MSG_REGION",
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "__transactionId__",
    "TRANSACTION_CHECK_TIMES",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "ARRIVE_TIME",
    "PUSH_REPLY_TIME",
    "CLUSTER",
    "MSG_TYPE",
    "__SHARDINGKEY",
    keys::TIMER_DELAY_SEC,
    keys::TIMER_DELIVER_MS,
    keys::TIMER_DELAY_MS,
    "TIMER_ENQUEUE_MS",
    "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES",
    keys::TIMER_OUT_MS,
    "TIMER_DEL_UNIQKEY",
    "TIMER_DELAY_LEVEL",
    keys::DLQ_ORIGIN_TOPIC,
    keys::DLQ_ORIGIN_MESSAGE_ID,
    keys::RECORD_CRC,
    "INNER_NUM",
    "INNER_BASE",
    "DUP_INFO",
    "EXTEND_UNIQ_INFO",
];

/// Checks that no user property uses a reserved name.
pub(crate) fn user_properties<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for n in names {
        if RESERVED_PROPERTIES.contains(&n) || n.starts_with("__RMQ.TRANSIENT.") {
            return Err(Error::InvalidMessage(format!(
                "property name {n:?} is reserved for the store"
            )));
        }
    }
    Ok(())
}
