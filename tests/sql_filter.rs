//! SQL92 property filters (`MessageSelector::by_sql`, `SqlFilter`), with RocketMQ's grammar
//! and semantics:
//!
//! - a table of expressions against three property sets (none, and two messages), covering
//!   every operator, absent properties (NULL), strings compared with numbers (converted, or
//!   an error that abandons the whole expression), precedence (`NOT` tighter than `=`, `AND`
//!   tighter than `OR`), case-insensitive keywords and case-sensitive names, literals and
//!   comments; each also checked through `MessageSelector::matches` and `matches_with`;
//! - malformed expressions: `Error::InvalidSqlFilter` with the 1-based character column
//!   and what was expected, and the expressions RocketMQ accepts although they look wrong;
//! - pulls: a SQL selector returns exactly the matching messages in order, batch after batch,
//!   and `next_begin_offset` moves past the ones that do not match (`NoMatchedMsg` when none
//!   does); tag selectors pull as tag expressions do; long polling skips arrivals that do not
//!   match;
//! - push consumers (concurrent and orderly) subscribed with a SQL selector get exactly the
//!   matching messages, and their offsets reach the end of every queue; so does a lite pull
//!   consumer's polling.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlite::format::properties::encode;
use mqlite::{
    ConsumeFrom, ConsumeStatus, Error, ExpressionType, Message, MessageQueue, MessageSelector,
    OrderlyStatus, PullStatus, SqlFilter, Store, TagFilter,
};
use parking_lot::Mutex;

/// The property sets of the table, in column order.
fn property_sets() -> [Vec<(&'static str, &'static str)>; 3] {
    [
        vec![],
        vec![
            ("TAGS", "paid"),
            ("region", "eu"),
            ("amount", "250"),
            ("ratio", "0.75"),
            ("flag", "true"),
            ("name", "O'Brien"),
            ("big", "3000000000"),
            ("word", "abc"),
            ("pad", " 7 "),
            ("neg", "-5"),
        ],
        vec![
            ("TAGS", "created"),
            ("region", "us"),
            ("amount", "50"),
            ("ratio", "1.5"),
            ("flag", "FALSE"),
            ("name", "Smith"),
            ("word", "xyz"),
        ],
    ]
}

