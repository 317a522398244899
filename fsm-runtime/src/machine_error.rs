//! Errors of the pure machine, before any storage is involved.

/// A stored name that no state of the machine maps to.
///
/// Returned by [`StateMachine::from_stored`](crate::StateMachine::from_stored) and the generated
/// `FromStr`; a store turns it into [`Error::UnknownState`](crate::Error::UnknownState), which also
/// names the entity and the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a state of {machine} (expected one of: {expected})")]
pub struct UnknownState {
    /// The machine that was asked.
    pub machine: &'static str,
    /// The value that matched no state.
    pub value: String,
    /// The stored names of all states, comma separated.
    pub expected: &'static str,
}

/// An event fired in a state that has no edge for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{machine}: event `{event}` is not legal in state `{state}`")]
pub struct InvalidEvent {
    /// The machine that was asked.
    pub machine: &'static str,
    /// The stored name of the state the event was fired in.
    pub state: &'static str,
    /// The name of the event.
    pub event: &'static str,
}
