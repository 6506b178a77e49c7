//! Pull statuses exactly as RocketMQ's broker maps them (reference §13.3): an empty queue
//! (offset 0 → NoNewMsg, else OffsetIllegal with next 0), offset below the min (OffsetIllegal,
//! next = min, after deleting segments), offset == max (NoNewMsg, next = offset), offset past
//! the max (OffsetIllegal, next 0 when min is 0 else max), Found (next = after the last examined
//! unit, with and without a filter), NoMatchedMsg (next past the scanned units, at most 16000
//! units per pull), min/max offsets in every result, unknown topics and queues, `queues()`, a
//! full consume loop by `next_begin_offset`, and visibility under `Sync`.

mod common;

use common::small;
use mqlite::{Error, FlushPolicy, Message, MessageQueue, PullResult, PullStatus, Store};

fn fill(store: &Store, q: &MessageQueue, tags: &[Option<&str>]) {
    for (i, t) in tags.iter().enumerate() {
        let mut m = Message::new(q.topic.clone(), format!("m{i}"));
        if let Some(t) = t {
            m = m.with_tags(*t);
        }
        store.put(&m, q.queue_id).unwrap();
    }
}

#[track_caller]
fn expect(r: &PullResult, status: PullStatus, next: u64, min: u64, max: u64) {
    assert_eq!(
        (r.status, r.next_begin_offset, r.min_offset, r.max_offset),
        (status, next, min, max),
        "{r:?}"
    );
    if status != PullStatus::Found {
        assert!(r.messages.is_empty());
    }
}

#[test]
fn empty_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("empty", 2).unwrap();
    let c = store.pull_consumer("g").unwrap();
    let queues = c.queues("empty").unwrap();
    assert_eq!(
        queues,
        vec![MessageQueue::new("empty", 0), MessageQueue::new("empty", 1)]
    );
    let q = &queues[0];
    expect(
        &c.pull(q, "*", 0, 32).unwrap(),
        PullStatus::NoNewMsg,
        0,
        0,
        0,
    );
    expect(
        &c.pull(q, "tag", 0, 32).unwrap(),
        PullStatus::NoNewMsg,
        0,
        0,
        0,
    );
    for off in [1, 5, u64::MAX] {
        expect(
            &c.pull(q, "*", off, 32).unwrap(),
            PullStatus::OffsetIllegal,
            0,
            0,
            0,
        );
    }
    // A queue stays empty while its neighbour fills.
    fill(&store, &queues[1], &[None, None]);
    expect(
        &c.pull(q, "*", 0, 32).unwrap(),
        PullStatus::NoNewMsg,
        0,
        0,
        0,
    );
    expect(
        &c.pull(q, "*", 2, 32).unwrap(),
        PullStatus::OffsetIllegal,
        0,
        0,
        0,
    );
    store.close().unwrap();
}

#[test]
fn unknown_topic_and_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("known", 2).unwrap();
    let c = store.pull_consumer("g").unwrap();
    assert!(matches!(c.queues("unknown"), Err(Error::TopicNotFound(t)) if t == "unknown"));
    assert!(matches!(
        c.pull(&MessageQueue::new("unknown", 0), "*", 0, 32),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        c.pull(&MessageQueue::new("known", 2), "*", 0, 32),
        Err(Error::QueueNotFound { queue_id: 2, .. })
    ));
    // Pulling does not create the topic.
    assert!(store.topic("unknown").is_none());
    store.close().unwrap();
}

#[test]
fn statuses_on_a_filled_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    fill(&store, &q, &[None; 10]);
    let c = store.pull_consumer("g").unwrap();
    let r = c.pull(&q, "*", 0, 32).unwrap();
    expect(&r, PullStatus::Found, 10, 0, 10);
    let offsets: Vec<u64> = r.messages.iter().map(|m| m.queue_offset()).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    assert_eq!(r.messages[3].body(), b"m3");
    let r = c.pull(&q, "*", 2, 3).unwrap();
    expect(&r, PullStatus::Found, 5, 0, 10);
    assert_eq!(
        r.messages
            .iter()
            .map(|m| m.queue_offset())
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );
    expect(
        &c.pull(&q, "*", 9, 32).unwrap(),
        PullStatus::Found,
        10,
        0,
        10,
    );
    // At the end: no new message, stay there.
    expect(
        &c.pull(&q, "*", 10, 32).unwrap(),
        PullStatus::NoNewMsg,
        10,
        0,
        10,
    );
    // Past the end of a queue that starts at 0: back to 0.
    for off in [11, 1000, u64::MAX] {
        expect(
            &c.pull(&q, "*", off, 32).unwrap(),
            PullStatus::OffsetIllegal,
            0,
            0,
            10,
        );
    }
    store.close().unwrap();
}

#[test]
fn found_continues_after_the_last_examined_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    //          0         1          2          3          4          5         6
    let tags = [
        Some("b"),
        Some("a"),
        Some("b"),
        Some("b"),
        Some("a"),
        Some("b"),
        None,
    ];
    fill(&store, &q, &tags);
    let c = store.pull_consumer("g").unwrap();
    let r = c.pull(&q, "a", 0, 1).unwrap();
    expect(&r, PullStatus::Found, 2, 0, 7);
    assert_eq!(r.messages[0].queue_offset(), 1);
    let r = c.pull(&q, "a", 2, 1).unwrap();
    expect(&r, PullStatus::Found, 5, 0, 7);
    assert_eq!(r.messages[0].queue_offset(), 4);
    // Everything examined, nothing matched: continue past it.
    expect(
        &c.pull(&q, "a", 5, 32).unwrap(),
        PullStatus::NoMatchedMsg,
        7,
        0,
        7,
    );
    // Found with room to spare: everything up to the end was examined.
    let r = c.pull(&q, "a", 0, 32).unwrap();
    expect(&r, PullStatus::Found, 7, 0, 7);
    assert_eq!(
        r.messages
            .iter()
            .map(|m| m.queue_offset())
            .collect::<Vec<_>>(),
        [1, 4]
    );
    let r = c.pull(&q, "a || b", 1, 3).unwrap();
    expect(&r, PullStatus::Found, 4, 0, 7);
    // Without a filter, max messages from the offset.
    let r = c.pull(&q, "*", 0, 2).unwrap();
    expect(&r, PullStatus::Found, 2, 0, 7);
    store.close().unwrap();
}

