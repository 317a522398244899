//! [`Within`]: a store's operations inside the caller's transaction.

use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outcome::{CreateOutcome, Outcome, Snapshot};
use crate::sql::{Backend, Nested, SqlTx};
use crate::store::sql::SqlStore;
use crate::store::traced;
use crate::store::{NewEntity, TransitionRequest};
use crate::telemetry::Operation;

/// A store's operations inside a transaction the caller holds and commits
/// ([`SqlStore::within`]): transitions of several entities and machines (stores on the same
/// pool) and the caller's own statements commit or roll back together. Begin the transaction
/// with [`SqlStore::begin`] (or [`SqlTx::begin`]); a sqlx `Transaction` cannot lend its
/// connection, so run your own statements in the `SqlTx` (`query.execute(&mut *tx)`).
///
/// Each request has the outcome table of [`Store::apply`](crate::Store::apply): the history row,
/// the idempotency key and the effects (which receive the caller's transaction) are written in
/// the transaction, and nothing is committed: the caller's commit makes them all durable, its
/// rollback (or dropping the transaction) undoes them all. Each attempt runs in a savepoint of
/// its own, so a refused request ([`Error::InvalidTransition`], [`Error::NotFound`], a failed
/// effect, …) leaves the transaction usable, also on PostgreSQL, where a failed statement
/// outside a savepoint aborts the whole transaction.
///
/// What differs from [`Store::apply`](crate::Store::apply):
/// - the transition is never the one-round-trip batch or procedure of SQLite and MySQL (they
///   commit by themselves) but a read, then a compare-and-set in a savepoint; PostgreSQL's
///   one statement runs in a savepoint;
/// - a row or a key the transaction writes stays locked until the caller commits: another
///   request for the same entity or key waits for it, then answers from what was committed
///   (`AlreadyApplied`, `Replayed`);
/// - an error that rolled back the caller's whole transaction (a MySQL/MariaDB deadlock), or
///   a transaction whose snapshot is older than the row it must move (REPEATABLE READ, the
///   MySQL default of [`SqlTx::begin`]; [`SqlStore::begin`] reads at READ COMMITTED), is a
///   retryable [`Error::Database`]: roll back and run the transaction again;
/// - a request dropped halfway (a timeout around it) leaves the transaction unusable: its
///   [`commit`](SqlTx::commit) rolls back and fails.
///
/// ```
/// use fsm_runtime::{Outcome, SqliteStore, StateMachine, Store};
/// use fsm_runtime::sqlx::{self, sqlite::SqlitePoolOptions};
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// #[state_machine(rename_all = "snake_case", event = OrderEvent, table = "orders")]
/// enum Order {
///     #[state(initial)]
///     Placed,
///     #[transition(from = Placed, on = Pay)]
///     Paid,
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // One connection: an in-memory SQLite database lives as long as its connection.
/// let pool = SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await?;
/// sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, state TEXT NOT NULL, version BIGINT NOT NULL)")
///     .execute(&pool)
///     .await?;
/// sqlx::query("CREATE TABLE receipts (order_id INTEGER)").execute(&pool).await?;
/// let orders = SqliteStore::<Order>::new(pool).await?;
///
/// let mut tx = orders.begin().await?;
/// orders.within(&mut tx).create(1).await?;
/// assert!(orders.within(&mut tx).fire(1, OrderEvent::Pay).await?.is_applied());
/// sqlx::query("INSERT INTO receipts (order_id) VALUES (1)").execute(&mut *tx).await?;
/// // Inside the transaction, a replay is a no-op as anywhere.
/// let again = orders.within(&mut tx).fire(1, OrderEvent::Pay).await?;
/// assert!(matches!(again, Outcome::AlreadyApplied { .. }));
/// tx.commit().await?;
///
/// assert_eq!(orders.get(1).await?.state, Order::Paid);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Within<'t, M: StateMachine, B: Backend> {
    store: &'t SqlStore<M, B>,
    tx: &'t mut SqlTx<B>,
}

impl<M: StateMachine, B: Backend> std::fmt::Debug for Within<'_, M, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Within").field("store", self.store).field("tx", &self.tx).finish()
    }
}

impl<'t, M: StateMachine, B: Backend> Within<'t, M, B> {
    pub(crate) fn new(store: &'t SqlStore<M, B>, tx: &'t mut SqlTx<B>) -> Self {
        Self { store, tx }
    }

    /// Runs a transition request in the caller's transaction: see [`Within`].
    pub async fn apply(&mut self, request: TransitionRequest<'_, M, SqlTx<B>>) -> Result<Outcome<M>, Error> {
        let traced = traced::apply(B::NAME, &request, true);
        traced
            .transition(async {
                let mut nested = Nested::enter(self.tx);
                let outcome = self.store.apply_request(nested.tx(), request).await;
                let left = nested.leave().await.map_err(|e| self.store.db(e));
                outcome.and_then(|outcome| left.map(|()| outcome))
            })
            .await
    }

