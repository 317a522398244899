//! The statements of the idempotency keys' table, `fsm_idempotency_keys`: one table for every
//! machine of a database, a key being `(source, seq)`.

use std::sync::Arc;

use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::sql::backend::private::Driver;
use crate::sql::classify::is_unique_violation;
use crate::sql::value::{Arg, shared};

/// The key statements of one backend, built once.
#[derive(Debug, Clone)]
pub(crate) struct KeySql {
    /// `INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros)`,
    /// ignoring a duplicate where the database can say so.
    insert: Arc<str>,
    /// `SELECT fingerprint, outcome … WHERE source = ? AND seq = ?`
    read: Arc<str>,
    /// `UPDATE … SET outcome = ? WHERE source = ? AND seq = ?`
    update: Arc<str>,
    /// `DELETE … WHERE created_at_micros < ?`
    purge: Arc<str>,
    /// `DELETE … WHERE created_at_micros < ? AND source = ?`
    purge_of_source: Arc<str>,
}

impl KeySql {
    /// The statements in `B`'s SQL.
    pub(crate) fn new<B: Driver>() -> Self {
        let p = B::param;
        Self {
            insert: format!(
                "INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
                 VALUES ({}, {}, {}, {}, {}){}",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                B::ON_CONFLICT_DO_NOTHING
            )
            .into(),
            read: format!(
                "SELECT fingerprint, outcome FROM fsm_idempotency_keys WHERE source = {} AND seq = {}",
                p(1),
                p(2)
            )
            .into(),
            update: format!(
                "UPDATE fsm_idempotency_keys SET outcome = {} WHERE source = {} AND seq = {}",
                p(1),
                p(2),
                p(3)
            )
            .into(),
            purge: format!("DELETE FROM fsm_idempotency_keys WHERE created_at_micros < {}", p(1)).into(),
            purge_of_source: format!(
                "DELETE FROM fsm_idempotency_keys WHERE created_at_micros < {} AND source = {}",
                p(1),
                p(2)
            )
            .into(),
        }
    }

    /// Stores `key` with `outcome`: rows inserted, 0 when the key was stored already.
    pub(crate) async fn insert<B: Driver>(
        &self,
        conn: &mut B::Connection,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        at_micros: i64,
    ) -> Result<u64, sqlx::Error> {
        let args = [
            Arg::Text(key.source()),
            Arg::Int(key.seq()),
            Arg::Text(fingerprint.as_str()),
            Arg::Text(outcome),
            Arg::Int(at_micros),
        ];
        match B::execute(conn, shared(&self.insert), &args).await {
            Err(error) if is_unique_violation(&error) => Ok(0),
            other => other,
        }
    }

    /// The key's stored fingerprint and outcome.
    pub(crate) async fn read<B: Driver>(
        &self,
        conn: &mut B::Connection,
        key: &IdempotencyKey,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        let rows = B::fetch(conn, shared(&self.read), &[Arg::Text(key.source()), Arg::Int(key.seq())]).await?;
        rows.first().map(|row| Ok((row.text(0)?, row.text(1)?))).transpose()
    }

    /// Replaces the key's outcome: rows updated.
    pub(crate) async fn update<B: Driver>(
        &self,
        conn: &mut B::Connection,
        key: &IdempotencyKey,
        outcome: &str,
    ) -> Result<u64, sqlx::Error> {
        let args = [Arg::Text(outcome), Arg::Text(key.source()), Arg::Int(key.seq())];
        B::execute(conn, shared(&self.update), &args).await
    }

    /// Deletes the keys (of `source`, if given) stored before `cutoff_micros`: rows deleted.
    pub(crate) async fn purge<B: Driver>(
        &self,
        conn: &mut B::Connection,
        cutoff_micros: i64,
        source: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        match source {
            Some(source) => {
                B::execute(conn, shared(&self.purge_of_source), &[Arg::Int(cutoff_micros), Arg::Text(source)]).await
            }
            None => B::execute(conn, shared(&self.purge), &[Arg::Int(cutoff_micros)]).await,
        }
    }
}
