//! What the SQL code of tokens, leases and fences shares: the runtime's own tables of these
//! concepts (created by their constructors from `migrations/<backend>/0010..0012_*.sql`), the
//! database clock every statement reads, and [`SqlTables`], the three ways of running a
//! statement on each backend.
//!
//! Times are read from the database's clock inside each statement (never bound from the
//! caller's), so that processes on machines whose clocks disagree agree on when a token or a
//! lease expires.

use std::future::Future;

use crate::store::sql::Backend;
use crate::store::sql::db_error::is_unique_violation;
use crate::store::sql::dialect::Dialect;

/// PostgreSQL's clock in microseconds since the Unix epoch (`clock_timestamp()`: the time of
/// the statement, not of the transaction's start).
macro_rules! now_postgres {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT"
    };
}

/// MySQL's and MariaDB's clock in microseconds since the Unix epoch, independent of the
/// session's time zone.
macro_rules! now_mysql {
    () => {
        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))"
    };
}

/// SQLite's clock in microseconds since the Unix epoch (the process's clock, with millisecond
/// resolution; constant within one statement).
macro_rules! now_sqlite {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
    };
}

pub(crate) use {now_mysql, now_postgres, now_sqlite};

/// A runtime-owned table of this module's concepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `fsm_tokens`.
    Tokens,
    /// `fsm_leases`.
    Leases,
    /// `fsm_fences`.
    Fences,
}

impl Table {
    /// The table's name.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Tokens => "fsm_tokens",
            Self::Leases => "fsm_leases",
            Self::Fences => "fsm_fences",
        }
    }

    /// The script that creates the table in `dialect` (idempotent: `CREATE … IF NOT EXISTS`).
    const fn script(self, dialect: Dialect) -> &'static str {
        match (dialect, self) {
            (Dialect::Sqlite, Self::Tokens) => include_str!("../migrations/sqlite/0010_tokens.sql"),
            (Dialect::Sqlite, Self::Leases) => include_str!("../migrations/sqlite/0011_leases.sql"),
            (Dialect::Sqlite, Self::Fences) => include_str!("../migrations/sqlite/0012_fences.sql"),
            (Dialect::Postgres, Self::Tokens) => include_str!("../migrations/postgres/0010_tokens.sql"),
            (Dialect::Postgres, Self::Leases) => include_str!("../migrations/postgres/0011_leases.sql"),
            (Dialect::Postgres, Self::Fences) => include_str!("../migrations/postgres/0012_fences.sql"),
            (Dialect::MySql, Self::Tokens) => include_str!("../migrations/mysql/0010_tokens.sql"),
            (Dialect::MySql, Self::Leases) => include_str!("../migrations/mysql/0011_leases.sql"),
            (Dialect::MySql, Self::Fences) => include_str!("../migrations/mysql/0012_fences.sql"),
        }
    }
}

/// The name of a backend, for error messages.
pub(crate) const fn backend_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "SQLite",
        Dialect::Postgres => "PostgreSQL",
        Dialect::MySql => "MySQL",
    }
}

/// Creates `table` on `pool` if it does not exist, one statement after another (statements end
/// with `;` at the end of a line).
pub(crate) async fn create_table<B: SqlTables>(pool: &sqlx::Pool<B>, table: Table) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let statements = table.script(B::DIALECT).split(";\n").map(str::trim).filter(|s| !s.is_empty());
    for statement in statements {
        // Two processes creating a table at once: PostgreSQL may report a duplicate type for
        // the loser of `CREATE TABLE IF NOT EXISTS`; the table then exists.
        if let Err(error) = B::execute_plain(&mut conn, statement).await
            && !is_unique_violation(&error)
        {
            return Err(error);
        }
    }
    Ok(())
}

/// A bound parameter of a statement on a runtime-owned table.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// A text value.
    Text(&'a str),
    /// A `BIGINT`.
    Int(i64),
}

/// The SQL backends of tokens, leases and fences: `sqlx::Sqlite`, `sqlx::Postgres` and
/// `sqlx::MySql`, as their cargo features enable them. Sealed (it extends the sealed
/// [`Backend`]).
pub trait SqlTables: Backend {
    /// Runs `sql` with `args`; the rows affected (matched, on MySQL: sqlx connects with
    /// `CLIENT_FOUND_ROWS`).
    #[doc(hidden)]
    fn run(
        conn: &mut Self::Connection,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Runs `sql` with `args`; the first column of the first row, as `BIGINT`.
    #[doc(hidden)]
    fn fetch_i64(
        conn: &mut Self::Connection,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send;

    /// Runs `sql` with `args`; the first row as (`BIGINT`, text).
    #[doc(hidden)]
    fn fetch_i64_text(
        conn: &mut Self::Connection,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<(i64, String)>, sqlx::Error>> + Send;
}

/// Implements [`SqlTables`] for one sqlx database.
macro_rules! impl_sql_tables {
    ($db:ty) => {
        impl SqlTables for $db {
            async fn run(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &'static str,
                args: &[Arg<'_>],
            ) -> Result<u64, sqlx::Error> {
                let mut query = sqlx::query::<$db>(sql);
                for arg in args {
                    query = match *arg {
                        Arg::Text(value) => query.bind(value),
                        Arg::Int(value) => query.bind(value),
                    };
                }
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn fetch_i64(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &'static str,
                args: &[Arg<'_>],
            ) -> Result<Option<i64>, sqlx::Error> {
                use sqlx::Row as _;
                let mut query = sqlx::query::<$db>(sql);
                for arg in args {
                    query = match *arg {
                        Arg::Text(value) => query.bind(value),
                        Arg::Int(value) => query.bind(value),
                    };
                }
                let row = query.fetch_optional(&mut *conn).await?;
                row.map(|row| row.try_get(0)).transpose()
            }

            async fn fetch_i64_text(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &'static str,
                args: &[Arg<'_>],
            ) -> Result<Option<(i64, String)>, sqlx::Error> {
                use sqlx::Row as _;
                let mut query = sqlx::query::<$db>(sql);
                for arg in args {
                    query = match *arg {
                        Arg::Text(value) => query.bind(value),
                        Arg::Int(value) => query.bind(value),
                    };
                }
                let row = query.fetch_optional(&mut *conn).await?;
                row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
            }
        }
    };
}

#[cfg(feature = "sqlite")]
impl_sql_tables!(sqlx::Sqlite);
#[cfg(feature = "postgres")]
impl_sql_tables!(sqlx::Postgres);
#[cfg(feature = "mysql")]
impl_sql_tables!(sqlx::MySql);

/// The longest time to live a statement binds: a century, so that `now + ttl` fits a `BIGINT`.
const MAX_MICROS: i64 = 100 * 365 * 86_400 * 1_000_000;

/// A duration in microseconds, at least 1, at most a century.
pub(crate) fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX).clamp(1, MAX_MICROS)
}