/// Expression, and whether it matches each property set.
const TABLE: &[(&str, [bool; 3])] = &[
    // = and <>, strings against strings, numbers and booleans.
    ("region = 'eu'", [false, true, false]),
    ("region <> 'eu'", [false, false, true]),
    ("amount = 250", [false, true, false]),
    ("amount = 250.0", [false, true, false]),
    ("amount = 250L", [false, true, false]),
    ("amount = '250'", [false, true, false]),
    ("amount = 2.5e2", [false, true, false]),
    ("ratio = .75", [false, true, false]),
    ("amount > 100.", [false, true, false]),
    ("big = 3000000000", [false, true, false]),
    ("flag = TRUE", [false, true, false]),
    ("flag = FALSE", [false, false, true]),
    ("name = 'O''Brien'", [false, true, false]),
    ("'true' = TRUE", [true, true, true]),
    ("1 = TRUE", [false, false, false]),
    ("1 = 1.0", [true, true, true]),
    // A string that is not a number, compared with one, abandons the whole expression.
    ("region = 1", [false, false, false]),
    ("region = 1 OR TRUE", [true, false, false]),
    ("TRUE OR region = 1", [true, true, true]),
    ("FALSE AND region = 1", [false, false, false]),
    ("pad = 7", [false, false, false]),
    ("pad = 7.0", [false, true, false]),
    ("big > 1", [false, false, false]),
    ("big > 1.5", [false, true, false]),
    // Ordering.
    ("amount > 100", [false, true, false]),
    ("amount >= 50", [false, true, true]),
    ("amount < 100", [false, false, true]),
    ("amount <= 250", [false, true, true]),
    ("ratio > 1", [false, false, false]),
    ("ratio > 1.0", [false, false, true]),
    ("ratio < 1.0", [false, true, false]),
    ("amount > ratio", [false, true, true]),
    ("amount > word", [false, false, false]),
    ("neg < 0", [false, true, false]),
    ("neg < -4", [false, true, false]),
    ("amount > -1e1", [false, true, true]),
    ("+amount > +100", [false, true, false]),
    ("-amount < 0", [false, false, false]),
    // BETWEEN.
    ("amount BETWEEN 50 AND 250", [false, true, true]),
    ("amount BETWEEN 51 AND 249", [false, false, false]),
    ("amount NOT BETWEEN 100 AND 200", [false, true, true]),
    ("amount NOT BETWEEN 0 AND 1000", [false, false, false]),
    ("ratio BETWEEN 0.5 AND 1.0", [false, true, false]),
    ("neg BETWEEN -10 AND -1", [false, true, false]),
    ("neg BETWEEN -1 AND -10", [false, false, false]),
    // IN.
    ("region IN ('eu', 'uk')", [false, true, false]),
    ("region NOT IN ('eu', 'uk')", [false, false, true]),
    ("TAGS IN ('paid', 'shipped')", [false, true, false]),
    ("amount IN ('250')", [false, true, false]),
    // CONTAINS, STARTSWITH, ENDSWITH: FALSE on an absent property, with NOT too.
    ("name CONTAINS 'Bri'", [false, true, false]),
    ("name NOT CONTAINS 'Bri'", [false, false, true]),
    ("NOT (name CONTAINS 'Bri')", [true, false, true]),
    ("name STARTSWITH 'O'''", [false, true, false]),
    ("name NOT STARTSWITH 'Sm'", [false, true, false]),
    ("name ENDSWITH 'ith'", [false, false, true]),
    ("name NOT ENDSWITH 'ith'", [false, true, false]),
    ("name CONTAINS ''", [false, false, false]),
    ("name NOT CONTAINS ''", [false, false, false]),
    ("amount CONTAINS '5'", [false, true, true]),
    ("(amount > 1) CONTAINS 'true'", [false, false, false]),
    // NULL.
    ("region IS NULL", [true, false, false]),
    ("region IS NOT NULL", [false, true, true]),
    ("big IS NULL", [true, false, true]),
    ("x = y", [true, true, true]),
    ("region = word", [true, false, false]),
    ("-region IS NULL", [true, true, true]),
    ("NULL", [false, false, false]),
    ("NOT NULL", [false, false, false]),
    ("NULL IS NULL", [true, true, true]),
    ("5 IS NULL", [false, false, false]),
    // Logic, three-valued: NOT of unknown is unknown.
    ("TRUE", [true, true, true]),
    ("NOT FALSE", [true, true, true]),
    ("region = 'eu' AND amount > 100", [false, true, false]),
    ("region = 'us' OR amount > 100", [false, true, true]),
    ("NOT (region = 'eu')", [false, false, true]),
    (
        "NOT (region = 'eu' OR region = 'us')",
        [false, false, false],
    ),
    ("region = 'eu' OR zone = 'x'", [false, true, false]),
    ("NOT (region = 'eu' OR zone = 'x')", [false, false, false]),
    ("NOT (region = 'eu' AND zone = 'x')", [false, false, true]),
    // A property as a condition: NULL when absent, FALSE when present (even "true").
    ("region", [false, false, false]),
    ("NOT region", [false, true, true]),
    ("flag", [false, false, false]),
    ("region AND TRUE", [false, false, false]),
    ("NOT region AND NOT word", [false, true, true]),
    // Precedence: AND over OR; NOT over '=' (so `NOT region = 'eu'` never matches).
    (
        "region = 'eu' OR region = 'us' AND amount < 100",
        [false, true, true],
    ),
    (
        "(region = 'eu' OR region = 'us') AND amount < 100",
        [false, false, true],
    ),
    ("NOT region = 'eu'", [false, false, false]),
    ("NOT region IS NULL", [true, false, false]),
    // Case: keywords any case, property names exactly.
    (
        "region in ('eu') and amount between 100 and 300 AnD name Is NoT nUlL",
        [false, true, false],
    ),
    ("Region = 'eu'", [false, false, false]),
    ("tags = 'paid'", [false, false, false]),
    // Comments and blanks.
    ("region = 'eu' -- Europe only", [false, true, false]),
    ("/* big */ amount > 100", [false, true, false]),
    ("\tregion\n=\r'eu'\u{c}", [false, true, false]),
    (
        "region = 'eu' -- Europe\nOR region = 'us'",
        [false, true, true],
    ),
];

