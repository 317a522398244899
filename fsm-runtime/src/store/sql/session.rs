//! [`Session`]: one pooled connection kept across many requests of one worker.

use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outcome::{Outcome, Snapshot};
use crate::sql::{Backend, SqlTx};
use crate::store::TransitionRequest;
use crate::store::sql::SqlStore;
use crate::store::traced;
use crate::telemetry::Operation;

/// A store's requests on one connection of its pool, kept from one request to the next
/// ([`SqlStore::session`]).
///
/// Each [`Store`](crate::Store) call takes a connection from the pool and gives it back, and
/// sqlx checks a connection it gets back with a ping: a round trip more per call, which is a
/// good part of the cost of a one-statement transition (a replay is one statement). A worker
/// that sends many requests in a loop (a consumer draining a queue, a batch job) holds a
/// session instead: the requests have the outcome table of [`Store::apply`](crate::Store::apply),
/// exactly, on the same connection.
///
/// The connection still comes from your pool and goes back to it when the session is
/// dropped. A request that failed with a database error (a lost connection, a server
/// restart) gives the connection back and the next request takes another one; a request that
/// was cancelled halfway closes it (it may have left a transaction open).
///
/// ```
/// use fsm_runtime::{Outcome, SqliteStore, StateMachine, Store};
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// #[state_machine(table = "doors")]
/// enum Door {
///     #[state(initial)]
///     #[transition(from = Open)]
///     Closed,
///     #[transition(from = Closed)]
///     Open,
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pool = fsm_runtime::sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// fsm_runtime::sqlx::query("CREATE TABLE doors (id INTEGER PRIMARY KEY, state TEXT NOT NULL, version BIGINT NOT NULL)")
///     .execute(&pool)
///     .await?;
/// let store = SqliteStore::<Door>::new(pool).await?;
/// store.create(1).await?;
/// let mut session = store.session();
/// assert!(session.transition(1, Door::Open).await?.is_applied());
/// assert!(matches!(session.transition(1, Door::Open).await?, Outcome::AlreadyApplied { .. }));
/// assert_eq!(session.get(1).await?.version, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Session<M, B: Backend> {
    store: SqlStore<M, B>,
    /// The connection, once the first request took it; `None` again after a database error.
    conn: Option<SqlTx<B>>,
}

impl<M: StateMachine, B: Backend> Session<M, B> {
    pub(crate) fn new(store: SqlStore<M, B>) -> Self {
        Self { store, conn: None }
    }

    /// [`Store::apply`](crate::Store::apply) on the session's connection.
    pub async fn apply(&mut self, request: TransitionRequest<'_, M, SqlTx<B>>) -> Result<Outcome<M>, Error> {
        let traced = traced::apply(B::NAME, &request, false);
        traced.transition(self.apply_untraced(request)).await
    }

    async fn apply_untraced(&mut self, request: TransitionRequest<'_, M, SqlTx<B>>) -> Result<Outcome<M>, Error> {
        // Out of the slot while the request runs: a request dropped halfway (cancelled) drops
        // the connection with it, which closes it at once.
        let mut conn = self.take().await?;
        conn.close_unless_finished();
        let outcome = self.store.apply_bounded(&mut conn, request).await;
        conn.finished();
        self.put_back(conn, is_database_error(&outcome));
        outcome
    }

    /// [`Store::apply_many`](crate::Store::apply_many) on the session's connection: one answer
    /// per request, in order, in the database's one-statement batch where it has one.
    pub async fn apply_many(
        &mut self,
        requests: Vec<TransitionRequest<'_, M, SqlTx<B>>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        let spans: Vec<_> = requests.iter().map(|request| traced::apply(B::NAME, request, false)).collect();
        let answers = match self.take().await {
            Ok(mut conn) => {
                conn.close_unless_finished();
                let answers = self.store.apply_batch_bounded(&mut conn, requests).await;
                conn.finished();
                self.put_back(conn, answers.iter().any(is_database_error));
                answers
            }
            // No connection: each request says so.
            Err(_) => {
                let mut answers = Vec::with_capacity(requests.len());
                for request in requests {
                    answers.push(self.apply_untraced(request).await);
                }
                answers
            }
        };
        let mut traced = Vec::with_capacity(answers.len());
        for (span, answer) in spans.into_iter().zip(answers) {
            traced.push(span.transition(std::future::ready(answer)).await);
        }
        traced
    }

    /// [`Store::transition`](crate::Store::transition) on the session's connection.
    pub async fn transition(&mut self, id: impl Into<EntityId>, to: M) -> Result<Outcome<M>, Error> {
        self.apply(TransitionRequest::to(id, to)).await
    }

    /// [`Store::transition_from`](crate::Store::transition_from) on the session's connection.
    pub async fn transition_from(&mut self, id: impl Into<EntityId>, from: M, to: M) -> Result<Outcome<M>, Error> {
        self.apply(TransitionRequest::from(id, from, to)).await
    }

    /// [`Store::fire`](crate::Store::fire) on the session's connection.
    pub async fn fire(&mut self, id: impl Into<EntityId>, event: M::Event) -> Result<Outcome<M>, Error> {
        self.apply(TransitionRequest::fire(id, event)).await
    }

    /// [`Store::get`](crate::Store::get) on the session's connection.
    pub async fn get(&mut self, id: impl Into<EntityId>) -> Result<Snapshot<M>, Error> {
        let id = id.into();
        let traced = traced::entity::<M>(B::NAME, Operation::Get, &id);
        traced
            .run(async {
                let mut conn = self.take().await?;
                let read = self.store.read_on(&mut conn, &id).await.map(|found| found.now);
                self.put_back(conn, is_database_error(&read));
                read
            })
            .await
    }

    /// The held connection, or a new one from the pool.
    async fn take(&mut self) -> Result<SqlTx<B>, Error> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => self.store.tx().await,
        }
    }

    /// Keeps `conn` for the next request, unless the request left it unusable (a transaction
    /// still open after a failed effect: dropped, its rollback goes with it to the pool) or
    /// failed with a database error, `database_error` (maybe a broken connection: back to the
    /// pool, which checks it).
    fn put_back(&mut self, conn: SqlTx<B>, database_error: bool) {
        if conn.is_reusable() && !database_error {
            self.conn = Some(conn);
        }
    }
}

/// Whether `answer` is a database error (the connection may be broken).
fn is_database_error<T>(answer: &Result<T, Error>) -> bool {
    matches!(answer, Err(Error::Database { .. }))
}
