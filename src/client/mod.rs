//! The client layer: producers and consumers over a `Store` (the facade above this layer).

pub(crate) mod allocate;
pub(crate) mod async_send;
pub(crate) mod producer;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod transaction;