#[test]
fn expressions_against_property_sets() {
    let sets = property_sets();
    let raws: Vec<Vec<u8>> = sets.iter().map(|s| encode(s.iter().copied())).collect();
    for (expr, want) in TABLE {
        let filter = SqlFilter::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        let selector = MessageSelector::by_sql(expr).unwrap();
        assert_eq!(selector.expression_type(), ExpressionType::Sql92);
        assert_eq!(selector.expression(), *expr);
        for (i, raw) in raws.iter().enumerate() {
            let got = filter.matches(raw);
            assert_eq!(got, want[i], "{expr:?} on set {i}: {:?}", sets[i]);
            assert_eq!(selector.matches(raw), got, "{expr:?} selector, set {i}");
            let map: BTreeMap<&str, &str> = sets[i].iter().copied().collect();
            assert_eq!(
                filter.matches_with(|n| map.get(n).copied()),
                got,
                "{expr:?} matches_with, set {i}"
            );
        }
    }
}

/// Expressions RocketMQ's parser accepts although they look odd, and what they do.
#[test]
fn odd_but_accepted_expressions() {
    let eu = encode([("a", "-3"), ("b", "x")]);
    for (expr, want) in [
        // Bounds are only checked when both are plain literals; -1 is a negation.
        ("a BETWEEN -1 AND -5", false),
        ("a BETWEEN 5 AND -5", false),
        ("a NOT BETWEEN 5 AND 1", true),
        ("(a) IN ('-3')", true),
        ("+a IN ('-3')", true),
        ("NOT NOT TRUE", true),
        ("b = b = TRUE", true),
        ("a = -3 = TRUE", true),
    ] {
        let f = SqlFilter::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        assert_eq!(f.matches(&eu), want, "{expr:?}");
    }
}

