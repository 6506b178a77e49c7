//! Deliver-at messages in RocketMQ 5's timer format (reference §10.4) and delivered copies as
//! RocketMQ makes them (§10.3):
//!
//! - the timer record is in `rmq_sys_wheel_timer` queue 0 with `TIMER_OUT_MS` (the delivery
//!   time), the client's `TIMER_DELIVER_MS`, `REAL_TOPIC` and `REAL_QID`, and its consume queue
//!   tag code is the tag's hash, not the delivery time;
//! - the delivery time comes from the record: a message due in an hour is not delivered early
//!   after the timer topic's consume queue is deleted and rebuilt at reopen;
//! - delivered delay-level copies keep `REAL_TOPIC` / `REAL_QID`; timer copies drop them (as
//!   `TimerMessageStore.convertMessage`); both get `WAIT=false` and keep the compressed body;
//! - a crash between timer deliveries (a kill, or a power cut, on the simulated backend)
//!   loses none of them: after reopen every pending message is delivered at least once, and
//!   the progress on disk (`config/timercheck`, `config/delayOffset.json`) never counts one
//!   that was not delivered before the crash.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mqlite::sim::{Keep, SimStorage};
use mqlite::{FlushPolicy, Message, MessageExt, MessageQueue, Store, StoreConfig};

const TIMER: &str = "rmq_sys_wheel_timer";
const HOUR: u64 = 3_600_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Every message of a queue.
fn all_of(store: &Store, q: &MessageQueue) -> Vec<MessageExt> {
    let mut out = Vec::new();
    let mut off = store.min_offset(q).unwrap();
    loop {
        let r = store.get_messages(q, off, 256).unwrap();
        if r.messages.is_empty() {
            return out;
        }
        off = r.next_offset;
        out.extend(r.messages);
    }
}

