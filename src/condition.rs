//! Conditions worth one log line each: a failure that repeats (a periodic flush, a config
//! file that cannot be written) is logged when it starts and when it ends, not every time.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

/// One condition that is either failing or not.
#[derive(Debug, Default)]
pub(crate) struct Condition {
    failing: AtomicBool,
}

impl Condition {
    /// Records a failure of `what`; logs a warning if it was not failing already.
    pub(crate) fn fail(&self, what: &str, error: &dyn Display) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            ::log::warn!("{what} failed: {error} (retried; logged again only once it works)");
        }
    }

    /// Records a success of `what`; logs that it works again if it was failing.
    pub(crate) fn ok(&self, what: &str) {
        if self.failing.swap(false, Ordering::AcqRel) {
            ::log::info!("{what} works again");
        }
    }

    /// Records the outcome of `what`.
    pub(crate) fn track<T, E: Display>(
        &self,
        what: &str,
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        match &result {
            Ok(_) => self.ok(what),
            Err(e) => self.fail(what, e),
        }
        result
    }
}
