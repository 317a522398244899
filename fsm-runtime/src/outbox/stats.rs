//! [`OutboxStats`]: what an outbox holds, for its gauges.

use std::time::Duration;

use crate::clock::now_micros;

/// What an outbox holds ([`OutboxSource::stats`](super::OutboxSource::stats)): one cheap read
/// for dashboards and alerts. A [`Relay`](super::Relay) reads it after each pass and sets the
/// gauges; a service can read it and set them itself ([`OutboxStats::record`]), for instance
/// before rendering its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Messages not yet published (and not dead), of every topic.
    pub pending: u64,
    /// Messages parked as dead, no longer tried.
    pub dead: u64,
    /// How long the oldest pending message has waited; `None` when none is pending.
    pub oldest_pending_age: Option<Duration>,
}

impl OutboxStats {
    /// The stats of `pending` messages, the oldest enqueued at `oldest_micros` (microseconds
    /// since the epoch), and `dead` ones.
    pub(crate) fn new(pending: i64, oldest_micros: Option<i64>, dead: i64) -> Self {
        let age = |at: i64| Duration::from_micros(u64::try_from(now_micros().saturating_sub(at)).unwrap_or(0));
        Self {
            pending: u64::try_from(pending).unwrap_or(0),
            dead: u64::try_from(dead).unwrap_or(0),
            oldest_pending_age: oldest_micros.filter(|_| pending > 0).map(age),
        }
    }

    /// Sets the gauges [`OUTBOX_PENDING`](crate::telemetry::OUTBOX_PENDING),
    /// [`OUTBOX_DEAD`](crate::telemetry::OUTBOX_DEAD) and
    /// [`OUTBOX_OLDEST_AGE_SECONDS`](crate::telemetry::OUTBOX_OLDEST_AGE_SECONDS) (0 when none
    /// is pending) of the installed `metrics` recorder.
    pub fn record(&self) {
        crate::telemetry::outbox_gauges(self.pending, self.dead, self.oldest_pending_age);
    }
}
