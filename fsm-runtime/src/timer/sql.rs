//! The timers on SQL: [`SqlTimers`], a scheduler's source, and the [`Schedule`] implementation
//! of [`SqlTx`].

use std::time::Duration;

use crate::error::{BoxError, Error};
use crate::machine::StateMachine;
use crate::message::new_message_id;
use crate::sql::Driver;
use crate::sql::{Backend, SqlTx, again_after_rollback, timers};
use crate::store::SqlStore;
use crate::timer::{DueTimer, Schedule, Timer, TimerOutcome, TimerRecord, TimerSource};
use crate::transition::Transition;

/// The timers of one machine on one entity table of an SQL database, as a
/// [`Scheduler`](crate::timer::Scheduler)'s source (from
/// [`SqlStore::timers`](crate::store::SqlStore::timers)). Timers are claimed in a short
/// transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL/MariaDB, `BEGIN IMMEDIATE` on
/// SQLite) that sets their lease, and fired outside it.
#[derive(Debug)]
pub struct SqlTimers<B: Backend> {
    pool: sqlx::Pool<B>,
    machine: &'static str,
    table: String,
}

impl<B: Backend> Clone for SqlTimers<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), machine: self.machine, table: self.table.clone() }
    }
}

fn timers_error(error: sqlx::Error) -> Error {
    Error::database("timers", "fsm_timers", error)
}

impl<B: Backend> SqlTimers<B> {
    /// The timers of `machine` on `table` in the database behind `pool` (whose runtime tables
    /// a store built on it migrated).
    pub(crate) fn new(pool: sqlx::Pool<B>, machine: &'static str, table: &str) -> Self {
        Self { pool, machine, table: table.to_owned() }
    }

    /// One claiming transaction: the due timers of the batch, leased until `until`.
    async fn claim_once(&self, now: i64, until: i64, limit: i64) -> Result<Vec<DueTimer>, sqlx::Error> {
        let mut tx = SqlTx::idle(self.pool.acquire().await?);
        <B::Driver as Driver>::before_claim(&mut tx).await?;
        tx.start_write().await?;
        let mut due = timers::due::<B::Driver>(&mut tx, (self.machine, &self.table), now, limit).await?;
        for timer in &mut due {
            timers::claim::<B::Driver>(&mut tx, until, timer.sequence).await?;
            timer.attempts += 1;
        }
        tx.commit().await?;
        Ok(due)
    }
}

impl<M: StateMachine, B: Backend> SqlStore<M, B> {
    /// The timers of this machine on this store's table, for a
    /// [`Scheduler`](crate::timer::Scheduler).
    pub fn timers(&self) -> SqlTimers<B> {
        SqlTimers::new(self.pool().clone(), M::MACHINE, &self.mapping().table)
    }
}

impl<B: Backend> TimerSource for SqlTimers<B> {
    async fn claim(&self, now: i64, batch: usize, lease: Duration) -> Result<Vec<DueTimer>, Error> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        // Rolled back as a whole (a deadlock victim, a lost certification): nothing is
        // claimed, so claiming again is safe.
        again_after_rollback(|| self.claim_once(now, until, limit)).await.map_err(timers_error)
    }

    async fn finish(&self, timer: &DueTimer, now: i64, outcome: TimerOutcome) -> Result<(), Error> {
        let finished = again_after_rollback(|| async {
            let mut conn = self.pool.acquire().await?;
            timers::finish::<B::Driver>(&mut conn, timer.sequence, now, outcome.as_str()).await
        });
        finished.await.map_err(timers_error)
    }

    async fn fail(&self, timer: &DueTimer, error: &str) -> Result<(), Error> {
        let failed = again_after_rollback(|| async {
            timers::fail::<B::Driver>(&mut *self.pool.acquire().await?, timer.sequence, error).await
        });
        failed.await.map_err(timers_error)
    }

    async fn list(&self) -> Result<Vec<TimerRecord>, Error> {
        let mut conn = self.pool.acquire().await.map_err(timers_error)?;
        timers::list::<B::Driver>(&mut conn, (self.machine, &self.table)).await.map_err(timers_error)
    }
}

impl<B: Backend> Schedule for SqlTx<B> {
    async fn schedule(&mut self, timer: Timer) -> Result<String, BoxError> {
        let id = new_message_id();
        timers::insert::<B::Driver>(self, &id, &timer).await?;
        Ok(id)
    }

    fn applying(&self) -> Option<&Transition> {
        self.transition()
    }
}
