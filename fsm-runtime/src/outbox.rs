//! The transactional outbox: send a message exactly when a transition is applied.
//!
//! Inside a transition's effect, [`Outbox::enqueue`] writes the message in the transition's
//! transaction, so it exists if and only if the transition was applied. A [`Relay`] then claims
//! due messages, oldest first and in order per key, hands each to a [`Publisher`], and marks it
//! published. A relay that dies between publishing and marking leaves the message claimed until
//! its lease runs out; the next relay publishes it again with the same
//! [`PendingMessage::message_id`]: at-least-once, never lost. The consumer makes it exactly-once
//! with an [`Inbox`](crate::inbox::Inbox).
//!
//! A failed publication does not hold up the other messages: the message waits (exponential
//! backoff with jitter, [`Relay::backoff`]) and, after [`Relay::max_attempts`], is parked as
//! dead, for [`OutboxMaintenance::dead_letters`] to list and [`OutboxMaintenance::requeue`] to
//! bring back. Messages with the same topic and key are published in order: a later one waits
//! while an earlier one is pending or backing off; once the earlier one is dead, the later ones
//! proceed. Published messages are deleted by [`OutboxMaintenance::purge_published`].
//!
//! ```
//! use fsm_runtime::outbox::{Outbox, OutboxMessage, PendingMessage, Publisher, Relay};
//! use fsm_runtime::error::BoxError;
//! use fsm_runtime::store::MemoryTx;
//! use fsm_runtime::{MemoryStore, StateMachine, Store, TransitionRequest};
//!
//! #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! enum Order { #[state(initial)] Created, #[transition(from = Created)] Paid }
//!
//! struct Print;
//! impl Publisher for Print {
//!     async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
//!         println!("{} {}", message.topic, message.payload);
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::<Order>::new();
//! store.create(1).await?;
//! let pay = TransitionRequest::<Order, MemoryTx>::to(1, Order::Paid).effect(|tx| {
//!     Box::pin(async move {
//!         tx.enqueue(OutboxMessage::new("receipts", serde_json::json!({"order": 1}))).await?;
//!         Ok(())
//!     })
//! });
//! store.apply(pay).await?;
//! let report = Relay::new(store.outbox()).run_once(&Print).await?;
//! assert_eq!(report.published, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod backoff;
mod failure;
mod maintenance;
mod memory;
mod relay;
#[cfg(feature = "_sql")]
mod sql;
mod stats;

use std::future::Future;
use std::time::Duration;

use crate::error::{BoxError, Error};

pub use crate::message::{DeadLetter, OutboxMessage, PendingMessage};
pub use backoff::Backoff;
pub use failure::{MAX_ERROR_BYTES, NextAttempt, error_text};
pub use maintenance::OutboxMaintenance;
pub use memory::MemoryOutbox;
pub use relay::{Relay, RelayReport};
#[cfg(feature = "_sql")]
pub use sql::SqlOutbox;
pub use stats::OutboxStats;

/// Something a message can be enqueued on inside an effect: the transaction of an SQL
/// transition ([`SqlTx`](crate::sql::SqlTx), on every SQL backend) or a
/// [`MemoryTx`](crate::store::MemoryTx).
pub trait Outbox: Send {
    /// Writes `message` in this transaction; returns its message id.
    fn enqueue(&mut self, message: OutboxMessage) -> impl Future<Output = Result<String, BoxError>> + Send;
}

/// Where a relay finds pending messages: an SQL outbox or a [`MemoryStore`](crate::MemoryStore)'s
/// [`MemoryOutbox`].
pub trait OutboxSource: Send + Sync {
    /// Claims up to `batch` due messages, oldest first, for `lease`: no other relay gets them
    /// until the lease ends or they are released. A message is due when it is neither
    /// published nor dead, its backoff has passed, and no earlier live message has its topic
    /// and key (so a batch holds at most one message per topic and key).
    fn claim(&self, batch: usize, lease: Duration) -> impl Future<Output = Result<Vec<PendingMessage>, Error>> + Send;

    /// Marks a claimed message published.
    fn mark_published(&self, sequence: i64) -> impl Future<Output = Result<(), Error>> + Send;

    /// Gives a claimed, unpublished message back, to be claimed again at once.
    fn release(&self, sequence: i64) -> impl Future<Output = Result<(), Error>> + Send;

    /// What the whole outbox holds (every topic): pending and dead messages, and the age of the
    /// oldest pending one; one cheap read, which a [`Relay`] makes after each pass to set the
    /// outbox gauges.
    fn stats(&self) -> impl Future<Output = Result<OutboxStats, Error>> + Send;

    /// Gives a claimed message whose publication failed back, with its `error`: due again at
    /// `next`, or parked as dead.
    fn fail(&self, sequence: i64, error: &str, next: NextAttempt) -> impl Future<Output = Result<(), Error>> + Send;
}

impl<S: OutboxSource> OutboxSource for std::sync::Arc<S> {
    fn claim(&self, batch: usize, lease: Duration) -> impl Future<Output = Result<Vec<PendingMessage>, Error>> + Send {
        (**self).claim(batch, lease)
    }

    fn mark_published(&self, sequence: i64) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).mark_published(sequence)
    }

    fn release(&self, sequence: i64) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).release(sequence)
    }

    fn stats(&self) -> impl Future<Output = Result<OutboxStats, Error>> + Send {
        (**self).stats()
    }

    fn fail(&self, sequence: i64, error: &str, next: NextAttempt) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).fail(sequence, error, next)
    }
}

/// Hands messages to the outside world (a broker, an e-mail API, a webhook).
pub trait Publisher: Send + Sync {
    /// Publishes one message; an error leaves it pending, to be published again after a
    /// backoff (or parked as dead after the relay's maximum of attempts).
    fn publish(&self, message: &PendingMessage) -> impl Future<Output = Result<(), BoxError>> + Send;
}
