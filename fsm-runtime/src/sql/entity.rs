//! The statements on an entity table and its history, built once per table mapping.
//!
//! Identifiers come from a [`TableMapping`] that was validated (`[A-Za-z_][A-Za-z0-9_]*`), and
//! are quoted on top; every value is a bound parameter.

use std::sync::Arc;

use crate::entity_id::EntityId;
use crate::idempotency::IdempotencyKey;
use crate::mapping::TableMapping;
use crate::sql::backend::private::{Driver, IdBinding};
use crate::sql::value::{Arg, shared};

/// One history row to insert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryRow<'a> {
    pub(crate) table: &'a str,
    pub(crate) machine: &'static str,
    /// The entity's id as the table stores it (not as the caller spelled it).
    pub(crate) entity: &'a str,
    pub(crate) version: i64,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) event: Option<&'a str>,
    pub(crate) at_micros: i64,
    /// Who, why, under which key, and the caller's JSON metadata (as text).
    pub(crate) audit: AuditRow<'a>,
}

/// The audit columns of a history row.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuditRow<'a> {
    pub(crate) actor: Option<&'a str>,
    pub(crate) reason: Option<&'a str>,
    pub(crate) key: Option<&'a str>,
    pub(crate) metadata: Option<&'a str>,
}

impl<'a> AuditRow<'a> {
    /// The audit columns as arguments, in the order of the columns.
    pub(crate) fn args(self) -> [Arg<'a>; 4] {
        [Arg::OptText(self.actor), Arg::OptText(self.reason), Arg::OptText(self.key), Arg::OptText(self.metadata)]
    }
}

/// A history row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredHistory {
    pub(crate) version: i64,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) event: Option<String>,
    pub(crate) at_micros: i64,
    pub(crate) actor: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) metadata: Option<String>,
    /// 0 while the entity lives; when it was deleted, after.
    pub(crate) deleted_at_micros: i64,
}

/// The entity's row as read: its state, version and id as the table stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRow {
    pub(crate) state: String,
    pub(crate) version: i64,
    pub(crate) id: String,
}

/// The entity's row and the key's stored fingerprint and outcome, as read together.
pub(crate) type RowAndKey = (Option<StoredRow>, Option<(String, String)>);

/// The columns of a history row, as the statements list them.
pub(crate) const HISTORY_COLUMNS: &str = "entity_table, machine, entity_id, version, from_state, to_state, event, \
     at_micros, actor, reason, idempotency_key, metadata";

/// The columns a history listing reads, in the order of [`StoredHistory`].
const HISTORY_READ: &str = "version, from_state, to_state, event, at_micros, actor, reason, idempotency_key, \
     metadata, deleted_at_micros";

/// The statements of one table mapping.
#[derive(Debug, Clone)]
pub(crate) struct EntitySql {
    /// `SELECT state, version, id-as-text FROM t WHERE id = ?1`
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
    /// `INSERT INTO fsm_history (...) VALUES (?1 .. ?12)`
    insert_history: Arc<str>,
    /// Marks the live history rows of an entity (of every machine of the table) deleted.
    retire_history: Arc<str>,
    /// Deletes one machine's history of an entity, live and deleted.
    purge_history: Arc<str>,
    /// Deletes the history rows of the table's entities deleted before a time.
    purge_retired: Arc<str>,
    /// The live history of an entity, oldest first.
    list_history: Arc<str>,
    /// Every history row of an entity: its deleted lives first, then the live one.
    list_audit: Arc<str>,
    /// The entity's row and the key's fingerprint and outcome, in one read:
    /// parameters id, key source, key seq.
    read_with_key: Arc<str>,
    /// `SELECT id, state, version FROM t WHERE 1 = 0`: the schema check.
    check: Arc<str>,
    /// The id column's SQL type, where the database needs to know it (see `Driver::id_param`).
    id_type: Option<Arc<str>>,
    /// How ids are bound ([`Driver::id_binding`]).
    id_binding: IdBinding,
}

