//! [`Clock`]: what decides that a timer is due, and the two clocks of the crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::now_micros;

/// The time a [`Scheduler`](crate::timer::Scheduler) reads to decide which timers are due and
/// how long its claims last, in microseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now, in microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The system's clock: what a scheduler in production runs on.
///
/// ```
/// use fsm_runtime::timer::{Clock, SystemClock};
/// assert!(SystemClock.now_micros() > 1_600_000_000_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        now_micros()
    }
}

/// A clock that moves only when told: tests decide when a timer is due without sleeping.
/// Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::timer::{Clock, ManualClock};
/// let clock = ManualClock::at(1_000);
/// clock.advance(Duration::from_millis(2));
/// assert_eq!(clock.now_micros(), 3_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock at `micros` since the Unix epoch.
    pub fn at(micros: i64) -> Self {
        Self { micros: Arc::new(AtomicI64::new(micros)) }
    }

    /// A clock at the system's time now (timers scheduled with a delay are due that delay
    /// after it).
    pub fn starting_now() -> Self {
        Self::at(now_micros())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        let _ = self.micros.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(by)));
    }

    /// Sets the clock to `micros` since the Unix epoch.
    pub fn set(&self, micros: i64) {
        self.micros.store(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_micros(&self) -> i64 {
        (**self).now_micros()
    }
}
