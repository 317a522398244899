//! What a store operation did.

use crate::machine::StateMachine;

/// The result of a transition that did not fail (see the outcome table in the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<M: StateMachine> {
    /// The entity moved: its state is `to`, its version `version`, one history row was written
    /// and the effects ran and committed.
    Applied {
        /// The state the entity left.
        from: M,
        /// The state the entity is in now.
        to: M,
        /// The entity's version after the transition.
        version: i64,
    },
    /// This very request (by its idempotency key) was applied before: the stored outcome of
    /// that first application; nothing was written and no effect ran.
    Replayed {
        /// The state the first application left.
        from: M,
        /// The state it reached.
        to: M,
        /// The version it produced.
        version: i64,
    },
    /// The entity already was in the target, reached by another request: nothing was written
    /// and no effect ran.
    AlreadyApplied {
        /// The state the entity is in (the target).
        state: M,
        /// The entity's unchanged version.
        version: i64,
    },
}

impl<M: StateMachine> Outcome<M> {
    /// Whether this call moved the entity.
    pub fn is_applied(&self) -> bool {
        matches!(self, Self::Applied { .. })
    }

    /// The state the entity is in after the call.
    pub fn state(&self) -> M {
        match *self {
            Self::Applied { to, .. } | Self::Replayed { to, .. } => to,
            Self::AlreadyApplied { state, .. } => state,
        }
    }

    /// Whether this was a replay of a request applied before under the same idempotency key.
    pub fn is_replay(&self) -> bool {
        matches!(self, Self::Replayed { .. })
    }

    /// The entity's version after the call (for a replay: the version the first application
    /// produced).
    pub fn version(&self) -> i64 {
        match *self {
            Self::Applied { version, .. } | Self::Replayed { version, .. } | Self::AlreadyApplied { version, .. } => {
                version
            }
        }
    }
}

/// The result of an idempotent create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome<M: StateMachine> {
    /// The entity was inserted in `state` (the initial state unless another was asked for),
    /// version 0.
    Created {
        /// The state it was created in.
        state: M,
    },
    /// An entity with this id exists; nothing was written.
    AlreadyExists {
        /// The state the existing entity is in.
        state: M,
        /// Its version.
        version: i64,
    },
}

/// The result of an idempotent delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The entity was deleted.
    Deleted,
    /// No entity with this id existed; nothing was written.
    AlreadyAbsent,
}

/// An entity's state and version, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot<M: StateMachine> {
    /// The state.
    pub state: M,
    /// The version: 0 when created, +1 for every applied transition.
    pub version: i64,
}

/// One applied transition, as recorded in the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry<M: StateMachine> {
    /// The version the transition produced (1 for the first one).
    pub version: i64,
    /// The state it left.
    pub from: M,
    /// The state it reached.
    pub to: M,
    /// The event's stored name, when the transition was fired by an event.
    pub event: Option<String>,
    /// When it was applied, in microseconds since the Unix epoch.
    pub at_micros: i64,
    /// Who asked for it ([`TransitionRequest::actor`](crate::TransitionRequest::actor)).
    pub actor: Option<String>,
    /// Why ([`TransitionRequest::reason`](crate::TransitionRequest::reason)).
    pub reason: Option<String>,
    /// The idempotency key that applied it (`source#seq`, as [`IdempotencyKey`](crate::IdempotencyKey)
    /// displays), when the request carried one.
    pub idempotency_key: Option<String>,
    /// The caller's metadata ([`TransitionRequest::metadata`](crate::TransitionRequest::metadata)).
    pub metadata: Option<serde_json::Value>,
    /// When the entity was deleted, for a row of an earlier life of the id
    /// ([`Store::audit`](crate::Store::audit)); `None` while the entity lives.
    pub deleted_at_micros: Option<i64>,
}
