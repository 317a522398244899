//! SQLite: what differs from the other databases.
//!
//! sqlx runs each SQLite connection on a worker thread, and every call is a hop to that thread
//! and back, so the cost is counted in calls. The transition is one batch, one call:
//! `BEGIN IMMEDIATE` · `INSERT INTO fsm_history … SELECT … FROM t WHERE id = ? AND state IN
//! (sources) RETURNING …` · `UPDATE t … WHERE id = ? AND state IN (sources)` · `SELECT state,
//! version` · `COMMIT`. `BEGIN IMMEDIATE` takes the write lock first, so that the statements see
//! one row; the history row is inserted from the row the update is about to change (SQLite's
//! `RETURNING` gives new values only, and the history row needs the old state). A plain read
//! comes first: a replay or a refused request ends there, since an empty write transaction
//! costs SQLite more than a read. SQLite has no row locks: its write transaction is the lock,
//! and one writer at a time makes a plain read see the latest commit.

use sqlx::{SqlStr, Sqlite, SqliteConnection};

use crate::mapping::TableMapping;
use crate::sql::backend::Backend;
use crate::sql::backend::private::{Driver, Migration};
use crate::sql::entity::HISTORY_COLUMNS;
use crate::sql::transition::TransitionSql;
use crate::sql::value::{Arg, Binders, Row, bind, column_as_json, fixed, json_as_text, texts_as_json};

impl Backend for Sqlite {
    type Driver = Self;
}

impl Driver for Sqlite {
    const MIGRATIONS: &'static [Migration] = &[
        (1, include_str!("../../migrations/sqlite/0001_history.sql")),
        (2, include_str!("../../migrations/sqlite/0002_idempotency_keys.sql")),
        (3, include_str!("../../migrations/sqlite/0003_outbox.sql")),
        (4, include_str!("../../migrations/sqlite/0004_outbox_topic_index.sql")),
        (10, include_str!("../../migrations/sqlite/0010_tokens.sql")),
        (11, include_str!("../../migrations/sqlite/0011_leases.sql")),
        (12, include_str!("../../migrations/sqlite/0012_fences.sql")),
        (13, include_str!("../../migrations/sqlite/0013_history_audit.sql")),
        (14, include_str!("../../migrations/sqlite/0014_outbox_attempts.sql")),
        (15, include_str!("../../migrations/sqlite/0015_timers.sql")),
    ];
    /// The process's clock with millisecond resolution, constant within one statement.
    const NOW_MICROS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";
    const FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const ON_CONFLICT_DO_NOTHING: &'static str = " ON CONFLICT DO NOTHING";
    const CAST_INT: &'static str = "INTEGER";
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const BATCH_AS_ROWS: bool = true;
    const TRANSACTIONAL_DDL: bool = true;

    /// Backticks: SQLite takes a double-quoted name that matches no column for a string literal
    /// (<https://sqlite.org/quirks.html#dblquote>), so a wrong column name would read as a
    /// constant and pass the schema check; a name in backticks is always an identifier.
    fn quote(identifier: &str) -> String {
        format!("`{identifier}`")
    }

    fn param(_: usize) -> String {
        "?".to_owned()
    }

    fn id_text(column: &str) -> String {
        format!("CAST({column} AS TEXT)")
    }

    async fn execute(conn: &mut SqliteConnection, sql: SqlStr, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        Ok(bind(sqlx::query(sql), args, binders())?.execute(conn).await?.rows_affected())
    }

    async fn fetch(conn: &mut SqliteConnection, sql: SqlStr, args: &[Arg<'_>]) -> Result<Vec<Row>, sqlx::Error> {
        let rows = bind(sqlx::query(sql), args, binders())?.fetch_all(conn).await?;
        rows.iter().map(Row::read).collect()
    }

    async fn execute_script(conn: &mut SqliteConnection, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(drop)
    }

    /// The batch stopped at its failing statement, maybe inside its transaction: ends it (an
    /// error here only means that no transaction was open).
    async fn after_failed_transition(conn: &mut SqliteConnection) {
        let _ = sqlx::raw_sql("ROLLBACK").execute(conn).await;
    }

    /// The busy timeout (the one of before read first).
    async fn bound_lock_wait(conn: &mut SqliteConnection, wait: std::time::Duration) -> Result<String, sqlx::Error> {
        let rows = Self::fetch(conn, fixed("PRAGMA busy_timeout"), &[]).await?;
        let before = rows.first().map(|row| row.int(0)).transpose()?.unwrap_or(0);
        Self::execute_script(conn, &format!("PRAGMA busy_timeout = {}", wait.as_millis().min(i32::MAX as u128)))
            .await?;
        Ok(format!("PRAGMA busy_timeout = {before}"))
    }

    async fn transition_sql(_: &mut SqliteConnection, mapping: &TableMapping, _: Option<&str>) -> TransitionSql {
        TransitionSql {
            plain: Some(batch(mapping).into()),
            keyed: None,
            batch: Some(many(mapping).into()),
            batch_keys: false,
            misses_on_stored_key: false,
            nests: false,
            read_first: true,
        }
    }
}

