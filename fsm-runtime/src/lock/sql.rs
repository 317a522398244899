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

use crate::clock::micros;
use crate::lock::{ExtendOutcome, FencingToken, Lease, LeaseStore, LockError, ReleaseOutcome, check_names};
use crate::sql::Driver;
use crate::sql::{Backend, LeaseRequest, is_transient, leases};

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
pub struct SqlLeases<B: Backend> {
    pool: sqlx::Pool<B>,
}

impl<B: Backend> Clone for SqlLeases<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone() }
    }
}

impl<B: Backend> std::fmt::Debug for SqlLeases<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLeases").field("backend", &B::NAME).finish_non_exhaustive()
    }
}

/// Wraps a driver error of `operation` on the lease of `resource`.
fn backend_error<B: Backend>(resource: &str, operation: &'static str, error: sqlx::Error) -> LockError {
    LockError::Backend {
        backend: B::NAME,
        resource: resource.to_owned(),
        operation,
        retryable: is_transient(&error),
        source: Box::new(error),
    }
}

impl<B: Backend> SqlLeases<B> {
    /// Leases in the database behind `pool`; creates or upgrades the runtime's tables
    /// (`fsm_leases` and `fsm_fences` among them).
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, LockError> {
        crate::sql::migrate::migrate::<B>(&pool).await.map_err(|e| backend_error::<B>("*", "migrate", e))?;
        Ok(Self { pool })
    }

    /// Connects to `url` with a default pool whose connection attempts give up after 5 seconds
    /// (a server that is down is a [`LockError::Connect`], not a hang), and calls
    /// [`SqlLeases::new`].
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let pool = crate::sql::pool_options::<B>()
            .connect(url)
            .await
            .map_err(|e| LockError::Connect { backend: B::NAME, source: Box::new(e) })?;
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

impl<B: Backend> LeaseStore for SqlLeases<B> {
    async fn try_acquire(&self, resource: &str, owner: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        check_names(resource, owner)?;
        let nonce = crate::random::random_hex(16)
            .map_err(|e| LockError::NoRandomness { resource: resource.to_owned(), source: Box::new(e) })?;
        let error = |e| backend_error::<B>(resource, "acquire", e);
        let mut conn = self.conn(resource, "acquire").await?;
        let sent_at = Instant::now();
        let request = LeaseRequest { resource, owner, ttl_micros: micros(ttl), nonce: &nonce };
        let fence = <B::Driver as Driver>::acquire_lease(&mut conn, request).await.map_err(error)?;
        Ok(fence.map(|fence| Lease::new(resource, owner, FencingToken::new(fence), sent_at, ttl)))
    }

    async fn extend(&self, lease: &mut Lease, ttl: Duration) -> Result<ExtendOutcome, LockError> {
        let mut conn = self.conn(lease.resource(), "extend").await?;
        let sent_at = Instant::now();
        let (resource, owner, fence) = (lease.resource(), lease.owner(), lease.fence().value());
        let matched = leases::extend::<B::Driver>(&mut conn, micros(ttl), resource, owner, fence)
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
        let matched = leases::release::<B::Driver>(&mut conn, lease.resource(), lease.owner(), lease.fence().value())
            .await
            .map_err(|e| backend_error::<B>(lease.resource(), "release", e))?;
        Ok(if matched == 0 { ReleaseOutcome::NotHeld } else { ReleaseOutcome::Released })
    }
}
