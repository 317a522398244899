//! [`SqlKeys`]: idempotency keys in `fsm_idempotency_keys`, one table for every machine.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{micros_before_now, now_micros};
use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey, Once};
use crate::keys::Keys;
use crate::keys::OpFuture;
use crate::keys::stored::{encode_result, replayed_result};
use crate::sql::keys::KeySql;
use crate::sql::{Backend, SqlTx, again_after_rollback, is_deadlock};

/// How often a key is claimed again after its first claim rolled back.
const MAX_ATTEMPTS: usize = 1_000;

/// The idempotency keys of an SQL database (see [`Keys`]); [`Store::keys`](crate::Store::keys)
/// of an SQL store gives the keys of its pool.
pub struct SqlKeys<B: Backend> {
    pool: sqlx::Pool<B>,
    sql: KeySql,
}

impl<B: Backend> Clone for SqlKeys<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), sql: self.sql.clone() }
    }
}

impl<B: Backend> std::fmt::Debug for SqlKeys<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlKeys").field("backend", &B::NAME).finish_non_exhaustive()
    }
}

fn keys_error(error: sqlx::Error) -> Error {
    Error::database("keys", "fsm_idempotency_keys", error)
}

impl<B: Backend> SqlKeys<B> {
    /// The keys of the database behind `pool`; creates or upgrades the runtime's tables.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, Error> {
        crate::sql::migrate::migrate::<B>(&pool)
            .await
            .map_err(|e| Error::database("keys", "fsm_schema_migrations", e))?;
        Ok(Self::with_sql(pool, KeySql::new::<B::Driver>()))
    }

    /// The keys of a pool whose tables are migrated, with statements built already.
    pub(crate) fn with_sql(pool: sqlx::Pool<B>, sql: KeySql) -> Self {
        Self { pool, sql }
    }

    /// Claims `key` in the transaction just begun on `tx`: `false` when it is stored (or a
    /// concurrent claim rolled back under a deadlock).
    async fn claim(&self, tx: &mut SqlTx<B>, key: &IdempotencyKey, fingerprint: &Fingerprint) -> Result<bool, Error> {
        // A concurrent claim of the same key waits here for the first to commit (and then finds
        // it stored) or to roll back (and then claims it).
        match self.sql.insert::<B::Driver>(&mut **tx, key, fingerprint, "", now_micros()).await {
            Ok(inserted) => Ok(inserted != 0),
            // The first claim rolled back and the requests that waited for it deadlocked
            // (MySQL/MariaDB): nothing ran in this transaction, so claim again.
            Err(error) if is_deadlock(&error) => Ok(false),
            Err(error) => Err(keys_error(error)),
        }
    }
}

impl<B: Backend> Keys for SqlKeys<B> {
    type Tx = SqlTx<B>;

    async fn run_once<T, F>(&self, key: IdempotencyKey, fingerprint: Fingerprint, op: F) -> Result<Once<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send,
        F: for<'t> FnOnce(&'t mut SqlTx<B>) -> OpFuture<'t, T> + Send,
    {
        let mut op = Some(op);
        let mut tx = SqlTx::idle(self.pool.acquire().await.map_err(keys_error)?);
        for _ in 0..MAX_ATTEMPTS {
            tx.start().await.map_err(keys_error)?;
            if !self.claim(&mut tx, &key, &fingerprint).await? {
                tx.finish_rollback().await.map_err(keys_error)?;
                match self.sql.read::<B::Driver>(&mut tx, &key).await.map_err(keys_error)? {
                    Some((stored_fingerprint, outcome)) => {
                        return replayed_result(&key, &fingerprint, &stored_fingerprint, &outcome);
                    }
                    // The first claim was rolled back meanwhile: claim it again.
                    None => continue,
                }
            }
            let Some(op) = op.take() else { break };
            let result = op(&mut tx).await.map_err(|source| Error::Operation { key: key.to_string(), source })?;
            let outcome = encode_result(&key, &result)?;
            self.sql.update::<B::Driver>(&mut tx, &key, &outcome).await.map_err(keys_error)?;
            tx.finish_commit().await.map_err(keys_error)?;
            return Ok(Once::Ran(result));
        }
        Err(Error::Database {
            machine: "keys",
            table: "fsm_idempotency_keys".to_owned(),
            retryable: true,
            source: format!("idempotency key `{key}` kept being claimed and released").into(),
        })
    }

    async fn purge_of(&self, source: Option<&str>, older_than: Duration) -> Result<u64, Error> {
        let cutoff = micros_before_now(older_than);
        let purged = again_after_rollback(|| async {
            self.sql.purge::<B::Driver>(&mut *self.pool.acquire().await?, cutoff, source).await
        });
        let purged = purged.await.map_err(keys_error)?;
        crate::telemetry::keys_purged(purged);
        Ok(purged)
    }
}