#[test]
fn malformed_expressions_name_the_column() {
    for (expr, column, reason) in [
        ("", 1, "expected a value"),
        ("   ", 4, "found the end of the expression"),
        ("a = ", 5, "expected a value"),
        ("a = 1 b = 2", 7, "expected an operator, AND, OR or the end"),
        ("a = 1)", 6, "')' without a matching '('"),
        ("(a = 1", 7, "expected ')' to close the '(' at column 1"),
        ("a == 1", 4, "found '='"),
        ("a != 1", 3, "unexpected character '!'"),
        ("a = 1 && b = 2", 7, "unexpected character '&'"),
        ("a = \"x\"", 5, "single quotes"),
        ("a = 'x", 5, "unterminated string"),
        ("a = 1 /* x", 7, "unterminated comment"),
        ("a = NULL", 5, "NULL cannot be compared"),
        ("NULL <> a", 1, "NULL cannot be compared"),
        ("a > 'x'", 5, "a string cannot be compared with '>'"),
        ("a <= TRUE", 6, "TRUE cannot be compared"),
        ("(a = 1) > 0", 1, "a condition cannot be compared"),
        ("TRUE = 1", 1, "TRUE cannot be compared with a number"),
        ("FALSE <> 'x'", 1, "FALSE cannot be compared with a string"),
        ("a BETWEEN 10 AND 1", 11, "lower bound of BETWEEN is above"),
        ("a BETWEEN NULL AND 1", 11, "cannot be NULL"),
        (
            "a BETWEEN 1 AND 'x'",
            11,
            "cannot be compared with each other",
        ),
        ("a BETWEEN 1 OR 2", 13, "expected AND between the bounds"),
        ("a IN ()", 7, "expected a string"),
        ("a IN ('x', 1)", 12, "expected a string"),
        ("a IN 'x'", 6, "expected '(' after IN"),
        ("a IN ('x'", 10, "expected ',' or ')'"),
        ("-a IN ('x')", 1, "left side of IN must be a property"),
        ("NOT a IN ('x')", 1, "left side of IN must be a property"),
        ("a CONTAINS b", 12, "expected a string ('…') after CONTAINS"),
        ("a NOT LIKE 'x'", 7, "after NOT, found property name LIKE"),
        ("a IS 1", 6, "expected NULL or NOT NULL after IS"),
        ("a IS NOT 1", 10, "expected NULL after IS NOT"),
        ("1", 1, "expected a condition"),
        ("'x'", 1, "found a string"),
        ("-a", 1, "found a negated"),
        ("a AND 5", 7, "expected a condition"),
        ("NOT 5", 5, "found a number"),
        ("a > 9223372036854775808", 5, "out of range"),
        ("a > 0.0", 5, "0.0 is refused"),
        ("a > 1e999", 5, "out of range"),
        ("a = 0L", 6, "found property name L"),
        ("a = 007", 6, "found number 0"),
        (".", 1, "unexpected character '.'"),
        ("é = 1", 1, "unexpected character 'é'"),
        ("name = 'é' AND é", 16, "unexpected character 'é'"),
        ("a = 1 AND\n b ==", 15, "expected a value"),
        (
            &format!("{}a{}", "(".repeat(200), ")".repeat(200)),
            129,
            "nested deeper",
        ),
    ] {
        let err = match MessageSelector::by_sql(expr) {
            Err(e) => e,
            Ok(s) => panic!("{expr:?} was accepted: {s:?}"),
        };
        match &err {
            Error::InvalidSqlFilter {
                expr: e,
                column: c,
                reason: r,
            } => {
                assert_eq!(e, expr);
                assert_eq!(*c, column, "{expr:?}: {r}");
                assert!(r.contains(reason), "{expr:?}: {r:?} lacks {reason:?}");
            }
            other => panic!("{expr:?}: {other:?}"),
        }
        let shown = err.to_string();
        assert!(shown.contains(&format!("at column {column}")), "{shown}");
        assert!(SqlFilter::parse(expr).is_err() && expr.parse::<SqlFilter>().is_err());
    }
    // Tag expressions keep their own error.
    assert!(matches!(
        MessageSelector::by_tag("a = 1"),
        Err(Error::InvalidFilter { .. })
    ));
}

/// A store with one queue of `n` messages: message `i` has tag `even`/`odd`, property
/// `kind` (`a`, `b`, `c` in turn) and, unless `i % 10 == 0`, property `n` = `i`.
fn numbered(dir: &std::path::Path, n: u64) -> (Store, MessageQueue) {
    let store = common::small(dir).open().unwrap();
    store.create_topic("orders", 1).unwrap();
    let q = MessageQueue::new("orders", 0);
    let p = store.producer("p").unwrap();
    for i in 0..n {
        let mut m = Message::new("orders", format!("{i}"))
            .with_tags(if i % 2 == 0 { "even" } else { "odd" })
            .with_property("kind", ["a", "b", "c"][(i % 3) as usize]);
        if i % 10 != 0 {
            m = m.with_property("n", i.to_string());
        }
        p.send_to(m, &q).unwrap();
    }
    (store, q)
}

