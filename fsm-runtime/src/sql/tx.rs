//! [`SqlTx`]: the transaction an SQL effect, a keyed operation or a locked entity works in.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx_core::transaction::TransactionManager as _;

use crate::sql::Driver;
use crate::sql::backend::Backend;
use crate::transition::Transition;

/// A pooled connection of backend `B` and the transaction open on it, owned by the crate:
/// what an effect ([`TransitionRequest::effect`](crate::TransitionRequest::effect)), a keyed
/// operation ([`run_once`](crate::Keys::run_once)) and a locked entity
/// ([`LockedEntity::tx`](crate::store::LockedEntity::tx)) receive. It dereferences to the
/// connection, as sqlx's `Transaction` does, so the caller's own statements run in it
/// (`query.execute(&mut **tx)` in an effect, which receives `&mut SqlTx`), and it implements the outbox, the inbox, token redemption and
/// the fence check once for every backend. [`SqlTx::transition`] tells an effect which
/// transition it runs in.
///
/// Dropped while its transaction is open, it rolls the transaction back, as sqlx's does.
///
/// It is also the caller's own transaction in which transitions of several entities and
/// machines commit together ([`SqlStore::within`](crate::store::SqlStore::within)): begin it
/// with [`SqlStore::begin`](crate::store::SqlStore::begin) or [`SqlTx::begin`] (a sqlx
/// `Transaction` cannot lend its connection), run your own statements in it, and commit or roll
/// back. Each request inside runs in a savepoint of its own (sqlx's nested transactions), so a
/// refused or failed request leaves the transaction usable. A request dropped halfway (cancelled,
/// or its effect panicked) leaves it unusable: [`SqlTx::commit`] then rolls back and fails.
///
/// ```
/// use fsm_runtime::sql::SqlTx;
/// use fsm_runtime::sqlx::{self, SqlitePool};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pool = SqlitePool::connect("sqlite::memory:").await?;
/// let mut tx = SqlTx::begin(&pool).await?;
/// sqlx::query("CREATE TABLE notes (body TEXT)").execute(&mut *tx).await?;
/// assert!(tx.transition().is_none());
/// tx.commit().await?;
/// # Ok::<(), sqlx::Error>(())
/// # }).unwrap();
/// ```
pub struct SqlTx<B: Backend> {
    conn: PoolConnection<B>,
    /// The levels opened on the connection and not yet closed: 0 (none), 1 (the transaction),
    /// more (savepoints inside it, one per request inside the caller's transaction).
    depth: usize,
    close_unless_finished: bool,
    /// A request inside this transaction ended halfway (dropped or panicked): what it wrote is
    /// unknown, so nothing commits any more and the connection is closed, not pooled.
    interrupted: bool,
    transition: Option<Transition>,
}

