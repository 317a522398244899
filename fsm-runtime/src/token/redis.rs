//! [`RedisTokens`]: single-use tokens on Redis.
//!
//! A token is the key `<prefix>token:<scope>:<token>`, written with `SET … PX <ttl + tombstone>
//! NX` and holding the tombstone period in milliseconds. Redeeming is one Lua script, atomic on
//! the server: no key → `Unknown`; `used` → `AlreadyUsed`; a remaining time to live within the
//! tombstone period → `Expired`; else it sets the key to `used`, keeping its time to live, and
//! answers `Redeemed`. Expiry is decided by the Redis server's clock. Redis forgets the key when
//! the tombstone period is over.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::redis_connection::{connect, is_transient};
use crate::token::{DEFAULT_TOMBSTONE, Redemption, Token, TokenError, TokenStore, check_scope};

/// `KEYS[1]`: the token's key. Answers 0 unknown, 1 redeemed, 2 already used, 3 expired.
static REDEEM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local value = redis.call('GET', KEYS[1])
        if not value then return 0 end
        if value == 'used' then return 2 end
        if redis.call('PTTL', KEYS[1]) <= tonumber(value) then return 3 end
        redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
        return 1
        ",
    )
});

/// Single-use tokens on Redis (feature `redis`). Keys are prefixed (default `fsm:`), so that
/// applications or tests sharing a server do not collide.
#[derive(Clone)]
pub struct RedisTokens {
    conn: ConnectionManager,
    prefix: String,
    tombstone: Duration,
}

impl std::fmt::Debug for RedisTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokens")
            .field("prefix", &self.prefix)
            .field("tombstone", &self.tombstone)
            .finish_non_exhaustive()
    }
}

/// The longest `PX`: a century.
const MAX_MILLIS: u64 = 100 * 365 * 86_400 * 1_000;

/// Milliseconds, at least 1 (`PX 0` is an error), at most a century (Redis refuses an expiry
/// past its clock's range).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_MILLIS)
}

impl RedisTokens {
    /// Tokens on the Redis server at `url` (`redis://host:port/db`); a server that does not
    /// answer within a few seconds is a [`TokenError::Connect`].
    pub async fn connect(url: &str) -> Result<Self, TokenError> {
        let conn = connect(url).await.map_err(|e| TokenError::Connect { backend: "Redis", source: Box::new(e) })?;
        Ok(Self::new(conn))
    }

    /// Tokens on an existing connection.
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn, prefix: "fsm:".to_owned(), tombstone: DEFAULT_TOMBSTONE }
    }

    /// The same store with keys prefixed by `prefix` instead of `fsm:`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The same store, remembering used and expired tokens for `tombstone` after their expiry
    /// (for tokens issued from now on).
    pub fn with_tombstone(mut self, tombstone: Duration) -> Self {
        self.tombstone = tombstone;
        self
    }

    fn key(&self, scope: &str, token: &str) -> String {
        // The token is 64 hex digits, so `scope:token` splits one way only.
        format!("{}token:{scope}:{token}", self.prefix)
    }

    fn error(scope: &str, operation: &'static str, error: redis::RedisError) -> TokenError {
        TokenError::Backend {
            backend: "Redis",
            scope: scope.to_owned(),
            operation,
            retryable: is_transient(&error),
            source: Box::new(error),
        }
    }
}

impl TokenStore for RedisTokens {
    async fn issue(&self, scope: &str, ttl: Duration) -> Result<Token, TokenError> {
        check_scope(scope)?;
        let tombstone = u64::try_from(self.tombstone.as_millis()).unwrap_or(u64::MAX).min(MAX_MILLIS);
        let mut conn = self.conn.clone();
        loop {
            let token = Token::generate(scope)?;
            let stored: Option<String> = redis::cmd("SET")
                .arg(self.key(scope, token.as_str()))
                .arg(tombstone)
                .arg("PX")
                .arg(millis(ttl).saturating_add(tombstone))
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(|e| Self::error(scope, "issue", e))?;
            // `None`: 256 random bits equal to a live token; never seen, but a new draw is cheap.
            if stored.is_some() {
                return Ok(token);
            }
        }
    }

    async fn redeem(&self, scope: &str, token: &str) -> Result<Redemption, TokenError> {
        check_scope(scope)?;
        if !Token::is_well_formed(token) {
            return Ok(Redemption::Unknown);
        }
        let mut conn = self.conn.clone();
        let answer: i64 = REDEEM
            .key(self.key(scope, token))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Self::error(scope, "redeem", e))?;
        Ok(match answer {
            1 => Redemption::Redeemed,
            2 => Redemption::AlreadyUsed,
            3 => Redemption::Expired,
            _ => Redemption::Unknown,
        })
    }

    async fn purge(&self) -> Result<u64, TokenError> {
        Ok(0)
    }
}
