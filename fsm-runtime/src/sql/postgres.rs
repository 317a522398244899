//! PostgreSQL: what differs from the other databases.
//!
//! The transition is one statement, one round trip: a data-modifying CTE that locks the row if
//! it is in a legal source of the target, updates it, and inserts the history row (and, keyed,
//! the idempotency key) from what the update returned. When it matches nothing, the same
//! statement returns the row's state and version, which say why: the no-op path is that one
//! statement too. It is one statement, so it also runs inside the transaction of a request
//! with effects. Parameters are `$n`; the legal sources are a `text[]`.

use sqlx::{PgConnection, Postgres, SqlStr};

use crate::mapping::TableMapping;
use crate::sql::backend::Backend;
use crate::sql::backend::private::{Driver, IdBinding, Migration};
use crate::sql::entity::{HISTORY_COLUMNS, is_plain_column_type};
use crate::sql::transition::TransitionSql;
use crate::sql::value::{Arg, Binders, Column, Query, Row, bind, fixed};

impl Backend for Postgres {
    type Driver = Self;
}

impl Driver for Postgres {
    const MIGRATIONS: &'static [Migration] = &[
        (1, include_str!("../../migrations/postgres/0001_history.sql")),
        (2, include_str!("../../migrations/postgres/0002_idempotency_keys.sql")),
        (3, include_str!("../../migrations/postgres/0003_outbox.sql")),
        (4, include_str!("../../migrations/postgres/0004_outbox_topic_index.sql")),
        (10, include_str!("../../migrations/postgres/0010_tokens.sql")),
        (11, include_str!("../../migrations/postgres/0011_leases.sql")),
        (12, include_str!("../../migrations/postgres/0012_fences.sql")),
        (13, include_str!("../../migrations/postgres/0013_history_audit.sql")),
        (14, include_str!("../../migrations/postgres/0014_outbox_attempts.sql")),
        (15, include_str!("../../migrations/postgres/0015_timers.sql")),
    ];
    /// `clock_timestamp()`: the time of the statement, not of the transaction's start.
    const NOW_MICROS: &'static str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const ON_CONFLICT_DO_NOTHING: &'static str = " ON CONFLICT DO NOTHING";
    const CAST_INT: &'static str = "BIGINT";
    const TRANSACTIONAL_DDL: bool = true;
    const LOCK_MIGRATIONS: Option<&'static str> = Some("LOCK TABLE fsm_schema_migrations IN EXCLUSIVE MODE");

    fn quote(identifier: &str) -> String {
        format!("\"{identifier}\"")
    }

    fn param(n: usize) -> String {
        format!("${n}")
    }

    /// An integer or text id column takes its parameter as is (bound as `bigint` or text, see
    /// [`Driver::id_binding`]); any other (`uuid`, `citext`, …) gets a text parameter cast to
    /// its type, on the parameter, so that the primary key's index is used. A cast where none
    /// is needed costs: measured, a replay on a `bigint` key ran at about 0.8x of the uncast
    /// statement.
    fn id_param(n: usize, id_type: Option<&str>) -> String {
        match id_type {
            Some(id_type) if id_family(id_type) == IdBinding::Text && !is_text_type(id_type) => {
                format!("CAST(${n} AS {id_type})")
            }
            _ => Self::param(n),
        }
    }

    fn id_binding(id_type: Option<&str>) -> IdBinding {
        id_type.map_or(IdBinding::Given, id_family)
    }

    fn id_text(column: &str) -> String {
        format!("{column}::text")
    }

    /// The id column's type without its modifier (`character varying`, not `(64)`: a cast to
    /// a length would cut a longer id down to one that exists).
    async fn id_column_type(conn: &mut PgConnection, mapping: &TableMapping) -> Result<Option<String>, sqlx::Error> {
        let query = "SELECT format_type(a.atttypid, NULL) FROM pg_attribute a \
                     WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped";
        let table = Self::quote(&mapping.table);
        let rows = Self::fetch(conn, fixed(query), &[Arg::Text(&table), Arg::Text(&mapping.id)]).await?;
        let id_type = rows.first().map(|row| row.text(0)).transpose()?;
        Ok(id_type.filter(|id_type| is_plain_column_type(id_type)))
    }

    async fn execute(conn: &mut PgConnection, sql: SqlStr, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        Ok(bind(sqlx::query(sql), args, binders())?.execute(conn).await?.rows_affected())
    }

    async fn fetch(conn: &mut PgConnection, sql: SqlStr, args: &[Arg<'_>]) -> Result<Vec<Row>, sqlx::Error> {
        bind(sqlx::query(sql), args, binders())?.fetch_all(conn).await?.iter().map(Row::read).collect()
    }

    async fn execute_script(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(drop)
    }

    /// `lock_timeout`, from 1 ms (0 would mean no limit) up to its largest value, in one round
    /// trip with the read of the setting it replaces.
    async fn bound_lock_wait(conn: &mut PgConnection, wait: std::time::Duration) -> Result<String, sqlx::Error> {
        let millis = wait.as_millis().clamp(1, i32::MAX as u128).to_string();
        let sql = "SELECT current_setting('lock_timeout'), set_config('lock_timeout', $1, false)";
        let rows = Self::fetch(conn, fixed(sql), &[Arg::Text(&millis)]).await?;
        let before = rows.first().map(|row| row.text(0)).transpose()?.unwrap_or_else(|| "0".to_owned());
        Ok(format!("SET lock_timeout = '{}'", before.replace('\'', "''")))
    }

    async fn transition_sql(_: &mut PgConnection, mapping: &TableMapping, id_type: Option<&str>) -> TransitionSql {
        TransitionSql {
            plain: Some(transition(mapping, id_type, false).into()),
            keyed: Some(transition(mapping, id_type, true).into()),
            batch: id_type.map(|id_type| batch(mapping, id_type).into()),
            batch_keys: true,
            misses_on_stored_key: false,
            nests: true,
            read_first: false,
        }
    }
}

