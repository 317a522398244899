//! Resolving a request into a compare-and-set, and classifying a row the compare-and-set missed.
//!
//! Shared by every adapter so that all of them give the same outcome for the same row.

use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outcome::Snapshot;
use crate::store::request::Target;

/// The states a compare-and-set matches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sources<M: 'static> {
    /// The legal sources of a target or an event, from the generated table.
    Table(&'static [M]),
    /// The one state the caller observed.
    One(M),
}

impl<M: Copy + PartialEq> Sources<M> {
    /// The states as a slice.
    pub(crate) fn as_slice(&self) -> &[M] {
        match self {
            Self::Table(states) => states,
            Self::One(state) => std::slice::from_ref(state),
        }
    }

    /// Whether `state` is one of them.
    pub(crate) fn contains(&self, state: M) -> bool {
        self.as_slice().contains(&state)
    }
}

/// A request resolved against the transition table: the target, the states the
/// compare-and-set may match, and the checks to apply.
#[derive(Debug, Clone)]
pub(crate) struct Plan<M: StateMachine> {
    pub(crate) id: EntityId,
    pub(crate) target: M,
    pub(crate) sources: Sources<M>,
    /// The state the caller observed (`transition_from`, or a cyclic event after its read).
    pub(crate) observed: Option<M>,
    /// The event, when the request fired one.
    pub(crate) event: Option<M::Event>,
    pub(crate) expected_version: Option<i64>,
}

/// What a row the compare-and-set did not match means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision<M> {
    /// The row is in a legal source and passes the checks: apply (or, after a missed
    /// compare-and-set, the row moved back into a source meanwhile: try it again).
    Apply {
        /// The state the row is in.
        from: M,
    },
    /// The row already is in the target.
    AlreadyApplied {
        /// The target.
        state: M,
        /// The row's version.
        version: i64,
    },
}

/// How a request resolves before anything is read.
pub(crate) enum Resolution<M: StateMachine> {
    /// A compare-and-set can run right away.
    Ready(Plan<M>),
    /// A cyclic event: its target depends on the entity's state, which must be read first
    /// ([`Plan::for_event_in_state`]).
    NeedsState {
        /// The event.
        event: M::Event,
    },
}

/// How an event with several targets resolves once the entity's state is known.
pub(crate) enum AfterRead<M: StateMachine> {
    /// A compare-and-set from the state read.
    Ready(Plan<M>),
    /// The entity already is in one of the event's targets: nothing to do.
    AlreadyApplied(Snapshot<M>),
}

impl<M: StateMachine> Plan<M> {
    /// The plan of a move to `to` from any of its legal sources.
    pub(crate) fn to_target(id: &EntityId, to: M, expected_version: Option<i64>) -> Self {
        Plan {
            id: id.clone(),
            target: to,
            sources: Sources::Table(M::sources(to)),
            observed: None,
            event: None,
            expected_version,
        }
    }

    /// Resolves a request; a request the table itself forbids fails here, before any I/O.
    pub(crate) fn resolve(
        id: &EntityId,
        target: Target<M>,
        expected_version: Option<i64>,
    ) -> Result<Resolution<M>, Error> {
        let plan = |target, sources, observed, event| Plan {
            id: id.clone(),
            target,
            sources,
            observed,
            event,
            expected_version,
        };
        Ok(match target {
            Target::To(to) => Resolution::Ready(Self::to_target(id, to, expected_version)),
            Target::From { from, to } => {
                if !M::can_transition(from, to) {
                    return Err(Error::InvalidTransition {
                        machine: M::MACHINE,
                        id: id.clone(),
                        from: from.as_str(),
                        to: to.as_str(),
                    });
                }
                Resolution::Ready(plan(to, Sources::One(from), Some(from), None))
            }
            Target::Fire(event) => match M::event_targets(event) {
                [to] => Resolution::Ready(plan(*to, Sources::Table(M::event_sources(event)), None, Some(event))),
                _ => Resolution::NeedsState { event },
            },
        })
    }

    /// Resolves an event with several targets once the entity's state `current` (at `version`)
    /// is known. When `current` is one of the event's targets (and the event is not cyclic), the
    /// event was applied already. Otherwise: a compare-and-set from `current` to where the event
    /// leads from it.
    pub(crate) fn for_event_in_state(
        id: &EntityId,
        event: M::Event,
        current: M,
        version: i64,
        expected_version: Option<i64>,
    ) -> Result<AfterRead<M>, Error> {
        if !M::event_is_cyclic(event) && M::event_targets(event).contains(&current) {
            return Ok(AfterRead::AlreadyApplied(Snapshot { state: current, version }));
        }
        let to = current.fire(event).map_err(|e| Error::InvalidEvent {
            machine: M::MACHINE,
            id: id.clone(),
            state: e.state,
            event: e.event,
        })?;
        Ok(AfterRead::Ready(Plan {
            id: id.clone(),
            target: to,
            sources: Sources::One(current),
            observed: Some(current),
            event: Some(event),
            expected_version,
        }))
    }

    /// Decides what a row means for this request: apply, already applied, or which error.
    pub(crate) fn decide(&self, state: M, version: i64) -> Result<Decision<M>, Error> {
        if state == self.target {
            return Ok(Decision::AlreadyApplied { state, version });
        }
        if let Some(expected) = self.expected_version
            && expected != version
        {
            return Err(Error::VersionConflict { machine: M::MACHINE, id: self.id.clone(), expected, actual: version });
        }
        if let Some(observed) = self.observed
            && observed != state
        {
            return Err(Error::Conflict {
                machine: M::MACHINE,
                id: self.id.clone(),
                expected: observed.as_str(),
                actual: state.as_str(),
            });
        }
        if self.sources.contains(state) {
            return Ok(Decision::Apply { from: state });
        }
        Err(match self.event {
            Some(event) => Error::InvalidEvent {
                machine: M::MACHINE,
                id: self.id.clone(),
                state: state.as_str(),
                event: M::event_name(event),
            },
            None => Error::InvalidTransition {
                machine: M::MACHINE,
                id: self.id.clone(),
                from: state.as_str(),
                to: self.target.as_str(),
            },
        })
    }

    /// The event's stored name, for the history row.
    pub(crate) fn event_name(&self) -> Option<&'static str> {
        self.event.map(M::event_name)
    }
}

/// Parses a stored state, naming the entity and table when it is not a state.
pub(crate) fn parse_state<M: StateMachine>(id: &EntityId, table: &str, value: &str) -> Result<M, Error> {
    M::from_stored(value).map_err(|e| Error::UnknownState {
        machine: M::MACHINE,
        id: id.clone(),
        table: table.to_owned(),
        value: e.value,
        expected: e.expected,
    })
}

/// The error for an entity that does not exist.
pub(crate) fn not_found<M: StateMachine>(id: &EntityId, table: &str) -> Error {
    Error::NotFound { machine: M::MACHINE, id: id.clone(), table: table.to_owned() }
}
