//! Fencing: transitions that carry the fencing token of a lease, and a store that refuses the
//! ones whose token is older than the newest it has seen.
//!
//! A lease alone cannot stop a holder that paused past its time to live from writing over the
//! next holder's work (the scenario is in [`lock`](crate::lock)). [`guard`] returns an effect
//! for [`TransitionRequest::effect`](crate::TransitionRequest::effect) that runs in the
//! transition's own transaction: it records the token in the runtime-owned table `fsm_fences`
//! (one row per protected entity, `highest`), and fails when a higher token was recorded
//! before. The transition is then rolled back and answers [`Error::Effect`] whose source is a
//! [`StaleFencingToken`] ([`stale_token`] finds it): nothing of the stale holder is persisted.
//! Equal tokens pass, so one holder can write several times.
//!
//! | store | statements of the check, in the transition's transaction |
//! |---|---|
//! | PostgreSQL, SQLite | `INSERT INTO fsm_fences … ON CONFLICT (resource) DO UPDATE SET highest = excluded.highest WHERE fsm_fences.highest <= excluded.highest RETURNING highest`; on no row, one `SELECT highest` for the error |
//! | MySQL/MariaDB | `INSERT … ON DUPLICATE KEY UPDATE highest = GREATEST(highest, VALUES(highest))`, then `SELECT highest … FOR UPDATE` |
//! | [`MemoryStore`](crate::MemoryStore) | [`MemoryFences::guard`], under the entity's lock |
//!
//! The SQL table is created by [`SqlLeases::new`](crate::lock::SqlLeases::new), or by
//! [`create_table`] when the leases live elsewhere (Redis).
//!
//! A fence compares the tokens of one counter only, and counters are per lease resource: fence
//! each entity with leases of one resource name (`order-7` for `orders/7`), never of two. Keep
//! the rows: a deleted `fsm_fences` row accepts a stale holder's token again, and a deleted
//! `fsm_leases` row restarts its counter below the highest token the fence has seen, which then
//! refuses every new holder (see [`lock`](crate::lock#pitfalls)).
//!
//! ```
//! use std::time::Duration;
//! use fsm_runtime::fence::{MemoryFences, stale_token};
//! use fsm_runtime::lock::{LeaseStore, MemoryLeases};
//! use fsm_runtime::store::MemoryTx;
//! use fsm_runtime::{MemoryStore, StateMachine, Store, TransitionRequest};
//!
//! #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! enum Order { #[state(initial)] Created, #[transition(from = Created)] Paid, #[transition(from = [Created, Paid])] Cancelled }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (store, leases, fences) = (MemoryStore::<Order>::new(), MemoryLeases::new(), MemoryFences::new());
//! store.create(7).await?;
//! let ttl = Duration::from_millis(50);
//! let a = leases.try_acquire("order-7", "a", ttl).await?.expect("free");
//! tokio::time::sleep(ttl * 2).await; // A pauses past its lease
//! let b = leases.try_acquire("order-7", "b", ttl).await?.expect("expired, so free");
//! let pay = TransitionRequest::<Order, MemoryTx>::to(7, Order::Paid).effect(fences.guard("orders", 7, b.fence()));
//! store.apply(pay).await?;
//! let cancel = TransitionRequest::<Order, MemoryTx>::to(7, Order::Cancelled).effect(fences.guard("orders", 7, a.fence()));
//! let error = store.apply(cancel).await.unwrap_err();
//! assert_eq!(stale_token(&error).map(|s| s.highest), Some(b.fence()));
//! assert_eq!(store.get(7).await?.state, Order::Paid); // nothing of A's
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod memory;
#[cfg(feature = "_sql")]
mod sql;

use std::future::Future;

use crate::entity_id::EntityId;
use crate::error::{BoxError, Error};
use crate::lock::FencingToken;
use crate::store::EffectFuture;

pub use memory::MemoryFences;
#[cfg(feature = "_sql")]
pub use sql::create_table;

/// A write carried a fencing token lower than one the resource accepted before: its lease was
/// taken over, and the write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stale fencing token {token} for `{resource}`: token {highest} was accepted before; the write is refused")]
pub struct StaleFencingToken {
    /// The protected resource (`<table>/<id>` for an entity).
    pub resource: String,
    /// The token the write carried.
    pub token: FencingToken,
    /// The highest token the resource accepted.
    pub highest: FencingToken,
}