/// How an id column of type `id_type` (as `format_type` names it) takes its ids.
fn id_family(id_type: &str) -> IdBinding {
    match id_type {
        "smallint" | "integer" | "bigint" => IdBinding::Int,
        _ => IdBinding::Text,
    }
}

/// Whether a column of `id_type` compares with a text parameter without a cast.
fn is_text_type(id_type: &str) -> bool {
    matches!(id_type, "text" | "character varying" | "character")
}

/// SQLSTATE codes of transient failures: the statement had no effect (or its transaction was
/// rolled back) and the same request may simply be sent again.
const TRANSIENT: &[&str] = &[
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "55P03", // lock_not_available
    "57014", // query_canceled: statement_timeout or a cancel request; the transaction is rolled back
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now: the server is starting or recovering
    "53300", // too_many_connections
    // read_only_sql_transaction: the server is a standby, or a primary being demoted by a
    // failover (pg_auto_failover, Patroni); nothing was written, and the router (or the next
    // connection) reaches the new primary.
    "25006", "08000", "08003", "08006", "08001", "08004", // connection exceptions
];

/// Whether PostgreSQL's error is transient (see [`crate::sql::is_transient`]).
pub(crate) fn is_transient(error: &sqlx::postgres::PgDatabaseError) -> bool {
    TRANSIENT.contains(&error.code())
}

/// How Postgres takes a list of texts and a JSON document.
fn binders<'q, 'a>() -> Binders<'q, 'a, Postgres> {
    Binders { texts: texts_as_array, json: json_as_jsonb, column: column_as_array }
}

/// Binds a list of texts as a `text[]`.
fn texts_as_array<'q>(query: Query<'q, Postgres>, values: &[&'static str]) -> Result<Query<'q, Postgres>, sqlx::Error> {
    Ok(query.bind(values))
}

/// Binds a batch's column as a `text[]` or `bigint[]`.
fn column_as_array<'q>(query: Query<'q, Postgres>, values: &Column) -> Result<Query<'q, Postgres>, sqlx::Error> {
    Ok(match values {
        Column::Texts(values) => query.bind(values.clone()),
        Column::Ints(values) => query.bind(values.clone()),
    })
}

/// A JSON document's text, bound as `jsonb` (which a `json`, `jsonb` or text column takes by
/// assignment; a text parameter would be refused by a JSON column).
struct Jsonb<'a>(&'a str);

/// `jsonb`'s OID, fixed in every PostgreSQL (`pg_type.dat`).
const JSONB_OID: sqlx::postgres::types::Oid = sqlx::postgres::types::Oid(3802);

impl sqlx::Type<Postgres> for Jsonb<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(JSONB_OID)
    }
}

impl sqlx::Encode<'_, Postgres> for Jsonb<'_> {
    /// `jsonb`'s binary format: the format version, 1, then the JSON text.
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

/// Binds a JSON document as `jsonb`.
fn json_as_jsonb<'q>(query: Query<'q, Postgres>, value: &str) -> Query<'q, Postgres> {
    query.bind(Jsonb(value))
}

