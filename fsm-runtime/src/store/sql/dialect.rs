//! The SQL text of every statement a store issues, built once when the store is built.
//!
//! Identifiers come from a [`TableMapping`] that was validated (`[A-Za-z_][A-Za-z0-9_]*`), and
//! are quoted on top; every value is a bound parameter.

use std::sync::Arc;

use crate::mapping::TableMapping;

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: `` `quoted` `` identifiers (never taken for a string literal), `?` parameters.
    Sqlite,
    /// PostgreSQL: `"quoted"` identifiers, `$n` parameters.
    Postgres,
    /// MySQL and MariaDB: `` `quoted` `` identifiers, `?` parameters.
    MySql,
}

impl Dialect {
    /// Quotes a validated identifier. SQLite takes a double-quoted name that matches no column
    /// for a string literal (<https://sqlite.org/quirks.html#dblquote>): a wrong column name
    /// would read as a constant and pass the schema check. A name in backticks is always an
    /// identifier there, as in MySQL.
    pub(crate) fn quote(self, identifier: &str) -> String {
        match self {
            Self::Sqlite | Self::MySql => format!("`{identifier}`"),
            Self::Postgres => format!("\"{identifier}\""),
        }
    }

    fn param(self, n: usize) -> String {
        match self {
            Self::Postgres => format!("${n}"),
            Self::Sqlite | Self::MySql => "?".to_owned(),
        }
    }

    /// The scripts of the runtime's own tables with their versions, run by `migrate` in order,
    /// each once per database (statements are separated by `;` at the end of a line).
    pub(crate) fn migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Self::Sqlite => &[
                (1, include_str!("../../../migrations/sqlite/0001_history.sql")),
                (2, include_str!("../../../migrations/sqlite/0002_idempotency_keys.sql")),
                (3, include_str!("../../../migrations/sqlite/0003_outbox.sql")),
                (4, include_str!("../../../migrations/sqlite/0004_outbox_topic_index.sql")),
            ],
            Self::Postgres => &[
                (1, include_str!("../../../migrations/postgres/0001_history.sql")),
                (2, include_str!("../../../migrations/postgres/0002_idempotency_keys.sql")),
                (3, include_str!("../../../migrations/postgres/0003_outbox.sql")),
                (4, include_str!("../../../migrations/postgres/0004_outbox_topic_index.sql")),
            ],
            Self::MySql => &[
                (1, include_str!("../../../migrations/mysql/0001_history.sql")),
                (2, include_str!("../../../migrations/mysql/0002_idempotency_keys.sql")),
                (3, include_str!("../../../migrations/mysql/0003_outbox.sql")),
                (4, include_str!("../../../migrations/mysql/0004_outbox_topic_index.sql")),
                (5, include_str!("../../../migrations/mysql/0005_binary_collation.sql")),
            ],
        }
    }

    /// The table of applied migration versions. A database migrated before it existed runs
    /// every script once more: each of them may run twice (`IF NOT EXISTS`, an index that
    /// exists is ignored, a collation converted again is unchanged).
    pub(crate) fn migrations_table(self) -> &'static str {
        "CREATE TABLE IF NOT EXISTS fsm_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_at_micros BIGINT NOT NULL)"
    }

    /// MySQL/MariaDB: the query that names the server's binary, non-padding collation of
    /// `utf8mb4` (`utf8mb4_nopad_bin` on MariaDB, `utf8mb4_0900_bin` on MySQL 8), which the
    /// migrations put in place of `{binary_collation}`; `utf8mb4_bin` (which ignores trailing
    /// spaces) where the server has neither.
    pub(crate) fn binary_collation_query(self) -> Option<&'static str> {
        match self {
            Self::MySql => Some(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
                 WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin') ORDER BY COLLATION_NAME DESC LIMIT 1",
            ),
            Self::Sqlite | Self::Postgres => None,
        }
    }

    /// Records an applied migration version (`?1` version, `?2` at_micros); a version that
    /// another process recorded first is no error.
    pub(crate) fn record_migration(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "INSERT INTO fsm_schema_migrations (version, applied_at_micros) VALUES (?, ?) ON CONFLICT DO NOTHING"
            }
            Self::Postgres => {
                "INSERT INTO fsm_schema_migrations (version, applied_at_micros) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            }
            Self::MySql => "INSERT IGNORE INTO fsm_schema_migrations (version, applied_at_micros) VALUES (?, ?)",
        }
    }
}

