//! A push consumer's statistics (RocketMQ `ConsumerRunningInfo` / `ConsumeStatus`): consume
//! and pull rates and times per topic over the last minute, cached messages, lag, totals, and
//! the health counters (failed fetches, queues stuck on one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::engine::Engine;
use crate::clock::now_ms;
use crate::message::MessageQueue;
use crate::rate::{RateWindow, Rates};

/// What [`PushConsumer::stats`](super::PushConsumer::stats) reports: RocketMQ's consumer
/// running info for one consumer.
///
/// - **Rates and times** ([`ConsumerTopicStats`]) per subscribed topic (the group's `%RETRY%`
///   topic is one, as in RocketMQ), over the last minute: what the last 60 one-second steps
///   counted, divided by 60 (as `Store::stats` reports its rates).
/// - **Totals** since the consumer started: messages consumed, failed, timed out.
/// - **Queues** ([`ConsumerQueueStats`]): for each queue the consumer owns, the committed offset,
///   the lag behind the queue's end and the messages cached for the listener.
/// - **Health**: a push consumer cannot hand a fetch error to anyone: it logs it
///   (`log::warn!`, once per queue and condition), retries the queue every 500 ms, and shows
///   it here. A queue listed in [`ConsumerStats::stalled`] delivers nothing past
///   [`StalledQueue::offset`] until a fetch succeeds again (for example after the damaged
///   data is repaired and the store reopened).
///
/// A message counts as *consumed OK* when its listener call acknowledged it
/// ([`ConsumeStatus::Success`](super::ConsumeStatus::Success), up to the batch's
/// `ack_index`), and as *failed* when it is to be consumed again or dropped (the rest of the
/// batch, [`ConsumeStatus::ReconsumeLater`](super::ConsumeStatus::ReconsumeLater), a panic, a
/// consume timeout; orderly: a suspend or rollback). Counting costs a few atomic additions
/// per listener call and per fetch; reading the statistics locks each owned queue briefly.
///
/// ```
/// use std::time::{Duration, Instant};
/// use mqlite::{ConsumeFrom, ConsumeStatus, Message};
/// # let dir = tempfile::tempdir()?;
/// # let store = mqlite::Store::open(dir.path())?;
/// store.create_topic("t", 2)?;
/// let consumer = store
///     .push_consumer("g")
///     .subscribe("t", "*")
///     .consume_from(ConsumeFrom::FirstOffset)
///     .start_concurrently(|_| ConsumeStatus::Success)?;
/// let p = store.producer("p")?;
/// for i in 0..10 {
///     p.send(Message::new("t", format!("m{i}")))?;
/// }
/// let deadline = Instant::now() + Duration::from_secs(10);
/// while consumer.stats().consumed_ok < 10 && Instant::now() < deadline {
///     std::thread::sleep(Duration::from_millis(5));
/// }
/// let stats = consumer.stats();
/// assert_eq!(stats.consumed_ok, 10);
/// let t = stats.topic("t").unwrap();
/// assert_eq!(t.consumed_ok, 10);
/// assert!(t.consume_ok_tps > 0.0 && t.pull_tps > 0.0);
/// assert_eq!(stats.pull_errors, 0);
/// assert!(stats.stalled.is_empty());
/// consumer.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Fetches that failed over the consumer's life.
    pub pull_errors: u64,
    /// Queues whose last fetch failed, sorted by queue.
    pub stalled: Vec<StalledQueue>,
    /// Per subscribed topic (the group's retry topic included), sorted by topic.
    pub topics: Vec<ConsumerTopicStats>,
    /// Per queue the consumer owns now, sorted by queue.
    pub queues: Vec<ConsumerQueueStats>,
    /// Messages consumed successfully since the consumer started, over all topics.
    pub consumed_ok: u64,
    /// Messages whose consumption failed since the consumer started, over all topics
    /// (timed-out ones included).
    pub consumed_failed: u64,
    /// Messages sent back for retry (or dropped, broadcasting) because their listener call
    /// ran past the consume timeout, since the consumer started.
    pub consume_timeouts: u64,
}

