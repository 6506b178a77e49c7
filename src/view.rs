//! [`MessageView`]: a stored message read in place, without copying it.

use std::borrow::Cow;
use std::sync::Arc;

use crate::format::msg_id::OffsetMessageId;
use crate::format::properties::{self, keys};
use crate::format::record::{RecordView, sys_flag};
use crate::message::MessageExt;

/// A message as stored, borrowed from the store's mapped files for the duration of a
/// `Store::scan` callback: nothing is copied or allocated to look at it.
/// Its record's CRC was checked before it was handed out. [`MessageView::to_owned`] makes the
/// owned [`MessageExt`] when a message must outlive the callback.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    rec: &'a RecordView<'a>,
}

impl<'a> MessageView<'a> {
    pub(crate) fn new(rec: &'a RecordView<'a>) -> Self {
        MessageView { rec }
    }

    /// The topic.
    pub fn topic(&self) -> &'a str {
        self.rec.topic
    }

    /// The body as stored: zlib-compressed when [`MessageView::is_compressed`] says so.
    pub fn stored_body(&self) -> &'a [u8] {
        self.rec.body
    }

    /// Whether the stored body is zlib-compressed (bodies of 4 KiB or more sent through a
    /// producer are).
    pub fn is_compressed(&self) -> bool {
        self.rec.meta.sys_flag & sys_flag::COMPRESSED != 0
    }

    /// The body: borrowed when stored as is, inflated when compressed.
    pub fn body(&self) -> Cow<'a, [u8]> {
        let mut out = Vec::new();
        if crate::message::inflate_into(self.rec, &mut out) {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(self.rec.body)
        }
    }

    /// The tag, if any.
    pub fn tags(&self) -> Option<&'a str> {
        self.property(keys::TAGS)
    }

    /// The business keys.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.property(keys::KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// A property (user or system).
    pub fn property(&self, name: &str) -> Option<&'a str> {
        properties::get(self.rec.properties, name)
    }

    /// All properties, system ones included.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        properties::iter(self.rec.properties)
    }

    /// The client message id, as [`MessageExt::msg_id`](crate::MessageExt::msg_id) gives it:
    /// the `UNIQ_KEY` property, or the offset msgId when it is absent.
    pub fn msg_id(&self) -> crate::MessageId {
        self.uniq_key()
            .and_then(crate::MessageId::from_stored)
            .unwrap_or_else(|| self.offset_msg_id().into())
    }

    /// The client message id (`UNIQ_KEY`), when the message has one.
    pub fn uniq_key(&self) -> Option<&'a str> {
        self.property(keys::UNIQ_KEY)
    }

    /// The store's id of the message: store address and CommitLog offset.
    pub fn offset_msg_id(&self) -> OffsetMessageId {
        OffsetMessageId {
            store_host: self.rec.meta.store_host,
            physical_offset: self.rec.meta.physical_offset,
        }
    }

    /// Queue id.
    pub fn queue_id(&self) -> u32 {
        self.rec.meta.queue_id
    }

    /// Offset in its queue.
    pub fn queue_offset(&self) -> u64 {
        self.rec.meta.queue_offset
    }

    /// CommitLog offset of the record.
    pub fn physical_offset(&self) -> u64 {
        self.rec.meta.physical_offset
    }

    /// Size of the stored record.
    pub fn store_size(&self) -> u32 {
        self.rec.total_size
    }

    /// Store time, ms since the Unix epoch.
    pub fn store_timestamp(&self) -> i64 {
        self.rec.meta.store_timestamp
    }

    /// Producer time, ms since the Unix epoch.
    pub fn born_timestamp(&self) -> i64 {
        self.rec.meta.born_timestamp
    }

    /// How often the message was consumed again (retries).
    pub fn reconsume_times(&self) -> i32 {
        self.rec.meta.reconsume_times
    }

    /// The application flag.
    pub fn flag(&self) -> i32 {
        self.rec.meta.flag
    }

    /// The record's SYSFLAG.
    pub fn sys_flag(&self) -> i32 {
        self.rec.meta.sys_flag
    }

    /// An owned copy, with the body inflated.
    pub fn to_owned(&self) -> MessageExt {
        MessageExt::from_record(self.rec, Arc::from(self.rec.topic))
    }
}
