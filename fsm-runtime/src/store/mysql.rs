//! The MySQL / MariaDB adapter: [`MySqlStore`].
//!
//! MySQL has no data-modifying CTE, no `UPDATE … RETURNING`, and prepared statements cannot be
//! batched, so the one-round-trip transition is a stored procedure the store creates when it is
//! built (`store/sql/mysql_procedure.rs`): the applied path and the no-op path are one `CALL`.
//! Where the server does not let the store create it, and for transitions with effects or an
//! idempotency key, the applied path is a short transaction: `SELECT state, version`
//! (autocommit) · `BEGIN` · `UPDATE … WHERE id = ? AND state = ? AND version = ?` · `INSERT INTO
//! fsm_history` · effects · `COMMIT`; the no-op path the `SELECT` alone. sqlx connects with
//! `CLIENT_FOUND_ROWS`, and the compare-and-set always changes `version`, so "rows affected" is
//! the number of rows matched: a no-op is never taken for an applied update or the other way
//! round.
use crate::store::sql::SqlStore;
use crate::store::sql::backend::{OneStatementRows, impl_backend};
use crate::store::sql::dialect::Dialect;
use crate::store::sql::outbox::impl_outbox;

/// A [`Store`](crate::Store) on MySQL or MariaDB.
pub type MySqlStore<M> = SqlStore<M, sqlx::MySql>;

impl_backend!(sqlx::MySql, Dialect::MySql, |conn, sql, args| {
    use sqlx::Row as _;
    let sources = serde_json::to_string(args.sources).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let query = bind_transition(
        bind_id(sqlx::query::<sqlx::MySql>(sqlx::AssertSqlSafe(sql.clone())), args.id).bind(sources),
        args,
    );
    let mut answer = OneStatementRows::default();
    for row in query.fetch_all(&mut *conn).await? {
        let state: Option<String> = row.try_get(1)?;
        let version: Option<i64> = row.try_get(2)?;
        let found = state.zip(version);
        answer.take(row.try_get::<i64, _>(0)? == 1, found);
    }
    Ok(answer)
});

impl_outbox!(sqlx::MySqlConnection, sqlx::MySql);