impl ConsumerStats {
    /// The figures of one subscribed topic.
    pub fn topic(&self, topic: &str) -> Option<&ConsumerTopicStats> {
        self.topics.iter().find(|t| t.topic == topic)
    }
}

/// Figures of one subscribed topic in [`ConsumerStats`] (RocketMQ `ConsumeStatus`): rates and
/// average times over the last minute, what is cached and how far behind the consumer is now,
/// and totals.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConsumerTopicStats {
    /// The topic.
    pub topic: String,
    /// Messages consumed successfully per second.
    pub consume_ok_tps: f64,
    /// Messages whose consumption failed per second.
    pub consume_failed_tps: f64,
    /// Average time of a listener call, in milliseconds.
    pub consume_rt_ms: f64,
    /// Messages fetched per second.
    pub pull_tps: f64,
    /// Average time of a fetch that found messages, in milliseconds.
    pub pull_rt_ms: f64,
    /// Messages fetched but not yet consumed, over the owned queues of the topic.
    pub cached_messages: usize,
    /// Their body bytes.
    pub cached_bytes: u64,
    /// Messages behind: the queue's max offset minus the committed offset, summed over the
    /// owned queues of the topic.
    pub lag: u64,
    /// Messages consumed successfully since the consumer started.
    pub consumed_ok: u64,
    /// Messages whose consumption failed since the consumer started.
    pub consumed_failed: u64,
}

/// One owned queue (RocketMQ `ProcessQueueInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerQueueStats {
    /// The queue.
    pub queue: MessageQueue,
    /// The committed offset: the next offset to consume after a restart.
    pub committed_offset: u64,
    /// The queue's max offset (the next to be written).
    pub max_offset: u64,
    /// `max_offset - committed_offset`.
    pub lag: u64,
    /// Messages fetched but not yet consumed.
    pub cached_messages: usize,
    /// Their body bytes.
    pub cached_bytes: u64,
}

/// A queue whose fetching is stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StalledQueue {
    /// The queue.
    pub queue: MessageQueue,
    /// The queue offset that cannot be fetched.
    pub offset: u64,
    /// The error of the last attempt (for example a CRC mismatch of a damaged record).
    pub error: String,
    /// Failed attempts in a row.
    pub attempts: u64,
}

/// The counters of one subscribed topic, shared by its process queues; each update is a few
/// relaxed atomic additions ([`RateWindow`]).
#[derive(Debug, Default)]
pub(crate) struct TopicCounters {
    /// Messages acknowledged.
    consume_ok: RateWindow,
    /// Messages failed.
    consume_failed: RateWindow,
    /// Listener calls, and their time in µs as the "bytes".
    consume_calls: RateWindow,
    /// Messages fetched, and their body bytes.
    pulled: RateWindow,
    /// Fetches that found messages, and their time in µs as the "bytes".
    pulls: RateWindow,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Average milliseconds per event of a window whose "bytes" are microseconds.
fn avg_ms(r: &Rates) -> f64 {
    match r.minute_count {
        0 => 0.0,
        n => r.minute_bytes as f64 / n as f64 / 1000.0,
    }
}

impl TopicCounters {
    /// Counts consume results at `now_ms`: `ok` messages acknowledged, `failed` not.
    pub(crate) fn consumed(&self, now_ms: u64, ok: usize, failed: usize) {
        if ok > 0 {
            self.consume_ok.add(now_ms, ok as u64, 0);
        }
        if failed > 0 {
            self.consume_failed.add(now_ms, failed as u64, 0);
        }
    }

    /// Counts one listener call that took `rt`.
    pub(crate) fn consume_call(&self, now_ms: u64, rt: Duration) {
        self.consume_calls.add(now_ms, 1, micros(rt));
    }

    /// Counts a fetch of `msgs` messages (`bytes` of bodies) that took `rt`.
    pub(crate) fn pulled(&self, now_ms: u64, msgs: usize, bytes: u64, rt: Duration) {
        self.pulled.add(now_ms, msgs as u64, bytes);
        self.pulls.add(now_ms, 1, micros(rt));
    }

