//! What every store does the same way for idempotency keys and strict targets: the stored form
//! of an outcome, and the answer to a key found stored.

use crate::entity_id::EntityId;
use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::keys::stored::{StoredTransition, corrupt};
use crate::machine::StateMachine;
use crate::outcome::Outcome;

/// The text stored under a key for an applied transition of entity `id`.
pub(crate) fn encode_applied<M: StateMachine>(id: &EntityId, from: M, to: M, version: i64) -> String {
    let stored = StoredTransition {
        machine: Some(M::MACHINE.to_owned()),
        entity: Some(id.to_string()),
        from: from.as_str().to_owned(),
        to: to.as_str().to_owned(),
        version,
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// The answer to a keyed transition of entity `id` whose key is stored: the first
/// application's outcome, or [`Error::IdempotencyKeyReused`] when the fingerprints differ or
/// the key was stored by a transition of another machine or entity.
pub(crate) fn replayed_transition<M: StateMachine>(
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    stored_fingerprint: &str,
    stored: &str,
    id: &EntityId,
) -> Result<Outcome<M>, Error> {
    if stored_fingerprint != fingerprint.as_str() {
        return Err(Error::IdempotencyKeyReused { key: key.to_string() });
    }
    let value: serde_json::Value = serde_json::from_str(stored).map_err(|e| corrupt(key, stored, e))?;
    // Valid JSON of another shape: the result of a keyed operation stored under this key.
    let Ok(outcome) = serde_json::from_value::<StoredTransition>(value) else {
        return Err(Error::IdempotencyKeyReused { key: key.to_string() });
    };
    let other_machine = outcome.machine.as_deref().is_some_and(|machine| machine != M::MACHINE);
    let other_entity = outcome.entity.as_deref().is_some_and(|entity| entity != id.to_string());
    if other_machine || other_entity {
        return Err(Error::IdempotencyKeyReused { key: key.to_string() });
    }
    let state = |name: &str| M::from_stored(name).map_err(|e| corrupt(key, stored, e));
    Ok(Outcome::Replayed { from: state(&outcome.from)?, to: state(&outcome.to)?, version: outcome.version })
}

/// An `AlreadyApplied` for a strict target is an error: another request got there first.
pub(crate) fn already_applied<M: StateMachine>(id: &EntityId, state: M, version: i64) -> Result<Outcome<M>, Error> {
    if M::is_strict(state) {
        return Err(Error::ReachedByAnotherRequest { machine: M::MACHINE, id: id.clone(), state: state.as_str() });
    }
    Ok(Outcome::AlreadyApplied { state, version })
}
