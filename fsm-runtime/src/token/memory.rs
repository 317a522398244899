//! [`MemoryTokens`]: single-use tokens in the process's memory, for tests and single-process
//! applications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::token::{DEFAULT_TOMBSTONE, Redemption, Token, TokenError, TokenStore, check_scope};

/// One issued token.
#[derive(Debug, Clone, Copy)]
struct Entry {
    expires_at: Instant,
    keep_until: Instant,
    used: bool,
}

/// Single-use tokens in memory: check and mark happen under one lock, so exactly one of any
/// number of concurrent redeems gets [`Redemption::Redeemed`]. Clones share the tokens.
///
/// A redeemed token stays as a tombstone (marked used) so that a second redeem answers
/// `AlreadyUsed`. Entries go only when [`TokenStore::purge`] runs: a redeem does not look at
/// the keep-until time, so until then an entry past it still answers `AlreadyUsed` or
/// `Expired`. Purge periodically, or the map grows with every token issued.
#[derive(Debug, Clone)]
pub struct MemoryTokens {
    entries: Arc<Mutex<HashMap<(String, String), Entry>>>,
    tombstone: Duration,
}

impl Default for MemoryTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTokens {
    /// No tokens yet; used and expired tokens are remembered for
    /// [`DEFAULT_TOMBSTONE`](crate::token::DEFAULT_TOMBSTONE) after their expiry.
    pub fn new() -> Self {
        Self { entries: Arc::default(), tombstone: DEFAULT_TOMBSTONE }
    }

    /// The same store, remembering used and expired tokens for `tombstone` after their expiry
    /// (for tokens issued from now on).
    pub fn with_tombstone(mut self, tombstone: Duration) -> Self {
        self.tombstone = tombstone;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        // A panic while holding the lock cannot leave an entry half-written: every update is
        // one assignment.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TokenStore for MemoryTokens {
    async fn issue(&self, scope: &str, ttl: Duration) -> Result<Token, TokenError> {
        check_scope(scope)?;
        let token = Token::generate(scope)?;
        let now = Instant::now();
        let expires_at = now.checked_add(ttl).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        let keep_until = expires_at.checked_add(self.tombstone).unwrap_or(expires_at);
        let entry = Entry { expires_at, keep_until, used: false };
        self.lock().insert((scope.to_owned(), token.as_str().to_owned()), entry);
        Ok(token)
    }

    async fn redeem(&self, scope: &str, token: &str) -> Result<Redemption, TokenError> {
        check_scope(scope)?;
        if !Token::is_well_formed(token) {
            return Ok(Redemption::Unknown);
        }
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&(scope.to_owned(), token.to_owned())) else {
            return Ok(Redemption::Unknown);
        };
        Ok(if entry.used {
            Redemption::AlreadyUsed
        } else if now >= entry.expires_at {
            Redemption::Expired
        } else {
            entry.used = true;
            Redemption::Redeemed
        })
    }

    async fn purge(&self) -> Result<u64, TokenError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, entry| entry.keep_until > now);
        Ok(u64::try_from(before - entries.len()).unwrap_or(u64::MAX))
    }
}
