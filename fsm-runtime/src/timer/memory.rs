//! [`MemoryTimers`] as a scheduler's source of due timers.

use std::time::Duration;

use crate::error::Error;
use crate::machine::StateMachine;
use crate::store::{MemoryStore, Store as _};
use crate::timer::{DueTimer, MemoryTimers, TimerOutcome, TimerRecord, TimerSource};

impl<M: StateMachine> MemoryStore<M> {
    /// The timers of this machine on this store's table, for a
    /// [`Scheduler`](crate::timer::Scheduler): timers scheduled by applied transitions.
    pub fn timers(&self) -> MemoryTimers {
        self.keys().timers().scoped(M::MACHINE, &M::MAPPING.table)
    }
}

impl TimerSource for MemoryTimers {
    async fn claim(&self, now: i64, batch: usize, lease: Duration) -> Result<Vec<DueTimer>, Error> {
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut rows = self.lock();
        let mut due: Vec<&mut crate::scheduled::TimerRow> = rows
            .iter_mut()
            .filter(|row| self.in_scope(row) && row.outcome.is_none())
            .filter(|row| row.timer.due_at_micros <= now && row.claimed_until < now)
            .collect();
        due.sort_by_key(|row| (row.timer.due_at_micros, row.timer.sequence));
        Ok(due
            .into_iter()
            .take(batch)
            .map(|row| {
                row.claimed_until = until;
                row.timer.attempts += 1;
                row.timer.clone()
            })
            .collect())
    }

    async fn finish(&self, timer: &DueTimer, _now: i64, outcome: TimerOutcome) -> Result<(), Error> {
        self.with_row(timer.sequence, |row| row.outcome = Some(outcome));
        Ok(())
    }

    async fn fail(&self, timer: &DueTimer, error: &str) -> Result<(), Error> {
        self.with_row(timer.sequence, |row| row.last_error = Some(error.to_owned()));
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TimerRecord>, Error> {
        let rows = self.lock();
        let mut listed: Vec<TimerRecord> = rows
            .iter()
            .filter(|row| self.in_scope(row))
            .map(|row| TimerRecord {
                timer_id: row.timer.timer_id.clone(),
                entity: row.timer.entity.clone(),
                event: row.timer.event.clone(),
                due_at_micros: row.timer.due_at_micros,
                attempts: row.timer.attempts,
                outcome: row.outcome.map(|outcome| outcome.as_str().to_owned()),
                last_error: row.last_error.clone(),
            })
            .collect();
        listed.sort_by_key(|record| record.due_at_micros);
        Ok(listed)
    }
}