/// The one-statement transition of `mapping`. `source` locks the row only if it is in a legal
/// source (and at the expected version); `moved` updates that row; `recorded` inserts the
/// history row from what `moved` returned, under the id as the table stores it (and, `keyed`,
/// `stored` the idempotency key with the outcome). Under READ COMMITTED a concurrent transition
/// makes `source` re-check the latest row version, so exactly one of N racers matches. The
/// statement answers `(true, from, version, id)` when it applied, else `(false, state, version,
/// id)` of the row as the statement's snapshot saw it (nothing when there is no row): the
/// classifying read of a miss costs no second round trip.
fn transition(mapping: &TableMapping, id_type: Option<&str>, keyed: bool) -> String {
    let q = <Postgres as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let p1 = <Postgres as Driver>::id_param(1, id_type);
    let stored = if keyed {
        ", stored AS (\
             INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
             SELECT $13, $14, $15, json_build_object('machine', $4::text, 'entity', moved.entity_id, \
             'from', moved.from_state, 'to', $3::text, 'version', moved.version)::text, $6 FROM moved\
         )"
    } else {
        ""
    };
    format!(
        "WITH source AS (\
             SELECT {state} AS from_state FROM {table} \
             WHERE {id} = {p1} AND {state} = ANY($2) AND ($7::bigint IS NULL OR {version} = $7) \
             FOR UPDATE\
         ), moved AS (\
             UPDATE {table} SET {state} = $3, {version} = {table}.{version} + 1 FROM source \
             WHERE {table}.{id} = {p1} \
             RETURNING {table}.{version} AS version, source.from_state, {table}.{id}::text AS entity_id\
         ){stored}, recorded AS (\
             INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
             SELECT $8, $4, moved.entity_id, moved.version, moved.from_state, $3, $5, $6, $9, $10, $11, $12 \
             FROM moved RETURNING from_state, version, entity_id\
         ) \
         SELECT true AS applied, from_state::text AS state, version::bigint AS version, entity_id AS entity \
         FROM recorded \
         UNION ALL \
         SELECT false, {state}::text, {version}::bigint, {id}::text FROM {table} \
         WHERE {id} = {p1} AND NOT EXISTS (SELECT 1 FROM moved)"
    )
}

/// The one-statement batch of `mapping` ([`crate::sql::batch`]): the transition's CTE over
/// the items' arrays (`unnest`). `source` locks the rows of the items in a legal source (at the
/// expected version, with no stored key), in the order of their ids, so that two batches never
/// wait on each other in a cycle; `moved` updates them, `stored` stores the keys, `recorded`
/// inserts the history rows. Items that did not apply get their row (and stored key) as the
/// statement's snapshot saw them. The id column's type `id_type` is needed for the cast of the
/// text ids (the array is `text[]` whatever the column).
fn batch(mapping: &TableMapping, id_type: &str) -> String {
    let q = <Postgres as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let join = format!("{table} t ON t.{id} = CAST(i.id AS {id_type})");
    format!(
        "WITH input AS (\
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[]) \
             AS i(ord, id, target, sources, event, expected, actor, reason, key_text, metadata, key_source, key_seq, fingerprint)\
         ), source AS (\
             SELECT t.{id} AS row_id, t.{state} AS from_state, i.ord, i.target, i.event, i.actor, i.reason, i.key_text, \
             i.metadata, i.key_source, i.key_seq, i.fingerprint \
             FROM input i JOIN {join} \
             WHERE t.{state} = ANY(string_to_array(i.sources, chr(31))) AND (i.expected IS NULL OR t.{version} = i.expected) \
             AND NOT EXISTS (SELECT 1 FROM fsm_idempotency_keys k WHERE k.source = i.key_source AND k.seq = i.key_seq) \
             ORDER BY t.{id} FOR UPDATE OF t\
         ), moved AS (\
             UPDATE {table} SET {state} = source.target, {version} = {table}.{version} + 1 FROM source \
             WHERE {table}.{id} = source.row_id \
             RETURNING source.*, {table}.{version} AS version, {table}.{id}::text AS entity_id\
         ), stored AS (\
             INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
             SELECT key_source, key_seq, fingerprint, json_build_object('machine', $14::text, 'entity', entity_id, \
             'from', from_state, 'to', target, 'version', version)::text, $16 FROM moved WHERE key_source IS NOT NULL\
         ), recorded AS (\
             INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
             SELECT $15, $14, entity_id, version, from_state, target, event, $16, actor, reason, key_text, metadata \
             FROM moved\
         ) \
         SELECT ord, true AS applied, from_state::text AS state, version::bigint AS version, entity_id AS entity, \
         NULL::text AS fingerprint, NULL::text AS outcome FROM moved \
         UNION ALL \
         SELECT i.ord, false, t.{state}::text, t.{version}::bigint, t.{id}::text, k.fingerprint, k.outcome \
         FROM input i LEFT JOIN {join} \
         LEFT JOIN fsm_idempotency_keys k ON k.source = i.key_source AND k.seq = i.key_seq \
         WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.ord = i.ord)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keyed_statement_stores_the_key() {
        let orders = TableMapping::from_static("orders", "id", "state", "version");
        assert!(!transition(&orders, None, false).contains("fsm_idempotency_keys"));
        assert!(transition(&orders, None, true).contains("SELECT $13, $14, $15"));
        assert!(transition(&orders, None, false).contains(r#""state" = ANY($2)"#));
        assert!(transition(&orders, Some("uuid"), false).contains(r#""id" = CAST($1 AS uuid) AND"#));
    }

    #[test]
    fn the_batch_casts_the_text_ids_and_locks_in_id_order() {
        let batch = batch(&TableMapping::from_static("orders", "id", "state", "version"), "bigint");
        assert!(batch.contains(r#"t."id" = CAST(i.id AS bigint)"#));
        assert!(batch.contains(r#"ORDER BY t."id" FOR UPDATE OF t"#));
    }
}