    fn snapshot(&self, topic: &str, now_ms: u64) -> ConsumerTopicStats {
        let ok = self.consume_ok.read(now_ms);
        let failed = self.consume_failed.read(now_ms);
        ConsumerTopicStats {
            topic: topic.to_owned(),
            consume_ok_tps: ok.per_sec(),
            consume_failed_tps: failed.per_sec(),
            consume_rt_ms: avg_ms(&self.consume_calls.read(now_ms)),
            pull_tps: self.pulled.read(now_ms).per_sec(),
            pull_rt_ms: avg_ms(&self.pulls.read(now_ms)),
            cached_messages: 0,
            cached_bytes: 0,
            lag: 0,
            consumed_ok: ok.total_count,
            consumed_failed: failed.total_count,
        }
    }
}

/// A consumer's topic counters, one per subscription, fixed at its start, and the monotonic
/// clock its consume timeout runs on.
#[derive(Debug)]
pub(crate) struct Counters {
    base: Instant,
    topics: Vec<(String, Arc<TopicCounters>)>,
    /// Messages whose listener call timed out.
    pub(crate) timed_out: AtomicU64,
}

impl Counters {
    pub(crate) fn new<'a>(topics: impl IntoIterator<Item = &'a str>) -> Counters {
        let mut topics: Vec<(String, Arc<TopicCounters>)> = topics
            .into_iter()
            .map(|t| (t.to_owned(), Arc::default()))
            .collect();
        topics.sort_by(|a, b| a.0.cmp(&b.0));
        topics.dedup_by(|a, b| a.0 == b.0);
        Counters {
            base: Instant::now(),
            topics,
            timed_out: AtomicU64::new(0),
        }
    }

    /// The counters of a subscribed topic (a fresh, unlisted set for any other).
    pub(crate) fn topic(&self, topic: &str) -> Arc<TopicCounters> {
        self.topics
            .iter()
            .find(|(t, _)| t == topic)
            .map_or_else(Arc::default, |(_, c)| c.clone())
    }

    /// Nanoseconds from the consumer's start to `at` (the consume timeout's clock).
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Engine {
    pub(crate) fn stats(&self) -> ConsumerStats {
        let counters = self.counters();
        let now = now_ms();
        let mut topics: Vec<ConsumerTopicStats> = counters
            .topics
            .iter()
            .map(|(t, c)| c.snapshot(t, now))
            .collect();
        let core = self.core();
        let mut queues = Vec::new();
        let mut stalled = Vec::new();
        for pq in self.pqs_snapshot() {
            if let Some(st) = pq.stall() {
                stalled.push(StalledQueue {
                    queue: pq.queue.clone(),
                    offset: st.offset,
                    error: st.error,
                    attempts: st.attempts,
                });
            }
            let (cached_messages, cached_bytes) = pq.backlog();
            let committed_offset = core
                .committed_offset_for(self.offset_scope(), self.offset_group(), &pq.queue)
                .ok()
                .flatten()
                .unwrap_or_else(|| pq.commit_point());
            let max_offset = core.queue_bounds(&pq.queue).1;
            let lag = max_offset.saturating_sub(committed_offset);
            if let Some(t) = topics.iter_mut().find(|t| t.topic == pq.queue.topic) {
                t.cached_messages += cached_messages;
                t.cached_bytes += cached_bytes;
                t.lag += lag;
            }
            queues.push(ConsumerQueueStats {
                queue: pq.queue.clone(),
                committed_offset,
                max_offset,
                lag,
                cached_messages,
                cached_bytes,
            });
        }
        ConsumerStats {
            pull_errors: self.pull_errors.load(Ordering::Relaxed),
            stalled,
            consumed_ok: topics.iter().map(|t| t.consumed_ok).sum(),
            consumed_failed: topics.iter().map(|t| t.consumed_failed).sum(),
            consume_timeouts: counters.timed_out.load(Ordering::Relaxed),
            topics,
            queues,
        }
    }
}
