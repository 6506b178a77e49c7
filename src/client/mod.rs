//! The client layer: producers and consumers over a `Store` (the facade above this layer).

pub(crate) mod allocate;
pub(crate) mod async_send;
pub(crate) mod lite_pull;
pub(crate) mod producer;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod transaction;

use std::sync::atomic::{AtomicUsize, Ordering};

/// Numbers consumers made without an instance name, push and lite pull alike, so their ids
/// never collide within a group.
static NEXT_CONSUMER: AtomicUsize = AtomicUsize::new(0);

/// A consumer's id in its group, as RocketMQ's client id: `{ip}@{instance}` with the given
/// instance name, else `{ip}@{pid}#{n}` with a number unique in this process.
pub(crate) fn consumer_id(ip: std::net::IpAddr, instance_name: Option<&str>) -> String {
    match instance_name {
        Some(name) => format!("{ip}@{name}"),
        None => format!(
            "{ip}@{}#{}",
            std::process::id(),
            NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed)
        ),
    }
}
