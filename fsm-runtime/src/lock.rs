//! Leases (distributed locks) with fencing tokens.
//!
//! A lease is a lock with a time to live, held by a named owner: [`LeaseStore::try_acquire`]
//! takes it if nobody holds it (or the holder's time ran out), [`LeaseStore::extend`] prolongs
//! it, [`LeaseStore::release`] gives it back, and only the holder can extend or release it
//! (anyone else gets [`ExtendOutcome::NotHeld`] / [`ReleaseOutcome::NotHeld`], and nothing
//! changes). [`LeaseStore::acquire`] waits a bounded time for a held lease, sleeping with
//! jittered exponential backoff between attempts (no busy spinning), and then fails with
//! [`LockError::Timeout`].
//!
//! Every successful acquisition also returns a [`FencingToken`], a number that only grows: the
//! next holder of the resource always gets a larger one.
//!
//! # Why a lock alone is unsafe, and what the fencing token is for
//!
//! A lease expires by the clock, whether or not its holder has finished. Nothing can stop a
//! holder that does not know its time is up:
//!
//! 1. Worker A acquires the lease on order 7 for 10 seconds, reads the order and decides to
//!    cancel it.
//! 2. A pauses: a long garbage collection, a suspended virtual machine, a page fault on a
//!    swapped-out heap, packets stuck in a congested network. Its own clock does not tell it.
//! 3. After 10 seconds the lease expires. Worker B acquires it, reads the order, ships it and
//!    writes `shipped`.
//! 4. A resumes. As far as it can tell, it still holds the lease (checking first does not help:
//!    the pause can fall between the check and the write), and it writes `cancelled` over B's
//!    work. The order is shipped and cancelled: exactly what the lock was meant to prevent.
//!
//! The fix is to let the resource itself refuse the late write. A's acquisition returned
//! fencing token 33 and B's returned 34. Each write carries its holder's token, and the store
//! remembers the highest token it has accepted for the entity, in the write's own transaction
//! ([`fence::guard`](crate::fence::guard)): B's write raises it to 34, A's write with 33 is
//! rejected with [`StaleFencingToken`](crate::fence::StaleFencingToken), and nothing of A's is
//! persisted. The check and the write are one transaction, so no pause can fall between them.
//!
//! The lease still keeps two workers from doing the same work at once most of the time (an
//! efficiency matter); the fence makes the outcome correct when that fails.
//!
//! # Pitfalls
//!
//! - **One lease resource per fenced entity.** Fencing tokens count per lease resource
//!   (`order-7`), fences remember the highest token per entity (`orders/7`). Tokens of two
//!   resources come from two counters and do not compare: fence an entity with leases of one
//!   resource name only, or a stale holder of the resource with the higher counter passes and
//!   the current holder of the other is refused.
//! - **Never delete lease state.** A release keeps the lease's row (its key on Redis) so that
//!   the counter keeps growing. Deleting `fsm_leases` rows (or Redis' `…:fence` keys, or
//!   changing the Redis prefix) restarts the counter at 1, and the fences then refuse every new
//!   holder; deleting `fsm_fences` rows too would let stale holders write again.
//!
//! | backend | acquire | extend / release | fencing token |
//! |---|---|---|---|
//! | [`MemoryLeases`] | under one lock | under one lock | a counter per resource |
//! | [`SqlLeases`] (SQLite, PostgreSQL) | one upsert: `INSERT … ON CONFLICT (resource) DO UPDATE … WHERE fsm_leases.expires_at_micros <= now RETURNING fence` | one `UPDATE … WHERE resource = ? AND owner = ? AND fence = ? AND expires_at_micros > now` | the `fence` column, incremented by the upsert |
//! | [`SqlLeases`] (MySQL/MariaDB) | `INSERT … ON DUPLICATE KEY UPDATE` with `IF(expired, …)`, then a `SELECT` of the row's nonce | the same `UPDATE` | the same |
//! | `RedisLeases` (feature `redis`) | one Lua script: `EXISTS`, `INCR` of the fence counter, `SET … PX` (not a bare `SET NX PX`: the token must be taken atomically with the lease) | a Lua compare-and-`PEXPIRE` / compare-and-`DEL` | `INCR` on a per-resource counter that never expires |
//!
//! ```
//! use std::time::Duration;
//! use fsm_runtime::lock::{LeaseStore, MemoryLeases, ReleaseOutcome};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let leases = MemoryLeases::new();
//! let ttl = Duration::from_secs(10);
//! let a = leases.acquire("order-7", "worker-a", ttl, Duration::from_secs(1)).await?;
//! assert!(leases.try_acquire("order-7", "worker-b", ttl).await?.is_none()); // held by A
//! assert_eq!(leases.release(&a).await?, ReleaseOutcome::Released);
//! let b = leases.try_acquire("order-7", "worker-b", ttl).await?.expect("free again");
//! assert!(b.fence() > a.fence()); // fencing tokens only grow
//! # Ok::<(), fsm_runtime::lock::LockError>(())
//! # }).unwrap();
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "_sql")]
mod sql;

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::BoxError;

