//! [`SqlLeases`]: leases in the runtime-owned table `fsm_leases`.
//!
//! Statements (every value bound; times from the database's clock, so that processes whose
//! clocks disagree agree on expiry):
//! - acquire on PostgreSQL and SQLite: one upsert that inserts the row, or takes it over only
//!   if it expired, incrementing `fence` in the same statement, and returns the new fence (no
//!   row: held);
//! - acquire on MySQL/MariaDB (no `RETURNING` on an upsert): the same upsert as `INSERT … ON
//!   DUPLICATE KEY UPDATE` with `IF(expired, new, old)` on each column, then one `SELECT` of the
//!   row's fence and nonce: the acquisition succeeded if the nonce is the one it wrote;
//! - extend and release: one `UPDATE … WHERE resource = ? AND owner = ? AND fence = ? AND
//!   expires_at_micros > now` (compare-and-set on the holder). A release sets the expiry to 0
//!   and keeps the row, so that the fence keeps growing.
//!
//! Never delete `fsm_leases` rows: a deleted row is inserted again with fence 1, and the
//! fences in `fsm_fences` ([`fence::guard`](crate::fence::guard)) then refuse every new holder
//! of that resource as stale. The table keeps one row per resource ever leased.

use std::time::{Duration, Instant};

use crate::lock::{ExtendOutcome, FencingToken, Lease, LeaseStore, LockError, ReleaseOutcome, check_names};
use crate::sql_tables::{
    Arg, SqlTables, Table, backend_name, create_table, micros, now_mysql, now_postgres, now_sqlite,
};
use crate::store::sql::db_error::is_transient;
use crate::store::sql::dialect::Dialect;

/// The statements of one dialect.
struct LeaseStatements {
    /// Parameters: resource, owner, ttl (µs), nonce.
    acquire: &'static str,
    /// MySQL only: parameter resource; answers fence, nonce.
    read: Option<&'static str>,
    /// Parameters: ttl (µs), resource, owner, fence.
    extend: &'static str,
    /// Parameters: resource, owner, fence.
    release: &'static str,
}

impl LeaseStatements {
    const fn of(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Postgres => Self {
                acquire: concat!(
                    "INSERT INTO fsm_leases (resource, owner, fence, expires_at_micros, nonce) VALUES ($1, $2, 1, ",
                    now_postgres!(),
                    " + $3, $4) ON CONFLICT (resource) DO UPDATE SET owner = EXCLUDED.owner, \
                     fence = fsm_leases.fence + 1, expires_at_micros = EXCLUDED.expires_at_micros, \
                     nonce = EXCLUDED.nonce WHERE fsm_leases.expires_at_micros <= ",
                    now_postgres!(),
                    " RETURNING fence"
                ),
                read: None,
                extend: concat!(
                    "UPDATE fsm_leases SET expires_at_micros = ",
                    now_postgres!(),
                    " + $1 WHERE resource = $2 AND owner = $3 AND fence = $4 AND expires_at_micros > ",
                    now_postgres!()
                ),
                release: concat!(
                    "UPDATE fsm_leases SET expires_at_micros = 0 \
                     WHERE resource = $1 AND owner = $2 AND fence = $3 AND expires_at_micros > ",
                    now_postgres!()
                ),
            },
            Dialect::Sqlite => Self {
                acquire: concat!(
                    "INSERT INTO fsm_leases (resource, owner, fence, expires_at_micros, nonce) VALUES (?, ?, 1, ",
                    now_sqlite!(),
                    " + ?, ?) ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, \
                     fence = fsm_leases.fence + 1, expires_at_micros = excluded.expires_at_micros, \
                     nonce = excluded.nonce WHERE fsm_leases.expires_at_micros <= ",
                    now_sqlite!(),
                    " RETURNING fence"
                ),
                read: None,
                extend: concat!(
                    "UPDATE fsm_leases SET expires_at_micros = ",
                    now_sqlite!(),
                    " + ? WHERE resource = ? AND owner = ? AND fence = ? AND expires_at_micros > ",
                    now_sqlite!()
                ),
                release: concat!(
                    "UPDATE fsm_leases SET expires_at_micros = 0 \
                     WHERE resource = ? AND owner = ? AND fence = ? AND expires_at_micros > ",
                    now_sqlite!()
                ),
            },
            // The assignments run left to right and see the columns already assigned: the
            // expiry, which every condition reads, is assigned last.
            Dialect::MySql => Self {
                acquire: concat!(
                    "INSERT INTO fsm_leases (resource, owner, fence, expires_at_micros, nonce) VALUES (?, ?, 1, ",
                    now_mysql!(),
                    " + ?, ?) ON DUPLICATE KEY UPDATE owner = IF(expires_at_micros <= ",
                    now_mysql!(),
                    ", VALUES(owner), owner), fence = IF(expires_at_micros <= ",
                    now_mysql!(),
                    ", fence + 1, fence), nonce = IF(expires_at_micros <= ",
                    now_mysql!(),
                    ", VALUES(nonce), nonce), expires_at_micros = IF(expires_at_micros <= ",
                    now_mysql!(),
                    ", VALUES(expires_at_micros), expires_at_micros)"
                ),
                read: Some("SELECT fence, nonce FROM fsm_leases WHERE resource = ?"),
                extend: concat!(
                    "UPDATE fsm_leases SET expires_at_micros = ",
                    now_mysql!(),
                    " + ? WHERE resource = ? AND owner = ? AND fence = ? AND expires_at_micros > ",
                    now_mysql!()
                ),
                release: concat!(
                    "UPDATE fsm_leases SET expires_at_micros = 0 \
                     WHERE resource = ? AND owner = ? AND fence = ? AND expires_at_micros > ",
                    now_mysql!()
                ),
            },
        }
    }
}