impl EntitySql {
    /// Builds the statements of `mapping`, whose id column is of SQL type `id_type` (where the
    /// database needs to know it), in `B`'s SQL.
    pub(crate) fn new<B: Driver>(mapping: &TableMapping, id_type: Option<&str>) -> Self {
        let q = B::quote;
        let p = B::param;
        let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
        let id_param = |n| B::id_param(n, id_type);
        let read = format!("SELECT {state}, {version}, {} FROM {table} WHERE {id} = {}", B::id_text(&id), id_param(1));
        let values = |n: usize| (1..=n).map(p).collect::<Vec<_>>().join(", ");
        let of_entity = format!("entity_table = {} AND machine = {} AND entity_id = {}", p(1), p(2), p(3));
        Self {
            read_for_update: format!("{read}{}", B::FOR_UPDATE).into(),
            read: read.into(),
            insert: format!(
                "INSERT INTO {table} ({id}, {state}, {version}) VALUES ({}, {}, 0){}",
                id_param(1),
                p(2),
                B::ON_CONFLICT_DO_NOTHING
            )
            .into(),
            cas: format!(
                "UPDATE {table} SET {state} = {}, {version} = {version} + 1 WHERE {id} = {} AND {state} = {} AND {version} = {}",
                p(1),
                id_param(2),
                p(3),
                p(4)
            )
            .into(),
            delete: format!("DELETE FROM {table} WHERE {id} = {}", id_param(1)).into(),
            insert_history: format!("INSERT INTO fsm_history ({HISTORY_COLUMNS}) VALUES ({})", values(12)).into(),
            retire_history: format!(
                "UPDATE fsm_history SET deleted_at_micros = {} \
                 WHERE entity_table = {} AND entity_id = {} AND deleted_at_micros = 0",
                p(1),
                p(2),
                p(3)
            )
            .into(),
            purge_history: format!("DELETE FROM fsm_history WHERE {of_entity}").into(),
            purge_retired: format!(
                "DELETE FROM fsm_history WHERE entity_table = {} AND deleted_at_micros > 0 AND deleted_at_micros < {}",
                p(1),
                p(2)
            )
            .into(),
            list_history: format!(
                "SELECT {HISTORY_READ} FROM fsm_history WHERE {of_entity} AND deleted_at_micros = 0 ORDER BY version"
            )
            .into(),
            list_audit: format!(
                "SELECT {HISTORY_READ} FROM fsm_history WHERE {of_entity} \
                 ORDER BY CASE WHEN deleted_at_micros = 0 THEN 1 ELSE 0 END, deleted_at_micros, version"
            )
            .into(),
            read_with_key: format!(
                "SELECT t.{state}, t.{version}, {}, k.fingerprint, k.outcome FROM (SELECT 1 AS one) o \
                 LEFT JOIN {table} t ON t.{id} = {} \
                 LEFT JOIN fsm_idempotency_keys k ON k.source = {} AND k.seq = {}",
                B::id_text(&format!("t.{id}")),
                id_param(1),
                p(2),
                p(3)
            )
            .into(),
            check: format!("SELECT {id}, {state}, {version} FROM {table} WHERE 1 = 0").into(),
            id_type: id_type.map(Into::into),
            id_binding: B::id_binding(id_type),
        }
    }

