//! A transition request: the target, the optional checks, and the effects to run with it.

use std::future::Future;
use std::pin::Pin;

use crate::entity_id::EntityId;
use crate::error::BoxError;
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::machine::StateMachine;
use crate::scheduled::{Due, Schedule, Timer};

/// The future an effect returns; it borrows the transaction for its lifetime.
pub type EffectFuture<'t> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 't>>;

/// Work attached to a transition: it runs inside the transition's transaction, only when the
/// transition is applied, and an error from it rolls the transition back.
pub struct Effect<'a, Tx>(pub(crate) Box<dyn for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send + 'a>);

impl<'a, Tx> Effect<'a, Tx> {
    /// Wraps a closure that receives the open transaction and returns a boxed future.
    pub fn new(effect: impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send + 'a) -> Self {
        Self(Box::new(effect))
    }

    /// Runs the effect.
    pub(crate) fn run<'t>(self, tx: &'t mut Tx) -> EffectFuture<'t> {
        (self.0)(tx)
    }
}

impl<Tx> std::fmt::Debug for Effect<'_, Tx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Effect")
    }
}

/// Which transition a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<M: StateMachine> {
    /// To this state, from any of its legal sources.
    To(M),
    /// From the state the caller observed to a target (compare-and-set on one state).
    From {
        /// The state the caller observed.
        from: M,
        /// The target.
        to: M,
    },
    /// Along the edge of this event from the entity's state.
    Fire(M::Event),
}

/// A transition of one entity, with optional expected version and effects.
///
/// ```
/// use fsm_runtime::{StateMachine, TransitionRequest};
/// # #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// # enum Light { #[state(initial)] Off, #[transition(from = Off)] On }
/// let request: TransitionRequest<'_, Light, ()> =
///     TransitionRequest::to(7, Light::On).expect_version(0);
/// assert_eq!(request.expected_version(), Some(0));
/// ```
#[derive(Debug)]
pub struct TransitionRequest<'a, M: StateMachine, Tx> {
    pub(crate) id: EntityId,
    pub(crate) target: Target<M>,
    pub(crate) expected_version: Option<i64>,
    pub(crate) key: Option<(IdempotencyKey, Fingerprint)>,
    pub(crate) audit: Audit,
    pub(crate) effects: Vec<Effect<'a, Tx>>,
    /// Events to fire at the same entity later, scheduled only if the transition applies.
    pub(crate) timers: Vec<(M::Event, Due)>,
}

/// What a request records in its history row beyond the move: who, why, and free metadata
/// (the idempotency key is recorded from the request's key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Audit {
    pub(crate) actor: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) metadata: Option<serde_json::Value>,
}

impl<'a, M: StateMachine, Tx> TransitionRequest<'a, M, Tx> {
    /// A request for `target` on entity `id`.
    pub fn new(id: impl Into<EntityId>, target: Target<M>) -> Self {
        Self {
            id: id.into(),
            target,
            expected_version: None,
            key: None,
            audit: Audit::default(),
            effects: Vec::new(),
            timers: Vec::new(),
        }
    }

    /// Move to `to` from any legal source.
    pub fn to(id: impl Into<EntityId>, to: M) -> Self {
        Self::new(id, Target::To(to))
    }

    /// Move from the observed state `from` to `to`.
    pub fn from(id: impl Into<EntityId>, from: M, to: M) -> Self {
        Self::new(id, Target::From { from, to })
    }

    /// Fire `event`.
    pub fn fire(id: impl Into<EntityId>, event: M::Event) -> Self {
        Self::new(id, Target::Fire(event))
    }

