//! The storage contract every adapter implements, and the adapters.

pub(crate) mod keyed;
mod locked;
mod memory;
mod new_entity;
pub(crate) mod plan;
mod request;
#[cfg(feature = "_sql")]
mod sql;
mod traced;

use std::future::Future;

pub use crate::column_problem::ColumnProblem;
pub use crate::column_value::ColumnValue;
pub use crate::keys::OpFuture;
pub use crate::memory_tx::MemoryTx;
pub use crate::outbox::MemoryOutbox;
pub use crate::outcome::{CreateOutcome, DeleteOutcome, HistoryEntry, Snapshot};
pub use crate::transition::Transition;
pub use locked::LockedEntity;
pub use memory::{MemoryLocked, MemoryStore};
pub use new_entity::NewEntity;
pub use request::{Effect, EffectFuture, Target, TransitionRequest};
#[cfg(feature = "_sql")]
pub use sql::{Session, SqlLocked, SqlStore, Within};

/// A [`Store`] on SQLite: embedded, no server (see [`crate::sql`] for what it sends).
#[cfg(feature = "sqlite")]
pub type SqliteStore<M> = SqlStore<M, sqlx::Sqlite>;

/// A [`Store`] on PostgreSQL (and the databases that speak its protocol and SQL).
#[cfg(feature = "postgres")]
pub type PostgresStore<M> = SqlStore<M, sqlx::Postgres>;

/// A [`Store`] on MySQL or MariaDB.
#[cfg(feature = "mysql")]
pub type MySqlStore<M> = SqlStore<M, sqlx::MySql>;

pub use crate::entity_id::EntityId;
use crate::error::Error;
use crate::keys::Keys;
use crate::machine::StateMachine;
use crate::outcome::Outcome;

/// Persistence of the entities of one machine `M`, with the semantics of the outcome table:
///
/// | the row's state | result | writes |
/// |---|---|---|
/// | a legal source of the target | [`Outcome::Applied`] | state, version + 1, one history row, the effects |
/// | already the target | [`Outcome::AlreadyApplied`] | nothing |
/// | anything else | [`Error::InvalidTransition`] | nothing |
/// | no such row | [`Error::NotFound`] | nothing |
/// | a string no state maps to | [`Error::UnknownState`] | nothing |
///
/// Every adapter (memory, SQLite, PostgreSQL, MySQL) passes the same conformance suite.
pub trait Store<M: StateMachine>: Send + Sync {
    /// What an effect receives: the adapter's open transaction ([`SqlTx`](crate::sql::SqlTx),
    /// the connection inside the transaction of the transition) or, for [`MemoryStore`], a
    /// context ([`MemoryTx`]).
    type Tx: Send;

    /// An entity held locked by [`Store::lock`].
    type Lock: LockedEntity<M>;

    /// The idempotency keys of the store's database (see [`Store::keys`]).
    type Keys: Keys<Tx = Self::Tx>;

    /// Inserts the entity in the initial state at version 0, or reports that it exists.
    fn create(&self, id: impl Into<EntityId> + Send) -> impl Future<Output = Result<CreateOutcome<M>, Error>> + Send {
        self.create_in(id, M::initial())
    }

    /// Inserts the entity in `state` at version 0 (an import, a test), or reports that it exists.
    fn create_in(
        &self,
        id: impl Into<EntityId> + Send,
        state: M,
    ) -> impl Future<Output = Result<CreateOutcome<M>, Error>> + Send;

    /// Inserts the entity with its own columns in one statement, in the state it names (the
    /// initial state by default) at version 0, or reports that it exists ([`CreateOutcome::AlreadyExists`],
    /// writing nothing, as [`Store::create`]).
    ///
    /// Refused before anything is sent, with [`Error::InvalidColumn`]: a column name that is not
    /// a plain SQL identifier, the id, state or version column of the mapping (which the store
    /// writes), or a name given twice (compared without regard to ASCII case). On SQL a column
    /// the table does not have, or a value its type refuses, is an [`Error::Database`] naming the
    /// table, and nothing is written. [`MemoryStore`] keeps any column ([`MemoryStore::columns`]).
    ///
    /// ```
    /// use fsm_runtime::store::{CreateOutcome, NewEntity};
    /// use fsm_runtime::{MemoryStore, StateMachine, Store};
    ///
    /// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// enum Invoice {
    ///     #[state(initial)]
    ///     Open,
    ///     #[transition(from = Open)]
    ///     Paid,
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = MemoryStore::<Invoice>::new();
    /// let invoice = NewEntity::new(7).column("amount", 1250_i64).column("currency", "EUR");
    /// assert_eq!(store.create_with(invoice.clone()).await?, CreateOutcome::Created { state: Invoice::Open });
    /// assert!(matches!(store.create_with(invoice).await?, CreateOutcome::AlreadyExists { .. }));
    /// # Ok::<(), fsm_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    fn create_with(&self, entity: NewEntity<M>) -> impl Future<Output = Result<CreateOutcome<M>, Error>> + Send;

    /// Reads the entity's state and version.
    fn get(&self, id: impl Into<EntityId> + Send) -> impl Future<Output = Result<Snapshot<M>, Error>> + Send;

    /// The id as the store stores it: the row's own spelling where the table takes several
    /// spellings for one row (a case-insensitive collation, a `uuid` column given in upper
    /// case), else `id` as given (no such entity, or a store that takes ids as they are). Keys
    /// derived from an entity's id ([`OutboundKey`](crate::outbound::OutboundKey)) are built
    /// from it, so that every spelling derives the same one.
    fn id_as_stored(&self, id: impl Into<EntityId> + Send) -> impl Future<Output = Result<EntityId, Error>> + Send {
        let id = id.into();
        async move { Ok(id) }
    }