/// How Sqlite takes a list of texts and a JSON document.
fn binders<'q, 'a>() -> Binders<'q, 'a, Sqlite> {
    Binders { texts: texts_as_json, json: json_as_text, column: column_as_json }
}

/// Result codes of transient failures: the database was busy or locked by another connection.
const TRANSIENT: &[&str] = &[
    "5",   // SQLITE_BUSY
    "6",   // SQLITE_LOCKED
    "262", // SQLITE_LOCKED_SHAREDCACHE
    "261", // SQLITE_BUSY_RECOVERY
    "517", // SQLITE_BUSY_SNAPSHOT
    "773", // SQLITE_BUSY_TIMEOUT
];

/// Whether SQLite's error is transient (see [`crate::sql::is_transient`]).
pub(crate) fn is_transient(error: &sqlx::sqlite::SqliteError) -> bool {
    use sqlx::error::DatabaseError as _;
    error.code().is_some_and(|code| TRANSIENT.contains(&code.as_ref()))
}

/// The transition batch of `mapping` (parameters as PostgreSQL's statement, the sources as a
/// JSON array). The history row takes the id from the row (`COLLATE NOCASE` finds `Mixed-Case`
/// for `mixed-case`; the history is written under the stored spelling).
fn batch(mapping: &TableMapping) -> String {
    let q = <Sqlite as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let entity = <Sqlite as Driver>::id_text(&id);
    let matches =
        format!("{id} = ?1 AND {state} IN (SELECT value FROM json_each(?2)) AND (?7 IS NULL OR {version} = ?7)");
    format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
         SELECT ?8, ?4, {entity}, {version} + 1, {state}, ?3, ?5, ?6, ?9, ?10, ?11, ?12 FROM {table} WHERE {matches} \
         RETURNING 1, from_state, version, entity_id; \
         UPDATE {table} SET {state} = ?3, {version} = {version} + 1 WHERE {matches}; \
         SELECT 0, {state}, {version}, {entity} FROM {table} WHERE {id} = ?1; \
         COMMIT"
    )
}

/// The one-call batch of `mapping` ([`crate::sql::batch`]; items without a key, as one JSON
/// array of rows): under the write lock of `BEGIN IMMEDIATE`, a read answers every item (a row
/// in a legal source at the expected version applies: its version + 1), then one
/// `INSERT … SELECT` writes the history rows of those that apply and one `UPDATE … FROM` moves
/// them. Each row is read with `json_each` once and its fields with `->>` on the row alone.
fn many(mapping: &TableMapping) -> String {
    let q = <Sqlite as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let entity = <Sqlite as Driver>::id_text(&format!("t.{id}"));
    let field = |n: usize| format!("(i.value ->> {n})");
    let (position, item_id, target, sources, event, expected) =
        (field(0), field(1), field(2), field(3), field(4), field(5));
    let (actor, reason, key, metadata) = (field(6), field(7), field(8), field(9));
    let matches = format!(
        "instr(char(31) || {sources} || char(31), char(31) || t.{state} || char(31)) > 0 \
         AND ({expected} IS NULL OR t.{version} = {expected})"
    );
    let applies = format!("(CASE WHEN {matches} THEN 1 ELSE 0 END)");
    format!(
        "BEGIN IMMEDIATE; \
         SELECT {position}, {applies}, t.{state}, t.{version} + {applies}, {entity}, NULL, NULL \
         FROM json_each(?1) i LEFT JOIN {table} t ON t.{id} = {item_id}; \
         INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
         SELECT ?3, ?2, {entity}, t.{version} + 1, t.{state}, {target}, {event}, ?4, {actor}, {reason}, {key}, {metadata} \
         FROM json_each(?1) i JOIN {table} t ON t.{id} = {item_id} WHERE {matches}; \
         UPDATE {table} AS t SET {state} = {target}, {version} = t.{version} + 1 FROM json_each(?1) i \
         WHERE t.{id} = {item_id} AND {matches}; \
         COMMIT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_takes_the_sources_as_a_json_array() {
        let batch = batch(&TableMapping::from_static("orders", "id", "state", "version"));
        assert!(batch.starts_with("BEGIN IMMEDIATE;") && batch.ends_with("COMMIT"));
        assert!(batch.contains("`state` IN (SELECT value FROM json_each(?2))"));
    }
}
