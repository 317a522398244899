//! The span fields of a store's operations, from a transition request or an entity id.

use crate::entity_id::EntityId;
use crate::machine::StateMachine;
use crate::store::{Target, TransitionRequest};
use crate::telemetry::{Fields, Operation, Traced};

/// Starts the span of a transition request on `store` (`memory`, or the SQL backend's name);
/// `in_caller_tx` for a request in the caller's transaction.
pub(crate) fn apply<M: StateMachine, Tx>(
    store: &'static str,
    request: &TransitionRequest<'_, M, Tx>,
    in_caller_tx: bool,
) -> Traced {
    let (target, event) = match request.target() {
        Target::To(to) | Target::From { to, .. } => (Some(to.as_str()), None),
        Target::Fire(event) => (None, Some(M::event_name(event))),
    };
    let key_source = request.key().map(|(key, _)| if key.seq() < 0 { "opaque" } else { key.source() });
    let fields = Fields { target, event, key_source, in_caller_tx, ..Fields::entity(store, M::MACHINE, request.id()) };
    Traced::start(Operation::Apply, &fields)
}

/// Starts the span of `operation` on entity `id` of `store`.
pub(crate) fn entity<M: StateMachine>(store: &'static str, operation: Operation, id: &EntityId) -> Traced {
    Traced::start(operation, &Fields::entity(store, M::MACHINE, id))
}

/// Starts the span of `operation` on entity `id` of `store`, in the caller's transaction.
#[cfg(feature = "_sql")]
pub(crate) fn within<M: StateMachine>(store: &'static str, operation: Operation, id: &EntityId) -> Traced {
    Traced::start(operation, &Fields { in_caller_tx: true, ..Fields::entity(store, M::MACHINE, id) })
}

/// A locked transition (under [`Store::lock`](crate::Store::lock)) of `id` to `to`.
pub(crate) fn locked<M: StateMachine>(store: &'static str, id: &EntityId, to: M) -> Traced {
    Traced::start(Operation::Apply, &Fields { target: Some(to.as_str()), ..Fields::entity(store, M::MACHINE, id) })
}