/// Why a fence check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FenceError {
    /// The token is stale.
    #[error(transparent)]
    Stale(#[from] StaleFencingToken),

    /// The database failed.
    #[error("fence of `{resource}`: {operation} failed on {backend}: {source}")]
    Backend {
        /// `SQLite`, `PostgreSQL` or `MySQL`.
        backend: &'static str,
        /// The protected resource.
        resource: String,
        /// `check` or `create table`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// The fence name of an entity: `<table>/<id>`.
pub fn entity_resource(entity_table: &str, entity_id: &EntityId) -> String {
    format!("{entity_table}/{entity_id}")
}

/// A transaction a fencing token can be checked in: the [`SqlTx`](crate::sql::SqlTx) an effect
/// receives on every SQL backend.
pub trait CheckFence: Send {
    /// Accepts `token` for `resource` if no higher token was accepted before, and records it
    /// as the highest; else [`FenceError::Stale`]. The fence row stays locked until the
    /// transaction ends, so a concurrent writer with another token waits, then sees it.
    fn check_fence(
        &mut self,
        resource: &str,
        token: FencingToken,
    ) -> impl Future<Output = Result<(), FenceError>> + Send;
}

/// Forces the signature of an effect closure (so that its future may borrow the transaction).
fn effect<C, F>(f: F) -> F
where
    F: for<'t> FnOnce(&'t mut C) -> EffectFuture<'t> + Send + 'static,
{
    f
}

/// An effect for [`TransitionRequest::effect`](crate::TransitionRequest::effect) on an SQL
/// store: the transition applies only if `token` is at least the highest fencing token entity
/// `entity_id` of `entity_table` has accepted, which it raises to `token`. Otherwise the
/// transition is rolled back and fails with [`Error::Effect`] whose source is a
/// [`StaleFencingToken`].
///
/// ```no_run
/// use fsm_runtime::{fence, SqliteStore, StateMachine, Store, TransitionRequest};
/// use fsm_runtime::lock::{LeaseStore, SqlLeases};
/// # #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// # enum Order { #[state(initial)] Created, #[transition(from = Created)] Shipped }
/// # async fn ship(store: SqliteStore<Order>, leases: SqlLeases<fsm_runtime::sqlx::Sqlite>) -> Result<(), Box<dyn std::error::Error>> {
/// let lease = leases.acquire("order-7", "worker-1", std::time::Duration::from_secs(30), std::time::Duration::from_secs(5)).await?;
/// let ship = TransitionRequest::to(7, Order::Shipped).effect(fence::guard("orders", 7, lease.fence()));
/// store.apply(ship).await?;
/// # Ok(()) }
/// ```
pub fn guard<C: CheckFence + 'static>(
    entity_table: &str,
    entity_id: impl Into<EntityId>,
    token: FencingToken,
) -> impl for<'t> FnOnce(&'t mut C) -> EffectFuture<'t> + Send + 'static {
    guard_resource(entity_resource(entity_table, &entity_id.into()), token)
}

/// Like [`guard`], for a resource named by the caller (not an entity).
pub fn guard_resource<C: CheckFence + 'static>(
    resource: impl Into<String>,
    token: FencingToken,
) -> impl for<'t> FnOnce(&'t mut C) -> EffectFuture<'t> + Send + 'static {
    let resource = resource.into();
    effect(move |conn: &mut C| {
        Box::pin(async move {
            match conn.check_fence(&resource, token).await {
                Ok(()) => Ok(()),
                // The stale token itself is the effect's error, for `stale_token`.
                Err(FenceError::Stale(stale)) => Err(Box::new(stale) as BoxError),
                Err(error) => Err(Box::new(error) as BoxError),
            }
        })
    })
}

/// The stale fencing token that made a transition fail, if that is why it failed.
pub fn stale_token(error: &Error) -> Option<&StaleFencingToken> {
    let Error::Effect { source, .. } = error else {
        return None;
    };
    source.downcast_ref::<StaleFencingToken>().or_else(|| match source.downcast_ref::<FenceError>() {
        Some(FenceError::Stale(stale)) => Some(stale),
        _ => None,
    })
}