/// Pulls the whole queue in batches of `batch`: the offsets returned, checking the statuses
/// and that each `next_begin_offset` moves past everything returned.
fn pull_all(store: &Store, q: &MessageQueue, sel: &MessageSelector, batch: usize) -> Vec<u64> {
    let c = store.pull_consumer("g").unwrap();
    let max = store.max_offset(q).unwrap();
    let (mut offset, mut got) = (0, Vec::new());
    while offset < max {
        let r = c.pull_filtered(q, sel, offset, batch).unwrap();
        assert!(r.next_begin_offset > offset, "stuck at {offset}");
        match r.status {
            PullStatus::Found => {
                assert!(!r.messages.is_empty() && r.messages.len() <= batch);
                let last = r.messages.last().unwrap().queue_offset();
                assert!(r.next_begin_offset > last);
                got.extend(r.messages.iter().map(|m| m.queue_offset()));
            }
            PullStatus::NoMatchedMsg => assert!(r.messages.is_empty()),
            other => panic!("{other:?} at {offset}"),
        }
        offset = r.next_begin_offset;
    }
    assert_eq!(offset, max);
    let r = c.pull_filtered(q, sel, offset, batch).unwrap();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    got
}

#[test]
fn pulls_return_exactly_the_matching_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, q) = numbered(dir.path(), 300);
    type Case = (&'static str, fn(u64) -> bool);
    let cases: [Case; 4] = [
        ("n >= 50 AND kind <> 'c'", |i| {
            i % 10 != 0 && i >= 50 && i % 3 != 2
        }),
        ("n IS NULL OR TAGS = 'odd' AND n < 20", |i| {
            i % 10 == 0 || (i % 2 == 1 && i < 20)
        }),
        // Without n, NOT (n BETWEEN ..) is unknown, and so is the AND.
        ("kind IN ('b') AND NOT (n BETWEEN 100 AND 199)", |i| {
            i % 3 == 1 && i % 10 != 0 && !(100..200).contains(&i)
        }),
        ("n ENDSWITH '7' OR n STARTSWITH '29'", |i| {
            i % 10 != 0 && (i % 10 == 7 || i.to_string().starts_with("29"))
        }),
    ];
    for (expr, want) in cases {
        let sel = MessageSelector::by_sql(expr).unwrap();
        let expected: Vec<u64> = (0..300).filter(|&i| want(i)).collect();
        for batch in [1, 7, 32] {
            assert_eq!(
                pull_all(&store, &q, &sel, batch),
                expected,
                "{expr} / {batch}"
            );
        }
    }
    // Nothing matches: one pull scans the whole queue.
    let c = store.pull_consumer("g").unwrap();
    let none = MessageSelector::by_sql("n > 1000").unwrap();
    let r = c.pull_filtered(&q, &none, 0, 32).unwrap();
    assert_eq!(
        (r.status, r.next_begin_offset),
        (PullStatus::NoMatchedMsg, 300)
    );
    let r = c.pull_filtered(&q, &none, 120, 32).unwrap();
    assert_eq!(
        (r.status, r.next_begin_offset),
        (PullStatus::NoMatchedMsg, 300)
    );
    // The messages come whole, properties included.
    let one = MessageSelector::by_sql("n = 123").unwrap();
    let r = c.pull_filtered(&q, &one, 0, 32).unwrap();
    assert_eq!(r.messages.len(), 1);
    let m = &r.messages[0];
    assert_eq!(
        (m.body(), m.tags(), m.property("kind")),
        (&b"123"[..], Some("odd"), Some("a"))
    );
    store.close().unwrap();
}

