//! [`OutcomeLabel`]: the `outcome` label of a transition request.

use crate::error::Error;
use crate::outcome::Outcome;

/// How a transition request ended, as the `outcome` label of
/// [`TRANSITIONS_TOTAL`](super::TRANSITIONS_TOTAL) and the `outcome` field of its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutcomeLabel {
    /// [`Outcome::Applied`]: the entity moved.
    Applied,
    /// [`Outcome::Replayed`]: a request with a stored idempotency key.
    Replayed,
    /// [`Outcome::AlreadyApplied`]: the entity already was in the target.
    AlreadyApplied,
    /// Refused by the table or the data: [`Error::InvalidTransition`], [`Error::InvalidEvent`],
    /// [`Error::NotFound`], [`Error::UnknownState`], [`Error::ReachedByAnotherRequest`] (strict).
    Refused,
    /// Lost to another request: [`Error::Conflict`], [`Error::VersionConflict`],
    /// [`Error::IdempotencyKeyReused`].
    Conflict,
    /// Anything else: a database error, a failed effect, a corrupt key, …
    Error,
}

impl OutcomeLabel {
    /// The label of a request's result.
    pub fn of<M: crate::machine::StateMachine>(result: &Result<Outcome<M>, Error>) -> Self {
        match result {
            Ok(Outcome::Applied { .. }) => Self::Applied,
            Ok(Outcome::Replayed { .. }) => Self::Replayed,
            Ok(Outcome::AlreadyApplied { .. }) => Self::AlreadyApplied,
            Err(error) => Self::of_error(error),
        }
    }

    /// The label of a failed request.
    pub fn of_error(error: &Error) -> Self {
        match error {
            Error::InvalidTransition { .. }
            | Error::InvalidEvent { .. }
            | Error::NotFound { .. }
            | Error::UnknownState { .. }
            | Error::ReachedByAnotherRequest { .. } => Self::Refused,
            Error::Conflict { .. } | Error::VersionConflict { .. } | Error::IdempotencyKeyReused { .. } => {
                Self::Conflict
            }
            _ => Self::Error,
        }
    }

    /// The label's text: `applied`, `replayed`, `already_applied`, `refused`, `conflict` or
    /// `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Replayed => "replayed",
            Self::AlreadyApplied => "already_applied",
            Self::Refused => "refused",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

impl std::fmt::Display for OutcomeLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
