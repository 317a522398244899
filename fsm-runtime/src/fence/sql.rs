//! The fence check on the SQL connections, in the runtime-owned table `fsm_fences`.

use crate::fence::{CheckFence, FenceError, StaleFencingToken};
use crate::lock::FencingToken;
use crate::sql_tables::{Arg, SqlTables, Table, backend_name};
use crate::store::sql::dialect::Dialect;

/// The statements of one dialect. Parameters: resource, token; `read`: resource.
struct FenceStatements {
    /// PostgreSQL, SQLite: returns a row only if the token was accepted. MySQL: raises the
    /// highest to the token if it is higher, returns nothing.
    raise: &'static str,
    /// The highest token (a locking read where the database has one).
    read: &'static str,
    /// Whether `raise` returns a row when it accepts the token.
    returns: bool,
}

impl FenceStatements {
    const fn of(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Postgres => Self {
                raise: "INSERT INTO fsm_fences (resource, highest) VALUES ($1, $2) ON CONFLICT (resource) \
                        DO UPDATE SET highest = EXCLUDED.highest WHERE fsm_fences.highest <= EXCLUDED.highest \
                        RETURNING highest",
                read: "SELECT highest FROM fsm_fences WHERE resource = $1 FOR UPDATE",
                returns: true,
            },
            Dialect::Sqlite => Self {
                raise: "INSERT INTO fsm_fences (resource, highest) VALUES (?, ?) ON CONFLICT (resource) \
                        DO UPDATE SET highest = excluded.highest WHERE fsm_fences.highest <= excluded.highest \
                        RETURNING highest",
                read: "SELECT highest FROM fsm_fences WHERE resource = ?",
                returns: true,
            },
            Dialect::MySql => Self {
                raise: "INSERT INTO fsm_fences (resource, highest) VALUES (?, ?) \
                        ON DUPLICATE KEY UPDATE highest = GREATEST(highest, VALUES(highest))",
                read: "SELECT highest FROM fsm_fences WHERE resource = ? FOR UPDATE",
                returns: false,
            },
        }
    }
}

/// Creates `fsm_fences` on `pool` if it does not exist (for fences whose leases live
/// elsewhere, such as Redis; [`SqlLeases::new`](crate::lock::SqlLeases::new) does it too).
pub async fn create_table<B: SqlTables>(pool: &sqlx::Pool<B>) -> Result<(), FenceError> {
    crate::sql_tables::create_table::<B>(pool, Table::Fences).await.map_err(|e| FenceError::Backend {
        backend: backend_name(B::DIALECT),
        resource: "*".to_owned(),
        operation: "create table",
        source: Box::new(e),
    })
}

/// The check of [`CheckFence::check_fence`] on backend `B`.
async fn check<B: SqlTables>(conn: &mut B::Connection, resource: &str, token: FencingToken) -> Result<(), FenceError> {
    let statements = FenceStatements::of(B::DIALECT);
    let error = |e: sqlx::Error| FenceError::Backend {
        backend: backend_name(B::DIALECT),
        resource: resource.to_owned(),
        operation: "check",
        source: Box::new(e),
    };
    let raise = [Arg::Text(resource), Arg::Int(token.value())];
    if statements.returns {
        if B::fetch_i64(conn, statements.raise, &raise).await.map_err(error)?.is_some() {
            return Ok(());
        }
    } else {
        B::run(conn, statements.raise, &raise).await.map_err(error)?;
    }
    // The row exists (the upsert found or wrote it) and is locked by this transaction.
    let highest = B::fetch_i64(conn, statements.read, &[Arg::Text(resource)]).await.map_err(error)?;
    let highest = FencingToken::new(highest.unwrap_or(i64::MAX));
    // PostgreSQL and SQLite refused the token when the upsert returned no row.
    if statements.returns || highest > token {
        return Err(FenceError::Stale(StaleFencingToken { resource: resource.to_owned(), token, highest }));
    }
    Ok(())
}

/// Implements [`CheckFence`] for the connection type of one backend.
macro_rules! impl_check_fence {
    ($conn:ty, $db:ty) => {
        impl CheckFence for $conn {
            async fn check_fence(&mut self, resource: &str, token: FencingToken) -> Result<(), FenceError> {
                check::<$db>(self, resource, token).await
            }
        }
    };
}

#[cfg(feature = "sqlite")]
impl_check_fence!(sqlx::SqliteConnection, sqlx::Sqlite);
#[cfg(feature = "postgres")]
impl_check_fence!(sqlx::PgConnection, sqlx::Postgres);
#[cfg(feature = "mysql")]
impl_check_fence!(sqlx::MySqlConnection, sqlx::MySql);
