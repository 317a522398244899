//! The SQLite adapter: [`SqliteStore`], embedded, no server needed.
//!
//! Paths (each statement is a call into the embedded library, not a network round trip):
//! applied: `SELECT state, version` · `BEGIN` · `UPDATE … WHERE id = ? AND state = ? AND
//! version = ?` · `INSERT INTO fsm_history` · effects · `COMMIT`; no-op: the `SELECT` alone.
//! SQLite allows one writer at a time, so the read-then-compare-and-set costs no extra
//! contention, and the compare-and-set on the observed state and version keeps it exact.

use crate::store::sql::SqlStore;
use crate::store::sql::backend::impl_backend;
use crate::store::sql::dialect::Dialect;
use crate::store::sql::outbox::impl_outbox;

/// A [`Store`](crate::Store) on SQLite.
pub type SqliteStore<M> = SqlStore<M, sqlx::Sqlite>;

impl_backend!(sqlx::Sqlite, Dialect::Sqlite, |_conn, _sql, _args| {
    Err(sqlx::Error::Configuration("SQLite has no one-statement transition; the store never asks for one".into()))
});

impl_outbox!(sqlx::SqliteConnection, sqlx::Sqlite);
