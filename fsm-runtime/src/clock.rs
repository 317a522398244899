//! Time as the runtime records it: microseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest duration a statement binds: a century, so that `now + duration` fits a `BIGINT`.
#[cfg(feature = "_sql")]
const MAX_MICROS: i64 = 100 * 365 * 86_400 * 1_000_000;

/// Microseconds since the Unix epoch by this process's clock (history rows, keys, messages).
pub(crate) fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// A duration in microseconds, at least 1, at most a century (a time to live bound to a
/// statement that adds it to the database's clock).
#[cfg(feature = "_sql")]
pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX).clamp(1, MAX_MICROS)
}

/// The time `older_than` before now, in microseconds since the Unix epoch (a purge's cutoff).
pub(crate) fn micros_before_now(older_than: Duration) -> i64 {
    now_micros().saturating_sub(i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "_sql")]
    fn durations_are_clamped_to_what_a_bigint_holds() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3_000);
        assert_eq!(micros(Duration::MAX), MAX_MICROS);
    }

    #[test]
    fn a_cutoff_lies_before_now() {
        assert!(micros_before_now(Duration::MAX) < 0);
        assert!(micros_before_now(Duration::ZERO) <= now_micros());
    }
}
