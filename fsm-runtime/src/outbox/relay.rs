//! [`Relay`]: the worker that publishes an outbox's messages, and [`RelayReport`], what one
//! pass did.

use std::future::Future;
use std::time::Duration;

use crate::clock::now_micros;
use crate::error::{BoxError, Error};
use crate::message::PendingMessage;
use crate::outbox::{Backoff, NextAttempt, OutboxSource, Publisher, error_text};
use crate::worker::run_passes;

/// What one pass of a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Messages published and marked.
    pub published: usize,
    /// Messages whose publication failed (to be tried again after a backoff, or dead).
    pub failed: usize,
    /// Of the failed messages, those that reached the maximum of attempts and were parked as
    /// dead.
    pub dead: usize,
}

/// Publishes the messages of an [`OutboxSource`]. Several relays may run at once, in one
/// process or many: each message is claimed by one of them at a time.
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::outbox::{MemoryOutbox, Relay};
///
/// let relay = Relay::new(MemoryOutbox::default())
///     .batch(50)
///     .lease(Duration::from_secs(60))
///     .max_attempts(8)
///     .backoff(Duration::from_millis(500), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone)]
pub struct Relay<S> {
    source: S,
    batch: usize,
    lease: Duration,
    max_attempts: i64,
    backoff: Backoff,
}

impl<S: OutboxSource> Relay<S> {
    /// A relay over `source`, claiming 100 messages at a time for 30 seconds; a message is
    /// tried 10 times, waiting from 1 second to 10 minutes between attempts, then parked as
    /// dead.
    pub fn new(source: S) -> Self {
        Self { source, batch: 100, lease: Duration::from_secs(30), max_attempts: 10, backoff: Backoff::default() }
    }

    /// How many messages one pass claims.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How long a claim lasts: a relay that dies leaves its messages to others after this.
    /// Make it longer than a publication takes.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// After how many attempts (claims, a claim whose relay died included) a message whose
    /// publication failed is parked as dead (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = i64::from(attempts.max(1));
        self
    }

    /// The wait after a failed publication: from `base`, doubling up to `max`, with jitter
    /// (see [`Backoff`]).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(base, max);
        self
    }

    /// One pass: claim a batch (at most one message per topic and key), publish each message,
    /// mark each published. A failure does not end the pass: the message waits for its
    /// backoff, or is parked as dead, and the others go on.
    pub async fn run_once<P: Publisher>(&self, publisher: &P) -> Result<RelayReport, Error> {
        let mut report = RelayReport::default();
        for message in self.source.claim(self.batch, self.lease).await? {
            match publisher.publish(&message).await {
                Ok(()) => {
                    self.source.mark_published(message.sequence).await?;
                    crate::telemetry::relay_published(&message.topic);
                    report.published += 1;
                }
                Err(error) => {
                    let next = self.after_failure(&message, &error).await?;
                    crate::telemetry::relay_failed(&message.topic);
                    report.failed += 1;
                    report.dead += usize::from(next == NextAttempt::Dead);
                }
            }
        }
        self.record_stats().await;
        Ok(report)
    }

    /// Reads the outbox's stats and sets its gauges; a failed read is logged and leaves them.
    async fn record_stats(&self) {
        match self.source.stats().await {
            Ok(stats) => stats.record(),
            Err(error) => tracing::debug!(%error, "reading the outbox stats failed"),
        }
    }

    /// Records a failed publication of `message`: when it is tried again, or dead.
    async fn after_failure(&self, message: &PendingMessage, error: &BoxError) -> Result<NextAttempt, Error> {
        let next = if message.attempts >= self.max_attempts {
            tracing::warn!(message_id = %message.message_id, topic = %message.topic, attempts = message.attempts, %error, "publish failed: message parked as dead");
            NextAttempt::Dead
        } else {
            let delay = i64::try_from(self.backoff.delay(message.attempts).as_micros()).unwrap_or(i64::MAX);
            tracing::warn!(message_id = %message.message_id, topic = %message.topic, attempts = message.attempts, %error, "publish failed");
            NextAttempt::At(now_micros().saturating_add(delay))
        };
        self.source.fail(message.sequence, &error_text(error), next).await?;
        Ok(next)
    }

    /// Runs passes until `shutdown` completes, sleeping `idle` after a pass that published
    /// nothing (or failed).
    pub async fn run<P: Publisher>(&self, publisher: &P, idle: Duration, shutdown: impl Future<Output = ()>) {
        run_passes(idle, shutdown, || async {
            match self.run_once(publisher).await {
                Ok(report) => report.published > 0,
                Err(error) => {
                    tracing::warn!(%error, "relay pass failed");
                    false
                }
            }
        })
        .await;
    }
}