    /// Apply only if the entity is at `version` (optimistic locking); otherwise
    /// [`Error::VersionConflict`](crate::Error::VersionConflict). A replay that finds the entity
    /// already in the target still gives `AlreadyApplied`.
    pub fn expect_version(mut self, version: i64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Store the outcome under an idempotency key, in the same transaction: a later request
    /// with the same key and fingerprint gets [`Outcome::Replayed`](crate::Outcome::Replayed)
    /// and runs nothing; with another fingerprint,
    /// [`Error::IdempotencyKeyReused`](crate::Error::IdempotencyKeyReused). Only an applied
    /// transition stores its key: a failed one can be retried with the same key.
    pub fn idempotency_key(mut self, key: IdempotencyKey, fingerprint: Fingerprint) -> Self {
        self.key = Some((key, fingerprint));
        self
    }

    /// Record who asks for the transition (a user, a service, a job) in its history row.
    ///
    /// ```
    /// use fsm_runtime::{StateMachine, TransitionRequest};
    /// # #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Light { #[state(initial)] Off, #[transition(from = Off)] On }
    /// let request: TransitionRequest<'_, Light, ()> = TransitionRequest::to(7, Light::On)
    ///     .actor("user:42")
    ///     .reason("customer asked")
    ///     .metadata(serde_json::json!({ "ticket": "SUP-7" }));
    /// assert_eq!(request.actor_name(), Some("user:42"));
    /// ```
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.audit.actor = Some(actor.into());
        self
    }

    /// Record why the transition is asked for in its history row.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.audit.reason = Some(reason.into());
        self
    }

    /// Record free JSON metadata in the transition's history row.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.audit.metadata = Some(metadata);
        self
    }

    /// Attach an effect: it runs in the transition's transaction, only if the transition applies.
    ///
    /// Effects run in the order they were attached; the first failure rolls everything back.
    pub fn effect(mut self, effect: impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send + 'a) -> Self {
        self.effects.push(Effect::new(effect));
        self
    }

    /// The entity.
    pub fn id(&self) -> &EntityId {
        &self.id
    }

    /// The requested transition.
    pub fn target(&self) -> Target<M> {
        self.target
    }

    /// The idempotency key and fingerprint, if any.
    pub fn key(&self) -> Option<&(IdempotencyKey, Fingerprint)> {
        self.key.as_ref()
    }

    /// The version demanded, if any.
    pub fn expected_version(&self) -> Option<i64> {
        self.expected_version
    }

    /// The actor recorded with the transition, if any.
    pub fn actor_name(&self) -> Option<&str> {
        self.audit.actor.as_deref()
    }

    /// The reason recorded with the transition, if any.
    pub fn reason_text(&self) -> Option<&str> {
        self.audit.reason.as_deref()
    }

    /// The events scheduled for this entity with the transition, and when.
    pub fn scheduled(&self) -> &[(M::Event, Due)] {
        &self.timers
    }
}

impl<'a, M: StateMachine, Tx: Schedule + 'a> TransitionRequest<'a, M, Tx> {
    /// Schedule `event` for this entity when `due` (a [`Duration`](std::time::Duration) from
    /// now, or a [`SystemTime`](std::time::SystemTime)): the timer is written in the
    /// transition's transaction, after its effects, only if the transition applies. A
    /// [`Scheduler`](crate::timer::Scheduler) fires it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fsm_runtime::store::MemoryTx;
    /// use fsm_runtime::{StateMachine, TransitionRequest};
    /// # #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// # #[state_machine(event = HoldEvent)]
    /// # enum Hold { #[state(initial)] Requested, #[transition(from = Requested, on = Place)] Placed,
    /// #   #[transition(from = Placed, on = Expire)] Expired }
    /// let week = Duration::from_secs(7 * 86_400);
    /// let place = TransitionRequest::<Hold, MemoryTx>::fire(7, HoldEvent::Place).schedule(HoldEvent::Expire, week);
    /// assert_eq!(place.scheduled().len(), 1);
    /// ```
    pub fn schedule(mut self, event: M::Event, due: impl Into<Due>) -> Self {
        self.timers.push((event, due.into()));
        self
    }

    /// The request with its scheduled timers turned into its last effect, which writes them
    /// for the entity as its table (`table`) stores it.
    pub(crate) fn timers_as_effect(mut self, table: &str) -> Self {
        let timers = std::mem::take(&mut self.timers);
        if timers.is_empty() {
            return self;
        }
        let (requested, table) = (self.id.clone(), table.to_owned());
        self.effect(move |tx: &mut Tx| {
            Box::pin(async move {
                let id = tx.applying().map_or(requested, |transition| transition.id.clone());
                for (event, due) in timers {
                    tx.schedule(Timer::fire::<M>(id.clone(), event, due).on_table(table.clone())).await?;
                }
                Ok(())
            })
        })
    }
}
