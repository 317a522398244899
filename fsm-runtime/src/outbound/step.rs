//! [`Outbound`]: the phases of an outside call: into the in-flight state, the call with the
//! entry's key under a claim of the entity, and the recording of its answer.

use std::marker::PhantomData;
use std::time::Duration;

use crate::entity_id::EntityId;
use crate::error::{BoxError, Error};
use sha2::{Digest as _, Sha256};

use crate::lock::{LeaseStore, LockError, MAX_NAME_CHARS};
use crate::machine::StateMachine;
use crate::outbound::call::{Call, CallOutcome, OutboundCall, OutboundKey};
use crate::store::{Store, TransitionRequest};

/// How long a claim of an entity's call lasts unless given back: longer than a call takes.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The name of the claim of `id`'s call: `fsm-outbound/<machine>/<id>`, or the SHA-256 of that
/// where it is longer than a lease name may be.
fn claim_name(machine: &str, id: &EntityId) -> String {
    let name = format!("fsm-outbound/{machine}/{id}");
    if name.chars().count() <= MAX_NAME_CHARS {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("fsm-outbound/{hex}")
}

/// Where an outside call stands after a step.
#[derive(Debug)]
pub enum StepOutcome<M> {
    /// The call's definite answer is recorded: the entity is in `state` (moved now, or by an
    /// earlier step or another process), past its in-flight state.
    Settled {
        /// The state after the call.
        state: M,
        /// The entity's version.
        version: i64,
    },
    /// The call had no definite answer: the entity stays in `state`, and the call is made
    /// again later with the same `key` (by the next step or the recovery worker).
    InFlight {
        /// The in-flight state.
        state: M,
        /// The key every attempt of this call carries.
        key: OutboundKey,
        /// Why there was no answer.
        error: BoxError,
    },
    /// Another process (or task) is making the entity's call right now: nothing was called.
    /// An HTTP service answers `409` with `Retry-After`.
    Busy {
        /// The in-flight state.
        state: M,
    },
}

/// The phases of the outside calls of machine `M`'s in-flight states, on `store`, with the
/// claims in `leases` and the call `call` (see [the module](crate::outbound)).
#[derive(Debug)]
pub struct Outbound<M, S, L, C> {
    store: S,
    leases: L,
    call: C,
    owner: String,
    lease: Duration,
    wait: Duration,
    machine: PhantomData<fn() -> M>,
}

impl<M, S, L, C> Outbound<M, S, L, C>
where
    M: StateMachine,
    S: Store<M>,
    L: LeaseStore,
    C: OutboundCall<M, S::Tx>,
{
    /// The phases on `store`, claiming entities in `leases` for 30 seconds, not waiting for a
    /// claim another process holds.
    pub fn new(store: S, leases: L, call: C) -> Self {
        let owner = format!("outbound-{}", crate::random::random_below(u64::MAX));
        Self { store, leases, call, owner, lease: DEFAULT_LEASE, wait: Duration::ZERO, machine: PhantomData }
    }

    /// How long a claim of an entity lasts: longer than the call takes with its timeout. A
    /// process that dies mid-call leaves the entity to others after it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a step waits for the claim another process holds on the entity (its call under
    /// way) before it answers [`StepOutcome::Busy`]; none by default.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Moves the entity into an in-flight state with `request` (with its idempotency key,
    /// actor, effects…), then [`Outbound::resume`]s it: makes the call and records its answer.
    /// A request refused by the outcome table fails as [`Store::apply`] fails; a request
    /// already applied (replayed, or the entity already in flight) goes on to the call, and an
    /// entity already past its call answers where it is.
    pub async fn run(&self, request: TransitionRequest<'_, M, S::Tx>) -> Result<StepOutcome<M>, Error> {
        let id = request.id().clone();
        self.store.apply(request).await?;
        self.resume(id).await
    }

    /// Makes the call of an entity in an in-flight state with its key, under its claim, and
    /// records a definite answer; an entity in no in-flight state answers
    /// [`StepOutcome::Settled`] with where it is, calling nothing.
    pub async fn resume(&self, id: impl Into<EntityId>) -> Result<StepOutcome<M>, Error> {
        // The key and the claim are named after the id as stored: every spelling of one entity
        // (a case-insensitive id, an upper-case uuid) derives the same.
        let id = self.store.id_as_stored(id.into()).await?;
        let now = self.store.get(id.clone()).await?;
        if !now.state.is_in_flight() {
            return Ok(StepOutcome::Settled { state: now.state, version: now.version });
        }
        let resource = claim_name(M::MACHINE, &id);
        let claimed = if self.wait.is_zero() {
            self.leases.try_acquire(&resource, &self.owner, self.lease).await
        } else {
            match self.leases.acquire(&resource, &self.owner, self.lease, self.wait).await {
                Ok(lease) => Ok(Some(lease)),
                Err(LockError::Timeout { .. }) => Ok(None),
                Err(error) => Err(error),
            }
        };
        let Some(lease) = claimed.map_err(|source| self.claim_error(&id, source))? else {
            return Ok(StepOutcome::Busy { state: now.state });
        };
        let step = self.call_claimed(&id).await;
        // A claim that cannot be given back runs out by itself.
        if let Err(error) = self.leases.release(&lease).await {
            tracing::warn!(machine = M::MACHINE, entity = %id, %error, "the claim of an outside call was not given back");
        }
        step
    }

    /// The call of `id`, claimed: read again (another process may have recorded the answer
    /// between the first read and the claim), call, record.
    async fn call_claimed(&self, id: &EntityId) -> Result<StepOutcome<M>, Error> {
        let now = self.store.get(id.clone()).await?;
        if !now.state.is_in_flight() {
            return Ok(StepOutcome::Settled { state: now.state, version: now.version });
        }
        let key = OutboundKey::of::<M>(id, now.version);
        match self.call.call(Call { id, state: now.state, key: &key }).await {
            CallOutcome::Settled(to) => {
                // At the version of this entry: an answer that comes after another process
                // recorded this call's answer (its claim ran out mid-call) and the entity entered
                // the state again must not be recorded onto the new entry.
                let settle = self.call.settle(id.clone(), now.state, to).expect_version(now.version);
                match self.store.apply(settle).await {
                    Ok(outcome) => Ok(StepOutcome::Settled { state: outcome.state(), version: outcome.version() }),
                    // Recorded meanwhile by another process (its claim outlived ours), to a strict
                    // target or not, or a later entry: where the entity is now answers.
                    Err(
                        Error::VersionConflict { .. } | Error::Conflict { .. } | Error::ReachedByAnotherRequest { .. },
                    ) => {
                        let later = self.store.get(id.clone()).await?;
                        Ok(StepOutcome::Settled { state: later.state, version: later.version })
                    }
                    Err(error) => Err(error),
                }
            }
            CallOutcome::Unknown(error) => {
                tracing::info!(machine = M::MACHINE, entity = %id, %key, %error, "outside call without an answer; stays in flight");
                Ok(StepOutcome::InFlight { state: now.state, key, error })
            }
        }
    }

    fn claim_error(&self, id: &EntityId, source: LockError) -> Error {
        Error::Claim { machine: M::MACHINE, id: id.clone(), retryable: source.is_retryable(), source: Box::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_fit_a_lease_name() {
        assert_eq!(claim_name("Charge", &EntityId::from(7)), "fsm-outbound/Charge/7");
        let long = claim_name("Charge", &EntityId::from("x".repeat(300)));
        assert!(long.chars().count() <= MAX_NAME_CHARS && long.starts_with("fsm-outbound/"), "{long}");
        assert_ne!(long, claim_name("Charge", &EntityId::from("x".repeat(301))));
    }
}
