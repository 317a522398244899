//! A database made by the first release upgrades in place: its tables are built with that
//! release's scripts and its way of recording them (versions 1-4, and 5 on MySQL, recorded in
//! `fsm_schema_migrations`; tokens, leases and fences created without a record), filled with one
//! row each, then opened with today's constructors. Every row stays, every version is recorded,
//! and the stored history and key still answer.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use futures_util::FutureExt as _;

use fsm_runtime::error::BoxError;
use fsm_runtime::inbox::SqlInbox;
use fsm_runtime::lock::SqlLeases;
use fsm_runtime::outbox::{PendingMessage, Publisher, Relay, RelayReport, SqlOutbox};
use fsm_runtime::sql::Backend;
use fsm_runtime::store::SqlStore;
use fsm_runtime::token::SqlTokens;
use fsm_runtime::{Fingerprint, IdempotencyKey, Outcome, Store, TransitionRequest, sqlx};

use crate::fixture::backends::{self, create_table_sql, mapping_for};
use crate::fixture::leftovers::finish;
use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::{Leftovers, guarded};

/// The runtime's tables, each with one row after the setup.
const TABLES: &[&str] =
    &["fsm_history", "fsm_idempotency_keys", "fsm_outbox", "fsm_inbox", "fsm_tokens", "fsm_leases", "fsm_fences"];

