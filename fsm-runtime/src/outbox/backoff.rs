//! [`Backoff`]: how long a message whose publication failed waits before its next attempt.

use std::time::Duration;

use crate::random::random_below;

/// Exponential backoff with jitter: after the `n`th failed attempt a message waits between half
/// and all of `min(max, base · 2^(n-1))` ("equal jitter": relays that failed together do not
/// retry together, and no wait is shorter than half its step).
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::outbox::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let third = backoff.delay(3); // after 3 failures: 200 ms to 400 ms
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// assert!(backoff.delay(50) <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// One second, doubling up to ten minutes.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(600))
    }
}

impl Backoff {
    /// A backoff whose first step is `base` and whose steps stop growing at `max` (at least
    /// `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base) }
    }

    /// The wait after `attempts` failed attempts (1 for the first failure).
    pub fn delay(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
        let step = self.base.checked_mul(1 << doublings).unwrap_or(self.max).min(self.max);
        let micros = u64::try_from(step.as_micros()).unwrap_or(u64::MAX);
        let half = micros / 2;
        Duration::from_micros(micros - half + random_below(half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_maximum_with_jitter() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        for _ in 0..50 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10), "{first:?}");
            let second = backoff.delay(2);
            assert!(second >= Duration::from_millis(10) && second <= Duration::from_millis(20), "{second:?}");
            let late = backoff.delay(i64::MAX);
            assert!(late >= Duration::from_millis(50) && late <= Duration::from_millis(100), "{late:?}");
        }
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO).delay(3), Duration::ZERO);
    }
}
