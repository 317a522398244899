//! Timed transitions: an event fired at an entity at a time.
//!
//! A timer is written in the transaction of the transition that starts it, so it exists if and
//! only if that transition was applied: [`TransitionRequest::schedule`](crate::TransitionRequest::schedule)
//! for the same entity, or [`Schedule::schedule`] inside an effect for any entity (an
//! `authorized` payment schedules `expire` in 7 days). A [`Scheduler`] claims the timers that
//! are due by its [`Clock`] and fires each through the ordinary compare-and-set
//! ([`Store::apply`](crate::Store::apply)), with an idempotency key derived from the timer's
//! id: a scheduler that fired and died before marking the timer done is answered
//! [`Outcome::Replayed`](crate::Outcome::Replayed) by the next one. A timer whose entity has
//! moved on (already there, another state, deleted) is a no-op, marked done with its outcome.
//!
//! ```
//! use std::time::Duration;
//! use fsm_runtime::timer::{ManualClock, Scheduler};
//! use fsm_runtime::{MemoryStore, StateMachine, Store, TransitionRequest};
//!
//! #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! #[state_machine(rename_all = "snake_case", event = HoldEvent)]
//! enum Hold {
//!     #[state(initial)]
//!     Requested,
//!     #[transition(from = Requested, on = Place)]
//!     Placed,
//!     #[transition(from = Placed, on = Expire)]
//!     Expired,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::<Hold>::new();
//! store.create(1).await?;
//! let place = TransitionRequest::fire(1, HoldEvent::Place).schedule(HoldEvent::Expire, Duration::from_secs(3600));
//! store.apply(place).await?;
//!
//! let clock = ManualClock::starting_now();
//! let scheduler = Scheduler::new(store.clone(), store.timers(), clock.clone());
//! assert_eq!(scheduler.run_once().await?.fired, 0); // not due yet
//! clock.advance(Duration::from_secs(3601));
//! assert_eq!(scheduler.run_once().await?.fired, 1);
//! assert_eq!(store.get(1).await?.state, Hold::Expired);
//! # Ok::<(), fsm_runtime::Error>(())
//! # }).unwrap();
//! ```

mod clock;
mod memory;
mod scheduler;
#[cfg(feature = "_sql")]
mod sql;

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

pub use crate::scheduled::{Due, DueTimer, MemoryTimers, Schedule, Timer, TimerOutcome, TimerRecord};
pub use clock::{Clock, ManualClock, SystemClock};
pub use scheduler::{Scheduler, SchedulerReport};
#[cfg(feature = "_sql")]
pub use sql::SqlTimers;

/// Where a [`Scheduler`] finds the timers of one machine on one table: an SQL database's
/// ([`SqlTimers`], from [`SqlStore::timers`](crate::store::SqlStore::timers)) or a memory
/// store's ([`MemoryTimers`], from [`MemoryStore::timers`](crate::MemoryStore::timers)).
pub trait TimerSource: Send + Sync {
    /// Claims up to `batch` timers due at `now` (microseconds since the Unix epoch), soonest
    /// first, until `now + lease`: no other scheduler gets them before the lease ends.
    fn claim(
        &self,
        now: i64,
        batch: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<DueTimer>, Error>> + Send;

    /// Marks a claimed timer done at `now` with its outcome: it never fires again.
    fn finish(
        &self,
        timer: &DueTimer,
        now: i64,
        outcome: TimerOutcome,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records why firing a claimed timer failed; it stays claimed until its lease ends and is
    /// fired again then.
    fn fail(&self, timer: &DueTimer, error: &str) -> impl Future<Output = Result<(), Error>> + Send;

    /// Every timer of the source, done or not, soonest first (for tests and operators).
    fn list(&self) -> impl Future<Output = Result<Vec<TimerRecord>, Error>> + Send;
}
