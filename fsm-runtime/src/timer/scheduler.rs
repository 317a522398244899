//! [`Scheduler`]: the worker that fires due timers through the ordinary compare-and-set.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::machine::StateMachine;
use crate::outcome::Outcome;
use crate::store::{Store, TransitionRequest};
use crate::timer::{Clock, DueTimer, TimerOutcome, TimerSource};
use crate::worker::run_passes;

/// The source of the idempotency keys of timer firings (the key is this and the timer's id).
pub const TIMER_KEY_PREFIX: &str = "fsm-timer:";

/// What one pass of a scheduler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerReport {
    /// Timers whose event was applied (by this pass, or, replayed, by an earlier firing).
    pub fired: usize,
    /// Timers whose entity had moved on: marked done, nothing written to the entity.
    pub no_ops: usize,
    /// Timers whose firing failed (a database error, a failing effect): left claimed until
    /// their lease ends, then fired again.
    pub errors: usize,
}

/// Fires the due timers of one machine's table: claims a batch (no other scheduler gets them
/// before the lease ends), fires each with [`Store::apply`] and an idempotency key derived from
/// the timer's id, and marks it done with its [`TimerOutcome`]. Several schedulers may run at
/// once, in one process or many; each timer is applied at most once, and exactly once as long
/// as some scheduler runs.
///
/// Which timers are due is decided by the [`Clock`] it is given: [`SystemClock`](crate::timer::SystemClock)
/// in production, a [`ManualClock`](crate::timer::ManualClock) in tests.
#[derive(Debug, Clone)]
pub struct Scheduler<M, S, T, C> {
    store: S,
    timers: T,
    clock: C,
    batch: usize,
    lease: Duration,
    machine: PhantomData<fn() -> M>,
}

impl<M: StateMachine, S: Store<M>, T: TimerSource, C: Clock> Scheduler<M, S, T, C> {
    /// A scheduler firing the timers of `timers` on `store` by `clock`, claiming 100 at a time
    /// for 30 seconds.
    pub fn new(store: S, timers: T, clock: C) -> Self {
        Self { store, timers, clock, batch: 100, lease: Duration::from_secs(30), machine: PhantomData }
    }

    /// How many timers one pass claims.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How long a claim lasts (by the scheduler's clock): a scheduler that dies leaves its
    /// timers to others after this. Make it longer than firing a batch takes.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// One pass: claim the due timers of a batch and fire them, in one
    /// [`Store::apply_many`] (one statement on PostgreSQL and SQLite).
    pub async fn run_once(&self) -> Result<SchedulerReport, Error> {
        let mut report = SchedulerReport::default();
        let claimed = self.timers.claim(self.clock.now_micros(), self.batch, self.lease).await?;
        let fired = self.fire_all(&claimed).await;
        for (timer, outcome) in claimed.iter().zip(fired) {
            match outcome {
                Ok(outcome) => {
                    self.timers.finish(timer, self.clock.now_micros(), outcome).await?;
                    if outcome.applied() { report.fired += 1 } else { report.no_ops += 1 }
                }
                Err(error) => {
                    tracing::warn!(timer_id = %timer.timer_id, entity = %timer.entity, event = %timer.event, %error, "timer failed");
                    report.errors += 1;
                    self.timers.fail(timer, &error.to_string()).await?;
                }
            }
        }
        Ok(report)
    }

    /// Fires the claimed timers in one batch: each one's outcome, or the error that leaves it
    /// to be fired again, in the order of `claimed`.
    async fn fire_all(&self, claimed: &[DueTimer]) -> Vec<Result<TimerOutcome, Error>> {
        let mut answers: Vec<Option<Result<TimerOutcome, Error>>> = Vec::with_capacity(claimed.len());
        let mut requests = Vec::new();
        for timer in claimed {
            match self.request(timer) {
                Ok(Some(request)) => {
                    requests.push(request);
                    answers.push(None);
                }
                Ok(None) => answers.push(Some(Ok(TimerOutcome::UnknownEvent))),
                Err(error) => answers.push(Some(Err(error))),
            }
        }
        let mut fired = self.store.apply_many(requests).await.into_iter();
        answers
            .into_iter()
            .map(|answer| match answer {
                Some(answer) => answer,
                None => fired.next().map_or_else(|| Err(unanswered()), outcome_of),
            })
            .collect()
    }

    /// The request that fires `timer` (`None`: the machine has no such event).
    fn request(&self, timer: &DueTimer) -> Result<Option<TransitionRequest<'static, M, S::Tx>>, Error> {
        let Some(event) = M::EVENTS.iter().copied().find(|event| M::event_name(*event) == timer.event) else {
            return Ok(None);
        };
        let request = TransitionRequest::fire(timer.entity.clone(), event)
            .idempotency_key(timer_key(timer)?, timer_fingerprint(timer))
            .actor("scheduler")
            .reason(format!("timer {}", timer.timer_id));
        Ok(Some(request))
    }

    /// Runs passes until `shutdown` completes, sleeping `idle` after a pass that did not fill
    /// a batch (or failed).
    pub async fn run(&self, idle: Duration, shutdown: impl Future<Output = ()>) {
        run_passes(idle, shutdown, || async {
            match self.run_once().await {
                Ok(report) => report.errors == 0 && report.fired + report.no_ops >= self.batch,
                Err(error) => {
                    tracing::warn!(%error, "scheduler pass failed");
                    false
                }
            }
        })
        .await;
    }
}

/// The error of a timer the store's batch gave no answer for (a store that breaks the contract
/// of [`Store::apply_many`]): the timer is fired again later.
fn unanswered() -> Error {
    Error::Database {
        machine: "timers",
        table: "fsm_timers".to_owned(),
        retryable: true,
        source: "the store's batch gave no answer for the timer".into(),
    }
}

/// The idempotency key of a timer's firing: the same for every scheduler that fires it.
fn timer_key(timer: &DueTimer) -> Result<IdempotencyKey, Error> {
    IdempotencyKey::opaque(format!("{TIMER_KEY_PREFIX}{}", timer.timer_id)).map_err(|source| Error::Database {
        machine: "timers",
        table: "fsm_timers".to_owned(),
        retryable: false,
        source: format!("timer id `{}` makes no idempotency key: {source}", timer.timer_id).into(),
    })
}

fn timer_fingerprint(timer: &DueTimer) -> Fingerprint {
    Fingerprint::of_bytes(format!("{}\n{}\n{}", timer.timer_id, timer.entity, timer.event).as_bytes())
}

/// What a firing's result means for its timer: done with an outcome, or an error to retry.
fn outcome_of<M: StateMachine>(result: Result<Outcome<M>, Error>) -> Result<TimerOutcome, Error> {
    match result {
        Ok(Outcome::Applied { .. }) => Ok(TimerOutcome::Fired),
        Ok(Outcome::Replayed { .. }) => Ok(TimerOutcome::Replayed),
        Ok(_) | Err(Error::ReachedByAnotherRequest { .. }) => Ok(TimerOutcome::AlreadyApplied),
        Err(Error::InvalidTransition { .. } | Error::InvalidEvent { .. }) => Ok(TimerOutcome::InvalidTransition),
        Err(Error::NotFound { .. }) => Ok(TimerOutcome::NotFound),
        Err(error) => Err(error),
    }
}
