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

use std::collections::HashSet;
use std::future::Future;

use crate::error::BoxError;

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
    seen: HashSet<(String, String)>,
}

impl MemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inbox for MemoryInbox {
    async fn record(&mut self, consumer: &str, message_id: &str) -> Result<bool, BoxError> {
        Ok(self.seen.insert((consumer.to_owned(), message_id.to_owned())))
    }
}