impl<B: Backend> std::fmt::Debug for SqlTx<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTx")
            .field("depth", &self.depth)
            .field("transition", &self.transition)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> SqlTx<B> {
    /// A transaction of the caller's own on a connection of `pool` (to enqueue a message or
    /// record an inbox entry outside a transition).
    pub async fn begin(pool: &sqlx::Pool<B>) -> Result<Self, sqlx::Error> {
        let mut tx = Self::idle(pool.acquire().await?);
        tx.start().await?;
        Ok(tx)
    }

    /// Commits the transaction. After a request inside it was interrupted (see above), rolls
    /// back instead and fails with `sqlx::Error::InvalidArgument`.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.finish_commit().await
    }

    /// Rolls the transaction back (after an interrupted request, by closing the connection).
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        while self.depth > 0 && !self.interrupted {
            self.finish_rollback().await?;
        }
        Ok(())
    }

    /// The transition being applied, for an effect (`None` in a keyed operation, a locked
    /// entity or a transaction of the caller's).
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// A pooled connection with no transaction open yet.
    pub(crate) fn idle(conn: PoolConnection<B>) -> Self {
        Self { conn, depth: 0, close_unless_finished: false, interrupted: false, transition: None }
    }

    /// Whether a transaction is open: a request on it runs inside the caller's transaction.
    pub(crate) fn in_transaction(&self) -> bool {
        self.depth > 0
    }

    /// Begins a transaction with the plain `BEGIN`.
    pub(crate) async fn start(&mut self) -> Result<(), sqlx::Error> {
        B::TransactionManager::begin(&mut self.conn, None).await?;
        self.depth += 1;
        Ok(())
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite: the write lock first).
    pub(crate) async fn start_write(&mut self) -> Result<(), sqlx::Error> {
        let statement = <B::Driver as Driver>::BEGIN_WRITE.map(sqlx::SqlSafeStr::into_sql_str);
        B::TransactionManager::begin(&mut self.conn, statement).await?;
        self.depth += 1;
        Ok(())
    }

    /// Begins the caller's transaction for transitions: a write transaction (SQLite takes the
    /// write lock first instead of failing to upgrade a read lock later), at READ COMMITTED on
    /// MySQL/MariaDB as a claim's (each statement reads the latest commit, as on PostgreSQL, so
    /// a request that lost a race sees the winner's outcome instead of an old snapshot).
    pub(crate) async fn start_for_transitions(&mut self) -> Result<(), sqlx::Error> {
        <B::Driver as Driver>::before_claim(&mut self.conn).await?;
        self.start_write().await
    }

    /// Commits the open transaction (releases the innermost savepoint); the connection stays,
    /// for the request's next statement. Refused once a request inside was interrupted.
    pub(crate) async fn finish_commit(&mut self) -> Result<(), sqlx::Error> {
        self.transition = None;
        if self.interrupted {
            return Err(interrupted());
        }
        // Open until the commit succeeded: a failed one is rolled back at the drop, as sqlx's.
        B::TransactionManager::commit(&mut self.conn).await?;
        self.depth -= 1;
        Ok(())
    }

    /// Rolls the open transaction back (to the innermost savepoint); the connection stays.
    pub(crate) async fn finish_rollback(&mut self) -> Result<(), sqlx::Error> {
        self.transition = None;
        B::TransactionManager::rollback(&mut self.conn).await?;
        self.depth -= 1;
        Ok(())
    }

    /// Names the transition the effects about to run belong to.
    pub(crate) fn set_transition(&mut self, transition: Transition) {
        self.transition = Some(transition);
    }

    /// Until [`SqlTx::finished`], a drop closes the connection instead of pooling it: a request
    /// cancelled in the middle of a multi-statement batch may have left a transaction open on
    /// it that no `BEGIN` of sqlx's knows of, and closing the connection rolls it back.
    pub(crate) fn close_unless_finished(&mut self) {
        self.close_unless_finished = true;
    }

    /// Whether the connection may serve another request: no transaction open, no request
    /// interrupted or cancelled halfway on it.
    pub(crate) fn is_reusable(&self) -> bool {
        self.depth == 0 && !self.close_unless_finished && !self.interrupted
    }

    /// The connection must serve no other request (a session setting of the request could not
    /// be given back): closed when dropped, not pooled.
    pub(crate) fn discard(&mut self) {
        self.interrupted = true;
    }

    /// The request ran to its end (with an outcome or an error): the connection goes back to
    /// the pool as usual.
    pub(crate) fn finished(&mut self) {
        self.close_unless_finished = false;
    }
}

/// The error of a commit after an interrupted request.
fn interrupted() -> sqlx::Error {
    sqlx::Error::InvalidArgument(
        "a request inside this transaction was interrupted halfway (cancelled or panicked): \
         the transaction can only roll back"
            .to_owned(),
    )
}

/// A request running inside the caller's transaction. It restores what it changed when it
/// [leaves](Nested::leave) (the savepoints an error left open are rolled back, the transition
/// an enclosing effect sees is restored); dropped before that, the request was cancelled or
/// panicked halfway, and the transaction is marked interrupted.
pub(crate) struct Nested<'t, B: Backend> {
    tx: &'t mut SqlTx<B>,
    depth: usize,
    transition: Option<Transition>,
    left: bool,
}

impl<'t, B: Backend> Nested<'t, B> {
    /// The request begins on `tx`.
    pub(crate) fn enter(tx: &'t mut SqlTx<B>) -> Self {
        let (depth, transition) = (tx.depth, tx.transition.clone());
        Self { tx, depth, transition, left: false }
    }

    /// The caller's transaction, for the request's statements.
    pub(crate) fn tx(&mut self) -> &mut SqlTx<B> {
        self.tx
    }

    /// The request ended: rolls back the savepoints it left open.
    pub(crate) async fn leave(mut self) -> Result<(), sqlx::Error> {
        while self.tx.depth > self.depth {
            self.tx.finish_rollback().await?;
        }
        self.tx.transition = self.transition.take();
        self.left = true;
        Ok(())
    }
}

impl<B: Backend> Drop for Nested<'_, B> {
    fn drop(&mut self) {
        if !self.left {
            self.tx.interrupted = true;
        }
    }
}

impl<B: Backend> Deref for SqlTx<B> {
    type Target = B::Connection;

    fn deref(&self) -> &B::Connection {
        &self.conn
    }
}

impl<B: Backend> DerefMut for SqlTx<B> {
    fn deref_mut(&mut self) -> &mut B::Connection {
        &mut self.conn
    }
}

impl<B: Backend> Drop for SqlTx<B> {
    fn drop(&mut self) {
        for _ in 0..self.depth {
            B::TransactionManager::start_rollback(&mut self.conn);
        }
        if self.close_unless_finished || self.interrupted {
            self.conn.close_on_drop();
        }
    }
}
