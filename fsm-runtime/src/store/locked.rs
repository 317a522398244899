//! Pessimistic locking: hold one entity locked, read it, decide, transition, commit.

use std::future::Future;

use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outcome::{Outcome, Snapshot};

/// One entity held locked by [`Store::lock`](crate::Store::lock) (`SELECT … FOR UPDATE` on
/// PostgreSQL and MySQL, `BEGIN IMMEDIATE` on SQLite, the entity's mutex in memory).
///
/// For decisions that must read the entity (and perhaps other rows) before choosing a target.
/// Nothing is written until [`LockedEntity::commit`]; dropping the lock rolls back.
pub trait LockedEntity<M: StateMachine>: Send + std::fmt::Debug {
    /// What the caller's own statements run on inside the lock.
    type Tx: Send;

    /// The entity.
    fn id(&self) -> &EntityId;

    /// The state and version, as of the lock (and of the transitions made under it).
    fn snapshot(&self) -> Snapshot<M>;

    /// The open transaction, for the caller's own statements inside the lock.
    fn tx(&mut self) -> &mut Self::Tx;

    /// Moves the locked entity to `to`, with the same outcomes as
    /// [`Store::transition`](crate::Store::transition).
    fn transition(&mut self, to: M) -> impl Future<Output = Result<Outcome<M>, Error>> + Send;

    /// Commits everything done under the lock and releases it.
    fn commit(self) -> impl Future<Output = Result<(), Error>> + Send;
}
