//! [`SqlTokens`]: single-use tokens in the runtime-owned table `fsm_tokens`, and
//! [`RedeemToken`] on the SQL connections.
//!
//! Statements (every value bound; times from the database's clock):
//! - issue: one `INSERT`;
//! - redeem: one `UPDATE … SET used_at_micros = now WHERE scope = ? AND token = ? AND
//!   used_at_micros IS NULL AND expires_at_micros > now` (a compare-and-set: of N concurrent
//!   redeems exactly one matches; the others wait for its row lock, then find it used); on a
//!   miss, one `SELECT` (a locking read on PostgreSQL and MySQL, so that it sees the latest
//!   commit even inside an older transaction) says whether the row is used, expired or absent;
//! - purge: one `DELETE` of the rows past their tombstone period.
//!
//! The redeem marks the row used instead of deleting it (`DELETE … RETURNING` would be as
//! atomic): the used row is the tombstone that answers `AlreadyUsed` to a second submission,
//! where a deleted one would answer `Unknown`, like a forged token. Neither statement of a
//! redeem reads `keep_until_micros`: a row past its keep-until time still answers `AlreadyUsed`
//! or `Expired` until a purge deletes it, and only [`TokenStore::purge`] deletes rows, so call
//! it from a periodic job.

use std::time::Duration;

use crate::clock::micros;
use crate::sql::{Backend, SqlTx, is_transient, is_unique_violation, tokens};
use crate::token::{DEFAULT_TOMBSTONE, RedeemToken, Redemption, Token, TokenError, TokenStore, check_scope};

/// Single-use tokens in an SQL database (SQLite, PostgreSQL, MySQL/MariaDB), in the
/// runtime-owned table `fsm_tokens`, which [`SqlTokens::new`] creates if missing. Expiry is
/// decided by the database's clock.
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::sqlx::SqlitePool;
/// use fsm_runtime::token::{Redemption, SqlTokens, TokenStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let tokens = SqlTokens::new(SqlitePool::connect("sqlite::memory:").await?).await?;
/// let token = tokens.issue("checkout", Duration::from_secs(600)).await?;
/// assert_eq!(tokens.redeem("checkout", token.as_str()).await?, Redemption::Redeemed);
/// assert_eq!(tokens.redeem("checkout", token.as_str()).await?, Redemption::AlreadyUsed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct SqlTokens<B: Backend> {
    pool: sqlx::Pool<B>,
    tombstone: Duration,
}

impl<B: Backend> Clone for SqlTokens<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), tombstone: self.tombstone }
    }
}

impl<B: Backend> std::fmt::Debug for SqlTokens<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTokens")
            .field("backend", &B::NAME)
            .field("tombstone", &self.tombstone)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> SqlTokens<B> {
    /// Tokens in the database behind `pool`; creates or upgrades the runtime's tables
    /// (`fsm_tokens` among them). Used and expired
    /// tokens are remembered for [`DEFAULT_TOMBSTONE`](crate::token::DEFAULT_TOMBSTONE) after
    /// their expiry.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, TokenError> {
        crate::sql::migrate::migrate::<B>(&pool).await.map_err(|e| backend_error::<B>("*", "migrate", e))?;
        Ok(Self { pool, tombstone: DEFAULT_TOMBSTONE })
    }

    /// Connects to `url` with a default pool whose connection attempts give up after 5 seconds
    /// (a server that is down is a [`TokenError::Connect`], not a hang), and calls
    /// [`SqlTokens::new`].
    pub async fn connect(url: &str) -> Result<Self, TokenError> {
        let pool = crate::sql::pool_options::<B>()
            .connect(url)
            .await
            .map_err(|e| TokenError::Connect { backend: B::NAME, source: Box::new(e) })?;
        Self::new(pool).await
    }

    /// The same store, remembering used and expired tokens for `tombstone` after their expiry
    /// (for tokens issued from now on).
    pub fn with_tombstone(mut self, tombstone: Duration) -> Self {
        self.tombstone = tombstone;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<B> {
        &self.pool
    }

    /// Redeems `token` in `scope` on `conn`, inside whatever transaction `conn` is in (see
    /// [`RedeemToken`], which the connections implement with this).
    pub async fn redeem_in(conn: &mut B::Connection, scope: &str, token: &str) -> Result<Redemption, TokenError> {
        check_scope(scope)?;
        if !Token::is_well_formed(token) {
            return Ok(Redemption::Unknown);
        }
        let error = |e| backend_error::<B>(scope, "redeem", e);
        if tokens::mark_used::<B::Driver>(conn, scope, token).await.map_err(error)? == 1 {
            return Ok(Redemption::Redeemed);
        }
        Ok(match tokens::classify::<B::Driver>(conn, scope, token).await.map_err(error)? {
            None => Redemption::Unknown,
            Some(tokens::USED) => Redemption::AlreadyUsed,
            // Expired, or neither (only if the database's clock went back between the two
            // statements): a row the compare-and-set found expired.
            Some(_) => Redemption::Expired,
        })
    }
}

/// Wraps a driver error of `operation` on the tokens of `scope`.
fn backend_error<B: Backend>(scope: &str, operation: &'static str, error: sqlx::Error) -> TokenError {
    TokenError::Backend {
        backend: B::NAME,
        scope: scope.to_owned(),
        operation,
        retryable: is_transient(&error),
        source: Box::new(error),
    }
}

impl<B: Backend> TokenStore for SqlTokens<B> {
    async fn issue(&self, scope: &str, ttl: Duration) -> Result<Token, TokenError> {
        check_scope(scope)?;
        let keep = ttl.saturating_add(self.tombstone);
        let mut conn = self.pool.acquire().await.map_err(|e| backend_error::<B>(scope, "issue", e))?;
        loop {
            let token = Token::generate(scope)?;
            match tokens::insert::<B::Driver>(&mut conn, scope, token.as_str(), micros(ttl), micros(keep)).await {
                Ok(_) => return Ok(token),
                // 256 random bits equal to a stored token: never seen, but a new draw is cheap.
                Err(error) if is_unique_violation(&error) => {}
                Err(error) => return Err(backend_error::<B>(scope, "issue", error)),
            }
        }
    }

    async fn redeem(&self, scope: &str, token: &str) -> Result<Redemption, TokenError> {
        let mut conn = self.pool.acquire().await.map_err(|e| backend_error::<B>(scope, "redeem", e))?;
        Self::redeem_in(&mut conn, scope, token).await
    }

    async fn purge(&self) -> Result<u64, TokenError> {
        let mut conn = self.pool.acquire().await.map_err(|e| backend_error::<B>("*", "purge", e))?;
        tokens::purge::<B::Driver>(&mut conn).await.map_err(|e| backend_error::<B>("*", "purge", e))
    }
}

impl<B: Backend> RedeemToken for SqlTx<B> {
    async fn redeem_token(&mut self, scope: &str, token: &str) -> Result<Redemption, TokenError> {
        SqlTokens::<B>::redeem_in(self, scope, token).await
    }
}
