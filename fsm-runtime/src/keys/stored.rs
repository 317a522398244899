//! What a key stores for a keyed operation, and the answer to a key found stored.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey, Once};

/// A stored outcome that cannot be read back.
pub(crate) fn corrupt(key: &IdempotencyKey, stored: &str, reason: impl std::fmt::Display) -> Error {
    Error::CorruptKey { key: key.to_string(), stored: stored.to_owned(), reason: reason.to_string() }
}

/// The stored outcome of an applied, keyed transition. The keys' table is one for every machine
/// of a database: the machine and the entity say which transition the key belongs to (absent
/// in what the first release stored).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredTransition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) entity: Option<String>,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) version: i64,
}

/// The text stored under a key for an operation's result.
pub(crate) fn encode_result<T: Serialize>(key: &IdempotencyKey, result: &T) -> Result<String, Error> {
    serde_json::to_string(result).map_err(|e| corrupt(key, "(not stored)", e))
}

/// The answer to a keyed operation whose key is stored.
pub(crate) fn replayed_result<T: DeserializeOwned>(
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    stored_fingerprint: &str,
    stored: &str,
) -> Result<Once<T>, Error> {
    if stored_fingerprint != fingerprint.as_str() {
        return Err(Error::IdempotencyKeyReused { key: key.to_string() });
    }
    // The outcome of a keyed transition stored under this key, not an operation's result.
    if serde_json::from_str::<StoredTransition>(stored).is_ok_and(|stored| stored.machine.is_some()) {
        return Err(Error::IdempotencyKeyReused { key: key.to_string() });
    }
    serde_json::from_str(stored).map(Once::Replayed).map_err(|e| corrupt(key, stored, e))
}