    /// [`Store::apply_many`](crate::Store::apply_many) inside the caller's transaction: one
    /// answer per request, in order, each in a savepoint (a batch statement in one) so that a
    /// refused request leaves the others and the transaction usable. For all or nothing, roll
    /// the transaction back when an answer is an error.
    ///
    /// ```
    /// use fsm_runtime::{SqliteStore, StateMachine, Store, TransitionRequest};
    ///
    /// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// #[state_machine(table = "doors")]
    /// enum Door { #[state(initial)] Closed, #[transition(from = Closed)] Open }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = fsm_runtime::sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// fsm_runtime::sqlx::query("CREATE TABLE doors (id INTEGER PRIMARY KEY, state TEXT NOT NULL, version BIGINT NOT NULL)")
    ///     .execute(&pool)
    ///     .await?;
    /// let store = SqliteStore::<Door>::new(pool).await?;
    /// store.create(1).await?;
    /// let mut tx = store.begin().await?;
    /// let answers = store
    ///     .within(&mut tx)
    ///     .apply_many(vec![TransitionRequest::to(1, Door::Open), TransitionRequest::to(2, Door::Open)])
    ///     .await;
    /// assert!(answers[0].is_ok() && answers[1].is_err()); // entity 2 does not exist
    /// tx.rollback().await?; // all or nothing: nothing
    /// assert_eq!(store.get(1).await?.state, Door::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn apply_many(
        &mut self,
        requests: Vec<TransitionRequest<'_, M, SqlTx<B>>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        let spans: Vec<_> = requests.iter().map(|request| traced::apply(B::NAME, request, true)).collect();
        let mut nested = Nested::enter(self.tx);
        let mut answers = self.store.apply_batch(nested.tx(), requests).await;
        if let Err(error) = nested.leave().await {
            // The transaction cannot go on: no request of the batch stands.
            let error = error.to_string();
            answers = answers.iter().map(|_| Err(self.store.left_unusable(&error))).collect();
        }
        let mut traced = Vec::with_capacity(answers.len());
        for (span, answer) in spans.into_iter().zip(answers) {
            traced.push(span.transition(std::future::ready(answer)).await);
        }
        traced
    }

    /// Moves the entity to `to` from any legal source of `to` ([`Store::transition`](crate::Store::transition)).
    pub async fn transition(&mut self, id: impl Into<EntityId>, to: M) -> Result<Outcome<M>, Error> {
        self.apply(TransitionRequest::to(id, to)).await
    }

    /// Moves the entity from the state the caller observed
    /// ([`Store::transition_from`](crate::Store::transition_from)).
    pub async fn transition_from(&mut self, id: impl Into<EntityId>, from: M, to: M) -> Result<Outcome<M>, Error> {
        self.apply(TransitionRequest::from(id, from, to)).await
    }

    /// Fires `event` ([`Store::fire`](crate::Store::fire)).
    pub async fn fire(&mut self, id: impl Into<EntityId>, event: M::Event) -> Result<Outcome<M>, Error> {
        self.apply(TransitionRequest::fire(id, event)).await
    }

    /// Reads the entity's state and version as the transaction sees them (its own writes
    /// included).
    pub async fn get(&mut self, id: impl Into<EntityId>) -> Result<Snapshot<M>, Error> {
        let id = id.into();
        let traced = traced::within::<M>(B::NAME, Operation::Get, &id);
        traced.run(async { Ok(self.store.read_on(self.tx, &id).await?.now) }).await
    }

    /// Inserts the entity in the initial state in the transaction, or reports that it exists.
    pub async fn create(&mut self, id: impl Into<EntityId>) -> Result<CreateOutcome<M>, Error> {
        self.create_in(id, M::initial()).await
    }

    /// Inserts the entity in `state` in the transaction, or reports that it exists.
    pub async fn create_in(&mut self, id: impl Into<EntityId>, state: M) -> Result<CreateOutcome<M>, Error> {
        let id = id.into();
        traced::within::<M>(B::NAME, Operation::Create, &id).run(self.store.create_on(self.tx, &id, state)).await
    }

    /// Inserts the entity with its own columns in the transaction, or reports that it exists
    /// ([`Store::create_with`](crate::Store::create_with)).
    pub async fn create_with(&mut self, entity: NewEntity<M>) -> Result<CreateOutcome<M>, Error> {
        let traced = traced::within::<M>(B::NAME, Operation::Create, entity.id());
        traced.run(self.store.create_with_on(&mut **self.tx, entity)).await
    }
}
