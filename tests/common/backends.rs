//! Where the integration tests find their databases, and what they do when one is missing.
//!
//! - `FSM_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! - `FSM_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`)
//! - `FSM_REDIS_URL` (default `redis://127.0.0.1:6379`)
//! - `FSM_REQUIRE_SERVERS=1`: a server that does not answer fails the test instead of skipping
//!   it (CI sets it). Without it, a test whose server is unreachable prints a `SKIPPED` line on
//!   the terminal and passes, so `cargo test` works on a machine without servers.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fsm_runtime::outbox::OutboxSource;
use fsm_runtime::sqlx;
use fsm_runtime::{MemoryStore, MySqlStore, PostgresStore, SqliteStore, StateMachine, TableMapping};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// The URL of the test PostgreSQL server.
pub fn postgres_url() -> String {
    std::env::var("FSM_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The URL of the test MySQL / MariaDB server.
pub fn mysql_url() -> String {
    std::env::var("FSM_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// The URL of the test Redis server.
pub fn redis_url() -> String {
    std::env::var("FSM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether an unreachable server fails the test (CI) instead of skipping it.
pub fn servers_required() -> bool {
    std::env::var("FSM_REQUIRE_SERVERS").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Reports an unreachable server: a failure when servers are required, else a visible skip.
///
/// Written to the process's stderr directly (not through `eprintln!`, which the test harness
/// captures), so that the skip shows in a plain `cargo test`.
fn unreachable(what: &str, url: &str, error: &dyn std::fmt::Display, test: &str) {
    let hint = match what {
        "PostgreSQL" => "FSM_POSTGRES_URL",
        "Redis" => "FSM_REDIS_URL",
        _ => "FSM_MYSQL_URL",
    };
    assert!(
        !servers_required(),
        "{what} at {url} is unreachable ({error}) and FSM_REQUIRE_SERVERS is set: {test} cannot run"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {what} at {url} is unreachable ({error}); start it or set {hint}; \
         FSM_REQUIRE_SERVERS=1 turns this skip into a failure"
    );
}

/// Whether something listens on `host:port`: a quick probe, so that a machine without the
/// server skips at once instead of waiting for the pool's timeout.
fn listening(host: &str, port: u16) -> Result<(), String> {
    use std::net::ToSocketAddrs as _;
    let addresses = (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("no address for {host}");
    for address in addresses {
        match std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

/// A pool on the test PostgreSQL server, or `None` (test skipped) when it does not answer.
pub async fn postgres_pool(test: &str) -> Option<PgPool> {
    let url = postgres_url();
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("FSM_POSTGRES_URL is a PostgreSQL URL");
    if let Err(error) = listening(options.get_host(), options.get_port()) {
        unreachable("PostgreSQL", &url, &error, test);
        return None;
    }
    match PgPoolOptions::new().max_connections(40).acquire_timeout(Duration::from_secs(10)).connect(&url).await {
        Ok(pool) => Some(pool),
        Err(error) => {
            unreachable("PostgreSQL", &url, &error, test);
            None
        }
    }
}

/// A pool on the test MySQL / MariaDB server, or `None` (test skipped) when it does not answer.
pub async fn mysql_pool(test: &str) -> Option<MySqlPool> {
    let url = mysql_url();
    let options: sqlx::mysql::MySqlConnectOptions = url.parse().expect("FSM_MYSQL_URL is a MySQL URL");
    if let Err(error) = listening(options.get_host(), options.get_port()) {
        unreachable("MySQL/MariaDB", &url, &error, test);
        return None;
    }
    match MySqlPoolOptions::new().max_connections(40).acquire_timeout(Duration::from_secs(10)).connect(&url).await {
        Ok(pool) => Some(pool),
        Err(error) => {
            unreachable("MySQL/MariaDB", &url, &error, test);
            None
        }
    }
}

/// The URL of the test Redis server, or `None` (test skipped) when it does not answer.
pub fn redis_available(test: &str) -> Option<String> {
    let url = redis_url();
    let client = fsm_runtime::redis::Client::open(url.as_str()).expect("FSM_REDIS_URL is a Redis URL");
    let (host, port) = match client.get_connection_info().addr() {
        fsm_runtime::redis::ConnectionAddr::Tcp(host, port)
        | fsm_runtime::redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
        other => panic!("FSM_REDIS_URL must name a TCP address, not {other:?}"),
    };
    if let Err(error) = listening(&host, port) {
        unreachable("Redis", &url, &error, test);
        return None;
    }
    Some(url)
}

/// A Redis key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    format!("{}:", unique_table(test))
}

/// A pool on a new SQLite database file in the temporary directory (WAL, 5 s busy timeout).
pub async fn sqlite_pool(name: &str) -> SqlitePool {
    let path = std::env::temp_dir().join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new().max_connections(8).connect_with(options).await.expect("open a SQLite file")
}

/// A table name no other test (or test run) uses.
pub fn unique_table(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("t_{prefix}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The statement that creates an entity table `name` with an integer id.
pub fn create_table_sql(name: &str) -> String {
    format!("CREATE TABLE {name} (id BIGINT PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL)")
}

/// The mapping of machine `M` moved to table `name`.
pub fn mapping_for<M: StateMachine>(name: &str) -> TableMapping {
    M::MAPPING.with_table(name.to_owned()).expect("a valid test table name")
}

/// A store on a fresh table of the test PostgreSQL server.
pub async fn postgres_store<M: StateMachine>(test: &str) -> Option<(PostgresStore<M>, String)> {
    let pool = postgres_pool(test).await?;
    let table = unique_table(test);
    sqlx::query(sqlx::AssertSqlSafe(create_table_sql(&table))).execute(&pool).await.expect("create table");
    let store = PostgresStore::<M>::with_mapping(pool, mapping_for::<M>(&table)).await.expect("build store");
    Some((store, table))
}

/// A store on a fresh table of the test MySQL / MariaDB server.
pub async fn mysql_store<M: StateMachine>(test: &str) -> Option<(MySqlStore<M>, String)> {
    let pool = mysql_pool(test).await?;
    let table = unique_table(test);
    sqlx::query(sqlx::AssertSqlSafe(create_table_sql(&table))).execute(&pool).await.expect("create table");
    let store = MySqlStore::<M>::with_mapping(pool, mapping_for::<M>(&table)).await.expect("build store");
    Some((store, table))
}

/// A store on a fresh SQLite file.
pub async fn sqlite_store<M: StateMachine>(test: &str) -> Option<(SqliteStore<M>, String)> {
    let table = unique_table(test);
    let pool = sqlite_pool(&table).await;
    sqlx::query(sqlx::AssertSqlSafe(create_table_sql(&table))).execute(&pool).await.expect("create table");
    let store = SqliteStore::<M>::with_mapping(pool, mapping_for::<M>(&table)).await.expect("build store");
    Some((store, table))
}

/// A fresh in-memory store.
pub async fn memory_store<M: StateMachine>(_test: &str) -> Option<(MemoryStore<M>, String)> {
    Some((MemoryStore::new(), M::MAPPING.table.to_string()))
}

/// What a test does to a store's rows behind its back.
pub trait RawAccess {
    /// Writes `value` into the state column of entity `id`, bypassing every check (a corrupted
    /// or foreign row).
    fn corrupt(&self, table: &str, id: i64, value: &str) -> impl std::future::Future<Output = ()> + Send;

    /// Drops the test's table and its history rows.
    fn cleanup(&self, table: &str) -> impl std::future::Future<Output = ()> + Send;

    /// The outbox a relay of this store reads, limited to `topic` where the database is
    /// shared with other tests.
    fn outbox(&self, topic: &str) -> impl std::future::Future<Output = Self::Outbox> + Send;

    /// What [`RawAccess::outbox`] returns.
    type Outbox: OutboxSource + Clone + Send + Sync + 'static;
}

impl<M: StateMachine> RawAccess for MemoryStore<M> {
    async fn corrupt(&self, _table: &str, id: i64, value: &str) {
        let version = fsm_runtime::Store::get(self, id).await.map_or(0, |s| s.version);
        self.put_raw(id, value, version);
    }

    async fn cleanup(&self, _table: &str) {}

    type Outbox = fsm_runtime::MemoryOutbox;

    async fn outbox(&self, _topic: &str) -> fsm_runtime::MemoryOutbox {
        MemoryStore::outbox(self)
    }
}

/// Drops what a store created for an entity table besides the runtime's tables: on MySQL and
/// MariaDB its transition procedures (`fsm_transition_<hash>`, one per mapping); nothing on the
/// other databases.
pub trait DropProcedures {
    /// Drops the procedures that name `table`.
    fn drop_procedures_of(&self, table: &str) -> impl std::future::Future<Output = ()> + Send;
}

impl DropProcedures for SqlitePool {
    async fn drop_procedures_of(&self, _table: &str) {}
}

impl DropProcedures for PgPool {
    async fn drop_procedures_of(&self, _table: &str) {}
}

impl DropProcedures for MySqlPool {
    async fn drop_procedures_of(&self, table: &str) {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(ROUTINE_NAME AS CHAR) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
             AND ROUTINE_NAME LIKE 'fsm\\_transition\\_%' AND ROUTINE_DEFINITION LIKE CONCAT('%`', ?, '`%')",
        )
        .bind(table.to_owned())
        .fetch_all(self)
        .await
        .expect("list the test's procedures");
        for name in names {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP PROCEDURE IF EXISTS `{name}`")))
                .execute(self)
                .await
                .expect("drop a test's procedure");
        }
    }
}

macro_rules! sql_raw_access {
    ($store:ident, $db:ty, $first:literal, $second:literal) => {
        impl<M: StateMachine> RawAccess for $store<M> {
            async fn corrupt(&self, table: &str, id: i64, value: &str) {
                let sql = format!("UPDATE {table} SET state = {} WHERE id = {}", $first, $second);
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(value)
                    .bind(id)
                    .execute(self.pool())
                    .await
                    .expect("corrupt a row");
            }

            async fn cleanup(&self, table: &str) {
                let sql = format!("DROP TABLE {table}");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(self.pool()).await.expect("drop the test table");
                self.pool().drop_procedures_of(table).await;
                sqlx::query(concat!("DELETE FROM fsm_history WHERE entity_table = ", $first))
                    .bind(table.to_owned())
                    .execute(self.pool())
                    .await
                    .expect("delete the test's history");
                sqlx::query(concat!("DELETE FROM fsm_idempotency_keys WHERE source = ", $first))
                    .bind(table.to_owned())
                    .execute(self.pool())
                    .await
                    .expect("delete the test's idempotency keys");
                sqlx::query(concat!("DELETE FROM fsm_outbox WHERE topic = ", $first))
                    .bind(table.to_owned())
                    .execute(self.pool())
                    .await
                    .expect("delete the test's outbox messages");
            }

            type Outbox = fsm_runtime::SqlOutbox<$db>;

            async fn outbox(&self, topic: &str) -> Self::Outbox {
                fsm_runtime::SqlOutbox::new(self.pool().clone()).await.expect("the outbox").only_topic(topic)
            }
        }
    };
}

sql_raw_access!(SqliteStore, sqlx::Sqlite, "?", "?");
sql_raw_access!(PostgresStore, sqlx::Postgres, "$1", "$2");
sql_raw_access!(MySqlStore, sqlx::MySql, "?", "?");
