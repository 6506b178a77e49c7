//! Errors.

use std::io;
use std::path::PathBuf;

use crate::format::DecodeError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mqlite. Each variant names what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file system is full, or a file may not grow (ENOSPC, EDQUOT, EFBIG). Nothing was
    /// stored; data already stored stays readable, and writes succeed again once there is room.
    #[error("no space to {op} {path}: {source}")]
    NoSpace {
        /// What was being done.
        op: &'static str,
        /// The file that could not grow.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process, or another handle in this process, has the store directory open
    /// (still, after the open tried again for ~50 ms: a lock released an instant ago may be
    /// held briefly by a child process being started).
    #[error("store directory {0} is locked by another open store")]
    Locked(PathBuf),
    /// Stored data failed validation somewhere other than the tail of the log.
    #[error("corrupted data in {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset inside that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A flush to disk failed earlier; the store refuses writes until it is reopened, because a
    /// failed `msync`/`fdatasync` cannot be retried and trusted.
    #[error("store is poisoned by an earlier flush failure; reopen it")]
    Poisoned,
    /// The store was opened read-only (`Store::open_read_only`):
    /// it writes nothing, so every call that would write (put, send, create a topic, commit
    /// or reset offsets, flush, delete segments, start a push consumer) is refused.
    #[error("store is open read-only")]
    ReadOnly,
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A topic name is empty, too long, uses characters outside `[%|a-zA-Z0-9_-]` or is reserved.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The rejected name.
        topic: String,
        /// Why.
        reason: &'static str,
    },
    /// The topic does not exist (and auto-creation is off).
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    /// The queue id is not below the topic's queue count.
    #[error("topic {topic:?} has no queue {queue_id}")]
    QueueNotFound {
        /// The topic.
        topic: String,
        /// The requested queue id.
        queue_id: u32,
    },
    /// A message is malformed: empty body, body or properties too large, bad property names.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// A message id or other encoded argument could not be parsed.
    #[error("invalid argument: {0}")]
    Decode(#[from] DecodeError),
    /// A consumer or producer group name is empty, longer than 120 characters or uses
    /// characters outside `[%|a-zA-Z0-9_-]`.
    #[error("invalid group {group:?}: {reason}")]
    InvalidGroup {
        /// The rejected name.
        group: String,
        /// Why.
        reason: &'static str,
    },
    /// A tag filter expression (`*`, `a`, `a || b`) is malformed.
    #[error("invalid filter expression {expr:?}: {reason}")]
    InvalidFilter {
        /// The expression.
        expr: String,
        /// Why.
        reason: &'static str,
    },
    /// A SQL92 filter expression (`MessageSelector::by_sql`, `SqlFilter::parse`) is
    /// malformed, or is one RocketMQ's parser refuses (`a = NULL`, `a > 'x'`,
    /// `a BETWEEN 10 AND 1`, …).
    #[error("invalid SQL92 filter {expr:?} at column {column}: {reason}")]
    InvalidSqlFilter {
        /// The expression.
        expr: String,
        /// Where the problem is: the 1-based position, in characters from the start of the
        /// expression (a line break counts as one), of the offending token; one past the last
        /// character when the expression ends too early.
        column: usize,
        /// What is wrong, naming what was expected there and what was found.
        reason: String,
    },
    /// Too many asynchronous sends are in flight, and none finished within the send timeout.
    #[error("too many sends in flight ({0}); none completed within the send timeout")]
    Busy(usize),
    /// No message at the given position.
    #[error("no message at commitlog offset {0}")]
    MessageNotFound(u64),
    /// A consumer offset past the end of its queue.
    #[error("offset {offset} is past the end of queue {topic}:{queue_id} (max offset {max})")]
    InvalidOffset {
        /// The topic.
        topic: String,
        /// The queue id.
        queue_id: u32,
        /// The offset refused.
        offset: u64,
        /// The queue's max offset.
        max: u64,
    },
    /// An offset outside a queue's stored range, `[min offset, max offset]` (a lite pull
    /// consumer's seek).
    #[error(
        "offset {offset} is outside queue {topic}:{queue_id} (min offset {min}, max offset {max})"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The queue id.
        queue_id: u32,
        /// The offset refused.
        offset: u64,
        /// The queue's smallest offset.
        min: u64,
        /// The queue's max offset (the next offset to be written).
        max: u64,
    },
    /// A lite pull consumer was asked to act on a queue it does not own right now (not
    /// assigned to it, or taken away by a rebalance).
    #[error("queue {topic}:{queue_id} is not assigned to this consumer")]
    QueueNotAssigned {
        /// The topic.
        topic: String,
        /// The queue id.
        queue_id: u32,
    },
    /// The disk-space guard refuses writes: the disk holding the store is fuller than
    /// `RetentionConfig::disk_full_ratio`, or the store is larger than
    /// `RetentionConfig::max_store_bytes` and retention could not bring it under. Nothing was
    /// stored; puts succeed again once space returns (checked every
    /// `RetentionConfig::check_interval`, at every segment roll and by `Store::cleanup_now`).
    #[error("disk full: {0}; nothing was stored")]
    DiskFull(String),
    /// No message has the given message id.
    #[error("no message of topic {topic:?} has msgId {msg_id}")]
    MessageIdNotFound {
        /// The topic.
        topic: String,
        /// The msgId (`UNIQ_KEY`).
        msg_id: String,
    },
}

impl Error {
    /// Wraps an I/O error, classing "no space" conditions as [`Error::NoSpace`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => {
                Error::NoSpace { op, path, source }
            }
            _ => Error::Io { op, path, source },
        }
    }

    pub(crate) fn corrupted(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupted {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
