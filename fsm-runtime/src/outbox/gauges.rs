//! The relay's refresh of the outbox gauges after each pass.

use super::{OutboxSource, Relay};

impl<S: OutboxSource> Relay<S> {
    /// Reads the outbox's stats and sets its gauges; a failed read is logged and leaves them.
    pub(super) async fn record_stats(&self) {
        match self.source.stats().await {
            Ok(stats) => stats.record(),
            Err(error) => tracing::debug!(%error, "reading the outbox stats failed"),
        }
    }
}
