//! [`RedisLeases`]: leases on Redis.
//!
//! The lease of a resource is the key `<prefix>{<resource>}:lease`, holding `<fence>:<owner>`
//! with a time to live (`PX`); its fencing counter is `<prefix>{<resource>}:fence`, which never
//! expires. (The braces are a hash tag: both keys live on the same node of a cluster, as a
//! script needs.) Each operation is one Lua script, atomic on the server:
//! - acquire: if the lease key exists, nothing; else `INCR` the counter and `SET` the lease key
//!   with `PX ttl`; answers the new fence (0: held);
//! - extend: `PEXPIRE` the lease key if it holds this `<fence>:<owner>`;
//! - release: `DEL` the lease key if it holds this `<fence>:<owner>` (compare-and-delete).
//!
//! Why not the usual `SET <lease> <owner> NX PX <ttl>`: it takes the lease but no fencing
//! token, and an `INCR` sent as a second command is not atomic with it, so the order of the
//! tokens can differ from the order of the holders. If the `INCR` follows the `SET`, a holder
//! whose lease expires before its `INCR` arrives gets a higher token than the next holder; if
//! it precedes it, a delayed `SET` can win after a later holder's, with a lower token than one
//! already used. In the script, the token is the counter's newest value when the lease is
//! taken. Release and extend compare and act in one script for the same reason: a bare `DEL`,
//! or a `GET` then a `DEL` from the client, could remove the lease of a holder that took it
//! after this one's expired.
//!
//! Never delete the `…:fence` keys, nor change the prefix, while [`fence::guard`](crate::fence::guard)
//! rows hold tokens of these counters: a counter that starts again from 1 hands out tokens the
//! fences refuse.
//!
//! The counter only grows as long as Redis keeps its data: a server that restarts without
//! persistence starts counting again, and an SQL fence ([`fence::guard`](crate::fence::guard))
//! then refuses the new, lower tokens (safe, but stuck) until its rows are cleared. Run Redis
//! with persistence (AOF) when its fencing tokens guard data.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::lock::{ExtendOutcome, FencingToken, Lease, LeaseStore, LockError, ReleaseOutcome, check_names};
use crate::redis_connection::{connect, is_transient};

/// `KEYS`: lease, fence counter; `ARGV`: owner, ttl (ms). Answers the new fence, or 0 if held.
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        local fence = redis.call('INCR', KEYS[2])
        redis.call('SET', KEYS[1], fence .. ':' .. ARGV[1], 'PX', ARGV[2])
        return fence
        ",
    )
});

/// `KEYS`: lease; `ARGV`: `<fence>:<owner>`, ttl (ms). Answers 1 if extended, else 0.
static EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        ",
    )
});

/// `KEYS`: lease; `ARGV`: `<fence>:<owner>`. Answers 1 if released, else 0.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        ",
    )
});

/// Leases on Redis (feature `redis`). Keys are prefixed (default `fsm:`), so that applications
/// or tests sharing a server do not collide. Expiry is decided by the Redis server's clock.
#[derive(Clone)]
pub struct RedisLeases {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// The longest `PX`: a century.
const MAX_MILLIS: u64 = 100 * 365 * 86_400 * 1_000;

/// Milliseconds, at least 1 (`PX 0` is an error), at most a century (Redis refuses an expiry
/// past its clock's range).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_MILLIS)
}

impl RedisLeases {
    /// Leases on the Redis server at `url` (`redis://host:port/db`); a server that does not
    /// answer within a few seconds is a [`LockError::Connect`].
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let conn = connect(url).await.map_err(|e| LockError::Connect { backend: "Redis", source: Box::new(e) })?;
        Ok(Self::new(conn))
    }

    /// Leases on an existing connection.
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn, prefix: "fsm:".to_owned() }
    }

    /// The same store with keys prefixed by `prefix` instead of `fsm:`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn lease_key(&self, resource: &str) -> String {
        format!("{}{{{resource}}}:lease", self.prefix)
    }

    fn fence_key(&self, resource: &str) -> String {
        format!("{}{{{resource}}}:fence", self.prefix)
    }

    fn error(resource: &str, operation: &'static str, error: redis::RedisError) -> LockError {
        LockError::Backend {
            backend: "Redis",
            resource: resource.to_owned(),
            operation,
            retryable: is_transient(&error),
            source: Box::new(error),
        }
    }
}

/// What the lease key holds for `lease`.
fn holder(lease: &Lease) -> String {
    format!("{}:{}", lease.fence().value(), lease.owner())
}

impl LeaseStore for RedisLeases {
    async fn try_acquire(&self, resource: &str, owner: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        check_names(resource, owner)?;
        let mut conn = self.conn.clone();
        let sent_at = Instant::now();
        let fence: i64 = ACQUIRE
            .key(self.lease_key(resource))
            .key(self.fence_key(resource))
            .arg(owner)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Self::error(resource, "acquire", e))?;
        Ok((fence > 0).then(|| Lease::new(resource, owner, FencingToken::new(fence), sent_at, ttl)))
    }

    async fn extend(&self, lease: &mut Lease, ttl: Duration) -> Result<ExtendOutcome, LockError> {
        let mut conn = self.conn.clone();
        let sent_at = Instant::now();
        let extended: i64 = EXTEND
            .key(self.lease_key(lease.resource()))
            .arg(holder(lease))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Self::error(lease.resource(), "extend", e))?;
        if extended == 0 {
            return Ok(ExtendOutcome::NotHeld);
        }
        lease.extended(sent_at, ttl);
        Ok(ExtendOutcome::Extended)
    }

    async fn release(&self, lease: &Lease) -> Result<ReleaseOutcome, LockError> {
        let mut conn = self.conn.clone();
        let released: i64 = RELEASE
            .key(self.lease_key(lease.resource()))
            .arg(holder(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Self::error(lease.resource(), "release", e))?;
        Ok(if released == 0 { ReleaseOutcome::NotHeld } else { ReleaseOutcome::Released })
    }
}
