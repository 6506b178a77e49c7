//! Orderly consumption needs queue locks, which broadcasting consumers cannot take: starting an
//! orderly broadcasting consumer fails with `Error::InvalidConfig`, before it joins its group,
//! locks a queue or calls the listener.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mqlite::{ConsumeFrom, ConsumeStatus, Error, Message, MessageModel, OrderlyStatus};

#[test]
fn broadcasting_orderly_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small(dir.path()).open().unwrap();
    store.create_topic("b", 2).unwrap();
    store
        .producer("p")
        .unwrap()
        .send(Message::new("b", "x"))
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let err = store
        .push_consumer("bcast")
        .subscribe("b", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .message_model(MessageModel::Broadcasting)
        .start_orderly(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            OrderlyStatus::Success
        })
        .unwrap_err();
    match &err {
        Error::InvalidConfig(msg) => assert!(
            msg.to_lowercase().contains("broadcast"),
            "the error should say why: {msg}"
        ),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert!(store.consumer_ids("bcast").is_empty());
    let queues = store.queues("b").unwrap();
    assert_eq!(
        store.lock_queues("bcast", "someone", &queues).unwrap(),
        queues
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Broadcasting itself is fine with a concurrent listener, and orderly with clustering.
    let bc = store
        .push_consumer("bcast")
        .subscribe("b", "*")
        .message_model(MessageModel::Broadcasting)
        .start_concurrently(|_| ConsumeStatus::Success)
        .unwrap();
    bc.shutdown().unwrap();
    store.unlock_queues("bcast", "someone", &queues).unwrap();
    let oc = store
        .push_consumer("bcast")
        .subscribe("b", "*")
        .message_model(MessageModel::Clustering)
        .start_orderly(|_, _| OrderlyStatus::Success)
        .unwrap();
    oc.shutdown().unwrap();
}
