//! The metrics of the outbox, its relays and the key purges.

use std::time::Duration;

use super::{
    KEYS_PURGED_TOTAL, OUTBOX_DEAD, OUTBOX_OLDEST_AGE_SECONDS, OUTBOX_PENDING, RELAY_FAILURES_TOTAL,
    RELAY_PUBLISHED_TOTAL,
};

/// A relay published a message of `topic`.
pub(crate) fn relay_published(topic: &str) {
    metrics::counter!(RELAY_PUBLISHED_TOTAL, "topic" => topic.to_owned()).increment(1);
}

/// A relay failed to publish a message of `topic`.
pub(crate) fn relay_failed(topic: &str) {
    metrics::counter!(RELAY_FAILURES_TOTAL, "topic" => topic.to_owned()).increment(1);
}

/// A purge removed `purged` idempotency keys.
pub(crate) fn keys_purged(purged: u64) {
    metrics::counter!(KEYS_PURGED_TOTAL).increment(purged);
}

/// Sets the outbox gauges: `pending` and `dead` messages, and the age of the oldest pending one
/// (a gauge is an `f64`: counts beyond 2^53 lose precision, which no outbox reaches).
pub(crate) fn outbox_gauges(pending: u64, dead: u64, oldest_age: Option<Duration>) {
    metrics::gauge!(OUTBOX_PENDING).set(pending as f64);
    metrics::gauge!(OUTBOX_DEAD).set(dead as f64);
    metrics::gauge!(OUTBOX_OLDEST_AGE_SECONDS).set(oldest_age.unwrap_or_default().as_secs_f64());
}