    /// `id` as the statements bind it ([`Driver::id_binding`]).
    pub(crate) fn id_arg<'a>(&self, id: &'a EntityId) -> Arg<'a> {
        bind_id(self.id_binding, id)
    }

    /// `id` as a batch statement takes it: as text, which the statement casts to the id
    /// column's type; `None` for a text id an integer column cannot take.
    pub(crate) fn batch_id(&self, id: &EntityId) -> Option<String> {
        match (self.id_binding, id) {
            (IdBinding::Int, EntityId::Text(text)) => text.parse::<i64>().ok().map(|id| id.to_string()),
            (_, id) => Some(id.to_string()),
        }
    }

    /// The id column's SQL type, where the database needs to know it.
    pub(crate) fn id_type(&self) -> Option<&str> {
        self.id_type.as_deref()
    }

    /// The row's state, version and stored id (`lock`: locking it until the transaction ends).
    pub(crate) async fn read<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        lock: bool,
    ) -> Result<Option<StoredRow>, sqlx::Error> {
        let sql = if lock { &self.read_for_update } else { &self.read };
        let rows = B::fetch(conn, shared(sql), &[self.id_arg(id)]).await?;
        rows.first()
            .map(|row| Ok(StoredRow { state: row.text(0)?, version: row.int(1)?, id: row.text(2)? }))
            .transpose()
    }

    /// Inserts the entity in `state` at version 0: rows inserted (0 or a unique violation for
    /// a duplicate).
    pub(crate) async fn insert<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        state: &str,
    ) -> Result<u64, sqlx::Error> {
        B::execute(conn, shared(&self.insert), &[self.id_arg(id), Arg::Text(state)]).await
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
        let args = [Arg::Text(to), self.id_arg(id), Arg::Text(from), Arg::Int(version)];
        B::execute(conn, shared(&self.cas), &args).await
    }

    /// Deletes the entity: rows deleted.
    pub(crate) async fn delete<B: Driver>(&self, conn: &mut B::Connection, id: &EntityId) -> Result<u64, sqlx::Error> {
        B::execute(conn, shared(&self.delete), &[self.id_arg(id)]).await
    }

    /// Inserts a history row.
    pub(crate) async fn insert_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        row: HistoryRow<'_>,
    ) -> Result<(), sqlx::Error> {
        let [actor, reason, key, metadata] = row.audit.args();
        let args = [
            Arg::Text(row.table),
            Arg::Text(row.machine),
            Arg::Text(row.entity),
            Arg::Int(row.version),
            Arg::Text(row.from),
            Arg::Text(row.to),
            Arg::OptText(row.event),
            Arg::Int(row.at_micros),
            actor,
            reason,
            key,
            metadata,
        ];
        B::execute(conn, shared(&self.insert_history), &args).await.map(drop)
    }

    /// Marks the live history of the stored id `entity` (every machine of `table`) deleted at
    /// `at_micros`: rows marked.
    pub(crate) async fn retire_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        table: &str,
        entity: &str,
        at_micros: i64,
    ) -> Result<u64, sqlx::Error> {
        let args = [Arg::Int(at_micros), Arg::Text(table), Arg::Text(entity)];
        B::execute(conn, shared(&self.retire_history), &args).await
    }

    /// Deletes `machine`'s history of `entity`, live and deleted: rows deleted.
    pub(crate) async fn purge_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        table: &str,
        machine: &str,
        entity: &str,
    ) -> Result<u64, sqlx::Error> {
        let args = [Arg::Text(table), Arg::Text(machine), Arg::Text(entity)];
        B::execute(conn, shared(&self.purge_history), &args).await
    }

    /// Deletes the history of `table`'s entities deleted before `before_micros`: rows deleted.
    pub(crate) async fn purge_retired<B: Driver>(
        &self,
        conn: &mut B::Connection,
        table: &str,
        before_micros: i64,
    ) -> Result<u64, sqlx::Error> {
        B::execute(conn, shared(&self.purge_retired), &[Arg::Text(table), Arg::Int(before_micros)]).await
    }

    /// `machine`'s history of `entity`: `all` its deleted lives too (first), else the live one,
    /// oldest first.
    pub(crate) async fn list_history<B: Driver>(
        &self,
        conn: &mut B::Connection,
        table: &str,
        machine: &str,
        entity: &str,
        all: bool,
    ) -> Result<Vec<StoredHistory>, sqlx::Error> {
        let sql = if all { &self.list_audit } else { &self.list_history };
        let rows = B::fetch(conn, shared(sql), &[Arg::Text(table), Arg::Text(machine), Arg::Text(entity)]).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredHistory {
                    version: row.int(0)?,
                    from: row.text(1)?,
                    to: row.text(2)?,
                    event: row.opt_text(3)?,
                    at_micros: row.int(4)?,
                    actor: row.opt_text(5)?,
                    reason: row.opt_text(6)?,
                    key: row.opt_text(7)?,
                    metadata: row.opt_text(8)?,
                    deleted_at_micros: row.int(9)?,
                })
            })
            .collect()
    }

    /// The entity's row and the key's fingerprint and outcome, in one read.
    pub(crate) async fn read_with_key<B: Driver>(
        &self,
        conn: &mut B::Connection,
        id: &EntityId,
        key: &IdempotencyKey,
    ) -> Result<RowAndKey, sqlx::Error> {
        let args = [self.id_arg(id), Arg::Text(key.source()), Arg::Int(key.seq())];
        let rows = B::fetch(conn, shared(&self.read_with_key), &args).await?;
        let Some(row) = rows.first() else { return Ok((None, None)) };
        let entity = match (row.opt_text(0)?, row.opt_int(1)?, row.opt_text(2)?) {
            (Some(state), Some(version), Some(id)) => Some(StoredRow { state, version, id }),
            _ => None,
        };
        let key = row.opt_text(3)?.zip(row.opt_text(4)?);
        Ok((entity, key))
    }

    /// Checks that the table and its three columns exist, reading no row.
    pub(crate) async fn check<B: Driver>(&self, conn: &mut B::Connection) -> Result<(), sqlx::Error> {
        B::execute_script(conn, &self.check).await
    }
}

