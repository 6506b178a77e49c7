//! Per-consumer retry delays (RocketMQ 5 client's `RetryPolicy`): how long a message that
//! failed waits in `%RETRY%{group}` before it is delivered again.

use std::time::Duration;

use crate::error::{Error, Result};

/// How long a failed message of a concurrent push consumer waits before its next delivery
/// (RocketMQ 5 client's `RetryPolicy`). Set with `PushConsumerBuilder::retry_policy`.
///
/// Whatever the policy, a message tried `max_reconsume_times` times goes to the group's
/// dead-letter topic instead, and a listener that sets
/// [`ConsumeConcurrentlyContext::delay_level_when_next_consume`](super::ConsumeConcurrentlyContext::delay_level_when_next_consume)
/// to a non-zero value overrides the policy for its batch.
///
/// ```
/// use std::time::Duration;
/// use mqlite::{CustomizedRetryPolicy, ExponentialRetryPolicy, RetryPolicy};
///
/// let steps = RetryPolicy::from(CustomizedRetryPolicy::new([
///     Duration::from_millis(100),
///     Duration::from_secs(1),
/// ]));
/// assert_eq!(steps.delay(0), Some(Duration::from_millis(100)));
/// assert_eq!(steps.delay(5), Some(Duration::from_secs(1))); // the last one repeats
///
/// let backoff = RetryPolicy::from(ExponentialRetryPolicy {
///     initial: Duration::from_millis(50),
///     max: Duration::from_secs(1),
///     multiplier: 2.0,
/// });
/// assert_eq!(backoff.delay(2), Some(Duration::from_millis(200)));
/// assert_eq!(backoff.delay(10), Some(Duration::from_secs(1)));
///
/// assert_eq!(RetryPolicy::DelayLevels.delay(0), None); // the store's delay levels decide
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// The store's delay levels, as RocketMQ 4's broker does it: the retry after `n` failed
    /// deliveries waits level `3 + n` of `StoreConfig::message_delay_level` (10 s, 30 s,
    /// 1 min, … 2 h with the default table), capped at its last level. The default.
    #[default]
    DelayLevels,
    /// A list of delays, one per retry (the last one repeats).
    Customized(CustomizedRetryPolicy),
    /// Delays growing by a factor, up to a maximum.
    Exponential(ExponentialRetryPolicy),
}

/// Retry delays given one by one (RocketMQ 5 `CustomizedBackoffRetryPolicy`): the retry after
/// `n` failed deliveries waits `delays[n]`, or the last delay once `n` is past the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomizedRetryPolicy {
    delays: Vec<Duration>,
}

impl CustomizedRetryPolicy {
    /// A policy with these delays (at least one; an empty list is refused when the consumer
    /// starts).
    ///
    /// ```
    /// use std::time::Duration;
    /// let delays = [Duration::from_secs(1), Duration::from_secs(5)];
    /// let p = mqlite::CustomizedRetryPolicy::new(delays);
    /// assert_eq!(p.delays().len(), 2);
    /// ```
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> Self {
        CustomizedRetryPolicy {
            delays: delays.into_iter().collect(),
        }
    }

    /// The delays, in retry order.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

/// Exponential backoff (RocketMQ 5 `ExponentialBackoffRetryPolicy`): the retry after `n`
/// failed deliveries waits `min(initial × multiplierⁿ, max)`.
///
/// ```
/// use std::time::Duration;
/// let p = mqlite::ExponentialRetryPolicy {
///     initial: Duration::from_secs(1),
///     max: Duration::from_secs(60),
///     multiplier: 2.0,
/// };
/// assert_eq!(mqlite::RetryPolicy::from(p).delay(3), Some(Duration::from_secs(8)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialRetryPolicy {
    /// The first retry's delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// The factor between one delay and the next (finite, at least 1).
    pub multiplier: f64,
}

impl From<CustomizedRetryPolicy> for RetryPolicy {
    fn from(p: CustomizedRetryPolicy) -> Self {
        RetryPolicy::Customized(p)
    }
}

