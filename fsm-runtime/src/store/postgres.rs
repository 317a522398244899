//! The PostgreSQL adapter: [`PostgresStore`].
//!
//! The applied path is one statement, one round trip: a CTE that locks the row if it is in a
//! legal source of the target, updates it, and inserts the history row from what the update
//! returned. When it matches nothing, the same statement returns the row's state and version,
//! which say why: the no-op path is that one statement too (a keyed request reads the row and
//! its key once more, to tell a replay of this very request from another's). With effects,
//! the statement runs inside `BEGIN` … `COMMIT` with the effects.

use crate::store::sql::SqlStore;
use crate::store::sql::backend::{OneStatementRows, impl_backend};
use crate::store::sql::dialect::Dialect;
use crate::store::sql::outbox::impl_outbox;

/// A [`Store`](crate::Store) on PostgreSQL (and the databases that speak its protocol and SQL).
pub type PostgresStore<M> = SqlStore<M, sqlx::Postgres>;

impl_backend!(sqlx::Postgres, Dialect::Postgres, |conn, sql, args| {
    use sqlx::Row as _;
    let query = bind_transition(
        bind_id(sqlx::query::<sqlx::Postgres>(sqlx::AssertSqlSafe(sql.clone())), args.id).bind(args.sources),
        args,
    );
    let query = match args.key {
        Some((key, fingerprint)) => query.bind(key.source()).bind(key.seq()).bind(fingerprint.as_str()),
        None => query,
    };
    let mut answer = OneStatementRows::default();
    for row in query.fetch_all(&mut *conn).await? {
        let found = Some((row.try_get(1)?, row.try_get(2)?));
        answer.take(row.try_get::<bool, _>(0)?, found);
    }
    Ok(answer)
});

impl_outbox!(sqlx::PgConnection, sqlx::Postgres);
