//! Idempotency keys: a caller-supplied key and a fingerprint of the request, stored in the same
//! transaction as the work, so that a retried request returns the stored outcome and runs
//! nothing.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The longest source (or opaque key) accepted, in bytes: it is part of a primary key, and
/// MySQL indexes at most 191 four-byte characters.
pub const MAX_KEY_LEN: usize = 191;

/// The longest fingerprint accepted, in bytes.
pub const MAX_FINGERPRINT_LEN: usize = 128;

/// A key or fingerprint that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The source (or opaque key) is empty.
    #[error("idempotency key source is empty")]
    EmptySource,
    /// The source (or opaque key) is longer than [`MAX_KEY_LEN`] bytes.
    #[error("idempotency key source is {len} bytes, longer than {MAX_KEY_LEN}")]
    SourceTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A sequence number below zero.
    #[error("idempotency key sequence {seq} is negative")]
    NegativeSequence {
        /// The sequence given.
        seq: i64,
    },
    /// The fingerprint is empty.
    #[error("request fingerprint is empty")]
    EmptyFingerprint,
    /// The fingerprint is longer than [`MAX_FINGERPRINT_LEN`] bytes.
    #[error("request fingerprint is {len} bytes, longer than {MAX_FINGERPRINT_LEN}")]
    FingerprintTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The request could not be serialised to compute its fingerprint.
    #[error("request cannot be fingerprinted: {0}")]
    Unserializable(String),
}

/// Who sent a request and which of its requests it is: a `source` (a client, a queue, a
/// partition) and a sequence number, stored under a unique `(source, seq)` key. An opaque string
/// key (an `Idempotency-Key` header) is stored with sequence `-1`; an opaque key within a scope
/// (a tenant's, an account's: [`IdempotencyKey::scoped`]) with sequence `-2`, so that the same
/// opaque key of two tenants, or of a tenant and an unscoped client, are different keys.
///
/// ```
/// use fsm_runtime::IdempotencyKey;
/// let key = IdempotencyKey::new("checkout-web", 17)?;
/// assert_eq!((key.source(), key.seq()), ("checkout-web", 17));
/// assert!(IdempotencyKey::new("", 1).is_err());
/// let header = IdempotencyKey::opaque("8e03978e-40d5-43e8-bc93-6894a57f9324")?;
/// assert_eq!(header.seq(), -1);
/// # Ok::<(), fsm_runtime::idempotency::InvalidKey>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    source: String,
    seq: i64,
}

fn check_source(source: &str) -> Result<(), InvalidKey> {
    if source.is_empty() {
        return Err(InvalidKey::EmptySource);
    }
    if source.len() > MAX_KEY_LEN {
        return Err(InvalidKey::SourceTooLong { len: source.len() });
    }
    Ok(())
}

impl IdempotencyKey {
    /// The key `(source, seq)`; `seq` must be zero or more.
    pub fn new(source: impl Into<String>, seq: i64) -> Result<Self, InvalidKey> {
        let source = source.into();
        check_source(&source)?;
        if seq < 0 {
            return Err(InvalidKey::NegativeSequence { seq });
        }
        Ok(Self { source, seq })
    }

    /// An opaque key, such as the value of an `Idempotency-Key` HTTP header.
    pub fn opaque(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let source = key.into();
        check_source(&source)?;
        Ok(Self { source, seq: -1 })
    }

    /// An opaque key within `scope` (a tenant, an account): `Idempotency-Key: 42` of tenant
    /// `acme` and of tenant `globex` are two keys, and neither is the unscoped opaque key `42`.
    /// Stored as the source `<length of scope>:<scope>/<key>` (no two scopes and keys give the
    /// same text) with sequence `-2`; the whole must fit [`MAX_KEY_LEN`].
    ///
    /// ```
    /// use fsm_runtime::IdempotencyKey;
    /// let acme = IdempotencyKey::scoped("acme", "42")?;
    /// let globex = IdempotencyKey::scoped("globex", "42")?;
    /// assert_ne!(acme, globex);
    /// assert_ne!(acme, IdempotencyKey::opaque("42")?);
    /// assert_ne!(IdempotencyKey::scoped("a/b", "c")?, IdempotencyKey::scoped("a", "b/c")?);
    /// assert_eq!((acme.scope(), acme.to_string()), (Some("acme"), "acme/42".to_owned()));
    /// assert!(IdempotencyKey::scoped("", "42").is_err());
    /// # Ok::<(), fsm_runtime::idempotency::InvalidKey>(())
    /// ```
    pub fn scoped(scope: &str, key: &str) -> Result<Self, InvalidKey> {
        check_source(scope)?;
        check_source(key)?;
        let source = format!("{}:{scope}/{key}", scope.len());
        check_source(&source)?;
        Ok(Self { source, seq: SCOPED })
    }

