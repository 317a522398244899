//! The transactional outbox: send a message exactly when a transition is applied.
//!
//! Inside a transition's effect, [`Outbox::enqueue`] writes the message in the transition's
//! transaction, so it exists if and only if the transition was applied. A [`Relay`] then claims
//! pending messages in order, hands each to a [`Publisher`], and marks it published. A relay
//! that dies between publishing and marking leaves the message claimed until its lease runs
//! out; the next relay publishes it again with the same [`PendingMessage::message_id`]:
//! at-least-once, never lost. The consumer makes it exactly-once with an
//! [`Inbox`](crate::inbox::Inbox).
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

mod gauges;
mod memory;
#[cfg(feature = "_sql")]
mod sql;
mod stats;

use std::future::Future;
use std::time::Duration;

use crate::error::{BoxError, Error};

pub use crate::message::{OutboxMessage, PendingMessage};
pub use memory::MemoryOutbox;
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
    /// Claims up to `batch` pending messages, oldest first, for `lease`: no other relay gets
    /// them until the lease ends or they are released.
    fn claim(&self, batch: usize, lease: Duration) -> impl Future<Output = Result<Vec<PendingMessage>, Error>> + Send;

    /// Marks a claimed message published.
    fn mark_published(&self, sequence: i64) -> impl Future<Output = Result<(), Error>> + Send;

    /// Gives a claimed, unpublished message back, to be claimed again at once.
    fn release(&self, sequence: i64) -> impl Future<Output = Result<(), Error>> + Send;

    /// What the whole outbox holds (every topic): pending and dead messages, and the age of the
    /// oldest pending one; one cheap read, which a [`Relay`] makes after each pass to set the
    /// outbox gauges.
    fn stats(&self) -> impl Future<Output = Result<OutboxStats, Error>> + Send;
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
}

/// Hands messages to the outside world (a broker, an e-mail API, a webhook).
pub trait Publisher: Send + Sync {
    /// Publishes one message; an error leaves it pending, to be published again.
    fn publish(&self, message: &PendingMessage) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// What one pass of a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Messages published and marked.
    pub published: usize,
    /// Messages whose publication failed (released, to be tried again).
    pub failed: usize,
}

/// Publishes the messages of an [`OutboxSource`]. Several relays may run at once, in one
/// process or many: each message is claimed by one of them at a time.
#[derive(Debug, Clone)]
pub struct Relay<S> {
    source: S,
    batch: usize,
    lease: Duration,
}

impl<S: OutboxSource> Relay<S> {
    /// A relay over `source`, claiming 100 messages at a time for 30 seconds.
    pub fn new(source: S) -> Self {
        Self { source, batch: 100, lease: Duration::from_secs(30) }
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

    /// One pass: claim a batch, publish each message in order, mark each published. The first
    /// failure releases it and the rest of the batch (to keep their order) and ends the pass.
    pub async fn run_once<P: Publisher>(&self, publisher: &P) -> Result<RelayReport, Error> {
        let mut report = RelayReport::default();
        let claimed = self.source.claim(self.batch, self.lease).await?;
        let mut pending = claimed.iter();
        for message in pending.by_ref() {
            match publisher.publish(message).await {
                Ok(()) => {
                    self.source.mark_published(message.sequence).await?;
                    crate::telemetry::relay_published(&message.topic);
                    report.published += 1;
                }
                Err(error) => {
                    tracing::warn!(message_id = %message.message_id, topic = %message.topic, %error, "publish failed");
                    crate::telemetry::relay_failed(&message.topic);
                    report.failed += 1;
                    self.source.release(message.sequence).await?;
                    break;
                }
            }
        }
        for message in pending {
            self.source.release(message.sequence).await?;
        }
        self.record_stats().await;
        Ok(report)
    }

    /// Runs passes until `shutdown` completes, sleeping `idle` after a pass that found nothing
    /// (or failed).
    pub async fn run<P: Publisher>(&self, publisher: &P, idle: Duration, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let busy = match self.run_once(publisher).await {
                Ok(report) => report.published > 0 && report.failed == 0,
                Err(error) => {
                    tracing::warn!(%error, "relay pass failed");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(idle) => {}
            }
        }
    }
}
