//! The outbox and inbox on SQL: [`SqlOutbox`], a relay's source, and the [`Outbox`] and
//! [`Inbox`] implementations of the SQL connections (through [`impl_outbox!`]).

use std::time::Duration;

use crate::error::Error;
use crate::outbox::{OutboxSource, PendingMessage};
use crate::store::plan::now_micros;
use crate::store::sql::Backend;
use crate::store::sql::db_error::{database_error, is_deadlock};
use crate::store::sql::dialect::Dialect;

/// The outbox and inbox statements of a dialect (fixed tables: no identifier from outside).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxStatements {
    pub(crate) insert: &'static str,
    /// The pending messages of every topic (parameters: now, limit).
    pub(crate) pending: &'static str,
    /// The pending messages of one topic (parameters: topic, now, limit), through the
    /// `(topic, ...)` index so that only that topic's rows are read and locked.
    pub(crate) pending_of_topic: &'static str,
    pub(crate) claim: &'static str,
    pub(crate) mark: &'static str,
    pub(crate) release: &'static str,
    pub(crate) inbox: &'static str,
}

impl OutboxStatements {
    /// The statements of `dialect`.
    pub(crate) const fn of(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Postgres => Self {
                insert: "INSERT INTO fsm_outbox (message_id, topic, message_key, payload, created_at_micros) \
                         VALUES ($1, $2, $3, $4, $5)",
                pending: "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox \
                          WHERE published_at_micros IS NULL AND claimed_until_micros < $1 \
                          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                pending_of_topic: "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox \
                                   WHERE topic = $1 AND published_at_micros IS NULL AND claimed_until_micros < $2 \
                                   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
                claim: "UPDATE fsm_outbox SET claimed_until_micros = $1, attempts = attempts + 1 WHERE id = $2",
                mark: "UPDATE fsm_outbox SET published_at_micros = $1 WHERE id = $2",
                release: "UPDATE fsm_outbox SET claimed_until_micros = 0 WHERE id = $1 AND published_at_micros IS NULL",
                inbox: "INSERT INTO fsm_inbox (consumer, message_id, processed_at_micros) VALUES ($1, $2, $3) \
                        ON CONFLICT DO NOTHING",
            },
            Dialect::MySql => Self {
                insert: "INSERT INTO fsm_outbox (message_id, topic, message_key, payload, created_at_micros) \
                         VALUES (?, ?, ?, ?, ?)",
                pending: "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox \
                          WHERE published_at_micros IS NULL AND claimed_until_micros < ? \
                          ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
                // The index is forced: for `ORDER BY id LIMIT n` on a small table the optimizer
                // may walk the primary key instead, locking (and on MariaDB waiting for) rows
                // of other topics despite SKIP LOCKED.
                pending_of_topic: "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox \
                                   FORCE INDEX (fsm_outbox_topic_pending) \
                                   WHERE topic = ? AND published_at_micros IS NULL AND claimed_until_micros < ? \
                                   ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
                claim: "UPDATE fsm_outbox SET claimed_until_micros = ?, attempts = attempts + 1 WHERE id = ?",
                mark: "UPDATE fsm_outbox SET published_at_micros = ? WHERE id = ?",
                release: "UPDATE fsm_outbox SET claimed_until_micros = 0 WHERE id = ? AND published_at_micros IS NULL",
                inbox: "INSERT INTO fsm_inbox (consumer, message_id, processed_at_micros) VALUES (?, ?, ?)",
            },
            Dialect::Sqlite => Self {
                insert: "INSERT INTO fsm_outbox (message_id, topic, message_key, payload, created_at_micros) \
                         VALUES (?, ?, ?, ?, ?)",
                // SQLite has one writer at a time: the claiming transaction (BEGIN IMMEDIATE)
                // is the lock.
                pending: "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox \
                          WHERE published_at_micros IS NULL AND claimed_until_micros < ? ORDER BY id LIMIT ?",
                pending_of_topic: "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox \
                                   WHERE topic = ? AND published_at_micros IS NULL AND claimed_until_micros < ? \
                                   ORDER BY id LIMIT ?",
                claim: "UPDATE fsm_outbox SET claimed_until_micros = ?, attempts = attempts + 1 WHERE id = ?",
                mark: "UPDATE fsm_outbox SET published_at_micros = ? WHERE id = ?",
                release: "UPDATE fsm_outbox SET claimed_until_micros = 0 WHERE id = ? AND published_at_micros IS NULL",
                inbox: "INSERT INTO fsm_inbox (consumer, message_id, processed_at_micros) VALUES (?, ?, ?) \
                        ON CONFLICT DO NOTHING",
            },
        }
    }
}