/// Polls until `queue` holds at least `n` messages; panics after a generous deadline.
fn wait_for(store: &Store, queue: &MessageQueue, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.max_offset(queue).unwrap() < n {
        assert!(Instant::now() < deadline, "{queue:?} never reached {n}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Unit `index` of a queue's first consume queue file: (physical offset, size, tag code).
fn cq_unit(dir: &Path, topic: &str, queue: u32, index: usize) -> (i64, i32, i64) {
    let path = dir
        .join("consumequeue")
        .join(topic)
        .join(queue.to_string())
        .join("00000000000000000000");
    let bytes = std::fs::read(&path).unwrap();
    let u = &bytes[index * 20..index * 20 + 20];
    (
        i64::from_be_bytes(u[0..8].try_into().unwrap()),
        i32::from_be_bytes(u[8..12].try_into().unwrap()),
        i64::from_be_bytes(u[12..20].try_into().unwrap()),
    )
}

/// `lastTimerQueueOffset` and `masterTimerQueueOffset` of `config/timercheck`.
fn timer_check(dir: &Path) -> Option<(u64, u64)> {
    let b = std::fs::read(dir.join("config/timercheck")).ok()?;
    assert_eq!(b.len(), 4096, "RocketMQ maps one page");
    let long = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    Some((long(16), long(24)))
}

fn delay_offset_watermark(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("config/delayOffset.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["timer"]["watermark"].as_u64().unwrap()
}

#[test]
fn a_deliver_at_record_is_in_rocketmq_timer_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 2).unwrap();
    let p = store.producer("p").unwrap();
    let due = now_ms() + HOUR;
    let r = p
        .send_to(
            Message::new("t", "later")
                .with_tags("tg")
                .with_deliver_at(at(due)),
            &MessageQueue::new("t", 1),
        )
        .unwrap();
    store.flush().unwrap();
    let m = store.view_message(&r.offset_msg_id.to_string()).unwrap();
    assert_eq!((m.topic(), m.queue_id()), (TIMER, 0));
    assert_eq!(m.property("TIMER_OUT_MS"), Some(due.to_string().as_str()));
    assert_eq!(
        m.property("TIMER_DELIVER_MS"),
        Some(due.to_string().as_str())
    );
    assert_eq!(m.property("REAL_TOPIC"), Some("t"));
    assert_eq!(m.property("REAL_QID"), Some("1"));
    assert_eq!(m.property("DELAY"), None);
    assert_eq!(m.tags(), Some("tg"));
    let (phys, size, tag) = cq_unit(dir.path(), TIMER, 0, 0);
    assert_eq!(phys as u64, m.physical_offset());
    assert_eq!(size as u32, m.store_size());
    assert_eq!(
        tag,
        mqlite::format::hash::tag_code(Some("tg")),
        "tag code = tag hash"
    );
    assert_ne!(tag, due as i64);
    store.close().unwrap();
}

#[test]
fn an_hour_ahead_is_not_delivered_early_after_its_consume_queue_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = MessageQueue::new("t", 0);
    {
        let store = common::small(dir.path()).open().unwrap();
        store.create_topic("t", 1).unwrap();
        let p = store.producer("p").unwrap();
        let now = now_ms();
        // The far one first, so that it would go first if its time were read wrong.
        p.send_to(
            Message::new("t", "hour").with_deliver_at(at(now + HOUR)),
            &t0,
        )
        .unwrap();
        p.send_to(
            Message::new("t", "soon").with_deliver_at(at(now + 300)),
            &t0,
        )
        .unwrap();
        store.close().unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("consumequeue").join(TIMER)).unwrap();
    let store = common::small(dir.path()).open().unwrap();
    let timer = MessageQueue::new(TIMER, 0);
    assert_eq!(store.max_offset(&timer).unwrap(), 2, "timer queue rebuilt");
    assert_eq!(cq_unit(dir.path(), TIMER, 0, 0).2, 0, "no tag: tag code 0");
    wait_for(&store, &t0, 1);
    // Closing joins the schedule service: any pass in flight is over.
    store.close().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    let got: Vec<Vec<u8>> = all_of(&store, &t0)
        .iter()
        .map(|m| m.body().to_vec())
        .collect();
    assert_eq!(
        got,
        vec![b"soon".to_vec()],
        "the hour-ahead message stays pending"
    );
    store.close().unwrap();
    // The lowest undelivered timer queue offset is 0: a broker re-reads it all.
    assert_eq!(timer_check(dir.path()), Some((0, 0)));
}

#[test]
fn delivered_copies_keep_compression_and_get_wait_false() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path())
        .message_delay_level("100ms 200ms")
        .open()
        .unwrap();
    store.create_topic("t", 2).unwrap();
    let p = store.producer("p").unwrap().compress_over(100);
    let body: Vec<u8> = b"compressible line\n".repeat(100);
    let q1 = MessageQueue::new("t", 1);
    let level = p
        .send_to(
            Message::new("t", body.clone())
                .with_tags("lv")
                .with_delay_level(1),
            &q1,
        )
        .unwrap();
    let timed = p
        .send_to(
            Message::new("t", body.clone())
                .with_tags("tm")
                .with_deliver_at(at(now_ms() + 100)),
            &q1,
        )
        .unwrap();
    for r in [&level, &timed] {
        let s = store.view_message(&r.offset_msg_id.to_string()).unwrap();
        assert!(s.is_compressed(), "the scheduled copy is compressed");
    }
    wait_for(&store, &q1, 2);
    let delivered = all_of(&store, &q1);
    for m in &delivered {
        assert_eq!(m.body(), &body[..]);
        assert!(m.is_compressed(), "{:?}: compression kept", m.tags());
        assert_eq!(m.property("WAIT"), Some("false"));
        assert_eq!(m.property("DELAY"), None);
        match m.tags() {
            Some("lv") => {
                assert_eq!(m.property("REAL_TOPIC"), Some("t"));
                assert_eq!(m.property("REAL_QID"), Some("1"));
            }
            Some("tm") => {
                assert_eq!(m.property("REAL_TOPIC"), None);
                assert_eq!(m.property("REAL_QID"), None);
                assert!(m.property("TIMER_OUT_MS").is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut tags: Vec<_> = delivered.iter().filter_map(|m| m.tags()).collect();
    tags.sort();
    assert_eq!(tags, ["lv", "tm"]);
    // The delivered copies' record bytes carry the compression flag and the stored body.
    for m in &delivered {
        let raw = store.message_at(m.physical_offset()).unwrap();
        assert!(raw.sys_flag() & 0x1 != 0);
    }
    store.close().unwrap();
}

/// Sends `n` deliver-at messages 250 ms apart and one an hour ahead; crashes (as `keep`
/// says) once some but not all are delivered; reopens and checks that every short one is
/// delivered at least once, and that the progress found on disk after the crash counted only
/// messages delivered before it.
fn crash_between_deliveries(keep: Keep) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimStorage::new(tmp.path()).unwrap();
    let mut cfg = StoreConfig::default();
    cfg.commitlog_segment_size = 64 * 1024;
    cfg.consume_queue_segment_size = 2000;
    cfg.checkpoint_interval = Duration::from_millis(20);
    cfg.flush_policy = FlushPolicy::SYNC;
    let open = || {
        Store::builder(&dir)
            .config(cfg.clone())
            .simulated(&sim)
            .open()
    };
    let t0 = MessageQueue::new("t", 0);
    let n = 6;
    let store = open().unwrap();
    store.create_topic("t", 1).unwrap();
    let p = store.producer("p").unwrap();
    let start = now_ms();
    for i in 0..n {
        let m = Message::new("t", format!("m{i}")).with_deliver_at(at(start + 250 * (i + 1)));
        p.send_to(m, &t0).unwrap();
    }
    p.send_to(
        Message::new("t", "hour").with_deliver_at(at(start + HOUR)),
        &t0,
    )
    .unwrap();
    wait_for(&store, &t0, 2);
    let delivered_before = store.max_offset(&t0).unwrap();
    sim.power_cut();
    let cut_at = now_ms();
    // The producer shares the store's runtime: both go, so no thread of the cut store
    // outlives it and writes after the restart.
    drop(p);
    drop(store);
    sim.restart(keep).unwrap();
    eprintln!("{keep:?}: cut after {delivered_before} of {n} deliveries");
    let progress = timer_check(&dir).map_or(0, |(last, master)| {
        assert_eq!(last, master);
        last
    });
    let store = open().unwrap();
    wait_for(&store, &t0, n);
    store.close().unwrap();
    let store = open().unwrap();
    let delivered = all_of(&store, &t0);
    let timer = all_of(&store, &MessageQueue::new(TIMER, 0));
    assert_eq!(
        timer.len() as u64,
        n + 1,
        "every timer record was acknowledged"
    );
    for (off, rec) in timer.iter().enumerate() {
        let copies: Vec<&MessageExt> = delivered
            .iter()
            .filter(|m| m.body() == rec.body())
            .collect();
        if rec.body() == b"hour" {
            assert!(copies.is_empty(), "the hour-ahead message was delivered");
            continue;
        }
        assert!(!copies.is_empty(), "timer entry {off} never delivered");
        if (off as u64) < progress {
            // Counted as delivered on disk: a copy existed before the crash.
            assert!(
                copies.iter().any(|m| m.store_timestamp() as u64 <= cut_at),
                "timer entry {off} counted before it was delivered"
            );
        }
    }
    eprintln!(
        "{} copies of {n} messages; progress on disk after the crash: {progress}",
        delivered.len()
    );
    store.close().unwrap();
    // Everything but the hour-ahead message (the last one) is delivered.
    assert_eq!(timer_check(&dir), Some((n, n)));
    assert_eq!(delay_offset_watermark(&dir), n);
}

#[test]
fn a_kill_between_timer_deliveries_delivers_every_pending_one() {
    crash_between_deliveries(Keep::RandomPages {
        seed: 1,
        probability: 1.0,
    });
}

#[test]
fn a_power_cut_between_timer_deliveries_delivers_every_pending_one() {
    crash_between_deliveries(Keep::Nothing);
}
