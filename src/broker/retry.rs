//! Sending a message back for a later retry (RocketMQ `consumerSendMsgBack`): to
//! `%RETRY%{group}` through the delay levels or a timer message, or to `%DLQ%{group}` after
//! the last try.

use std::time::Duration;

use super::Broker as Core;
use super::put::PutOptions;
use super::schedule::SCHEDULE_SRC;
use crate::clock::now_ms;
use crate::error::Result;
use crate::format::properties::keys;
use crate::format::record::RECORD_CRC_KEY;
use crate::message::{Delay, MessageExt};

/// Properties the retried copy does not inherit (it gets fresh ones where needed).
const NOT_INHERITED: &[&str] = &[
    keys::TAGS,
    keys::KEYS,
    keys::DELAY,
    keys::REAL_TOPIC,
    keys::REAL_QUEUE_ID,
    keys::RETRY_TOPIC,
    keys::ORIGIN_MESSAGE_ID,
    keys::TIMER_DELIVER_MS,
    SCHEDULE_SRC,
    RECORD_CRC_KEY,
    keys::DLQ_ORIGIN_TOPIC,
    keys::DLQ_ORIGIN_MESSAGE_ID,
];

/// First retry delay level (10 s by default); each retry goes one level up.
pub(crate) const FIRST_RETRY_LEVEL: u32 = 3;

/// When a message sent back is delivered again (RocketMQ's `delayLevel` of the send-back,
/// plus RocketMQ 5's arbitrary delays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryDelay {
    /// RocketMQ's delay level 0, "the broker decides": level 3 + reconsume times, so each
    /// retry waits longer.
    Growing,
    /// A delay level of the store's table (clamped to its last level).
    Level(u32),
    /// Straight to the dead-letter topic (RocketMQ's delay level -1).
    DeadLetter,
    /// After this long, through a timer message (`TIMER_DELIVER_MS`, `TIMER_OUT_MS`).
    After(Duration),
}

/// Whether a retry of `m` goes to the dead-letter topic.
pub(crate) fn goes_to_dlq(m: &MessageExt, max_reconsume_times: u32) -> bool {
    m.reconsume_times().max(0) as u32 >= max_reconsume_times
}

impl Core {
    /// Stores `m` again for `group`: in its retry topic, delayed as `delay` says (by default
    /// level 3 + reconsume times) and counted one more try, or — once it has been tried
    /// `max_reconsume_times` times, or for [`RetryDelay::DeadLetter`] — in its dead-letter
    /// topic. The copy keeps the msgId, body, tags, keys and properties, and records the
    /// original topic (`RETRY_TOPIC`) and msgId (`ORIGIN_MESSAGE_ID`).
    pub(crate) fn send_back(
        &self,
        group: &str,
        m: &MessageExt,
        max_reconsume_times: u32,
        delay: RetryDelay,
    ) -> Result<()> {
        let dlq = delay == RetryDelay::DeadLetter || goes_to_dlq(m, max_reconsume_times);
        let topic = if dlq {
            crate::format::system::dlq_topic(group)
        } else {
            crate::format::system::retry_topic(group)
        };
        let origin_topic = m
            .property(keys::RETRY_TOPIC)
            .unwrap_or(m.topic())
            .to_owned();
        let origin_id = m
            .property(keys::ORIGIN_MESSAGE_ID)
            .map_or_else(|| m.msg_id().to_string(), str::to_owned);
        let mut msg = m.copy_to(topic, |k| {
            !NOT_INHERITED.contains(&k) && !k.starts_with("TIMER_")
        });
        let mut extra = vec![
            (keys::RETRY_TOPIC, origin_topic.as_str()),
            (keys::ORIGIN_MESSAGE_ID, origin_id.as_str()),
        ];
        if dlq {
            extra.push((keys::DLQ_ORIGIN_TOPIC, origin_topic.as_str()));
            extra.push((keys::DLQ_ORIGIN_MESSAGE_ID, origin_id.as_str()));
        } else {
            let max_level = self.delay_table().len() as u32;
            msg.delay = match delay {
                RetryDelay::Level(level) => Delay::Level(level.min(max_level).max(1)),
                RetryDelay::After(d) => {
                    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    Delay::At(now_ms().saturating_add(ms))
                }
                RetryDelay::Growing | RetryDelay::DeadLetter => {
                    let level = FIRST_RETRY_LEVEL + m.reconsume_times().max(0) as u32;
                    Delay::Level(level.min(max_level))
                }
            };
        }
        let opts = PutOptions {
            extra_properties: &extra,
            reconsume_times: if dlq {
                m.reconsume_times()
            } else {
                m.reconsume_times() + 1
            },
            born_timestamp: Some(m.born_timestamp().max(0) as u64),
            create_topic: true,
            ..PutOptions::default()
        };
        self.put_with(&msg, 0, opts)?;
        if dlq {
            ::log::warn!(
                "group {group}: message {origin_id} of topic {origin_topic} failed {} times; moved to {}",
                m.reconsume_times() + 1,
                msg.topic
            );
        }
        Ok(())
    }
}