/// `id` bound as `binding` says. A text id that is not an integer, for an integer column,
/// stays text: no row can have it, and the database refuses the statement.
pub(crate) fn bind_id(binding: IdBinding, id: &EntityId) -> Arg<'_> {
    match (binding, id) {
        (IdBinding::Int, EntityId::Text(text)) => text.parse().map_or(Arg::Text(text), Arg::Int),
        (IdBinding::Text, EntityId::Int(id)) => Arg::IntAsText(*id),
        (_, id) => Arg::from(id),
    }
}

/// Whether a column type read from the server is one that may go into a statement as is: a
/// name, an optional size, `unsigned`; nothing else.
pub(crate) fn is_plain_column_type(column_type: &str) -> bool {
    !column_type.is_empty()
        && column_type.len() <= 40
        && column_type.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '(' | ')' | ',' | ' ' | '_'))
}

#[cfg(all(test, feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_identifiers_and_bind_values() {
        let mapping = TableMapping::from_static("orders", "id", "state", "version");
        let pg = EntitySql::new::<sqlx::Postgres>(&mapping, None);
        assert_eq!(&*pg.read, r#"SELECT "state", "version", "id"::text FROM "orders" WHERE "id" = $1"#);
        assert_eq!(
            &*pg.read_for_update,
            r#"SELECT "state", "version", "id"::text FROM "orders" WHERE "id" = $1 FOR UPDATE"#
        );
        let uuid = EntitySql::new::<sqlx::Postgres>(&mapping, Some("uuid"));
        assert!(uuid.read.ends_with(r#"WHERE "id" = CAST($1 AS uuid)"#), "{}", uuid.read);
        let my = EntitySql::new::<sqlx::MySql>(&mapping, None);
        assert_eq!(
            &*my.cas,
            "UPDATE `orders` SET `state` = ?, `version` = `version` + 1 WHERE `id` = ? AND `state` = ? AND `version` = ?"
        );
        let lite = EntitySql::new::<sqlx::Sqlite>(&mapping, None);
        assert_eq!(&*lite.read, "SELECT `state`, `version`, CAST(`id` AS TEXT) FROM `orders` WHERE `id` = ?");
        assert_eq!(lite.read, lite.read_for_update);
        assert!(lite.insert.ends_with("ON CONFLICT DO NOTHING") && !my.insert.contains("ON CONFLICT"));
    }

    #[test]
    fn column_types_are_checked_before_they_go_into_sql() {
        assert!(is_plain_column_type("bigint(20)"));
        assert!(is_plain_column_type("character varying"));
        assert!(is_plain_column_type("int(10) unsigned"));
        assert!(!is_plain_column_type("bigint); DROP TABLE x; --"));
        assert!(!is_plain_column_type("public.my_id"));
        assert!(!is_plain_column_type(""));
    }
}
