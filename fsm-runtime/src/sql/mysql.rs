//! MySQL and MariaDB: what differs from the other databases.
//!
//! MySQL has no data-modifying CTE, no `UPDATE … RETURNING`, no `RETURNING` on an upsert, and
//! prepared statements cannot be batched: the one-round-trip transition is a stored procedure
//! the store creates when it is built ([`mysql_procedure`](super::mysql_procedure)), one for
//! plain and one for keyed transitions, and one for batches; where the server refuses, and for
//! transitions with effects, the store reads, then runs a compare-and-set in a transaction. sqlx connects with `CLIENT_FOUND_ROWS`, and every
//! compare-and-set changes a column, so "rows affected" is the number of rows matched. A
//! duplicate key is an error (no `ON CONFLICT DO NOTHING`), which the callers classify.

use std::sync::Arc;

use sqlx::{MySql, MySqlConnection, SqlStr};

use crate::mapping::TableMapping;
use crate::sql::backend::Backend;
use crate::sql::backend::private::{Driver, LeaseRequest, Migration};
use crate::sql::entity::is_plain_column_type;
use crate::sql::leases::request_args;
use crate::sql::mysql_procedure;
use crate::sql::transition::TransitionSql;
use crate::sql::value::{Arg, Binders, Row, bind, column_as_json, fixed, json_as_text, owned, texts_as_json};

/// The query that names the server's binary, non-padding collation of `utf8mb4`
/// (`utf8mb4_nopad_bin` on MariaDB, `utf8mb4_0900_bin` on MySQL 8), which the migrations put in
/// place of `{binary_collation}`; `utf8mb4_bin` (which ignores trailing spaces) where the server
/// has neither.
const BINARY_COLLATION: &str = "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
     WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin') ORDER BY COLLATION_NAME DESC LIMIT 1";

impl Backend for MySql {
    type Driver = Self;
}