#[cfg(feature = "redis")]
pub use self::redis::RedisLeases;
pub use memory::MemoryLeases;
#[cfg(feature = "_sql")]
pub use sql::SqlLeases;

/// The longest resource or owner name, in characters (a `VARCHAR(191)` on MySQL).
pub const MAX_NAME_CHARS: usize = 191;

/// The first pause of [`LeaseStore::acquire`] between two attempts; each further pause doubles,
/// up to [`MAX_BACKOFF`], and is jittered (between half and all of it).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(10);

/// The longest pause of [`LeaseStore::acquire`] between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// A fencing token: a number that grows with every acquisition of a resource's lease, so that
/// the holder of a later lease always has a larger one. Compare with `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(i64);

impl FencingToken {
    /// A token with this value (from a lease service of your own).
    pub const fn new(value: i64) -> Self {
        Self(value)
    }

    /// Its value.
    pub const fn value(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A lease held: the resource, its owner, the fencing token of this acquisition, and a local
/// estimate of when it runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    resource: String,
    owner: String,
    fence: FencingToken,
    valid_until: Instant,
}

impl Lease {
    /// A lease acquired with `ttl` by a request sent at `sent_at`.
    pub(crate) fn new(resource: &str, owner: &str, fence: FencingToken, sent_at: Instant, ttl: Duration) -> Self {
        Self { resource: resource.to_owned(), owner: owner.to_owned(), fence, valid_until: deadline(sent_at, ttl) }
    }

    /// A lease known from elsewhere (recorded by another process, or before a restart), to
    /// release or extend it. Its local estimate of validity is "already over"; [`LeaseStore::extend`]
    /// tells whether it is still held.
    pub fn from_parts(resource: impl Into<String>, owner: impl Into<String>, fence: FencingToken) -> Self {
        Self { resource: resource.into(), owner: owner.into(), fence, valid_until: Instant::now() }
    }

    /// The resource.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The fencing token of this acquisition: carry it with every write done under the lease.
    pub fn fence(&self) -> FencingToken {
        self.fence
    }

    /// When the lease runs out at the latest, by this process's clock, counted from before the
    /// request that acquired or last extended it was sent. A pause can make the holder read
    /// this too late: only a fence makes writes safe.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// The time left by [`Lease::valid_until`] (zero when it is over).
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Records an extension by `ttl` sent at `sent_at`.
    pub(crate) fn extended(&mut self, sent_at: Instant, ttl: Duration) {
        self.valid_until = deadline(sent_at, ttl);
    }
}

/// `at + duration`, saturated a century ahead.
pub(crate) fn deadline(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration).unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 86_400))
}

/// What releasing a lease did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum ReleaseOutcome {
    /// The lease was held by this owner with this fencing token; it is free now.
    Released,
    /// The lease is not held by this owner with this fencing token (it expired, was released,
    /// or belongs to someone else): nothing was changed.
    NotHeld,
}

/// What extending a lease did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum ExtendOutcome {
    /// The lease was held by this owner with this fencing token; it now runs for the new time
    /// to live from now.
    Extended,
    /// The lease is not held by this owner with this fencing token (it expired, was released,
    /// or belongs to someone else): nothing was changed.
    NotHeld,
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lease stayed held by someone else for the whole wait.
    #[error("lease on `{resource}` for `{owner}`: still held by another owner after waiting {waited:?}")]
    Timeout {
        /// The resource.
        resource: String,
        /// The owner that wanted it.
        owner: String,
        /// How long it waited.
        waited: Duration,
    },

    /// The backend could not be reached when connecting.
    #[error("leases: cannot connect to {backend}: {source}")]
    Connect {
        /// `SQLite`, `PostgreSQL`, `MySQL` or `Redis`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// The backend failed during an operation. When `retryable`, the connection failed: the
    /// operation may or may not have been applied (an acquisition whose answer was lost
    /// expires by itself).
    #[error("lease on `{resource}`: {operation} failed on {backend} ({}): {source}", if *.retryable { "retry is safe" } else { "do not retry" })]
    Backend {
        /// `SQLite`, `PostgreSQL`, `MySQL` or `Redis`.
        backend: &'static str,
        /// The resource.
        resource: String,
        /// `acquire`, `extend`, `release` or `create table`.
        operation: &'static str,
        /// Whether the failure was the connection's (the server may answer a new attempt).
        retryable: bool,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// The operating system's random generator failed (for the nonce of an acquisition).
    #[error("lease on `{resource}`: no random bytes from the operating system: {source}")]
    NoRandomness {
        /// The resource.
        resource: String,
        /// The generator's error.
        #[source]
        source: BoxError,
    },

    /// A resource or owner name that cannot be stored.
    #[error("lease: {what} `{value}` is invalid: {reason}")]
    InvalidName {
        /// `resource` or `owner`.
        what: &'static str,
        /// The name.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl LockError {
    /// Whether trying again may succeed: a timeout (the holder may release), or a backend that
    /// could not be reached.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Connect { .. } => true,
            Self::Backend { retryable, .. } => *retryable,
            Self::InvalidName { .. } | Self::NoRandomness { .. } => false,
        }
    }
}