/// The statements of one store, as shared SQL strings.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    /// `SELECT state, version FROM t WHERE id = ?1`
    pub(crate) read: Arc<str>,
    /// The same, locking the row (`FOR UPDATE` where the database has it).
    pub(crate) read_for_update: Arc<str>,
    /// `INSERT INTO t (id, state, version) VALUES (?1, ?2, 0)`, ignoring a duplicate where the
    /// dialect can say so.
    pub(crate) insert: Arc<str>,
    /// `UPDATE t SET state = ?1, version = version + 1 WHERE id = ?2 AND state = ?3 AND version = ?4`
    pub(crate) cas: Arc<str>,
    /// `DELETE FROM t WHERE id = ?1`
    pub(crate) delete: Arc<str>,
    /// `INSERT INTO fsm_history (...) VALUES (?1 .. ?8)`
    pub(crate) insert_history: Arc<str>,
    /// `DELETE FROM fsm_history WHERE entity_table = ?1 AND entity_id = ?2`
    pub(crate) delete_history: Arc<str>,
    /// `SELECT version, from_state, to_state, event, at_micros FROM fsm_history WHERE ... ORDER BY version`
    pub(crate) list_history: Arc<str>,
    /// PostgreSQL only: the whole applied path (compare-and-set on the legal sources and the
    /// history row) as one statement, which also returns the row when it matched nothing.
    /// Parameters: id, sources (text[]), target, machine, entity id as text, event, at_micros,
    /// expected version (nullable), entity table.
    pub(crate) transition_one_statement: Option<Arc<str>>,
    /// SQLite only: the applied path as one call into the library, a batch `BEGIN IMMEDIATE;
    /// INSERT history … SELECT … RETURNING; UPDATE …; SELECT state, version; COMMIT`, with the
    /// parameters of PostgreSQL's statement (the sources as a JSON array).
    pub(crate) sqlite_batch: Option<Arc<str>>,
    /// MySQL only: `CALL` of the store's transition procedure, when the server let the store
    /// create it (see `mysql_procedure`); set after the store is built.
    pub(crate) mysql_call: Option<Arc<str>>,
    /// PostgreSQL only: the same, also storing the idempotency key with the outcome. Extra
    /// parameters: key source, key seq, fingerprint.
    pub(crate) transition_one_statement_keyed: Option<Arc<str>>,
    /// The entity's state and version and the key's fingerprint and outcome, in one read:
    /// parameters id, key source, key seq.
    pub(crate) read_with_key: Arc<str>,
    /// `INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros)`,
    /// ignoring a duplicate where the dialect can say so.
    pub(crate) insert_key: Arc<str>,
    /// `SELECT fingerprint, outcome FROM fsm_idempotency_keys WHERE source = ? AND seq = ?`
    pub(crate) read_key: Arc<str>,
    /// `UPDATE fsm_idempotency_keys SET outcome = ? WHERE source = ? AND seq = ?`
    pub(crate) update_key: Arc<str>,
    /// `DELETE FROM fsm_idempotency_keys WHERE created_at_micros < ?1 AND (?2 IS NULL OR source = ?3)`
    pub(crate) purge_keys: Arc<str>,
}

