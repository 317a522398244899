//! What the caller writes: the outside call and what its answer means ([`OutboundCall`]), and
//! the key every attempt of one call carries ([`OutboundKey`]).

use std::future::Future;

use crate::entity_id::EntityId;
use crate::error::BoxError;
use crate::machine::StateMachine;
use crate::store::TransitionRequest;

/// The key of an outside call: the machine, the entity and the version at which the entity
/// entered its in-flight state, `Payment/p-17/2`. Every attempt of that entry (a retry, a
/// restart, the recovery worker on another host) derives the same key; a later entry into an
/// in-flight state (a version further on) derives another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboundKey(String);

impl OutboundKey {
    /// The key of the entry of entity `id` of machine `M` into an in-flight state at `version`.
    pub fn of<M: StateMachine>(id: &EntityId, version: i64) -> Self {
        Self(format!("{}/{id}/{version}", M::MACHINE))
    }

    /// The key as text, for the service's `Idempotency-Key` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OutboundKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attempt of an outside call, as [`OutboundCall::call`] receives it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a, M> {
    /// The entity, as the store stores its id.
    pub id: &'a EntityId,
    /// The in-flight state the entity is in.
    pub state: M,
    /// The key to send: the same for every attempt of this entry into `state`.
    pub key: &'a OutboundKey,
}

/// What an attempt of an outside call came to.
#[derive(Debug)]
pub enum CallOutcome<M> {
    /// A definite answer (charged, declined): recorded as the move from the in-flight state
    /// to this state, which must be a legal target from it.
    Settled(M),
    /// No definite answer (a timeout, a 5xx, a refused connection): the entity stays in flight
    /// and the call is made again later, with the same key.
    Unknown(BoxError),
}

/// The outside call of a machine's in-flight states, and how its answer is recorded: what the
/// caller writes; [`Outbound`](crate::outbound::Outbound) does the phases, the key, the claim
/// and the recovery. `Tx` is the store's transaction type, for the effects of the recording
/// transition ([`OutboundCall::settle`]).
pub trait OutboundCall<M: StateMachine, Tx>: Send + Sync {
    /// Makes the call for `call.id` with `call.key`, and says what its answer means. A panic
    /// or a cancelled future is an answer never received: the entity stays in flight.
    fn call(&self, call: Call<'_, M>) -> impl Future<Output = CallOutcome<M>> + Send;

    /// The request that records a definite answer: the move of `id` from the in-flight state
    /// `from` to `to`, by default with nothing else. Add effects here (a ledger debit and a
    /// receipt that commit with the move), an actor or a reason.
    fn settle<'a>(&'a self, id: EntityId, from: M, to: M) -> TransitionRequest<'a, M, Tx> {
        TransitionRequest::from(id, from, to).actor("outbound")
    }
}
