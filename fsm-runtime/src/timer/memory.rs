//! [`MemoryTimers`]: the timers of the memory stores, a scheduler's source.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::now_micros;
use crate::error::Error;
use crate::timer::{DueTimer, Timer, TimerOutcome, TimerRecord, TimerSource};

/// A timer in memory.
#[derive(Debug, Clone)]
struct TimerRow {
    machine: &'static str,
    table: String,
    timer: DueTimer,
    claimed_until: i64,
    outcome: Option<TimerOutcome>,
    last_error: Option<String>,
}

/// The timers of the memory stores that share one [`MemoryKeys`](crate::keys::MemoryKeys);
/// from [`MemoryStore::timers`](crate::MemoryStore::timers), the handle of one machine's
/// table, a scheduler's source. Clones share the timers.
#[derive(Debug, Clone, Default)]
pub struct MemoryTimers {
    rows: Arc<Mutex<Vec<TimerRow>>>,
    /// The machine and table whose timers this handle claims.
    scope: Option<(&'static str, String)>,
}

impl MemoryTimers {
    /// The same timers, as the source of the timers of `machine` on `table`.
    pub(crate) fn scoped(&self, machine: &'static str, table: &str) -> Self {
        Self { rows: self.rows.clone(), scope: Some((machine, table.to_owned())) }
    }

    /// Appends timers scheduled by an applied transaction, with their ids.
    pub(crate) fn append(&self, timers: Vec<(String, Timer)>) {
        let mut rows = self.lock();
        let now = now_micros();
        for (timer_id, timer) in timers {
            let sequence = i64::try_from(rows.len()).unwrap_or(i64::MAX) + 1;
            let due = DueTimer {
                sequence,
                timer_id,
                entity: timer.entity,
                event: timer.event.to_owned(),
                due_at_micros: timer.due.at_micros(now),
                attempts: 0,
            };
            rows.push(TimerRow {
                machine: timer.machine,
                table: timer.table,
                timer: due,
                claimed_until: 0,
                outcome: None,
                last_error: None,
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TimerRow>> {
        // Short critical sections that do not panic: a poisoned lock still holds consistent rows.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_scope(&self, row: &TimerRow) -> bool {
        self.scope.as_ref().is_none_or(|(machine, table)| row.machine == *machine && row.table == *table)
    }

    /// How many timers (of this handle's machine and table) are not done.
    pub fn pending(&self) -> usize {
        self.lock().iter().filter(|row| self.in_scope(row) && row.outcome.is_none()).count()
    }

    fn with_row(&self, sequence: i64, change: impl FnOnce(&mut TimerRow)) {
        if let Some(row) = self.lock().iter_mut().find(|row| row.timer.sequence == sequence) {
            change(row);
        }
    }
}

impl TimerSource for MemoryTimers {
    async fn claim(&self, now: i64, batch: usize, lease: Duration) -> Result<Vec<DueTimer>, Error> {
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut rows = self.lock();
        let mut due: Vec<&mut TimerRow> = rows
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