impl From<ExponentialRetryPolicy> for RetryPolicy {
    fn from(p: ExponentialRetryPolicy) -> Self {
        RetryPolicy::Exponential(p)
    }
}

impl RetryPolicy {
    /// The delay before the retry of a message delivered `reconsume_times + 1` times so far
    /// (its `MessageExt::reconsume_times` when it failed); `None` for
    /// [`RetryPolicy::DelayLevels`], where the store's delay table decides.
    pub fn delay(&self, reconsume_times: u32) -> Option<Duration> {
        match self {
            RetryPolicy::DelayLevels => None,
            RetryPolicy::Customized(p) => {
                let i = (reconsume_times as usize).min(p.delays.len().checked_sub(1)?);
                p.delays.get(i).copied()
            }
            RetryPolicy::Exponential(p) if p.initial.is_zero() => Some(Duration::ZERO),
            RetryPolicy::Exponential(p) => {
                let factor = p
                    .multiplier
                    .powi(reconsume_times.min(i32::MAX as u32) as i32);
                let secs = p.initial.as_secs_f64() * factor;
                Some(match Duration::try_from_secs_f64(secs) {
                    Ok(d) => d.min(p.max),
                    Err(_) => p.max,
                })
            }
        }
    }

    /// Refuses policies that cannot give a delay.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            RetryPolicy::DelayLevels => Ok(()),
            RetryPolicy::Customized(p) if p.delays.is_empty() => Err(Error::InvalidConfig(
                "a customized retry policy needs at least one delay".into(),
            )),
            RetryPolicy::Customized(_) => Ok(()),
            RetryPolicy::Exponential(p) if !p.multiplier.is_finite() || p.multiplier < 1.0 => {
                Err(Error::InvalidConfig(format!(
                    "exponential retry policy: the multiplier must be finite and at least 1 \
                     (got {})",
                    p.multiplier
                )))
            }
            RetryPolicy::Exponential(p) if p.initial > p.max => Err(Error::InvalidConfig(format!(
                "exponential retry policy: the initial delay {:?} exceeds the maximum {:?}",
                p.initial, p.max
            ))),
            RetryPolicy::Exponential(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn customized_delays_repeat_the_last() {
        let p = RetryPolicy::from(CustomizedRetryPolicy::new([ms(10), ms(20), ms(30)]));
        let got: Vec<_> = (0..6).map(|n| p.delay(n).unwrap()).collect();
        assert_eq!(got, [ms(10), ms(20), ms(30), ms(30), ms(30), ms(30)]);
        assert!(p.check().is_ok());
        assert!(
            RetryPolicy::from(CustomizedRetryPolicy::new([]))
                .check()
                .is_err()
        );
    }

    #[test]
    fn exponential_delays_grow_to_the_max() {
        let p = RetryPolicy::from(ExponentialRetryPolicy {
            initial: ms(10),
            max: ms(100),
            multiplier: 3.0,
        });
        let got: Vec<_> = (0..5).map(|n| p.delay(n).unwrap()).collect();
        assert_eq!(got, [ms(10), ms(30), ms(90), ms(100), ms(100)]);
        // Huge exponents saturate at the max instead of overflowing.
        assert_eq!(p.delay(u32::MAX), Some(ms(100)));
        let flat = ExponentialRetryPolicy {
            initial: ms(5),
            max: ms(5),
            multiplier: 1.0,
        };
        assert_eq!(RetryPolicy::from(flat).delay(1000), Some(ms(5)));
    }

    #[test]
    fn bad_exponential_policies_are_refused() {
        let p = |initial, max, multiplier| {
            RetryPolicy::from(ExponentialRetryPolicy {
                initial,
                max,
                multiplier,
            })
            .check()
        };
        assert!(p(ms(1), ms(2), 2.0).is_ok());
        assert!(p(ms(1), ms(2), 0.5).is_err());
        assert!(p(ms(1), ms(2), f64::NAN).is_err());
        assert!(p(ms(1), ms(2), f64::INFINITY).is_err());
        assert!(p(ms(3), ms(2), 2.0).is_err());
    }
}
