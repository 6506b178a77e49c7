//! The transaction check service thread: every `transaction_check_interval` it runs one
//! check pass over the half queue (see [`super::transaction`]). A pass that fails (a record
//! that cannot be read, a write refused) keeps its progress up to the failing message and is
//! reported through `log::warn!` once per distinct error; the next pass retries.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use super::Broker;
use crate::error::Error;

/// Starts the service; it stops when the returned sender sends or is dropped.
pub(crate) fn start(core: Arc<Broker>) -> std::io::Result<(Sender<()>, JoinHandle<()>)> {
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let interval = core.config().transaction_check_interval;
    let thread = std::thread::Builder::new()
        .name("mqlite-transaction".into())
        .spawn(move || {
            let mut last_error: Option<String> = None;
            loop {
                crossbeam_channel::select! {
                    recv(stop_rx) -> _ => return,
                    default(interval) => {}
                }
                match core.transaction_pass() {
                    Ok(()) => last_error = None,
                    Err(Error::Closed) => return,
                    Err(e) => {
                        let text = e.to_string();
                        if last_error.as_deref() != Some(text.as_str()) {
                            ::log::warn!(
                                "transaction check failed (retried next interval): {text}"
                            );
                        }
                        last_error = Some(text);
                    }
                }
            }
        })?;
    Ok((stop_tx, thread))
}