impl Driver for MySql {
    const MIGRATIONS: &'static [Migration] = &[
        (1, include_str!("../../migrations/mysql/0001_history.sql")),
        (2, include_str!("../../migrations/mysql/0002_idempotency_keys.sql")),
        (3, include_str!("../../migrations/mysql/0003_outbox.sql")),
        (4, include_str!("../../migrations/mysql/0004_outbox_topic_index.sql")),
        (5, include_str!("../../migrations/mysql/0005_binary_collation.sql")),
        (10, include_str!("../../migrations/mysql/0010_tokens.sql")),
        (11, include_str!("../../migrations/mysql/0011_leases.sql")),
        (12, include_str!("../../migrations/mysql/0012_fences.sql")),
        (13, include_str!("../../migrations/mysql/0013_history_audit.sql")),
        (14, include_str!("../../migrations/mysql/0014_outbox_attempts.sql")),
        (15, include_str!("../../migrations/mysql/0015_timers.sql")),
    ];
    /// Independent of the session's time zone.
    const NOW_MICROS: &'static str = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const LOCKS_ROWS_IT_ONLY_READ: bool = true;
    const ON_CONFLICT_DO_NOTHING: &'static str = "";
    const CAST_INT: &'static str = "SIGNED";
    const BATCH_AS_ROWS: bool = true;
    /// Forced: for `ORDER BY id LIMIT n` on a small table the optimizer may walk the primary
    /// key instead, locking (and on MariaDB waiting for) rows of other topics despite SKIP
    /// LOCKED.
    const OUTBOX_TOPIC_HINT: &'static str = " FORCE INDEX (fsm_outbox_topic_pending)";

    fn quote(identifier: &str) -> String {
        format!("`{identifier}`")
    }

    fn param(_: usize) -> String {
        "?".to_owned()
    }

    /// None: MySQL reports the duplicate (`INSERT IGNORE` would also turn other errors into
    /// warnings), and the caller classifies it.
    fn on_conflict_do_nothing(_: &str) -> String {
        String::new()
    }

    fn id_text(column: &str) -> String {
        format!("CAST({column} AS CHAR)")
    }

    async fn execute(conn: &mut MySqlConnection, sql: SqlStr, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        Ok(bind(sqlx::query(sql), args, binders())?.execute(conn).await?.rows_affected())
    }

    async fn fetch(conn: &mut MySqlConnection, sql: SqlStr, args: &[Arg<'_>]) -> Result<Vec<Row>, sqlx::Error> {
        bind(sqlx::query(sql), args, binders())?.fetch_all(conn).await?.iter().map(Row::read).collect()
    }

    async fn execute_script(conn: &mut MySqlConnection, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(drop)
    }

    /// `innodb_lock_wait_timeout`, in whole seconds (rounded up, at least 1: the server's
    /// unit), the session's value of before kept in a user variable, in one statement.
    async fn bound_lock_wait(conn: &mut MySqlConnection, wait: std::time::Duration) -> Result<String, sqlx::Error> {
        let seconds = wait.as_millis().div_ceil(1000).clamp(1, 1_073_741_824);
        let sql = format!(
            "SET @fsm_lock_wait = @@SESSION.innodb_lock_wait_timeout, SESSION innodb_lock_wait_timeout = {seconds}"
        );
        Self::execute_script(conn, &sql).await?;
        Ok("SET SESSION innodb_lock_wait_timeout = @fsm_lock_wait".to_owned())
    }

    /// Creates the mapping's procedures if missing (plain, keyed, batch); without them (with a
    /// warning in the log, when the server refuses) the store sends the transaction from the
    /// client.
    async fn transition_sql(conn: &mut MySqlConnection, mapping: &TableMapping, _: Option<&str>) -> TransitionSql {
        let Some(id_type) = id_column_type(conn, mapping).await else {
            return TransitionSql::default();
        };
        TransitionSql {
            plain: create_procedure(conn, mapping, mysql_procedure::procedure(mapping, &id_type, false)).await,
            keyed: create_procedure(conn, mapping, mysql_procedure::procedure(mapping, &id_type, true)).await,
            batch: create_procedure(conn, mapping, mysql_procedure::batch_procedure(mapping, &id_type)).await,
            misses_on_stored_key: true,
            ..TransitionSql::default()
        }
    }

    async fn prepare_script(conn: &mut MySqlConnection, script: &'static str) -> Result<String, sqlx::Error> {
        if !script.contains("{binary_collation}") {
            return Ok(script.to_owned());
        }
        let found = Self::fetch(conn, fixed(BINARY_COLLATION), &[]).await?;
        let collation = found.first().map(|row| row.text(0)).transpose()?;
        Ok(script.replace("{binary_collation}", collation.as_deref().unwrap_or("utf8mb4_bin")))
    }

    /// "Duplicate key name" (`1061`): a migration's `CREATE INDEX` found the index there (MySQL
    /// has no `CREATE INDEX IF NOT EXISTS`); "Duplicate column name" (`1060`): another process's
    /// `ALTER TABLE … ADD COLUMN`, one atomic statement with the rest of its changes, ran first.
    fn is_duplicate_object(error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some_and(|mysql| matches!(mysql.number(), 1060 | 1061)))
    }

    /// InnoDB's REPEATABLE READ would keep next-key locks on the rows and gaps the scan passed;
    /// READ COMMITTED keeps fewer, though a locking range read still locks the record after its
    /// range and the rows its subqueries read (hence [`Driver::LOCKS_ROWS_IT_ONLY_READ`]: the
    /// claims lock by primary key the rows a plain read chose).
    async fn before_claim(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
        Self::execute_script(conn, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await
    }

    /// `INSERT … ON DUPLICATE KEY UPDATE` with `IF(expired, new, old)` on each column (the
    /// assignments run left to right and see the columns already assigned: the expiry, which
    /// every condition reads, is assigned last), then one `SELECT` of the row's fence and
    /// nonce: the acquisition succeeded if the nonce is the one it wrote.
    async fn acquire_lease(conn: &mut MySqlConnection, lease: LeaseRequest<'_>) -> Result<Option<i64>, sqlx::Error> {
        let expired = format!("expires_at_micros <= {}", Self::NOW_MICROS);
        let sql = format!(
            "INSERT INTO fsm_leases (resource, owner, fence, expires_at_micros, nonce) VALUES (?, ?, 1, {} + ?, ?) \
             ON DUPLICATE KEY UPDATE owner = IF({expired}, VALUES(owner), owner), \
             fence = IF({expired}, fence + 1, fence), nonce = IF({expired}, VALUES(nonce), nonce), \
             expires_at_micros = IF({expired}, VALUES(expires_at_micros), expires_at_micros)",
            Self::NOW_MICROS
        );
        Self::execute(conn, owned(sql), &request_args(&lease)).await?;
        let read = "SELECT fence, nonce FROM fsm_leases WHERE resource = ?";
        let rows = Self::fetch(conn, fixed(read), &[Arg::Text(lease.resource)]).await?;
        match rows.first() {
            Some(row) if row.text(1)? == lease.nonce => Ok(Some(row.int(0)?)),
            _ => Ok(None),
        }
    }

    /// Raises the highest token to `token` if it is higher (no `RETURNING` on an upsert), then
    /// reads it with a lock: refused when it is higher than `token`.
    async fn raise_fence(conn: &mut MySqlConnection, resource: &str, token: i64) -> Result<Option<i64>, sqlx::Error> {
        let raise = "INSERT INTO fsm_fences (resource, highest) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE highest = GREATEST(highest, VALUES(highest))";
        Self::execute(conn, fixed(raise), &[Arg::Text(resource), Arg::Int(token)]).await?;
        let highest = crate::sql::fences::highest::<Self>(conn, resource).await?.unwrap_or(i64::MAX);
        Ok((highest > token).then_some(highest))
    }
}

