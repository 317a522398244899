//! The MySQL / MariaDB adapter: [`MySqlStore`].
//!
//! MySQL has no data-modifying CTE and no `UPDATE … RETURNING`, so the applied path is a short
//! transaction: `SELECT state, version` (autocommit) · `BEGIN` · `UPDATE … WHERE id = ? AND
//! state = ? AND version = ?` · `INSERT INTO fsm_history` · effects · `COMMIT`. The no-op path is
//! the `SELECT` alone. sqlx connects with `CLIENT_FOUND_ROWS`, and the compare-and-set always
//! changes `version`, so "rows affected" is the number of rows matched: a no-op is never taken
//! for an applied update or the other way round.

use crate::store::sql::SqlStore;
use crate::store::sql::backend::impl_backend;
use crate::store::sql::dialect::Dialect;
use crate::store::sql::outbox::impl_outbox;

/// A [`Store`](crate::Store) on MySQL or MariaDB.
pub type MySqlStore<M> = SqlStore<M, sqlx::MySql>;

impl_backend!(sqlx::MySql, Dialect::MySql, |_conn, _sql, _args| {
    Err(sqlx::Error::Configuration("MySQL has no one-statement transition; the store never asks for one".into()))
});

impl_outbox!(sqlx::MySqlConnection, sqlx::MySql);
