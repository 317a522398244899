//! Single-use tokens: issue a token for a scope with a time to live, redeem it exactly once.
//!
//! A form carries a token; submitting the form redeems it. The first redeem answers
//! [`Redemption::Redeemed`], every later one [`Redemption::AlreadyUsed`], so a double click or a
//! resubmitted form does the work once. A token past its time to live answers
//! [`Redemption::Expired`]; one that was never issued (forged, mistyped, or issued for another
//! scope) [`Redemption::Unknown`].
//!
//! Redeeming is one atomic step on every backend, never a read followed by a write that two
//! requests could both pass:
//!
//! | backend | redeem | tells used from forged by |
//! |---|---|---|
//! | [`MemoryTokens`] | check and mark under one lock | the entry, kept as a tombstone |
//! | [`SqlTokens`] (SQLite, PostgreSQL, MySQL/MariaDB) | `UPDATE fsm_tokens SET used_at_micros = now WHERE scope = ? AND token = ? AND used_at_micros IS NULL AND expires_at_micros > now`: exactly one of N concurrent redeems matches the row | the row, kept as a tombstone; one `SELECT` on a miss |
//! | `RedisTokens` (feature `redis`) | one Lua script: `GET`, then `SET … KEEPTTL` to `used` | the key, which outlives the token by the tombstone period |
//!
//! On SQL the redeem is a conditional `UPDATE` that marks the row used, not a `DELETE …
//! RETURNING`: a deleted row would leave nothing to tell a second submission (`AlreadyUsed`)
//! from a forged token (`Unknown`). The used row is the tombstone.
//!
//! A token is kept until its expiry plus a tombstone period (default [`DEFAULT_TOMBSTONE`],
//! counted from the expiry, used or not). On memory and SQL nothing goes by itself: a redeem
//! does not look at that time, so a used token answers `AlreadyUsed` and an expired one
//! `Expired`, however old, until [`TokenStore::purge`] deletes the tokens past it; from then on
//! they answer `Unknown`. Call `purge` from a periodic job, about once per tombstone period
//! (hourly with the default) or more often, or the tokens pile up. On Redis the key expires at
//! the token's expiry plus the tombstone period, so Redis forgets it by itself at that time.
//!
//! On SQL, a token can also be redeemed inside a transaction, with [`RedeemToken`] on the
//! connection an effect receives: redeem and transition then commit or roll back together
//! (build a [`SqlTokens`] once first: it creates the table).
//!
//! ```
//! use std::time::Duration;
//! use fsm_runtime::token::{MemoryTokens, Redemption, TokenStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let tokens = MemoryTokens::new();
//! let token = tokens.issue("checkout", Duration::from_secs(600)).await?;
//! // The form carries `token.as_str()`; two submissions arrive.
//! assert_eq!(tokens.redeem("checkout", token.as_str()).await?, Redemption::Redeemed);
//! assert_eq!(tokens.redeem("checkout", token.as_str()).await?, Redemption::AlreadyUsed);
//! assert_eq!(tokens.redeem("checkout", "forged").await?, Redemption::Unknown);
//! # Ok::<(), fsm_runtime::token::TokenError>(())
//! # }).unwrap();
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "_sql")]
mod sql;

use std::future::Future;
use std::time::Duration;

use crate::error::BoxError;

#[cfg(feature = "redis")]
pub use self::redis::RedisTokens;
pub use memory::MemoryTokens;
#[cfg(feature = "_sql")]
pub use sql::SqlTokens;

/// How long a used or expired token is remembered after its expiry, by default: long enough to
/// answer `AlreadyUsed` or `Expired` to a late resubmission instead of `Unknown`. On memory and
/// SQL this is the earliest it is forgotten: it stays until the next [`TokenStore::purge`].
pub const DEFAULT_TOMBSTONE: Duration = Duration::from_secs(3600);

/// The longest scope, in characters (it is a `VARCHAR(191)` on MySQL).
pub const MAX_SCOPE_CHARS: usize = 191;

