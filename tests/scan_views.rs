//! `Store::scan`: zero-copy views agree with the owned messages `get_messages` returns.

use mqlite::{Error, Message, MessageQueue, Store};

#[test]
fn views_match_owned_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .commitlog_segment_size(1 << 20)
        .open()
        .unwrap();
    store.create_topic("v", 2).unwrap();
    let p = store.producer("p").unwrap();
    for i in 0..300u32 {
        let body = if i % 50 == 7 {
            vec![b'z'; 5000 + i as usize] // compressed by the producer
        } else {
            format!("body {i}").into_bytes()
        };
        let mut m = Message::new("v", body).with_keys([format!("K{i}"), format!("L{i}")]);
        if i % 3 == 0 {
            m = m.with_tags("even");
        }
        p.send_to(
            m.with_property("n", i.to_string()),
            &MessageQueue::new("v", i % 2),
        )
        .unwrap();
    }
    for q in 0..2 {
        let mq = MessageQueue::new("v", q);
        let owned = store.get_messages(&mq, 0, usize::MAX).unwrap().messages;
        let mut seen = Vec::new();
        let next = store
            .scan(&mq, 0, usize::MAX, |v| {
                seen.push((
                    v.queue_offset(),
                    v.body().into_owned(),
                    v.tags().map(str::to_owned),
                    v.keys().map(str::to_owned).collect::<Vec<_>>(),
                    v.property("n").map(str::to_owned),
                    v.uniq_key().map(str::to_owned),
                    v.to_owned(),
                ));
                true
            })
            .unwrap();
        assert_eq!(next, owned.len() as u64);
        assert_eq!(seen.len(), owned.len());
        for (s, o) in seen.iter().zip(&owned) {
            assert_eq!(s.0, o.queue_offset());
            assert_eq!(s.1, o.body());
            assert_eq!(s.2.as_deref(), o.tags());
            assert_eq!(s.3, o.keys().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(s.4.as_deref(), o.property("n"));
            assert_eq!(s.5.as_deref(), Some(o.msg_id().as_str()));
            assert_eq!(&s.6, o);
        }
    }
}

#[test]
fn scan_stops_when_asked_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let q = MessageQueue::new("t", 0);
    for i in 0..20 {
        store.put(&Message::new("t", format!("m{i}")), 0).unwrap();
    }
    let mut got = Vec::new();
    let next = store
        .scan(&q, 3, usize::MAX, |v| {
            got.push(v.queue_offset());
            got.len() < 5
        })
        .unwrap();
    assert_eq!(got, vec![3, 4, 5, 6, 7]);
    assert_eq!(next, 8);
    let next = store.scan(&q, next, 4, |_| true).unwrap();
    assert_eq!(next, 12);
    // Past the end: nothing, and the offset stays.
    assert_eq!(
        store.scan(&q, 20, 10, |_| panic!("no message")).unwrap(),
        20
    );
    assert!(matches!(
        store.scan(&MessageQueue::new("nope", 0), 0, 1, |_| true),
        Err(Error::TopicNotFound(_))
    ));
    assert!(matches!(
        store.scan(&MessageQueue::new("t", 9), 0, 1, |_| true),
        Err(Error::QueueNotFound { .. })
    ));
}