    /// Deletes the entity, or reports that it did not exist. Its history stays, as the audit
    /// trail of an earlier life of the id ([`Store::audit`]); an id created again starts a
    /// history of its own. [`Store::purge_history`] and [`Store::purge_deleted_history`]
    /// remove it.
    fn delete(&self, id: impl Into<EntityId> + Send) -> impl Future<Output = Result<DeleteOutcome, Error>> + Send;

    /// The entity's applied transitions, oldest first (empty for an entity that does not exist,
    /// or that was deleted).
    fn history(
        &self,
        id: impl Into<EntityId> + Send,
    ) -> impl Future<Output = Result<Vec<HistoryEntry<M>>, Error>> + Send;

    /// The id's whole audit trail for this machine: the history of each deleted life of the id
    /// (oldest first, each entry with its [`HistoryEntry::deleted_at_micros`]), then the live
    /// entity's.
    fn audit(&self, id: impl Into<EntityId> + Send)
    -> impl Future<Output = Result<Vec<HistoryEntry<M>>, Error>> + Send;

    /// Deletes this machine's history of the id, of the live entity and of its deleted lives:
    /// the number of history rows removed. The entity itself stays (at its version).
    fn purge_history(&self, id: impl Into<EntityId> + Send) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The retention job of the audit trail: deletes the history of the entities of this
    /// store's table that were deleted longer than `older_than` ago; the number of rows removed.
    fn purge_deleted_history(&self, older_than: std::time::Duration)
    -> impl Future<Output = Result<u64, Error>> + Send;

    /// Runs a transition request: the compare-and-set, the history row and the effects, all or
    /// nothing.
    fn apply<'a>(
        &'a self,
        request: TransitionRequest<'a, M, Self::Tx>,
    ) -> impl Future<Output = Result<Outcome<M>, Error>> + Send + 'a;

    /// Runs `requests` as one batch: one answer per request, in the order of the requests, each
    /// exactly what [`Store::apply`] answers for it (`Applied`, `AlreadyApplied`, `Replayed`,
    /// or its error: `InvalidTransition`, `NotFound`, a version conflict, a reused key…). A
    /// refused or failed request fails alone; two requests for one entity run in their order.
    /// For all or nothing, run the requests inside your own transaction
    /// ([`SqlStore::within`](crate::store::SqlStore::within)) and roll it back on an error.
    ///
    /// The SQL stores send the batch on one connection of the pool (a [`Session`]), in one
    /// statement per round where the database has one (see `docs/stores.md`); the memory store
    /// applies it under the locks of all its keys and rows, taken once.
    ///
    /// ```
    /// use fsm_runtime::{MemoryStore, Outcome, StateMachine, Store, TransitionRequest};
    ///
    /// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// enum Door { #[state(initial)] Closed, #[transition(from = Closed)] Open }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = MemoryStore::<Door>::new();
    /// store.create(1).await?;
    /// let answers = store
    ///     .apply_many(vec![
    ///         TransitionRequest::to(1, Door::Open),
    ///         TransitionRequest::to(1, Door::Open),
    ///         TransitionRequest::to(2, Door::Open),
    ///     ])
    ///     .await;
    /// assert!(answers[0].as_ref().is_ok_and(Outcome::is_applied));
    /// assert!(matches!(answers[1], Ok(Outcome::AlreadyApplied { .. })));
    /// assert!(matches!(answers[2], Err(fsm_runtime::Error::NotFound { .. })));
    /// # Ok::<(), fsm_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    fn apply_many<'a>(
        &'a self,
        requests: Vec<TransitionRequest<'a, M, Self::Tx>>,
    ) -> impl Future<Output = Vec<Result<Outcome<M>, Error>>> + Send + 'a
    where
        Self: Sized,
    {
        async move {
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(self.apply(request).await);
            }
            answers
        }
    }

    /// Moves the entity to `to` from any legal source of `to`.
    fn transition(
        &self,
        id: impl Into<EntityId> + Send,
        to: M,
    ) -> impl Future<Output = Result<Outcome<M>, Error>> + Send {
        self.apply(TransitionRequest::to(id, to))
    }

    /// Moves the entity from the state the caller observed, `from`, to `to`; a row that moved on
    /// meanwhile gives [`Outcome::AlreadyApplied`] when it is already `to`, else
    /// [`Error::Conflict`].
    fn transition_from(
        &self,
        id: impl Into<EntityId> + Send,
        from: M,
        to: M,
    ) -> impl Future<Output = Result<Outcome<M>, Error>> + Send {
        self.apply(TransitionRequest::from(id, from, to))
    }

    /// Fires `event`: moves the entity along the event's edge from its state.
    fn fire(
        &self,
        id: impl Into<EntityId> + Send,
        event: M::Event,
    ) -> impl Future<Output = Result<Outcome<M>, Error>> + Send {
        self.apply(TransitionRequest::fire(id, event))
    }

    /// Locks the entity by primary key for a read-decide-write sequence (pessimistic locking):
    /// `SELECT … FOR UPDATE` on PostgreSQL and MySQL, `BEGIN IMMEDIATE` on SQLite. Other
    /// writers of the entity wait until the lock is committed or dropped.
    fn lock(&self, id: impl Into<EntityId> + Send) -> impl Future<Output = Result<Self::Lock, Error>> + Send;

    /// The idempotency keys of the store's database, shared by all its machines: keyed
    /// operations that are not transitions ([`Keys::run_once`]) and the purges.
    fn keys(&self) -> Self::Keys;
}
