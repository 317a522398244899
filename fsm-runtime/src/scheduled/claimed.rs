//! [`DueTimer`]: a timer a scheduler claimed, and [`TimerOutcome`]: how it ended.

use crate::entity_id::EntityId;

/// A timer claimed by a scheduler, to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    /// Its row in the timers' table (its position in a memory store's).
    pub sequence: i64,
    /// Its id, unique, from which the idempotency key of its firing is derived.
    pub timer_id: String,
    /// The entity, as its table stores it.
    pub entity: EntityId,
    /// The stored name of the event to fire.
    pub event: String,
    /// When it was due, in microseconds since the Unix epoch.
    pub due_at_micros: i64,
    /// How many times it was claimed, this claim included.
    pub attempts: i64,
}

/// How a fired timer ended, recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOutcome {
    /// The event was applied.
    Fired,
    /// An earlier firing of this timer was applied (a scheduler died before marking it).
    Replayed,
    /// The entity was already in the event's target: a no-op.
    AlreadyApplied,
    /// The entity moved on to a state the event does not leave: a no-op.
    InvalidTransition,
    /// The entity does not exist (any more): a no-op.
    NotFound,
    /// The event is not one of the machine's (renamed since the timer was written).
    UnknownEvent,
}

impl TimerOutcome {
    /// The name it is stored under.
    ///
    /// ```
    /// use fsm_runtime::timer::TimerOutcome;
    /// assert_eq!(TimerOutcome::InvalidTransition.as_str(), "invalid_transition");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Replayed => "replayed",
            Self::AlreadyApplied => "already_applied",
            Self::InvalidTransition => "invalid_transition",
            Self::NotFound => "not_found",
            Self::UnknownEvent => "unknown_event",
        }
    }

    /// Whether the timer's event was applied (by this firing or an earlier one).
    pub fn applied(self) -> bool {
        matches!(self, Self::Fired | Self::Replayed)
    }
}

/// A timer as its table holds it, done or not: what [`TimerSource::list`](crate::timer::TimerSource::list)
/// shows to tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRecord {
    /// Its id.
    pub timer_id: String,
    /// The entity, as its table stores it.
    pub entity: EntityId,
    /// The stored name of the event.
    pub event: String,
    /// When it is due, in microseconds since the Unix epoch.
    pub due_at_micros: i64,
    /// How many times it was claimed.
    pub attempts: i64,
    /// How it ended ([`TimerOutcome::as_str`]); `None` while pending.
    pub outcome: Option<String>,
    /// Why its last firing failed, if it did.
    pub last_error: Option<String>,
}
