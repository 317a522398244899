//! [`MemoryKeys`]: idempotency keys in memory, shared by the memory stores given the same handle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{micros_before_now, now_micros};
use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey, Once};
use crate::keys::Keys;
use crate::keys::OpFuture;
use crate::keys::stored::{encode_result, replayed_result};
use crate::memory_tx::MemoryTx;
use crate::outbox::MemoryOutbox;

/// A key as stored: the request's fingerprint, the outcome, when.
#[derive(Debug, Clone)]
pub(crate) struct StoredKey {
    pub(crate) fingerprint: String,
    pub(crate) outcome: String,
    pub(crate) at_micros: i64,
}

/// The stored keys, held for the whole of a keyed operation or transition, so that requests
/// with a key run one at a time.
pub(crate) type KeyMap = HashMap<IdempotencyKey, StoredKey>;

/// Idempotency keys in memory, and the outbox their operations enqueue into: the "database" of
/// the memory stores built with [`MemoryStore::with_keys`](crate::MemoryStore::with_keys) on the
/// same handle. Clones share everything.
#[derive(Debug, Clone, Default)]
pub struct MemoryKeys {
    stored: Arc<tokio::sync::Mutex<KeyMap>>,
    outbox: MemoryOutbox,
}

impl MemoryKeys {
    /// No keys, and an empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outbox of the stores that share these keys.
    pub fn outbox(&self) -> MemoryOutbox {
        self.outbox.clone()
    }

    /// The stored keys, locked.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, KeyMap> {
        self.stored.lock().await
    }
}

impl Keys for MemoryKeys {
    type Tx = MemoryTx;

    async fn run_once<T, F>(&self, key: IdempotencyKey, fingerprint: Fingerprint, op: F) -> Result<Once<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send,
        F: for<'t> FnOnce(&'t mut MemoryTx) -> OpFuture<'t, T> + Send,
    {
        let mut keys = self.lock().await;
        if let Some(stored) = keys.get(&key) {
            return replayed_result(&key, &fingerprint, &stored.fingerprint, &stored.outcome);
        }
        let mut tx = MemoryTx::default();
        let result = op(&mut tx).await.map_err(|source| Error::Operation { key: key.to_string(), source })?;
        self.outbox.append(tx.take_outbox());
        let outcome = encode_result(&key, &result)?;
        keys.insert(key, StoredKey { fingerprint: fingerprint.as_str().to_owned(), outcome, at_micros: now_micros() });
        Ok(Once::Ran(result))
    }

    async fn purge_of(&self, source: Option<&str>, older_than: Duration) -> Result<u64, Error> {
        let cutoff = micros_before_now(older_than);
        let mut keys = self.lock().await;
        let before = keys.len();
        keys.retain(|key, stored| stored.at_micros >= cutoff || source.is_some_and(|source| source != key.source()));
        Ok(u64::try_from(before - keys.len()).unwrap_or(u64::MAX))
    }
}
