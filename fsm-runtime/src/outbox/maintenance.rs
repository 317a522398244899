//! [`OutboxMaintenance`]: what an operator does to an outbox: list and requeue the dead
//! messages, delete the published ones.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;
use crate::message::DeadLetter;

/// The dead letters and the retention of an outbox ([`MemoryOutbox`](crate::outbox::MemoryOutbox),
/// [`SqlOutbox`](crate::outbox::SqlOutbox); an SQL outbox made with `only_topic` sees only
/// that topic's messages, except [`requeue`](Self::requeue), which finds a message by its id).
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::outbox::{OutboxMaintenance, OutboxMessage, PendingMessage, Publisher, Relay};
/// use fsm_runtime::error::BoxError;
/// use fsm_runtime::store::MemoryTx;
/// use fsm_runtime::{MemoryStore, StateMachine, Store, TransitionRequest};
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// enum Order { #[state(initial)] Created, #[transition(from = Created)] Paid }
///
/// struct Down;
/// impl Publisher for Down {
///     async fn publish(&self, _: &PendingMessage) -> Result<(), BoxError> {
///         Err("the broker is down".into())
///     }
/// }
/// struct Up;
/// impl Publisher for Up {
///     async fn publish(&self, _: &PendingMessage) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::<Order>::new();
/// store.create(1).await?;
/// let pay = TransitionRequest::<Order, MemoryTx>::to(1, Order::Paid).effect(|tx| {
///     Box::pin(async move {
///         use fsm_runtime::outbox::Outbox as _;
///         tx.enqueue(OutboxMessage::new("receipts", serde_json::json!({"order": 1}))).await?;
///         Ok(())
///     })
/// });
/// store.apply(pay).await?;
/// let outbox = store.outbox();
/// let relay = Relay::new(outbox.clone()).max_attempts(1);
/// assert_eq!(relay.run_once(&Down).await?.dead, 1);
///
/// let dead = outbox.dead_letters(10).await?;
/// assert_eq!(dead[0].message.attempts, 1);
/// assert_eq!(dead[0].message.last_error.as_deref(), Some("the broker is down"));
/// assert!(outbox.requeue(&dead[0].message.message_id).await?);
/// assert_eq!(relay.run_once(&Up).await?.published, 1);
/// assert_eq!(outbox.purge_published(Duration::ZERO).await?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait OutboxMaintenance: Send + Sync {
    /// Up to `limit` dead messages, oldest first, each with its attempts and last error.
    fn dead_letters(&self, limit: usize) -> impl Future<Output = Result<Vec<DeadLetter>, Error>> + Send;

    /// Makes the dead message `message_id` live again, due at once with a fresh count of
    /// attempts (its last error is kept): `false` when no dead message has that id.
    fn requeue(&self, message_id: &str) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Makes every dead message live again (see [`requeue`](Self::requeue)): how many.
    fn requeue_all_dead(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Deletes the messages published more than `older_than` ago: how many. Unpublished and
    /// dead messages are never deleted.
    fn purge_published(&self, older_than: Duration) -> impl Future<Output = Result<u64, Error>> + Send;
}