/// The outbox of an SQL database, as a [`Relay`](crate::outbox::Relay)'s source. Messages are
/// claimed in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL/MariaDB,
/// `BEGIN IMMEDIATE` on SQLite) that sets their lease, and published outside it.
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
    database_error("outbox", "fsm_outbox", error)
}

impl<B: Backend> SqlOutbox<B> {
    /// The outbox of the database behind `pool`; creates the runtime's tables if missing.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, Error> {
        crate::store::sql::migrate::<B>(&pool, "outbox").await?;
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
}

impl<B: Backend> SqlOutbox<B> {
    /// One claiming transaction: the pending messages of the batch, leased until `until`.
    async fn claim_once(&self, now: i64, until: i64, limit: i64) -> Result<Vec<PendingMessage>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        if B::DIALECT == Dialect::MySql {
            // InnoDB's REPEATABLE READ would keep next-key locks on the rows and gaps the scan
            // passed; READ COMMITTED locks only the claimed rows, so that relays of other
            // topics (or later batches) do not skip rows they could claim.
            B::execute_plain(&mut conn, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
        }
        let mut tx = match B::DIALECT {
            Dialect::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?,
            Dialect::Postgres | Dialect::MySql => sqlx::Connection::begin(&mut *conn).await?,
        };
        let mut messages = B::outbox_pending(&mut tx, now, self.topic.as_deref(), limit).await?;
        for message in &mut messages {
            B::outbox_update(&mut tx, OutboxStatements::of(B::DIALECT).claim, until, message.sequence).await?;
            message.attempts += 1;
        }
        tx.commit().await?;
        Ok(messages)
    }
}

/// How many times a claim that the database chose as a deadlock victim is tried again.
const CLAIM_ATTEMPTS: usize = 5;

impl<B: Backend> OutboxSource for SqlOutbox<B> {
    async fn claim(&self, batch: usize, lease: Duration) -> Result<Vec<PendingMessage>, Error> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let mut attempt = 1;
        loop {
            let now = now_micros();
            let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
            match self.claim_once(now, until, limit).await {
                Ok(messages) => return Ok(messages),
                // Rolled back as a whole: nothing is claimed, so claiming again is safe.
                Err(error) if is_deadlock(&error) && attempt < CLAIM_ATTEMPTS => attempt += 1,
                Err(error) => return Err(outbox_error(error)),
            }
        }
    }

    async fn mark_published(&self, sequence: i64) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await.map_err(outbox_error)?;
        B::outbox_update(&mut conn, OutboxStatements::of(B::DIALECT).mark, now_micros(), sequence)
            .await
            .map_err(outbox_error)
    }

    async fn release(&self, sequence: i64) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await.map_err(outbox_error)?;
        B::outbox_release(&mut conn, sequence).await.map_err(outbox_error)
    }
}

/// Implements [`Outbox`](crate::outbox::Outbox) and [`Inbox`](crate::inbox::Inbox) for the
/// connection type of one backend.
macro_rules! impl_outbox {
    ($conn:ty, $db:ty) => {
        impl $crate::outbox::Outbox for $conn {
            async fn enqueue(&mut self, message: $crate::outbox::OutboxMessage) -> Result<String, $crate::BoxError> {
                let id = $crate::outbox::new_message_id();
                <$db as $crate::store::sql::Backend>::outbox_insert(self, &id, &message).await?;
                Ok(id)
            }
        }

        impl $crate::inbox::Inbox for $conn {
            async fn record(&mut self, consumer: &str, message_id: &str) -> Result<bool, $crate::BoxError> {
                Ok(<$db as $crate::store::sql::Backend>::inbox_insert(self, consumer, message_id).await?)
            }
        }
    };
}

pub(crate) use impl_outbox;
