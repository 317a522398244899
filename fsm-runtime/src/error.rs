//! The error of every store operation.

use crate::column_problem::ColumnProblem;
use crate::entity_id::EntityId;
use crate::idempotency::InvalidKey;
use crate::mapping::InvalidIdentifier;

/// A boxed error, as returned by an effect.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed. A variant about an entity names the machine, the entity and
/// the states involved (the entity's table where the row itself is the problem: not found, an
/// unknown stored state); a variant about storage names the table; one about a key names the
/// key. [`Error::is_retryable`] says whether trying again may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No entity with this id exists in the table.
    #[error("{machine} `{id}` not found in table `{table}`")]
    NotFound {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The table that was searched.
        table: String,
    },

    /// The table has no edge from the entity's state to the requested target.
    #[error("{machine} `{id}`: no transition from `{from}` to `{to}`")]
    InvalidTransition {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The state the entity is in.
        from: &'static str,
        /// The requested target.
        to: &'static str,
    },

    /// The event has no edge from the entity's state.
    #[error("{machine} `{id}`: event `{event}` is not legal in state `{state}`")]
    InvalidEvent {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The state the entity is in.
        state: &'static str,
        /// The event that was fired.
        event: &'static str,
    },

    /// The stored state is a string no variant maps to (a corrupted or foreign row).
    #[error("{machine} `{id}` in table `{table}` holds `{value}`, which is not a state (expected one of: {expected})")]
    UnknownState {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The table.
        table: String,
        /// The value found.
        value: String,
        /// The stored names of all states.
        expected: &'static str,
    },

    /// A compare-and-set on an observed state found the entity in another state (retryable:
    /// read again and decide again).
    #[error("{machine} `{id}`: expected state `{expected}`, found `{actual}`")]
    Conflict {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The state the caller observed.
        expected: &'static str,
        /// The state the entity is in now.
        actual: &'static str,
    },

    /// The entity's version is not the one the caller demanded.
    #[error("{machine} `{id}`: expected version {expected}, found {actual}")]
    VersionConflict {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The version the caller demanded.
        expected: i64,
        /// The version the entity has.
        actual: i64,
    },

    /// An effect attached to the transition failed; the transition was rolled back.
    #[error("{machine} `{id}`: effect of the transition `{from}` -> `{to}` failed, rolled back: {source}")]
    Effect {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The state the transition left.
        from: &'static str,
        /// The state the transition would have reached.
        to: &'static str,
        /// The effect's error.
        #[source]
        source: BoxError,
    },

    /// The target is declared `strict` and the entity already is in it, reached by another
    /// request (not a replay of this one, which has the same idempotency key).
    #[error("{machine} `{id}` already is `{state}`, reached by another request (the transition is strict)")]
    ReachedByAnotherRequest {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// The state (the strict target).
        state: &'static str,
    },

    /// The idempotency key was used before for a request with another fingerprint: the caller
    /// reused a key for a different request.
    #[error("idempotency key `{key}` was used before for a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },

    /// A keyed operation failed; nothing was stored, so the key can be retried.
    #[error("operation with idempotency key `{key}` failed, nothing stored: {source}")]
    Operation {
        /// The key.
        key: String,
        /// The operation's error.
        #[source]
        source: BoxError,
    },

    /// An idempotency key or fingerprint that cannot be stored.
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),

    /// A stored outcome that cannot be read back (written by an incompatible version, or edited).
    #[error("idempotency key `{key}`: stored outcome `{stored}` cannot be read: {reason}")]
    CorruptKey {
        /// The key.
        key: String,
        /// What is stored.
        stored: String,
        /// Why it cannot be read.
        reason: String,
    },

    /// A table or column name given at run time is not a valid SQL identifier.
    #[error(transparent)]
    InvalidIdentifier(#[from] InvalidIdentifier),

    /// A column given to [`Store::create_with`](crate::Store::create_with) cannot be written:
    /// refused before anything was sent.
    #[error("{machine}: column `{column}` of table `{table}` cannot be given to create_with: {problem}")]
    InvalidColumn {
        /// The machine.
        machine: &'static str,
        /// The entity table.
        table: String,
        /// The column as given.
        column: String,
        /// What is wrong with it.
        problem: ColumnProblem,
    },

    /// The entity table or one of its columns is missing or unreadable (checked when a store is
    /// built).
    #[error("{machine}: table `{table}` with columns {columns} is not usable: {source}")]
    Schema {
        /// The machine.
        machine: &'static str,
        /// The entity table.
        table: String,
        /// The id, state and version columns expected.
        columns: String,
        /// The database's error.
        #[source]
        source: BoxError,
    },

    /// A lock another request holds (the entity's row, or an idempotency key whose first
    /// request is still running) was not granted within the store's bound
    /// ([`SqlStore::lock_wait`](crate::store::SqlStore::lock_wait)): nothing was written; try
    /// again later. An HTTP service answers `409 Conflict` with `Retry-After`.
    #[error(
        "{machine}: a lock on table `{table}` was not granted within {waited:?}; another request holds it: retry later"
    )]
    LockTimeout {
        /// The machine.
        machine: &'static str,
        /// The table of the request.
        table: String,
        /// The bound it waited.
        waited: std::time::Duration,
    },

    /// The claim of an entity's outside call (its lease) could not be taken or given back:
    /// nothing was called.
    #[error("{machine} `{id}`: the claim of its outside call failed: {source}")]
    Claim {
        /// The machine.
        machine: &'static str,
        /// The entity.
        id: EntityId,
        /// Whether trying again may succeed (the lease store's error was transient).
        retryable: bool,
        /// The lease store's error.
        #[source]
        source: BoxError,
    },

    /// The database failed.
    #[error("{machine}: database error on table `{table}` ({}): {source}", if *.retryable { "retry is safe" } else { "do not retry" })]
    Database {
        /// The machine.
        machine: &'static str,
        /// The table the statement concerned.
        table: String,
        /// Whether the statement surely had no effect and may be retried (serialization
        /// failure, deadlock, lock timeout, connection failure before commit).
        retryable: bool,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// Whether a caller's error is, or wraps, a transient database error.
fn source_is_transient(source: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(source);
    while let Some(error) = next {
        #[cfg(feature = "_sql")]
        if let Some(database) = error.downcast_ref::<sqlx::Error>() {
            return crate::sql::is_transient(database);
        }
        if let Some(Error::Database { retryable, .. }) = error.downcast_ref::<Error>() {
            return *retryable;
        }
        next = error.source();
    }
    false
}

impl Error {
    /// Wraps a driver error of a statement on `table` of `machine`, retryable when the
    /// database marked it transient.
    #[cfg(feature = "_sql")]
    pub(crate) fn database(machine: &'static str, table: &str, error: sqlx::Error) -> Self {
        Self::Database {
            machine,
            table: table.to_owned(),
            retryable: crate::sql::is_transient(&error),
            source: Box::new(error),
        }
    }

    /// Whether trying the same operation again may succeed: a [`Error::Conflict`], a
    /// [`Error::VersionConflict`] after a fresh read, a [`Error::Database`] error the database
    /// marked transient, or an [`Error::Effect`] / [`Error::Operation`] whose own SQL failed
    /// that way (a deadlock or serialization failure in the caller's statement: the whole
    /// transaction was rolled back, nothing of it stays). Everything else fails again the same
    /// way.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict { .. } | Self::VersionConflict { .. } => true,
            Self::Database { retryable, .. } => *retryable,
            Self::Claim { retryable, .. } => *retryable,
            Self::LockTimeout { .. } => true,
            Self::Effect { source, .. } | Self::Operation { source, .. } => source_is_transient(source.as_ref()),
            _ => false,
        }
    }

    /// The entity the error concerns, when it concerns one.
    pub fn entity(&self) -> Option<&EntityId> {
        match self {
            Self::NotFound { id, .. }
            | Self::InvalidTransition { id, .. }
            | Self::InvalidEvent { id, .. }
            | Self::UnknownState { id, .. }
            | Self::Conflict { id, .. }
            | Self::VersionConflict { id, .. }
            | Self::Effect { id, .. }
            | Self::ReachedByAnotherRequest { id, .. }
            | Self::Claim { id, .. } => Some(id),
            Self::IdempotencyKeyReused { .. }
            | Self::Operation { .. }
            | Self::InvalidKey(_)
            | Self::CorruptKey { .. }
            | Self::InvalidIdentifier(_)
            | Self::InvalidColumn { .. }
            | Self::Schema { .. }
            | Self::Database { .. }
            | Self::LockTimeout { .. } => None,
        }
    }
}