/// Leases in an SQL database (SQLite, PostgreSQL, MySQL/MariaDB), in the runtime-owned table
/// `fsm_leases`. [`SqlLeases::new`] creates it if missing, and `fsm_fences` too, which
/// [`fence::guard`](crate::fence::guard) writes.
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::lock::{LeaseStore, SqlLeases};
/// use fsm_runtime::sqlx::SqlitePool;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let leases = SqlLeases::new(SqlitePool::connect("sqlite::memory:").await?).await?;
/// let lease = leases.try_acquire("nightly-report", "host-1", Duration::from_secs(30)).await?;
/// assert!(lease.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct SqlLeases<B: SqlTables> {
    pool: sqlx::Pool<B>,
}

impl<B: SqlTables> Clone for SqlLeases<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone() }
    }
}

impl<B: SqlTables> std::fmt::Debug for SqlLeases<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLeases").field("backend", &backend_name(B::DIALECT)).finish_non_exhaustive()
    }
}

/// Wraps a driver error of `operation` on the lease of `resource`.
fn backend_error<B: SqlTables>(resource: &str, operation: &'static str, error: sqlx::Error) -> LockError {
    LockError::Backend {
        backend: backend_name(B::DIALECT),
        resource: resource.to_owned(),
        operation,
        retryable: is_transient(&error),
        source: Box::new(error),
    }
}

impl<B: SqlTables> SqlLeases<B> {
    /// Leases in the database behind `pool`; creates `fsm_leases` and `fsm_fences` if missing.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, LockError> {
        for table in [Table::Leases, Table::Fences] {
            create_table::<B>(&pool, table).await.map_err(|e| backend_error::<B>(table.name(), "create table", e))?;
        }
        Ok(Self { pool })
    }

    /// Connects to `url` with a default pool whose connection attempts give up after 5 seconds
    /// (a server that is down is a [`LockError::Connect`], not a hang), and calls
    /// [`SqlLeases::new`].
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let pool = crate::store::sql::pool_options::<B>()
            .connect(url)
            .await
            .map_err(|e| LockError::Connect { backend: backend_name(B::DIALECT), source: Box::new(e) })?;
        Self::new(pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<B> {
        &self.pool
    }

    async fn conn(&self, resource: &str, operation: &'static str) -> Result<sqlx::pool::PoolConnection<B>, LockError> {
        self.pool.acquire().await.map_err(|e| backend_error::<B>(resource, operation, e))
    }
}

impl<B: SqlTables> LeaseStore for SqlLeases<B> {
    async fn try_acquire(&self, resource: &str, owner: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        check_names(resource, owner)?;
        let nonce = crate::random::random_hex(16)
            .map_err(|e| LockError::NoRandomness { resource: resource.to_owned(), source: Box::new(e) })?;
        let statements = LeaseStatements::of(B::DIALECT);
        let error = |e| backend_error::<B>(resource, "acquire", e);
        let mut conn = self.conn(resource, "acquire").await?;
        let sent_at = Instant::now();
        let args = [Arg::Text(resource), Arg::Text(owner), Arg::Int(micros(ttl)), Arg::Text(&nonce)];
        let fence = match statements.read {
            None => B::fetch_i64(&mut conn, statements.acquire, &args).await.map_err(error)?,
            Some(read) => {
                B::run(&mut conn, statements.acquire, &args).await.map_err(error)?;
                match B::fetch_i64_text(&mut conn, read, &[Arg::Text(resource)]).await.map_err(error)? {
                    Some((fence, written)) if written == nonce => Some(fence),
                    _ => None,
                }
            }
        };
        Ok(fence.map(|fence| Lease::new(resource, owner, FencingToken::new(fence), sent_at, ttl)))
    }

    async fn extend(&self, lease: &mut Lease, ttl: Duration) -> Result<ExtendOutcome, LockError> {
        let mut conn = self.conn(lease.resource(), "extend").await?;
        let sent_at = Instant::now();
        let args = [
            Arg::Int(micros(ttl)),
            Arg::Text(lease.resource()),
            Arg::Text(lease.owner()),
            Arg::Int(lease.fence().value()),
        ];
        let matched = B::run(&mut conn, LeaseStatements::of(B::DIALECT).extend, &args)
            .await
            .map_err(|e| backend_error::<B>(lease.resource(), "extend", e))?;
        if matched == 0 {
            return Ok(ExtendOutcome::NotHeld);
        }
        lease.extended(sent_at, ttl);
        Ok(ExtendOutcome::Extended)
    }

    async fn release(&self, lease: &Lease) -> Result<ReleaseOutcome, LockError> {
        let mut conn = self.conn(lease.resource(), "release").await?;
        let args = [Arg::Text(lease.resource()), Arg::Text(lease.owner()), Arg::Int(lease.fence().value())];
        let matched = B::run(&mut conn, LeaseStatements::of(B::DIALECT).release, &args)
            .await
            .map_err(|e| backend_error::<B>(lease.resource(), "release", e))?;
        Ok(if matched == 0 { ReleaseOutcome::NotHeld } else { ReleaseOutcome::Released })
    }
}