/// The first release's scripts of `database` for `versions`, statement by statement.
fn scripts(database: &str, versions: &[&str]) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fsm-runtime/migrations").join(database);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("the migrations directory").map(|e| e.expect("an entry").path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|file| versions.iter().any(|v| file.file_name().is_some_and(|n| n.to_string_lossy().starts_with(v))))
        .flat_map(|file| {
            let script = std::fs::read_to_string(&file).expect("a script").replace("{binary_collation}", "utf8mb4_bin");
            script.split(";\n").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// The rows the first release would have written, as literal SQL.
fn rows(table: &str) -> Vec<String> {
    vec![
        format!("INSERT INTO {table} (id, state, version) VALUES (1, 'paid', 1)"),
        format!(
            "INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
             VALUES ('{table}', 'Order', '1', 1, 'created', 'paid', 'pay', 1)"
        ),
        "INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
         VALUES ('upgrade', 1, 'pay order 1', '{\"from\":\"created\",\"to\":\"paid\",\"version\":1}', 1)"
            .to_owned(),
        "INSERT INTO fsm_outbox (message_id, topic, message_key, payload, created_at_micros) \
         VALUES ('m-1', 'receipts', NULL, '{}', 1)"
            .to_owned(),
        "INSERT INTO fsm_inbox (consumer, message_id, processed_at_micros) VALUES ('mailer', 'm-0', 1)".to_owned(),
        format!(
            "INSERT INTO fsm_tokens (scope, token, expires_at_micros, keep_until_micros) VALUES ('checkout', '{}', 1, 2)",
            "a".repeat(64)
        ),
        "INSERT INTO fsm_leases (resource, owner, fence, expires_at_micros, nonce) VALUES ('nightly', 'host-1', 3, 0, 'n')"
            .to_owned(),
        "INSERT INTO fsm_fences (resource, highest) VALUES ('orders/1', 3)".to_owned(),
    ]
}

/// Builds the first release's database on `pool` with an entity table `table` and one row in
/// every table, opens it with today's constructors, and checks that nothing was lost.
async fn upgrade<B: Backend>(pool: sqlx::Pool<B>, database: &str, recorded: &[&str], table: &str)
where
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'c> &'c sqlx::Pool<B>: sqlx::Executor<'c, Database = B>,
    i64: for<'r> sqlx::Decode<'r, B> + sqlx::Type<B>,
    usize: sqlx::ColumnIndex<B::Row>,
    B::Arguments: sqlx::IntoArguments<B>,
{
    let run = |sql: String| {
        let pool = pool.clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    run("CREATE TABLE fsm_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_at_micros BIGINT NOT NULL)"
        .into())
    .await;
    for statement in scripts(database, recorded) {
        run(statement).await;
    }
    for version in recorded {
        run(format!(
            "INSERT INTO fsm_schema_migrations (version, applied_at_micros) VALUES ({}, 1)",
            version.trim_start_matches('0')
        ))
        .await;
    }
    for statement in scripts(database, &["0010", "0011", "0012"]) {
        run(statement).await;
    }
    run(create_table_sql(table)).await;
    for row in rows(table) {
        run(row).await;
    }

    let store = SqlStore::<Order, B>::with_mapping(pool.clone(), mapping_for::<Order>(table))
        .await
        .expect("the store opens the old database");
    SqlOutbox::new(pool.clone()).await.expect("the outbox opens it");
    SqlTokens::new(pool.clone()).await.expect("the tokens open it");
    SqlLeases::new(pool.clone()).await.expect("the leases open it");

    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM fsm_schema_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .expect("versions");
    let mut expected: Vec<i64> = recorded.iter().map(|v| v.parse().expect("a version")).collect();
    expected.extend([10, 11, 12, 13, 14, 15]);
    assert_eq!(versions, expected, "every version recorded once, on {database}");
    for runtime_table in TABLES {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {runtime_table}")))
            .fetch_one(&pool)
            .await
            .expect("a count");
        assert_eq!(count, 1, "{runtime_table} keeps its row on {database}");
    }
    // The first release's pending message is delivered (migration 14 made it due and alive),
    // and its old inbox row is purged by age.
    let outbox = SqlOutbox::new(pool.clone()).await.expect("the outbox").only_topic("receipts");
    let report = Relay::new(outbox).run_once(&Accept).await.expect("a relay pass");
    assert_eq!(report, RelayReport { published: 1, failed: 0, dead: 0 }, "the old message on {database}");
    let inbox = SqlInbox::new(pool.clone()).await.expect("the inbox");
    assert_eq!(inbox.purge_of("mailer", Duration::from_secs(86_400)).await.expect("a purge"), 1, "on {database}");
    // The old history and the old key still answer, through today's code; migration 13 gave the
    // old row empty audit columns.
    let old = store.history(1).await.expect("history");
    assert_eq!(old.len(), 1);
    assert_eq!((old[0].version, old[0].event.as_deref(), old[0].actor.as_deref()), (1, Some("pay"), None));
    assert_eq!((old[0].idempotency_key.as_deref(), old[0].deleted_at_micros), (None, None));
    let key = IdempotencyKey::new("upgrade", 1).expect("a key");
    let fingerprint = Fingerprint::new("pay order 1").expect("a fingerprint");
    let replay = TransitionRequest::to(1, Order::Paid).idempotency_key(key, fingerprint);
    assert!(
        matches!(store.apply(replay).await, Ok(Outcome::Replayed { version: 1, .. })),
        "the first release's key replays"
    );
    assert!(store.fire(1, OrderEvent::Ship).await.expect("ship").is_applied());
    assert_eq!(store.history(1).await.expect("history").len(), 2);
}

/// A publisher that accepts every message.
struct Accept;

impl Publisher for Accept {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        assert_eq!((message.message_id.as_str(), message.attempts), ("m-1", 1));
        Ok(())
    }
}

/// A database name no other test uses.
fn fresh_database(test: &str) -> String {
    backends::unique_table(test).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let path = std::env::temp_dir().join(format!("{}.db", fresh_database("upgrade")));
    let leftovers = Leftovers::sqlite_file(&path);
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(30));
    let pool =
        sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("a SQLite file");
    guarded(leftovers, async move {
        upgrade(pool.clone(), "sqlite", &["0001", "0002", "0003", "0004"], "orders_v1").await;
        pool.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(admin) = backends::postgres_pool("upgrade_postgres").await else { return };
    let name = fresh_database("upgrade_pg");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a database");
    let options: sqlx::postgres::PgConnectOptions = backends::postgres_url().parse().expect("a PostgreSQL URL");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.database(&name))
        .await
        .expect("connect");
    let result = AssertUnwindSafe(upgrade(pool.clone(), "postgres", &["0001", "0002", "0003", "0004"], "orders_v1"))
        .catch_unwind()
        .await;
    pool.close().await;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .map(drop)
        .map_err(|e| format!("drop database {name}: {e}"));
    finish(result, dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql() {
    let Some(admin) = backends::mysql_pool("upgrade_mysql").await else { return };
    let name = fresh_database("upgrade_my");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a database");
    let options: sqlx::mysql::MySqlConnectOptions = backends::mysql_url().parse().expect("a MySQL URL");
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .connect_with(options.database(&name))
        .await
        .expect("connect");
    let result =
        AssertUnwindSafe(upgrade(pool.clone(), "mysql", &["0001", "0002", "0003", "0004", "0005"], "orders_v1"))
            .catch_unwind()
            .await;
    pool.close().await;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .execute(&admin)
        .await
        .map(drop)
        .map_err(|e| format!("drop database {name}: {e}"));
    finish(result, dropped);
}