impl Statements {
    /// Builds the statements of `mapping` in `dialect`.
    pub(crate) fn new(dialect: Dialect, mapping: &TableMapping) -> Self {
        let q = |identifier: &str| dialect.quote(identifier);
        let p = |n: usize| dialect.param(n);
        let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
        let read = format!("SELECT {state}, {version} FROM {table} WHERE {id} = {}", p(1));
        let read_for_update = match dialect {
            Dialect::Sqlite => read.clone(),
            Dialect::Postgres | Dialect::MySql => format!("{read} FOR UPDATE"),
        };
        let insert = format!(
            "INSERT INTO {table} ({id}, {state}, {version}) VALUES ({}, {}, 0){}",
            p(1),
            p(2),
            match dialect {
                Dialect::Sqlite | Dialect::Postgres => " ON CONFLICT DO NOTHING",
                Dialect::MySql => "",
            }
        );
        let cas = format!(
            "UPDATE {table} SET {state} = {}, {version} = {version} + 1 WHERE {id} = {} AND {state} = {} AND {version} = {}",
            p(1),
            p(2),
            p(3),
            p(4)
        );
        let delete = format!("DELETE FROM {table} WHERE {id} = {}", p(1));
        let insert_history = format!(
            "INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8)
        );
        let delete_history = format!("DELETE FROM fsm_history WHERE entity_table = {} AND entity_id = {}", p(1), p(2));
        let list_history = format!(
            "SELECT version, from_state, to_state, event, at_micros FROM fsm_history \
             WHERE entity_table = {} AND entity_id = {} ORDER BY version",
            p(1),
            p(2)
        );
        let transition_one_statement = (dialect == Dialect::Postgres).then(|| postgres_transition(mapping, false));
        let transition_one_statement_keyed = (dialect == Dialect::Postgres).then(|| postgres_transition(mapping, true));
        let sqlite_batch = (dialect == Dialect::Sqlite).then(|| sqlite_batch(mapping));
        let read_with_key = format!(
            "SELECT t.{state}, t.{version}, k.fingerprint, k.outcome FROM (SELECT 1 AS one) o \
             LEFT JOIN {table} t ON t.{id} = {} \
             LEFT JOIN fsm_idempotency_keys k ON k.source = {} AND k.seq = {}",
            p(1),
            p(2),
            p(3)
        );
        let insert_key = format!(
            "INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
             VALUES ({}, {}, {}, {}, {}){}",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            match dialect {
                Dialect::Sqlite | Dialect::Postgres => " ON CONFLICT DO NOTHING",
                Dialect::MySql => "",
            }
        );
        let read_key =
            format!("SELECT fingerprint, outcome FROM fsm_idempotency_keys WHERE source = {} AND seq = {}", p(1), p(2));
        let update_key =
            format!("UPDATE fsm_idempotency_keys SET outcome = {} WHERE source = {} AND seq = {}", p(1), p(2), p(3));
        let purge_keys = format!(
            "DELETE FROM fsm_idempotency_keys WHERE created_at_micros < {} AND ({} IS NULL OR source = {})",
            p(1),
            match dialect {
                Dialect::Postgres => "$2::text".to_owned(),
                Dialect::Sqlite | Dialect::MySql => p(2),
            },
            p(3)
        );
        Self {
            read: read.into(),
            read_for_update: read_for_update.into(),
            insert: insert.into(),
            cas: cas.into(),
            delete: delete.into(),
            insert_history: insert_history.into(),
            delete_history: delete_history.into(),
            list_history: list_history.into(),
            transition_one_statement,
            transition_one_statement_keyed,
            sqlite_batch,
            mysql_call: None,
            read_with_key: read_with_key.into(),
            insert_key: insert_key.into(),
            read_key: read_key.into(),
            update_key: update_key.into(),
            purge_keys: purge_keys.into(),
        }
    }
}