/// How many random bytes a token carries (256 bits, written as 64 hex digits).
const TOKEN_BYTES: usize = 32;

/// A single-use token: 256 random bits from the operating system's generator, as 64 lowercase
/// hex digits. Its `Debug` shows only the first 8 digits, so that logs do not leak live tokens.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// A new random token.
    pub(crate) fn generate(scope: &str) -> Result<Self, TokenError> {
        crate::random::random_hex(TOKEN_BYTES)
            .map(Self)
            .map_err(|source| TokenError::NoRandomness { scope: scope.to_owned(), source: Box::new(source) })
    }

    /// The token, to hand to the client (a hidden form field, a link).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether `token` has the shape of a token (64 lowercase hex digits). Anything else is
    /// answered `Unknown` without asking the backend.
    pub fn is_well_formed(token: &str) -> bool {
        token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", redacted(&self.0))
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The first 8 characters of a token and an ellipsis, for messages.
pub(crate) fn redacted(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    format!("{head}…")
}

/// What redeeming a token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Redemption {
    /// The token was live and is now used: do the work.
    Redeemed,
    /// The token was redeemed before (a double submission): do nothing.
    AlreadyUsed,
    /// The token's time to live ran out before it was redeemed.
    Expired,
    /// No such token in this scope: forged, mistyped, issued for another scope, or forgotten
    /// after its tombstone period (purged, or on Redis expired).
    Unknown,
}

impl Redemption {
    /// Whether this redeem used the token.
    pub fn is_redeemed(self) -> bool {
        self == Self::Redeemed
    }

    /// `Ok(())` when redeemed, else [`TokenError::NotRedeemed`] naming the scope and the token:
    /// in an effect, `?` then rolls the transition back.
    pub fn require(self, scope: &str, token: &str) -> Result<(), TokenError> {
        match self {
            Self::Redeemed => Ok(()),
            redemption => Err(TokenError::NotRedeemed { scope: scope.to_owned(), token: redacted(token), redemption }),
        }
    }
}

impl std::fmt::Display for Redemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Redeemed => "redeemed",
            Self::AlreadyUsed => "already used",
            Self::Expired => "expired",
            Self::Unknown => "unknown",
        })
    }
}

/// Why a token operation failed. Tokens in messages are shortened to their first 8 digits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The backend could not be reached when connecting.
    #[error("tokens: cannot connect to {backend}: {source}")]
    Connect {
        /// `SQLite`, `PostgreSQL`, `MySQL` or `Redis`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// The backend failed during an operation. When `retryable`, the connection failed: the
    /// operation may or may not have been applied, and a retried redeem may answer
    /// `AlreadyUsed` for a token the lost attempt redeemed.
    #[error("tokens of scope `{scope}`: {operation} failed on {backend} ({}): {source}", if *.retryable { "retry is safe" } else { "do not retry" })]
    Backend {
        /// `SQLite`, `PostgreSQL`, `MySQL` or `Redis`.
        backend: &'static str,
        /// The scope.
        scope: String,
        /// `issue`, `redeem`, `purge` or `create table`.
        operation: &'static str,
        /// Whether the failure was the connection's (the server may answer a new attempt).
        retryable: bool,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// The scope cannot be stored.
    #[error("token scope `{scope}` is invalid: {reason}")]
    InvalidScope {
        /// The scope.
        scope: String,
        /// Why.
        reason: &'static str,
    },

    /// The operating system's random generator failed; no token was issued.
    #[error("tokens of scope `{scope}`: no random bytes from the operating system: {source}")]
    NoRandomness {
        /// The scope.
        scope: String,
        /// The generator's error.
        #[source]
        source: BoxError,
    },

    /// A token that had to be redeemed was not ([`Redemption::require`],
    /// [`RedeemToken::require_token`]).
    #[error("token `{token}` of scope `{scope}` is {redemption}, not redeemed")]
    NotRedeemed {
        /// The scope.
        scope: String,
        /// The token's first 8 digits.
        token: String,
        /// What the redeem found.
        redemption: Redemption,
    },
}

impl TokenError {
    /// Whether trying again may succeed: a backend that could not be reached.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Backend { retryable, .. } => *retryable,
            Self::InvalidScope { .. } | Self::NoRandomness { .. } | Self::NotRedeemed { .. } => false,
        }
    }
}

