//! [`MemoryTimers`]: the timers of the memory stores, a scheduler's source.

use std::sync::{Arc, Mutex, PoisonError};

use crate::clock::now_micros;
use crate::scheduled::{DueTimer, Timer, TimerOutcome};

/// A timer in memory.
#[derive(Debug, Clone)]
pub(crate) struct TimerRow {
    pub(crate) machine: &'static str,
    pub(crate) table: String,
    pub(crate) timer: DueTimer,
    pub(crate) claimed_until: i64,
    pub(crate) outcome: Option<TimerOutcome>,
    pub(crate) last_error: Option<String>,
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TimerRow>> {
        // Short critical sections that do not panic: a poisoned lock still holds consistent rows.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn in_scope(&self, row: &TimerRow) -> bool {
        self.scope.as_ref().is_none_or(|(machine, table)| row.machine == *machine && row.table == *table)
    }

    /// How many timers (of this handle's machine and table) are not done.
    pub fn pending(&self) -> usize {
        self.lock().iter().filter(|row| self.in_scope(row) && row.outcome.is_none()).count()
    }

    pub(crate) fn with_row(&self, sequence: i64, change: impl FnOnce(&mut TimerRow)) {
        if let Some(row) = self.lock().iter_mut().find(|row| row.timer.sequence == sequence) {
            change(row);
        }
    }
}