/// PostgreSQL's one-statement transition. `source` locks the row only if it is in a legal
/// source (and at the expected version); `moved` updates that row; `recorded` inserts the
/// history row from what `moved` returned (and, `keyed`, `stored` the idempotency key with the
/// outcome). Under READ COMMITTED a concurrent transition makes `source` re-check the latest row
/// version, so exactly one of N racers matches. The statement answers `(true, from, version)`
/// when it applied, else `(false, state, version)` of the row as the statement's snapshot saw
/// it (nothing when there is no row): the classifying read of a miss costs no second round trip.
fn postgres_transition(mapping: &TableMapping, keyed: bool) -> Arc<str> {
    let q = |identifier: &str| Dialect::Postgres.quote(identifier);
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let stored = if keyed {
        ", stored AS (\
             INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
             SELECT $10, $11, $12, json_build_object('from', moved.from_state, 'to', $3::text, \
             'version', moved.version)::text, $7 FROM moved\
         )"
    } else {
        ""
    };
    format!(
        "WITH source AS (\
             SELECT {state} AS from_state FROM {table} \
             WHERE {id} = $1 AND {state} = ANY($2) AND ($8::bigint IS NULL OR {version} = $8) \
             FOR UPDATE\
         ), moved AS (\
             UPDATE {table} SET {state} = $3, {version} = {table}.{version} + 1 FROM source \
             WHERE {table}.{id} = $1 RETURNING {table}.{version} AS version, source.from_state\
         ){stored}, recorded AS (\
             INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
             SELECT $9, $4, $5, moved.version, moved.from_state, $3, $6, $7 FROM moved \
             RETURNING from_state, version\
         ) \
         SELECT true AS applied, from_state::text AS state, version::bigint AS version FROM recorded \
         UNION ALL \
         SELECT false, {state}::text, {version}::bigint FROM {table} \
         WHERE {id} = $1 AND NOT EXISTS (SELECT 1 FROM moved)"
    )
    .into()
}

/// SQLite's transition as one batch (see [`Statements::sqlite_batch`]). `BEGIN IMMEDIATE`
/// takes the write lock first, so the history insert, the update and the read see the same row
/// and no other writer runs in between; the history row is inserted from the row the update is
/// about to change (SQLite's `RETURNING` gives new values only, and the history row needs the
/// old state). The batch answers `(1, from, version)` when it applied and `(0, state, version)`
/// of the row after it. Parameters as PostgreSQL's statement: `?1` id, `?2` the sources as a
/// JSON array, `?3` target, `?4` machine, `?5` entity id as text, `?6` event, `?7` at_micros,
/// `?8` expected version (nullable), `?9` entity table.
fn sqlite_batch(mapping: &TableMapping) -> Arc<str> {
    let q = |identifier: &str| Dialect::Sqlite.quote(identifier);
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let matches =
        format!("{id} = ?1 AND {state} IN (SELECT value FROM json_each(?2)) AND (?8 IS NULL OR {version} = ?8)");
    format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
         SELECT ?9, ?4, ?5, {version} + 1, {state}, ?3, ?6, ?7 FROM {table} WHERE {matches} \
         RETURNING 1, from_state, version; \
         UPDATE {table} SET {state} = ?3, {version} = {version} + 1 WHERE {matches}; \
         SELECT 0, {state}, {version} FROM {table} WHERE {id} = ?1; \
         COMMIT"
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_identifiers_and_bind_values() {
        let mapping = TableMapping::from_static("orders", "id", "state", "version");
        let pg = Statements::new(Dialect::Postgres, &mapping);
        assert_eq!(&*pg.read, r#"SELECT "state", "version" FROM "orders" WHERE "id" = $1"#);
        let my = Statements::new(Dialect::MySql, &mapping);
        assert_eq!(
            &*my.cas,
            "UPDATE `orders` SET `state` = ?, `version` = `version` + 1 WHERE `id` = ? AND `state` = ? AND `version` = ?"
        );
        assert!(my.transition_one_statement.is_none());
        let lite = Statements::new(Dialect::Sqlite, &mapping);
        assert_eq!(&*lite.read, "SELECT `state`, `version` FROM `orders` WHERE `id` = ?");
        assert!(pg.transition_one_statement.is_some());
        assert!(
            lite.sqlite_batch.as_deref().is_some_and(|batch| batch.contains("IN (SELECT value FROM json_each(?2))"))
        );
        assert!(my.sqlite_batch.is_none() && pg.sqlite_batch.is_none());
    }
}
