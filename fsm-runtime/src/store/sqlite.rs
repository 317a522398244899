//! The SQLite adapter: [`SqliteStore`], embedded, no server needed.
//!
//! sqlx runs each SQLite connection on a worker thread, and every call is a hop to that thread
//! and back, so the cost is counted in calls. A transition without a key or effects is two
//! calls when it applies: `SELECT state, version`, then the batch `BEGIN IMMEDIATE` · `INSERT
//! INTO fsm_history … SELECT … FROM t WHERE id = ? AND state IN (sources) RETURNING …` · `UPDATE
//! t … WHERE id = ? AND state IN (sources)` · `SELECT state, version` · `COMMIT`, which takes
//! the write lock first so that its statements see one row (and returns that row if another
//! writer moved it since the read). A no-op (already in the target, or refused) is the `SELECT`
//! alone: an empty write transaction costs SQLite more than a read, so the read comes first.
//! With a key or effects (which run between the statements, in the same transaction): `SELECT
//! state, version` · `BEGIN` · [key `INSERT`] · `UPDATE … WHERE id = ? AND state = ? AND version
//! = ?` · `INSERT INTO fsm_history` · effects · `COMMIT`; no-op: the `SELECT` alone. SQLite
//! allows one writer at a time, so the read-then-compare-and-set costs no extra contention, and
//! the compare-and-set on the observed state and version keeps it exact.

use crate::store::sql::SqlStore;
use crate::store::sql::backend::{OneStatementRows, impl_backend};
use crate::store::sql::dialect::Dialect;
use crate::store::sql::outbox::impl_outbox;

/// A [`Store`](crate::Store) on SQLite.
pub type SqliteStore<M> = SqlStore<M, sqlx::Sqlite>;

impl_backend!(sqlx::Sqlite, Dialect::Sqlite, |conn, sql, args| {
    use sqlx::Row as _;
    let sources = serde_json::to_string(args.sources).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let query = bind_transition(
        bind_id(sqlx::query::<sqlx::Sqlite>(sqlx::AssertSqlSafe(sql.clone())), args.id).bind(sources),
        args,
    );
    let rows = match query.fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(error) => {
            // The batch stopped at the failing statement, maybe inside its transaction: end it
            // (an error here only means no transaction was open).
            let _ = sqlx::query::<sqlx::Sqlite>("ROLLBACK").execute(&mut *conn).await;
            return Err(error);
        }
    };
    let mut answer = OneStatementRows::default();
    for row in rows {
        let found = Some((row.try_get(1)?, row.try_get(2)?));
        answer.take(row.try_get::<i64, _>(0)? == 1, found);
    }
    Ok(answer)
});

impl_outbox!(sqlx::SqliteConnection, sqlx::Sqlite);
