//! The statements on an entity table and its history, built once per table mapping.
//!
//! Identifiers come from a [`TableMapping`] that was validated (`[A-Za-z_][A-Za-z0-9_]*`), and
//! are quoted on top; every value is a bound parameter.

use std::sync::Arc;

use crate::entity_id::EntityId;
use crate::idempotency::IdempotencyKey;
use crate::mapping::TableMapping;
use crate::sql::backend::private::Driver;
use crate::sql::value::{Arg, shared};

/// One history row to insert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryRow<'a> {
    pub(crate) table: &'a str,
    pub(crate) machine: &'static str,
    pub(crate) entity: &'a str,
    pub(crate) version: i64,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) event: Option<&'a str>,
    pub(crate) at_micros: i64,
}

/// A history row as read back: version, from, to, event, at_micros.
pub(crate) type StoredHistory = (i64, String, String, Option<String>, i64);

/// The entity's row and the key's stored fingerprint and outcome, as read together.
pub(crate) type RowAndKey = (Option<(String, i64)>, Option<(String, String)>);

/// The statements of one table mapping.
#[derive(Debug, Clone)]
pub(crate) struct EntitySql {
    /// `SELECT state, version FROM t WHERE id = ?1`
    read: Arc<str>,
    /// The same, locking the row where the database has row locks.
    read_for_update: Arc<str>,
    /// `INSERT INTO t (id, state, version) VALUES (?1, ?2, 0)`, ignoring a duplicate where the
    /// database can say so.
    insert: Arc<str>,
    /// `UPDATE t SET state = ?1, version = version + 1 WHERE id = ?2 AND state = ?3 AND version = ?4`
    cas: Arc<str>,
    /// `DELETE FROM t WHERE id = ?1`
    delete: Arc<str>,
    /// `INSERT INTO fsm_history (...) VALUES (?1 .. ?8)`
    insert_history: Arc<str>,
    /// `DELETE FROM fsm_history WHERE entity_table = ?1 AND entity_id = ?2`
    delete_history: Arc<str>,
    /// `SELECT version, from_state, to_state, event, at_micros FROM fsm_history … ORDER BY version`
    list_history: Arc<str>,
    /// The entity's state and version and the key's fingerprint and outcome, in one read:
    /// parameters id, key source, key seq.
    read_with_key: Arc<str>,
    /// `SELECT id, state, version FROM t WHERE 1 = 0`: the schema check.
    check: Arc<str>,
}

impl EntitySql {
    /// Builds the statements of `mapping` in `B`'s SQL.
    pub(crate) fn new<B: Driver>(mapping: &TableMapping) -> Self {
        let q = B::quote;
        let p = B::param;
        let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
        let read = format!("SELECT {state}, {version} FROM {table} WHERE {id} = {}", p(1));
        let values = |n: usize| (1..=n).map(p).collect::<Vec<_>>().join(", ");
        Self {
            read_for_update: format!("{read}{}", B::FOR_UPDATE).into(),
            read: read.into(),
            insert: format!(
                "INSERT INTO {table} ({id}, {state}, {version}) VALUES ({}, {}, 0){}",
                p(1),
                p(2),
                B::ON_CONFLICT_DO_NOTHING
            )
            .into(),
            cas: format!(
                "UPDATE {table} SET {state} = {}, {version} = {version} + 1 WHERE {id} = {} AND {state} = {} AND {version} = {}",
                p(1),
                p(2),
                p(3),
                p(4)
            )
            .into(),
            delete: format!("DELETE FROM {table} WHERE {id} = {}", p(1)).into(),
            insert_history: format!(
                "INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
                 VALUES ({})",
                values(8)
            )
            .into(),
            delete_history: format!("DELETE FROM fsm_history WHERE entity_table = {} AND entity_id = {}", p(1), p(2))
                .into(),
            list_history: format!(
                "SELECT version, from_state, to_state, event, at_micros FROM fsm_history \
                 WHERE entity_table = {} AND entity_id = {} ORDER BY version",
                p(1),
                p(2)
            )
            .into(),
            read_with_key: format!(
                "SELECT t.{state}, t.{version}, k.fingerprint, k.outcome FROM (SELECT 1 AS one) o \
                 LEFT JOIN {table} t ON t.{id} = {} \
                 LEFT JOIN fsm_idempotency_keys k ON k.source = {} AND k.seq = {}",
                p(1),
                p(2),
                p(3)
            )
            .into(),
            check: format!("SELECT {id}, {state}, {version} FROM {table} WHERE 1 = 0").into(),
        }
    }

