//! The inbox: the consumer side of the outbox. Recording a message id under a unique key in the
//! consumer's own transaction makes processing exactly-once: a redelivered message finds its id
//! recorded and is skipped, and a failed processing rolls the record back with the rest.
//!
//! ```no_run
//! use fsm_runtime::inbox::Inbox;
//! # async fn consume(pool: sqlx::SqlitePool, message: fsm_runtime::outbox::PendingMessage) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mut tx = fsm_runtime::sql::SqlTx::begin(&pool).await?;
//! if tx.record("receipts-mailer", &message.message_id).await? {
//!     // First delivery: do the work in the same transaction.
//!     sqlx::query("INSERT INTO receipts (message_id) VALUES (?)").bind(&message.message_id).execute(&mut *tx).await?;
//! }
//! tx.commit().await?;
//! # Ok(()) }
//! # use fsm_runtime::sqlx;
//! ```
//!
//! Records are kept until they are purged: [`SqlInbox::purge`] (or
//! [`purge_of`](SqlInbox::purge_of) one consumer) deletes those older than a retention, which
//! must be longer than any redelivery can come late (the outbox's lease and backoff, the
//! broker's own redelivery).

#[cfg(feature = "_sql")]
mod sql;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use crate::clock::{micros_before_now, now_micros};
use crate::error::BoxError;

#[cfg(feature = "_sql")]
pub use sql::SqlInbox;

/// A transaction a consumer records processed message ids in.
pub trait Inbox: Send {
    /// Records that `consumer` processed `message_id`: `true` the first time, `false` when it
    /// was recorded before (a redelivery: skip the work).
    fn record(&mut self, consumer: &str, message_id: &str) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

/// An inbox in memory, for tests and single-process consumers.
///
/// It is not a transaction: `record` takes effect at once, so a consumer whose work fails after
/// it would skip the redelivery. Record after the work succeeded (in one process, with the
/// inbox behind the same lock as the work), or use an [`SqlTx`](crate::sql::SqlTx)'s inbox, which commits or
/// rolls back with the consumer's transaction.
#[derive(Debug, Default, Clone)]
pub struct MemoryInbox {
    /// When each `(consumer, message id)` was recorded, in microseconds since the Unix epoch.
    seen: HashMap<(String, String), i64>,
}

impl MemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the records made more than `older_than` ago: how many.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fsm_runtime::inbox::{Inbox, MemoryInbox};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut inbox = MemoryInbox::new();
    /// assert!(inbox.record("mailer", "m-1").await?);
    /// assert_eq!(inbox.purge(Duration::from_secs(3600)), 0);
    /// assert_eq!(inbox.purge(Duration::ZERO), 1);
    /// assert!(inbox.record("mailer", "m-1").await?, "forgotten, so new again");
    /// # Ok::<(), fsm_runtime::error::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn purge(&mut self, older_than: Duration) -> usize {
        let cutoff = micros_before_now(older_than);
        let before = self.seen.len();
        self.seen.retain(|_, recorded_at| *recorded_at > cutoff);
        before - self.seen.len()
    }
}

impl Inbox for MemoryInbox {
    async fn record(&mut self, consumer: &str, message_id: &str) -> Result<bool, BoxError> {
        let key = (consumer.to_owned(), message_id.to_owned());
        if self.seen.contains_key(&key) {
            return Ok(false);
        }
        self.seen.insert(key, now_micros());
        Ok(true)
    }
}
