//! What is scheduled, below the stores and the SQL layer: a [`Timer`] to write with a
//! transition, the [`Schedule`] trait of the transactions that write it, the rows a scheduler
//! claims, and the memory stores' timers. The scheduler and its sources are in
//! [`crate::timer`], above the stores, which re-exports these.

mod claimed;
mod due;
mod memory_timers;

use std::future::Future;

use crate::transition::Transition;

pub use claimed::{DueTimer, TimerOutcome, TimerRecord};
pub use due::{Due, Timer};
pub use memory_timers::MemoryTimers;
pub(crate) use memory_timers::TimerRow;

/// Something a timer can be scheduled on inside an effect: the transaction of an SQL
/// transition ([`SqlTx`](crate::sql::SqlTx), on every SQL backend) or a
/// [`MemoryTx`](crate::store::MemoryTx). The timer is written in that transaction, so it
/// exists only if the transition commits.
pub trait Schedule: Send {
    /// Writes `timer` in this transaction; returns its timer id.
    fn schedule(
        &mut self,
        timer: Timer,
    ) -> impl Future<Output = Result<String, Box<dyn std::error::Error + Send + Sync>>> + Send;

    /// The transition being applied, whose entity a timer of
    /// [`TransitionRequest::schedule`](crate::TransitionRequest::schedule) is for.
    fn applying(&self) -> Option<&Transition>;
}