/// Checks a resource and an owner name: 1 to [`MAX_NAME_CHARS`] characters each.
pub(crate) fn check_names(resource: &str, owner: &str) -> Result<(), LockError> {
    for (what, value) in [("resource", resource), ("owner", owner)] {
        let reason = if value.is_empty() {
            "it is empty"
        } else if value.chars().count() > MAX_NAME_CHARS {
            "it is longer than 191 characters"
        } else {
            continue;
        };
        return Err(LockError::InvalidName { what, value: value.to_owned(), reason });
    }
    Ok(())
}

/// A store of leases: [`MemoryLeases`], [`SqlLeases`], `RedisLeases`.
pub trait LeaseStore: Send + Sync {
    /// Takes the lease on `resource` for `owner` for `ttl` if nobody holds it (or its holder's
    /// time ran out), in one atomic step; `None` if it is held, by anyone, this owner included
    /// (use [`LeaseStore::extend`] to keep a lease).
    fn try_acquire(
        &self,
        resource: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, LockError>> + Send;

    /// Prolongs `lease` to run for `ttl` from now, if it is still held by its owner with its
    /// fencing token; else [`ExtendOutcome::NotHeld`] and nothing changes.
    fn extend(&self, lease: &mut Lease, ttl: Duration)
    -> impl Future<Output = Result<ExtendOutcome, LockError>> + Send;

    /// Frees `lease`, if it is still held by its owner with its fencing token; else
    /// [`ReleaseOutcome::NotHeld`] and nothing changes. The fencing token keeps growing across
    /// releases.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<ReleaseOutcome, LockError>> + Send;

    /// Takes the lease, waiting up to `wait` while it is held: attempts are separated by
    /// jittered, exponentially growing pauses (from [`INITIAL_BACKOFF`] up to
    /// [`MAX_BACKOFF`], never past the deadline). Still held at the deadline:
    /// [`LockError::Timeout`]. A retryable failure (a deadlock, a dropped connection) is tried
    /// again the same way, and returned if the last attempt failed so.
    fn acquire(
        &self,
        resource: &str,
        owner: &str,
        ttl: Duration,
        wait: Duration,
    ) -> impl Future<Output = Result<Lease, LockError>> + Send {
        async move {
            let started = Instant::now();
            let deadline = deadline(started, wait);
            let mut backoff = INITIAL_BACKOFF;
            loop {
                // A transient failure (a deadlock, a dropped connection) is tried again like a
                // held lease, until the deadline; then it is the answer.
                let failure = match self.try_acquire(resource, owner, ttl).await {
                    Ok(Some(lease)) => return Ok(lease),
                    Ok(None) => None,
                    Err(error) if error.is_retryable() => Some(error),
                    Err(error) => return Err(error),
                };
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(failure.unwrap_or_else(|| LockError::Timeout {
                        resource: resource.to_owned(),
                        owner: owner.to_owned(),
                        waited: started.elapsed(),
                    }));
                }
                tokio::time::sleep(jittered(backoff).min(left)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Between half and all of `backoff`, at random ("equal jitter"), so that waiters that started
/// together do not retry together.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
    half + Duration::from_micros(crate::random::random_below(spread))
}

impl<L: LeaseStore> LeaseStore for std::sync::Arc<L> {
    fn try_acquire(
        &self,
        resource: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, LockError>> + Send {
        (**self).try_acquire(resource, owner, ttl)
    }

    fn extend(
        &self,
        lease: &mut Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<ExtendOutcome, LockError>> + Send {
        (**self).extend(lease, ttl)
    }

    fn release(&self, lease: &Lease) -> impl Future<Output = Result<ReleaseOutcome, LockError>> + Send {
        (**self).release(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_millis(100));
            assert!(pause >= Duration::from_millis(50) && pause <= Duration::from_millis(100), "{pause:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_names("r", "o").is_ok());
        assert!(matches!(check_names("", "o"), Err(LockError::InvalidName { what: "resource", .. })));
        assert!(matches!(check_names("r", &"x".repeat(192)), Err(LockError::InvalidName { what: "owner", .. })));
    }
}