    /// The row's state and version (`lock`: locking it until the transaction ends).
    pub(crate) async fn read<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        lock: bool,
    ) -> Result<Option<(String, i64)>, sqlx::Error> {
        let sql = if lock { &self.read_for_update } else { &self.read };
        let rows = B::fetch(conn, shared(sql), &[Arg::from(id)]).await?;
        rows.first().map(|row| Ok((row.text(0)?, row.int(1)?))).transpose()
    }

    /// Inserts the entity in `state` at version 0: rows inserted (0 or a unique violation for
    /// a duplicate).
    pub(crate) async fn insert<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        state: &str,
    ) -> Result<u64, sqlx::Error> {
        B::execute(conn, shared(&self.insert), &[Arg::from(id), Arg::Text(state)]).await
    }

    /// The compare-and-set on the observed state and version: rows updated.
    pub(crate) async fn cas<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        from: &str,
        to: &str,
        version: i64,
    ) -> Result<u64, sqlx::Error> {
        let args = [Arg::Text(to), Arg::from(id), Arg::Text(from), Arg::Int(version)];
        B::execute(conn, shared(&self.cas), &args).await
    }

    /// Deletes the entity: rows deleted.
    pub(crate) async fn delete<B: Driver>(&self, conn: &mut B::Connection, id: &EntityId) -> Result<u64, sqlx::Error> {
        B::execute(conn, shared(&self.delete), &[Arg::from(id)]).await
    }

    /// Inserts a history row.
    pub(crate) async fn insert_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        row: HistoryRow<'_>,
    ) -> Result<(), sqlx::Error> {
        let args = [
            Arg::Text(row.table),
            Arg::Text(row.machine),
            Arg::Text(row.entity),
            Arg::Int(row.version),
            Arg::Text(row.from),
            Arg::Text(row.to),
            Arg::OptText(row.event),
            Arg::Int(row.at_micros),
        ];
        B::execute(conn, shared(&self.insert_history), &args).await.map(drop)
    }

    /// Deletes the entity's history: rows deleted.
    pub(crate) async fn delete_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        table: &str,
        entity: &str,
    ) -> Result<u64, sqlx::Error> {
        B::execute(conn, shared(&self.delete_history), &[Arg::Text(table), Arg::Text(entity)]).await
    }

    /// The entity's history, oldest first.
    pub(crate) async fn list_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        table: &str,
        entity: &str,
    ) -> Result<Vec<StoredHistory>, sqlx::Error> {
        let rows = B::fetch(conn, shared(&self.list_history), &[Arg::Text(table), Arg::Text(entity)]).await?;
        rows.iter().map(|row| Ok((row.int(0)?, row.text(1)?, row.text(2)?, row.opt_text(3)?, row.int(4)?))).collect()
    }

    /// The entity's row and the key's fingerprint and outcome, in one read.
    pub(crate) async fn read_with_key<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        key: &IdempotencyKey,
    ) -> Result<RowAndKey, sqlx::Error> {
        let args = [Arg::from(id), Arg::Text(key.source()), Arg::Int(key.seq())];
        let rows = B::fetch(conn, shared(&self.read_with_key), &args).await?;
        let Some(row) = rows.first() else { return Ok((None, None)) };
        let entity = row.opt_text(0)?.zip(row.opt_int(1)?);
        let key = row.opt_text(2)?.zip(row.opt_text(3)?);
        Ok((entity, key))
    }

    /// Checks that the table and its three columns exist, reading no row.
    pub(crate) async fn check<B: Driver>(&self, conn: &mut B::Connection) -> Result<(), sqlx::Error> {
        B::execute_script(conn, &self.check).await
    }
}

#[cfg(all(test, feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_identifiers_and_bind_values() {
        let mapping = TableMapping::from_static("orders", "id", "state", "version");
        let pg = EntitySql::new::<sqlx::Postgres>(&mapping);
        assert_eq!(&*pg.read, r#"SELECT "state", "version" FROM "orders" WHERE "id" = $1"#);
        assert_eq!(&*pg.read_for_update, r#"SELECT "state", "version" FROM "orders" WHERE "id" = $1 FOR UPDATE"#);
        let my = EntitySql::new::<sqlx::MySql>(&mapping);
        assert_eq!(
            &*my.cas,
            "UPDATE `orders` SET `state` = ?, `version` = `version` + 1 WHERE `id` = ? AND `state` = ? AND `version` = ?"
        );
        let lite = EntitySql::new::<sqlx::Sqlite>(&mapping);
        assert_eq!(&*lite.read, "SELECT `state`, `version` FROM `orders` WHERE `id` = ?");
        assert_eq!(lite.read, lite.read_for_update);
        assert!(lite.insert.ends_with("ON CONFLICT DO NOTHING") && !my.insert.contains("ON CONFLICT"));
    }
}