    /// The scope of a [scoped](IdempotencyKey::scoped) key.
    pub fn scope(&self) -> Option<&str> {
        self.scoped_parts().map(|(scope, _)| scope)
    }

    /// A scoped key's scope and key, read back from its source.
    fn scoped_parts(&self) -> Option<(&str, &str)> {
        if self.seq != SCOPED {
            return None;
        }
        let (len, rest) = self.source.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let scope = rest.get(..len)?;
        let key = rest.get(len..)?.strip_prefix('/')?;
        Some((scope, key))
    }

    /// The source (or the opaque key).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The sequence number (`-1` for an opaque key, `-2` for a scoped one).
    pub fn seq(&self) -> i64 {
        self.seq
    }
}

/// The sequence number of a scoped opaque key.
const SCOPED: i64 = -2;

impl std::fmt::Display for IdempotencyKey {
    /// `source#seq`, the opaque key itself, or `scope/key`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((scope, key)) = self.scoped_parts() {
            return write!(f, "{scope}/{key}");
        }
        if self.seq < 0 { f.write_str(&self.source) } else { write!(f, "{}#{}", self.source, self.seq) }
    }
}

/// A stable digest of a request's content: the same key with another fingerprint is a reused
/// key, not a retry.
///
/// ```
/// use fsm_runtime::Fingerprint;
/// #[derive(serde::Serialize)]
/// struct TopUp { wallet: u64, cents: u64 }
/// let a = Fingerprint::of(&TopUp { wallet: 7, cents: 500 })?;
/// let b = Fingerprint::of(&TopUp { wallet: 7, cents: 500 })?;
/// let c = Fingerprint::of(&TopUp { wallet: 7, cents: 900 })?;
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// assert_eq!(a.as_str().len(), 64);
/// # Ok::<(), fsm_runtime::idempotency::InvalidKey>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The SHA-256 of the request's JSON serialisation, in hex. Serialise maps with a stable
    /// order (`BTreeMap`, structs) so that equal requests give equal fingerprints.
    pub fn of<T: Serialize + ?Sized>(request: &T) -> Result<Self, InvalidKey> {
        let json = serde_json::to_vec(request).map_err(|e| InvalidKey::Unserializable(e.to_string()))?;
        Ok(Self::of_bytes(&json))
    }

    /// The SHA-256 of raw bytes (a request body), in hex.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A fingerprint computed by the caller.
    pub fn new(fingerprint: impl Into<String>) -> Result<Self, InvalidKey> {
        let fingerprint = fingerprint.into();
        if fingerprint.is_empty() {
            return Err(InvalidKey::EmptyFingerprint);
        }
        if fingerprint.len() > MAX_FINGERPRINT_LEN {
            return Err(InvalidKey::FingerprintTooLong { len: fingerprint.len() });
        }
        Ok(Self(fingerprint))
    }

    /// The fingerprint as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The result of a keyed operation ([`Keys::run_once`](crate::Keys::run_once)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Once<T> {
    /// This call ran the operation; its result is stored under the key.
    Ran(T),
    /// The key was used before with the same fingerprint: the stored result, nothing ran.
    Replayed(T),
}

impl<T> Once<T> {
    /// The result, whichever call produced it.
    pub fn into_inner(self) -> T {
        match self {
            Self::Ran(value) | Self::Replayed(value) => value,
        }
    }

    /// Whether this is a replay.
    pub fn is_replay(&self) -> bool {
        matches!(self, Self::Replayed(_))
    }
}