#[test]
fn tag_selectors_pull_as_tag_expressions_do() {
    let dir = tempfile::tempdir().unwrap();
    let (store, q) = numbered(dir.path(), 40);
    let c = store.pull_consumer("g").unwrap();
    for expr in ["*", "", "even", "odd || even", "none"] {
        let by_expr = c.pull(&q, expr, 0, 64).unwrap();
        for sel in [
            MessageSelector::by_tag(expr).unwrap(),
            MessageSelector::from(TagFilter::parse(expr).unwrap()),
        ] {
            assert_eq!(sel.expression_type(), ExpressionType::Tag);
            let r = c.pull_filtered(&q, &sel, 0, 64).unwrap();
            assert_eq!(r.status, by_expr.status, "{expr:?}");
            assert_eq!(r.next_begin_offset, by_expr.next_begin_offset, "{expr:?}");
            let offsets = |r: &mqlite::PullResult| {
                r.messages
                    .iter()
                    .map(|m| m.queue_offset())
                    .collect::<Vec<_>>()
            };
            assert_eq!(offsets(&r), offsets(&by_expr), "{expr:?}");
        }
    }
    assert_eq!(MessageSelector::by_tag("").unwrap().expression(), "*");
    assert_eq!(MessageSelector::default().expression(), "*");
    assert_eq!(
        MessageSelector::from(TagFilter::parse("a ||b").unwrap()).expression(),
        "a || b"
    );
    // The same selector as SQL over TAGS.
    let sql = MessageSelector::by_sql("TAGS = 'even'").unwrap();
    let tag = MessageSelector::by_tag("even").unwrap();
    assert_eq!(pull_all(&store, &q, &sql, 5), pull_all(&store, &q, &tag, 5));
    store.close().unwrap();
}

#[test]
fn long_polling_skips_arrivals_that_do_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("t", 1).unwrap();
    let q = MessageQueue::new("t", 0);
    let c = store.pull_consumer("g").unwrap();
    let sel = MessageSelector::by_sql("size > 5").unwrap();
    let producer = store.producer("p").unwrap();
    let sender = std::thread::spawn(move || {
        for size in ["1", "2", "x", "9", "3"] {
            producer
                .send(Message::new("t", size).with_property("size", size))
                .unwrap();
        }
    });
    let r = c
        .pull_filtered_timeout(&q, &sel, 0, 32, Duration::from_secs(30))
        .unwrap();
    sender.join().unwrap();
    assert_eq!(r.status, PullStatus::Found);
    // "x" is not a number: it is skipped like the small ones.
    let bodies: Vec<&[u8]> = r.messages.iter().map(|m| m.body()).collect();
    assert_eq!(bodies, [b"9"]);
    assert!(r.next_begin_offset >= 4);
    // Only messages that do not match: it waits, then reports NoNewMsg past them.
    let r = c
        .pull_filtered_timeout(&q, &sel, 4, 32, Duration::from_millis(50))
        .unwrap();
    assert_eq!((r.status, r.next_begin_offset), (PullStatus::NoNewMsg, 5));
    store.close().unwrap();
}

/// Sends `n` messages over the queues of `topic`, message `i` with property `amount` = `i`
/// (and none when `i % 7 == 0`); returns the bodies `pred` selects.
fn send_amounts(
    store: &Store,
    topic: &str,
    n: u64,
    pred: impl Fn(u64) -> bool,
) -> BTreeSet<String> {
    let p = store.producer("p").unwrap();
    let mut want = BTreeSet::new();
    for i in 0..n {
        let mut m = Message::new(topic, format!("{i}"));
        if i % 7 != 0 {
            m = m.with_property("amount", i.to_string());
            if pred(i) {
                want.insert(i.to_string());
            }
        }
        p.send(m).unwrap();
    }
    want
}

