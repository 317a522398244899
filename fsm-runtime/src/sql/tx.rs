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
    open: bool,
    close_unless_finished: bool,
    transition: Option<Transition>,
}

impl<B: Backend> std::fmt::Debug for SqlTx<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTx").field("open", &self.open).field("transition", &self.transition).finish_non_exhaustive()
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

    /// Commits the transaction.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.finish_commit().await
    }

    /// Rolls the transaction back.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.finish_rollback().await
    }

    /// The transition being applied, for an effect (`None` in a keyed operation, a locked
    /// entity or a transaction of the caller's).
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// A pooled connection with no transaction open yet.
    pub(crate) fn idle(conn: PoolConnection<B>) -> Self {
        Self { conn, open: false, close_unless_finished: false, transition: None }
    }

    /// Begins a transaction with the plain `BEGIN`.
    pub(crate) async fn start(&mut self) -> Result<(), sqlx::Error> {
        B::TransactionManager::begin(&mut self.conn, None).await?;
        self.open = true;
        Ok(())
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite: the write lock first).
    pub(crate) async fn start_write(&mut self) -> Result<(), sqlx::Error> {
        let statement = <B::Driver as Driver>::BEGIN_WRITE.map(sqlx::SqlSafeStr::into_sql_str);
        B::TransactionManager::begin(&mut self.conn, statement).await?;
        self.open = true;
        Ok(())
    }

    /// Commits the open transaction; the connection stays, for the request's next statement.
    pub(crate) async fn finish_commit(&mut self) -> Result<(), sqlx::Error> {
        self.transition = None;
        // Open until the commit succeeded: a failed one is rolled back at the drop, as sqlx's.
        B::TransactionManager::commit(&mut self.conn).await?;
        self.open = false;
        Ok(())
    }

    /// Rolls the open transaction back; the connection stays.
    pub(crate) async fn finish_rollback(&mut self) -> Result<(), sqlx::Error> {
        self.transition = None;
        B::TransactionManager::rollback(&mut self.conn).await?;
        self.open = false;
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

    /// The request ran to its end (with an outcome or an error): the connection goes back to
    /// the pool as usual.
    pub(crate) fn finished(&mut self) {
        self.close_unless_finished = false;
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
        if self.open {
            B::TransactionManager::start_rollback(&mut self.conn);
        }
        if self.close_unless_finished {
            self.conn.close_on_drop();
        }
    }
}