/// Checks a scope: 1 to [`MAX_SCOPE_CHARS`] characters.
pub(crate) fn check_scope(scope: &str) -> Result<(), TokenError> {
    let reason = if scope.is_empty() {
        "it is empty"
    } else if scope.chars().count() > MAX_SCOPE_CHARS {
        "it is longer than 191 characters"
    } else {
        return Ok(());
    };
    Err(TokenError::InvalidScope { scope: scope.to_owned(), reason })
}

/// A store of single-use tokens: [`MemoryTokens`], [`SqlTokens`], `RedisTokens`.
pub trait TokenStore: Send + Sync {
    /// Issues a new token for `scope`, live for `ttl`.
    fn issue(&self, scope: &str, ttl: Duration) -> impl Future<Output = Result<Token, TokenError>> + Send;

    /// Redeems `token` in `scope`, in one atomic step: exactly one redeem of a live token gets
    /// [`Redemption::Redeemed`].
    fn redeem(&self, scope: &str, token: &str) -> impl Future<Output = Result<Redemption, TokenError>> + Send;

    /// Forgets the tokens whose tombstone period is over (they answer `Unknown` from then on);
    /// returns how many. On memory and SQL this is the only way a token goes: until it runs, a
    /// token past its tombstone period still answers `AlreadyUsed` or `Expired` and takes its
    /// row, so call it periodically (about once per tombstone period, hourly by default). On
    /// SQL it is one `DELETE` on an index of the keep-until time. Redis forgets them by itself
    /// and returns 0.
    fn purge(&self) -> impl Future<Output = Result<u64, TokenError>> + Send;
}

impl<T: TokenStore> TokenStore for std::sync::Arc<T> {
    fn issue(&self, scope: &str, ttl: Duration) -> impl Future<Output = Result<Token, TokenError>> + Send {
        (**self).issue(scope, ttl)
    }

    fn redeem(&self, scope: &str, token: &str) -> impl Future<Output = Result<Redemption, TokenError>> + Send {
        (**self).redeem(scope, token)
    }

    fn purge(&self) -> impl Future<Output = Result<u64, TokenError>> + Send {
        (**self).purge()
    }
}

/// A transaction a token can be redeemed in: the [`SqlTx`](crate::sql::SqlTx) an effect
/// receives on every SQL backend, so that the redeem commits or rolls back with the transition.
///
/// ```no_run
/// use fsm_runtime::token::RedeemToken as _;
/// use fsm_runtime::{SqliteStore, StateMachine, Store, TransitionRequest};
/// # #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// # enum Order { #[state(initial)] Created, #[transition(from = Created)] Paid }
/// # async fn pay(store: SqliteStore<Order>, token: String) -> Result<(), fsm_runtime::Error> {
/// let pay = TransitionRequest::to(7, Order::Paid).effect(move |tx: &mut fsm_runtime::sql::SqlTx<fsm_runtime::sqlx::Sqlite>| {
///     Box::pin(async move {
///         tx.require_token("checkout", &token).await?;
///         Ok(())
///     })
/// });
/// store.apply(pay).await?; // Error::Effect (NotRedeemed) if the token was used: nothing paid
/// # Ok(()) }
/// ```
pub trait RedeemToken: Send {
    /// Redeems `token` in `scope` in this transaction. The token's row stays locked until the
    /// transaction ends; a rollback leaves the token live.
    fn redeem_token(&mut self, scope: &str, token: &str)
    -> impl Future<Output = Result<Redemption, TokenError>> + Send;

    /// Redeems `token` and fails with [`TokenError::NotRedeemed`] unless it was live: the
    /// guard of an effect.
    fn require_token(&mut self, scope: &str, token: &str) -> impl Future<Output = Result<(), TokenError>> + Send {
        async move { self.redeem_token(scope, token).await?.require(scope, token) }
    }
}