/// Waits until the group has committed to the end of every queue of `topic`.
fn wait_for_no_lag(store: &Store, group: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.consumer_lag(group, topic).unwrap() > 0 {
        assert!(Instant::now() < deadline, "{group} still lags on {topic}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn push_consumers_get_exactly_the_matching_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("orders", 4).unwrap();
    store.create_topic("ordered", 2).unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = got.clone();
    let concurrent = store
        .push_consumer("big")
        .subscribe_with("orders", MessageSelector::by_sql("amount > 50").unwrap())
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            sink.lock().extend(
                msgs.iter()
                    .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
            );
            ConsumeStatus::Success
        })
        .unwrap();
    let in_order: Arc<Mutex<BTreeMap<u32, Vec<u64>>>> = Arc::default();
    let sink = in_order.clone();
    let orderly = store
        .push_consumer("small")
        .subscribe_with("ordered", MessageSelector::by_sql("amount < 30").unwrap())
        .consume_from(ConsumeFrom::FirstOffset)
        .start_orderly(move |msgs, _| {
            let mut map = sink.lock();
            for m in msgs {
                map.entry(m.queue_id()).or_default().push(m.queue_offset());
            }
            OrderlyStatus::Success
        })
        .unwrap();
    let want = send_amounts(&store, "orders", 120, |i| i > 50);
    let want_ordered = send_amounts(&store, "ordered", 60, |i| i < 30);
    wait_for_no_lag(&store, "big", "orders");
    wait_for_no_lag(&store, "small", "ordered");
    concurrent.shutdown().unwrap();
    orderly.shutdown().unwrap();

    let mut got = got.lock().clone();
    got.sort();
    let total = got.len();
    let got: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(total, got.len(), "a message came twice");
    assert_eq!(got, want);

    // Orderly: per queue in offset order, and exactly the matching ones.
    let in_order = in_order.lock().clone();
    let mut bodies = BTreeSet::new();
    for (queue_id, offsets) in &in_order {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "{queue_id}: {offsets:?}"
        );
        let mq = MessageQueue::new("ordered", *queue_id);
        for &o in offsets {
            let m = store.get_messages(&mq, o, 1).unwrap().messages.remove(0);
            bodies.insert(String::from_utf8_lossy(m.body()).into_owned());
        }
    }
    assert_eq!(bodies, want_ordered);
    store.close().unwrap();
}

#[test]
fn lite_pull_consumers_poll_exactly_the_matching_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("orders", 3).unwrap();
    let consumer = store
        .lite_pull_consumer("lite")
        .consume_from(ConsumeFrom::FirstOffset)
        .build()
        .unwrap();
    consumer
        .subscribe_with(
            "orders",
            MessageSelector::by_sql("amount BETWEEN 10 AND 40").unwrap(),
        )
        .unwrap();
    let want = send_amounts(&store, "orders", 90, |i| (10..=40).contains(&i));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want.len() {
        assert!(Instant::now() < deadline, "got only {got:?}");
        let msgs = consumer.poll(Duration::from_millis(100)).unwrap();
        got.extend(
            msgs.iter()
                .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
        );
    }
    // Nothing else comes, and the positions are at the end of every queue.
    assert!(consumer.poll(Duration::from_millis(20)).unwrap().is_empty());
    let total = got.len();
    let got: BTreeSet<String> = got.into_iter().collect();
    assert_eq!((total, got), (want.len(), want));
    for q in store.queues("orders").unwrap() {
        assert_eq!(
            consumer.position(&q).unwrap(),
            store.max_offset(&q).unwrap(),
            "{q}"
        );
    }
    consumer.shutdown().unwrap();
    store.close().unwrap();
}

#[test]
fn subscribe_with_checks_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sel = MessageSelector::by_sql("a = 1").unwrap();
    let r = store
        .push_consumer("g")
        .subscribe_with("bad topic", sel.clone())
        .start_concurrently(|_| ConsumeStatus::Success);
    assert!(
        matches!(r, Err(Error::InvalidTopic { .. })),
        "{:?}",
        r.err()
    );
    // A later subscription to the same topic replaces the earlier one.
    store.create_topic("t", 1).unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let c = store
        .push_consumer("g")
        .subscribe("t", "never")
        .subscribe_with("t", MessageSelector::ALL)
        .consume_from(ConsumeFrom::FirstOffset)
        .start_concurrently(move |msgs| {
            counter.fetch_add(msgs.len(), std::sync::atomic::Ordering::SeqCst);
            ConsumeStatus::Success
        })
        .unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("t", "x"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the message never came");
        std::thread::sleep(Duration::from_millis(5));
    }
    c.shutdown().unwrap();
    store.close().unwrap();
}
