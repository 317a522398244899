//! [`SqlInbox`]: the retention of the inbox table (`fsm_inbox`) of an SQL database.

use std::time::Duration;

use crate::clock::micros_before_now;
use crate::error::Error;
use crate::sql::{Backend, inbox};

fn inbox_error(error: sqlx::Error) -> Error {
    Error::database("inbox", "fsm_inbox", error)
}

/// The inbox records of an SQL database, for their retention (consumers record in their own
/// transaction with [`Inbox::record`](crate::inbox::Inbox::record) on an
/// [`SqlTx`](crate::sql::SqlTx)).
///
/// ```no_run
/// use std::time::Duration;
/// use fsm_runtime::inbox::SqlInbox;
/// # async fn retention(pool: fsm_runtime::sqlx::SqlitePool) -> Result<(), fsm_runtime::Error> {
/// let inbox = SqlInbox::new(pool).await?;
/// let purged = inbox.purge(Duration::from_secs(30 * 86_400)).await?;
/// let mailer = inbox.purge_of("receipts-mailer", Duration::from_secs(7 * 86_400)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqlInbox<B: Backend> {
    pool: sqlx::Pool<B>,
}

impl<B: Backend> Clone for SqlInbox<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone() }
    }
}

impl<B: Backend> SqlInbox<B> {
    /// The inbox of the database behind `pool`; creates or upgrades the runtime's tables.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, Error> {
        crate::sql::migrate::migrate::<B>(&pool)
            .await
            .map_err(|e| Error::database("inbox", "fsm_schema_migrations", e))?;
        Ok(Self { pool })
    }

    /// Deletes every consumer's records made more than `older_than` ago: how many.
    pub async fn purge(&self, older_than: Duration) -> Result<u64, Error> {
        self.purge_records(older_than, None).await
    }

    /// Deletes the records of `consumer` made more than `older_than` ago: how many.
    pub async fn purge_of(&self, consumer: &str, older_than: Duration) -> Result<u64, Error> {
        self.purge_records(older_than, Some(consumer)).await
    }

    async fn purge_records(&self, older_than: Duration, consumer: Option<&str>) -> Result<u64, Error> {
        let mut conn = self.pool.acquire().await.map_err(inbox_error)?;
        let cutoff = micros_before_now(older_than);
        inbox::purge::<B::Driver>(&mut conn, cutoff, consumer).await.map_err(inbox_error)
    }
}
