//! The outbox and inbox on SQL: [`SqlOutbox`], a relay's source and its maintenance, and the
//! [`Outbox`] and [`Inbox`] implementations of [`SqlTx`].

use std::time::Duration;

use crate::clock::{micros_before_now, now_micros};
use crate::error::{BoxError, Error};
use crate::inbox::Inbox;
use crate::message::{DeadLetter, new_message_id};
use crate::outbox::{NextAttempt, Outbox, OutboxMaintenance, OutboxMessage, OutboxSource, OutboxStats, PendingMessage};
use crate::sql::Driver;
use crate::sql::outbox::{FailedAttempt, Requeue};
use crate::sql::{Backend, SqlTx, again_after_rollback, inbox, outbox};

/// The outbox of an SQL database, as a [`Relay`](crate::outbox::Relay)'s source. Messages are
/// claimed in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL/MariaDB,
/// `BEGIN IMMEDIATE` on SQLite) that sets their lease, and published outside it.
///
/// ```no_run
/// use std::time::Duration;
/// use fsm_runtime::outbox::{OutboxMaintenance, SqlOutbox};
/// # async fn operate(pool: fsm_runtime::sqlx::SqlitePool) -> Result<(), fsm_runtime::Error> {
/// let outbox = SqlOutbox::new(pool).await?.only_topic("receipts");
/// for dead in outbox.dead_letters(100).await? {
///     println!("{} after {} attempts: {:?}", dead.message.message_id, dead.message.attempts, dead.message.last_error);
/// }
/// outbox.requeue_all_dead().await?;
/// let purged = outbox.purge_published(Duration::from_secs(7 * 86_400)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqlOutbox<B: Backend> {
    pool: sqlx::Pool<B>,
    topic: Option<String>,
}

impl<B: Backend> Clone for SqlOutbox<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), topic: self.topic.clone() }
    }
}

fn outbox_error(error: sqlx::Error) -> Error {
    Error::database("outbox", "fsm_outbox", error)
}

impl<B: Backend> SqlOutbox<B> {
    /// The outbox of the database behind `pool`; creates or upgrades the runtime's tables.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, Error> {
        crate::sql::migrate::migrate::<B>(&pool)
            .await
            .map_err(|e| Error::database("outbox", "fsm_schema_migrations", e))?;
        Ok(Self { pool, topic: None })
    }

    /// The same outbox, claiming only the messages of `topic` (a relay per broker or per
    /// topic).
    pub fn only_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<B> {
        &self.pool
    }

    /// A connection of the pool.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<B>, Error> {
        self.pool.acquire().await.map_err(outbox_error)
    }

    /// One claiming transaction: the due messages of the batch, leased until `until`.
    async fn claim_once(&self, now: i64, until: i64, limit: i64) -> Result<Vec<PendingMessage>, sqlx::Error> {
        let mut tx = SqlTx::idle(self.pool.acquire().await?);
        <B::Driver as Driver>::before_claim(&mut tx).await?;
        tx.start_write().await?;
        let mut messages = outbox::claimable::<B::Driver>(&mut tx, now, self.topic.as_deref(), limit).await?;
        for message in &mut messages {
            outbox::claim::<B::Driver>(&mut tx, until, message.sequence).await?;
            message.attempts += 1;
        }
        tx.commit().await?;
        Ok(messages)
    }
}

/// Each operation holds no transaction of the caller's and writes nothing when the database
/// rolls it back (a deadlock victim; on a Galera cluster a lost certification): it is sent
/// again.
impl<B: Backend> OutboxSource for SqlOutbox<B> {
    async fn claim(&self, batch: usize, lease: Duration) -> Result<Vec<PendingMessage>, Error> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let claimed = again_after_rollback(|| {
            let now = now_micros();
            let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
            self.claim_once(now, until, limit)
        });
        claimed.await.map_err(outbox_error)
    }

    async fn mark_published(&self, sequence: i64) -> Result<(), Error> {
        let marked = again_after_rollback(|| async {
            outbox::mark_published::<B::Driver>(&mut *self.pool.acquire().await?, now_micros(), sequence).await
        });
        marked.await.map_err(outbox_error)
    }

    async fn release(&self, sequence: i64) -> Result<(), Error> {
        let released = again_after_rollback(|| async {
            outbox::release::<B::Driver>(&mut *self.pool.acquire().await?, sequence).await
        });
        released.await.map_err(outbox_error)
    }

    async fn stats(&self) -> Result<OutboxStats, Error> {
        let mut conn = self.pool.acquire().await.map_err(outbox_error)?;
        let (pending, oldest, dead) = outbox::stats::<B::Driver>(&mut conn).await.map_err(outbox_error)?;
        Ok(OutboxStats::new(pending, oldest, dead))
    }

    async fn fail(&self, sequence: i64, error: &str, next: NextAttempt) -> Result<(), Error> {
        let (next_attempt_at, dead_at) = match next {
            NextAttempt::At(at) => (at, None),
            NextAttempt::Dead => (0, Some(now_micros())),
        };
        let failed = FailedAttempt { sequence, error, next_attempt_at, dead_at };
        let recorded = again_after_rollback(|| async {
            outbox::fail::<B::Driver>(&mut *self.pool.acquire().await?, &failed).await
        });
        recorded.await.map_err(outbox_error)
    }
}

impl<B: Backend> OutboxMaintenance for SqlOutbox<B> {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        let dead = outbox::dead::<B::Driver>(&mut conn, self.topic.as_deref(), limit).await.map_err(outbox_error)?;
        Ok(dead.into_iter().map(|(message, dead_at_micros)| DeadLetter { message, dead_at_micros }).collect())
    }

    async fn requeue(&self, message_id: &str) -> Result<bool, Error> {
        let requeued = again_after_rollback(|| async {
            outbox::requeue::<B::Driver>(&mut *self.pool.acquire().await?, Requeue::Message(message_id)).await
        });
        Ok(requeued.await.map_err(outbox_error)? > 0)
    }

    async fn requeue_all_dead(&self) -> Result<u64, Error> {
        let requeued = again_after_rollback(|| async {
            let all = Requeue::AllDead(self.topic.as_deref());
            outbox::requeue::<B::Driver>(&mut *self.pool.acquire().await?, all).await
        });
        requeued.await.map_err(outbox_error)
    }

    async fn purge_published(&self, older_than: Duration) -> Result<u64, Error> {
        let cutoff = micros_before_now(older_than);
        let purged = again_after_rollback(|| async {
            outbox::purge_published::<B::Driver>(&mut *self.pool.acquire().await?, cutoff, self.topic.as_deref()).await
        });
        purged.await.map_err(outbox_error)
    }
}

impl<B: Backend> Outbox for SqlTx<B> {
    async fn enqueue(&mut self, message: OutboxMessage) -> Result<String, BoxError> {
        let id = new_message_id();
        outbox::insert::<B::Driver>(self, &id, &message).await?;
        Ok(id)
    }
}

impl<B: Backend> Inbox for SqlTx<B> {
    async fn record(&mut self, consumer: &str, message_id: &str) -> Result<bool, BoxError> {
        Ok(inbox::record::<B::Driver>(self, consumer, message_id).await?)
    }
}
