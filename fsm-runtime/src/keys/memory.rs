//! [`MemoryKeys`]: idempotency keys in memory, shared by the memory stores given the same handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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
use crate::scheduled::MemoryTimers;

/// A key as stored: the request's fingerprint, the outcome, when.
#[derive(Debug, Clone)]
pub(crate) struct StoredKey {
    pub(crate) fingerprint: String,
    pub(crate) outcome: String,
    pub(crate) at_micros: i64,
}

/// One key's slot: empty until a keyed operation or transition stores it, locked for the whole
/// of one, so that requests with the same key run one at a time (as the key's row does on SQL),
/// and requests with other keys do not wait.
type KeySlot = Arc<tokio::sync::Mutex<Option<StoredKey>>>;

/// Idempotency keys in memory, and the outbox their operations enqueue into: the "database" of
/// the memory stores built with [`MemoryStore::with_keys`](crate::MemoryStore::with_keys) on the
/// same handle. Clones share everything.
#[derive(Debug, Clone, Default)]
pub struct MemoryKeys {
    slots: Arc<Mutex<HashMap<IdempotencyKey, KeySlot>>>,
    outbox: MemoryOutbox,
    timers: MemoryTimers,
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

    /// The timers of the stores that share these keys, of every machine.
    pub fn timers(&self) -> MemoryTimers {
        self.timers.clone()
    }

    /// The slot of `key`, locked until the guard is dropped; the map itself is locked only
    /// to find or add the slot.
    pub(crate) async fn lock_key(&self, key: &IdempotencyKey) -> tokio::sync::OwnedMutexGuard<Option<StoredKey>> {
        let slot = self.slots().entry(key.clone()).or_default().clone();
        slot.lock_owned().await
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<IdempotencyKey, KeySlot>> {
        // Only short, non-panicking critical sections touch the map: a poisoned lock still
        // holds a consistent map.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Keys for MemoryKeys {
    type Tx = MemoryTx;

    async fn run_once<T, F>(&self, key: IdempotencyKey, fingerprint: Fingerprint, op: F) -> Result<Once<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send,
        F: for<'t> FnOnce(&'t mut MemoryTx) -> OpFuture<'t, T> + Send,
    {
        let mut slot = self.lock_key(&key).await;
        if let Some(stored) = slot.as_ref() {
            return replayed_result(&key, &fingerprint, &stored.fingerprint, &stored.outcome);
        }
        let mut tx = MemoryTx::default();
        let result = op(&mut tx).await.map_err(|source| Error::Operation { key: key.to_string(), source })?;
        self.outbox.append(tx.take_outbox());
        self.timers.append(tx.take_timers());
        let outcome = encode_result(&key, &result)?;
        *slot = Some(StoredKey { fingerprint: fingerprint.as_str().to_owned(), outcome, at_micros: now_micros() });
        Ok(Once::Ran(result))
    }

    async fn purge_of(&self, source: Option<&str>, older_than: Duration) -> Result<u64, Error> {
        let cutoff = micros_before_now(older_than);
        let mut purged = 0_u64;
        self.slots().retain(|key, slot| {
            // A slot in use (a request with this key is running) is not old: keep it.
            let Ok(stored) = slot.try_lock() else { return true };
            let old = stored.as_ref().is_some_and(|stored| stored.at_micros < cutoff);
            let purge = old && source.is_none_or(|source| source == key.source());
            purged += u64::from(purge);
            !purge
        });
        crate::telemetry::keys_purged(purged);
        Ok(purged)
    }
}