/// How MySQL takes a list of texts and a JSON document.
fn binders<'q, 'a>() -> Binders<'q, 'a, MySql> {
    Binders { texts: texts_as_json, json: json_as_text, column: column_as_json }
}

/// Whether MySQL's or MariaDB's error is transient (see [`crate::sql::is_transient`]): `1205`
/// lock wait timeout and `1213` deadlock (its transaction was rolled back; on a Galera cluster
/// also a lost certification), `1047` from a Galera node that is not part of the primary
/// component (it refuses every statement until it rejoins: "WSREP has not yet prepared node
/// for application use"), `1927` a connection killed by `KILL`, or a connection exception
/// (SQLSTATE class `08`).
pub(crate) fn is_transient(error: &sqlx::mysql::MySqlDatabaseError) -> bool {
    matches!(error.number(), 1047 | 1205 | 1213 | 1927) || error.code().is_some_and(|code| code.starts_with("08"))
}

/// The declared type of `mapping`'s id column, which the procedures' id parameter takes;
/// `None` (no procedures: the client-side path) when it is not known.
async fn id_column_type(conn: &mut MySqlConnection, mapping: &TableMapping) -> Option<String> {
    let query = owned(mysql_procedure::id_column_type_query(mapping));
    match MySql::fetch(conn, query, &[]).await.map(|rows| rows.first().map(|row| row.text(0))) {
        Ok(Some(Ok(id_type))) if is_plain_column_type(&id_type) => Some(id_type),
        other => {
            tracing::warn!(table = %mapping.table, answer = ?other, "no transition procedure: the id column's type is not known");
            None
        }
    }
}

/// Creates the procedure `(create, call)` of `mapping`: its `CALL`, or `None` (the
/// client-side path) when the server refuses.
async fn create_procedure(
    conn: &mut MySqlConnection,
    mapping: &TableMapping,
    (create, call): (String, String),
) -> Option<Arc<str>> {
    match MySql::execute_script(conn, &create).await {
        Ok(()) => Some(call.into()),
        Err(error) => {
            tracing::warn!(table = %mapping.table, %error, "no transition procedure: the server refused to create it");
            None
        }
    }
}