#[test]
fn no_matched_scans_at_most_16000_units_per_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(8 << 20)
        .open()
        .unwrap();
    store.create_topic("many", 1).unwrap();
    let q = MessageQueue::new("many", 0);
    let p = store.producer("p").unwrap();
    let batch: Vec<Message> = (0..500)
        .map(|_| Message::new("many", "x").with_tags("other"))
        .collect();
    for _ in 0..34 {
        p.send_batch(batch.clone()).unwrap();
    }
    p.send(Message::new("many", "hit").with_tags("wanted"))
        .unwrap();
    let c = store.pull_consumer("g").unwrap();
    let r = c.pull(&q, "wanted", 0, 32).unwrap();
    expect(&r, PullStatus::NoMatchedMsg, 16_000, 0, 17_001);
    let r = c.pull(&q, "wanted", 16_000, 32).unwrap();
    expect(&r, PullStatus::Found, 17_001, 0, 17_001);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].body(), b"hit");
    store.close().unwrap();
}

#[test]
fn offsets_below_the_min_and_past_the_max_after_deleting_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("old", 1).unwrap();
    let q = MessageQueue::new("old", 0);
    let p = store.producer("p").unwrap();
    for i in 0..400 {
        p.send(Message::new("old", vec![b'a' + (i % 26) as u8; 1000]))
            .unwrap();
    }
    store
        .delete_segments_before(store.commitlog_max_offset())
        .unwrap();
    let min = store.min_offset(&q).unwrap();
    let max = store.max_offset(&q).unwrap();
    assert!(min > 0 && min < max, "min {min} max {max}");
    let c = store.pull_consumer("g").unwrap();
    for off in [0, min - 1] {
        expect(
            &c.pull(&q, "*", off, 32).unwrap(),
            PullStatus::OffsetIllegal,
            min,
            min,
            max,
        );
    }
    let r = c.pull(&q, "*", min, 4).unwrap();
    expect(&r, PullStatus::Found, min + 4, min, max);
    assert_eq!(r.messages[0].queue_offset(), min);
    expect(
        &c.pull(&q, "*", max, 4).unwrap(),
        PullStatus::NoNewMsg,
        max,
        min,
        max,
    );
    // Past the max of a queue that no longer starts at 0: to the max.
    for off in [max + 1, max + 1000] {
        expect(
            &c.pull(&q, "*", off, 4).unwrap(),
            PullStatus::OffsetIllegal,
            max,
            min,
            max,
        );
    }
    store.close().unwrap();
}

#[test]
fn a_consumer_loop_reads_everything_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path()).open().unwrap();
    store.create_topic("loop", 3).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..600 {
        p.send(
            Message::new("loop", format!("{i:04}")).with_tags(if i % 4 == 0 {
                "even4"
            } else {
                "rest"
            }),
        )
        .unwrap();
    }
    let c = store.pull_consumer("g").unwrap();
    let mut all = Vec::new();
    let mut matched = 0;
    for q in c.queues("loop").unwrap() {
        for (expr, sink) in [("*", true), ("even4", false)] {
            let mut off = 0;
            let mut last: Option<u64> = None;
            loop {
                let r = c.pull(&q, expr, off, 7).unwrap();
                match r.status {
                    PullStatus::Found => {
                        for m in &r.messages {
                            assert!(last.is_none_or(|l| m.queue_offset() > l));
                            last = Some(m.queue_offset());
                            if sink {
                                all.push(String::from_utf8(m.body().to_vec()).unwrap());
                            } else {
                                assert_eq!(m.tags(), Some("even4"));
                                matched += 1;
                            }
                        }
                    }
                    PullStatus::NoMatchedMsg => {}
                    PullStatus::NoNewMsg => break,
                    s => panic!("{s:?} at {off}"),
                }
                assert!(r.next_begin_offset > off);
                off = r.next_begin_offset;
            }
            assert_eq!(off, store.max_offset(&q).unwrap());
        }
    }
    all.sort();
    assert_eq!(all, (0..600).map(|i| format!("{i:04}")).collect::<Vec<_>>());
    assert_eq!(matched, 150);
    store.close().unwrap();
}

#[test]
fn under_sync_a_sent_message_is_found_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small(tmp.path())
        .flush_policy(FlushPolicy::SYNC)
        .open()
        .unwrap();
    store.create_topic("s", 1).unwrap();
    let q = MessageQueue::new("s", 0);
    let p = store.producer("p").unwrap();
    let c = store.pull_consumer("g").unwrap();
    for i in 0..20u64 {
        let r = p.send(Message::new("s", format!("s{i}"))).unwrap();
        let got = c.pull(&q, "*", r.queue_offset, 32).unwrap();
        expect(&got, PullStatus::Found, i + 1, 0, i + 1);
        assert_eq!(got.messages[0].msg_id(), r.msg_id);
    }
    store.close().unwrap();
}
