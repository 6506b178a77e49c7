//! Tag filter expressions on pulls: `*` and empty (everything, untagged included), one tag,
//! `a || b` with and without spaces, duplicates; the two-stage check (the consume queue's tag
//! code — verified in the raw consume queue file to be the Java `hashCode` over UTF-16 — then
//! the exact tag): "Aa" and "BB" share a Java hash, and each filter returns only its own tag,
//! a queue holding only the other gives NoMatchedMsg; non-ASCII tags; malformed expressions
//! give `Error::InvalidFilter` (also through `TagFilter::parse` / `FromStr`).

mod common;

use std::path::Path;

use common::small;
use mqlite::{Error, Message, MessageQueue, PullStatus, Store, TagFilter};

fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

const TAGS: [Option<&str>; 10] = [
    Some("a"),
    Some("b"),
    Some("c"),
    None,
    Some("Aa"),
    Some("BB"),
    Some("a"),
    Some("订单"),
    Some("😀"),
    Some("BB"),
];

fn filled(dir: &Path) -> (Store, MessageQueue) {
    let store = small(dir).open().unwrap();
    store.create_topic("f", 1).unwrap();
    let q = MessageQueue::new("f", 0);
    let p = store.producer("p").unwrap();
    for (i, t) in TAGS.iter().enumerate() {
        let mut m = Message::new("f", format!("{i}"));
        if let Some(t) = t {
            m = m.with_tags(*t);
        }
        p.send_to(m, &q).unwrap();
    }
    (store, q)
}

/// Offsets a pull of the whole queue with `expr` returns.
fn pulled(store: &Store, q: &MessageQueue, expr: &str) -> Vec<u64> {
    let r = store
        .pull_consumer("g")
        .unwrap()
        .pull(q, expr, 0, 64)
        .unwrap();
    if r.messages.is_empty() {
        assert_eq!(r.status, PullStatus::NoMatchedMsg, "{expr:?}");
    } else {
        assert_eq!(r.status, PullStatus::Found, "{expr:?}");
    }
    assert_eq!(r.next_begin_offset, TAGS.len() as u64, "{expr:?}");
    for m in &r.messages {
        let want = TAGS[m.queue_offset() as usize];
        assert_eq!(m.tags(), want);
        assert_eq!(m.body(), m.queue_offset().to_string().as_bytes());
    }
    r.messages.iter().map(|m| m.queue_offset()).collect()
}

#[test]
fn tag_expressions_select_exact_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, q) = filled(tmp.path());
    let all: Vec<u64> = (0..TAGS.len() as u64).collect();
    assert_eq!(pulled(&store, &q, "*"), all);
    assert_eq!(pulled(&store, &q, ""), all);
    assert_eq!(pulled(&store, &q, "  *  "), all);
    assert_eq!(pulled(&store, &q, "a"), [0, 6]);
    assert_eq!(pulled(&store, &q, " a "), [0, 6]);
    assert_eq!(pulled(&store, &q, "a || b"), [0, 1, 6]);
    assert_eq!(pulled(&store, &q, "a||c"), [0, 2, 6]);
    assert_eq!(pulled(&store, &q, "c || a || c"), [0, 2, 6]);
    assert_eq!(pulled(&store, &q, "订单 || 😀"), [7, 8]);
    assert_eq!(pulled(&store, &q, "A"), Vec::<u64>::new());
    assert_eq!(pulled(&store, &q, "missing || nothing"), Vec::<u64>::new());
    store.close().unwrap();
}

#[test]
fn colliding_tag_hashes_are_told_apart_by_the_exact_check() {
    assert_eq!(
        java_hash("Aa"),
        java_hash("BB"),
        "precondition: a Java hash collision"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (store, q) = filled(tmp.path());
    assert_eq!(pulled(&store, &q, "Aa"), [4]);
    assert_eq!(pulled(&store, &q, "BB"), [5, 9]);
    assert_eq!(pulled(&store, &q, "Aa || BB"), [4, 5, 9]);
    assert_eq!(pulled(&store, &q, "AaBB"), Vec::<u64>::new());
    assert_eq!(java_hash("AaAa"), java_hash("BBBB"));

    // A queue that holds only the colliding tag.
    store.create_topic("only", 1).unwrap();
    let only = MessageQueue::new("only", 0);
    let p = store.producer("p").unwrap();
    for i in 0..5 {
        p.send_to(
            Message::new("only", format!("bb{i}")).with_tags("BB"),
            &only,
        )
        .unwrap();
    }
    let c = store.pull_consumer("g").unwrap();
    let r = c.pull(&only, "Aa", 0, 32).unwrap();
    assert_eq!(r.status, PullStatus::NoMatchedMsg);
    assert!(r.messages.is_empty());
    assert_eq!(r.next_begin_offset, 5);
    let r = c.pull(&only, "BB", 2, 32).unwrap();
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(r.messages.len(), 3);
    store.close().unwrap();

    // The consume queue holds the Java hash of each tag (over UTF-16), 0 for no tag: the
    // colliding tags have the same code there, so only the exact check can separate them.
    let cq = std::fs::read(
        tmp.path()
            .join("consumequeue")
            .join("f")
            .join("0")
            .join(format!("{:020}", 0)),
    )
    .unwrap();
    for (i, t) in TAGS.iter().enumerate() {
        let unit = &cq[i * 20..i * 20 + 20];
        let code = i64::from_be_bytes(unit[12..20].try_into().unwrap());
        let want = t.map_or(0, |t| i64::from(java_hash(t)));
        assert_eq!(code, want, "tag code of unit {i} ({t:?})");
    }
}

#[test]
fn malformed_expressions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, q) = filled(tmp.path());
    let c = store.pull_consumer("g").unwrap();
    for expr in [
        "a || || b",
        "a | b",
        "|| a",
        "a ||",
        "||",
        "|",
        "a |",
        "*||a",
        "a || *",
        "a*",
        "a b",
        "a\tb || c",
        "a\u{1}",
    ] {
        match c.pull(&q, expr, 0, 32) {
            Err(Error::InvalidFilter { expr: e, .. }) => assert_eq!(e, expr),
            other => panic!("{expr:?}: {other:?}"),
        }
        assert!(
            matches!(TagFilter::parse(expr), Err(Error::InvalidFilter { .. })),
            "{expr:?}"
        );
        assert!(expr.parse::<TagFilter>().is_err(), "{expr:?}");
    }
    // The parsed form behaves as the string form.
    let f: TagFilter = "b || 订单".parse().unwrap();
    assert!(!f.is_all());
    assert!(f.matches(Some("b")) && f.matches(Some("订单")) && !f.matches(Some("a")));
    assert!(!f.matches(None));
    assert!(TagFilter::ALL.is_all() && TagFilter::ALL.matches(None));
    let r = c.pull_filtered(&q, &f.into(), 0, 32).unwrap();
    assert_eq!(
        r.messages
            .iter()
            .map(|m| m.queue_offset())
            .collect::<Vec<_>>(),
        [1, 7]
    );
    store.close().unwrap();
}
