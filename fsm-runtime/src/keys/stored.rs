//! What a key stores for a keyed operation, and the answer to a key found stored.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey, Once};

/// A stored outcome that cannot be read back.
pub(crate) fn corrupt(key: &IdempotencyKey, stored: &str, reason: impl std::fmt::Display) -> Error {
    Error::CorruptKey { key: key.to_string(), stored: stored.to_owned(), reason: reason.to_string() }
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
    serde_json::from_str(stored).map(Once::Replayed).map_err(|e| corrupt(key, stored, e))
}
