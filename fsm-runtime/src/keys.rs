//! Idempotency keys as a component of their own.
//!
//! A key (`source`, `seq`) is stored once per database, whatever machine used it: the SQL
//! stores keep every machine's keys in one table, `fsm_idempotency_keys`, and the memory stores
//! that share a [`MemoryKeys`] (see [`MemoryStore::with_keys`](crate::MemoryStore::with_keys))
//! behave the same way. A keyed transition still stores its key in the transition's own
//! statement or transaction ([`TransitionRequest::idempotency_key`](crate::TransitionRequest::idempotency_key)); the same key
//! on a transition of another machine or entity is [`Error::IdempotencyKeyReused`].
//!
//! [`Keys::run_once`] keys work that is not a transition (a top-up, an account opened), and
//! the purges forget old keys. Every store hands out its database's keys with
//! [`Store::keys`](crate::Store::keys).
//!
//! ```
//! use fsm_runtime::{Fingerprint, IdempotencyKey, Keys, MemoryStore, Once, StateMachine, Store};
//! # #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! # enum Order { #[state(initial)] Created, #[transition(from = Created)] Paid }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::<Order>::new();
//! let key = IdempotencyKey::new("web", 1)?;
//! let fingerprint = Fingerprint::of(&"top up 10")?;
//! let first = store.keys().run_once(key.clone(), fingerprint.clone(), |_tx| Box::pin(async { Ok(10) })).await?;
//! let again = store.keys().run_once(key, fingerprint, |_tx| Box::pin(async { Ok(99) })).await?;
//! assert_eq!((first, again), (Once::Ran(10), Once::Replayed(10)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub(crate) mod memory;
#[cfg(feature = "_sql")]
mod sql;
pub(crate) mod stored;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use memory::MemoryKeys;
#[cfg(feature = "_sql")]
pub use sql::SqlKeys;

use crate::error::{BoxError, Error};
use crate::idempotency::{Fingerprint, IdempotencyKey, Once};

/// The future a keyed operation returns ([`Keys::run_once`]).
pub type OpFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 't>>;

/// The idempotency keys of one database, shared by all its machines.
pub trait Keys: Send + Sync {
    /// What a keyed operation receives: the transaction its own statements run in.
    type Tx: Send;

    /// Runs `op` at most once for `key`: the key, the fingerprint and `op`'s result are stored in
    /// the same transaction as `op`'s own statements (for work that is not a transition, such
    /// as a top-up). The same key and fingerprint again: [`Once::Replayed`] with the stored
    /// result, nothing run; another fingerprint: [`Error::IdempotencyKeyReused`]. A concurrent
    /// request with the same key waits for the first and gets its result; a failed `op` stores
    /// nothing, so the key can be retried.
    fn run_once<T, F>(
        &self,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        op: F,
    ) -> impl Future<Output = Result<Once<T>, Error>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: for<'t> FnOnce(&'t mut Self::Tx) -> OpFuture<'t, T> + Send;

    /// Forgets the keys stored more than `older_than` ago; a purged key is new again. Returns
    /// how many were purged.
    fn purge(&self, older_than: Duration) -> impl Future<Output = Result<u64, Error>> + Send {
        self.purge_of(None, older_than)
    }

    /// Like [`Keys::purge`], for the keys of one `source` only (when it is `Some`), for sources
    /// with retentions of their own.
    fn purge_of(&self, source: Option<&str>, older_than: Duration) -> impl Future<Output = Result<u64, Error>> + Send;
}
