//! What the SQL adapter tests (`sql_effects`, `sql_races`, `sql_bad_input`, `statement_count`,
//! `mysql_found_rows`) share: the caller's own SQL on each backend, a fixture that owns a fresh
//! entity table and drops it (and every extra table the test made) even when the test panics, and
//! [`per_backend!`], which instantiates a generic case on SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Servers are found, and skipped when missing, by `tests/common/backends.rs`
//! (`FSM_POSTGRES_URL`, `FSM_MYSQL_URL`, `FSM_REQUIRE_SERVERS`).
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use fsm_runtime::{Backend, SqlStore, StateMachine, sqlx};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use crate::common::backends::{self, RawAccess};

/// A bound parameter of the caller's own SQL.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A `BIGINT`.
    I64(i64),
    /// A text value.
    Text(String),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Self::I64(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

/// A backend under test: how to reach it and how to run the caller's own SQL on one of its
/// connections (the connection an effect receives, or one from the pool).
pub trait TestBackend: Backend {
    /// For messages.
    const LABEL: &'static str;

    /// A URL on which nothing answers (a server that is down), or that cannot be opened.
    const DOWN_URL: &'static str;

    /// The `n`th bound parameter (1-based) in this dialect: `$n` or `?`.
    fn param(n: usize) -> String;

    /// A pool for `test`, or `None` when the server does not answer (the test is skipped).
    /// `name` names the SQLite database file.
    fn pool(test: &str, name: &str) -> impl Future<Output = Option<sqlx::Pool<Self>>>;

    /// Runs `sql` with `args`; rows affected.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: String,
        args: Vec<Arg>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;

    /// Runs `sql` with `args`; the first column of the first row as `BIGINT`.
    fn fetch_i64<'c>(
        conn: &'c mut Self::Connection,
        sql: String,
        args: Vec<Arg>,
    ) -> BoxFuture<'c, Result<Option<i64>, sqlx::Error>>;

    /// Runs `sql` with `args`; the first row as (text, `BIGINT`).
    fn fetch_text_i64<'c>(
        conn: &'c mut Self::Connection,
        sql: String,
        args: Vec<Arg>,
    ) -> BoxFuture<'c, Result<Option<(String, i64)>, sqlx::Error>>;

    /// Drops the entity table of a store and its history rows (`RawAccess::cleanup`).
    fn cleanup<M: StateMachine>(store: &SqlStore<M, Self>, table: &str) -> impl Future<Output = ()>;

    /// Writes `value` into the state column of entity `id`, bypassing the store
    /// (`RawAccess::corrupt`).
    fn corrupt<M: StateMachine>(
        store: &SqlStore<M, Self>,
        table: &str,
        id: i64,
        value: &str,
    ) -> impl Future<Output = ()>;

    /// Releases what the test's pool holds outside the database: SQLite closes the pool and
    /// removes the database file `name` that [`TestBackend::pool`] made.
    fn release(pool: &sqlx::Pool<Self>, name: &str) -> impl Future<Output = ()>;
}

macro_rules! test_backend {
    ($db:ty, $name:literal, $down:literal, |$n:ident| $param:expr, |$test:ident, $file:ident| $pool:block, |$used:ident, $db_file:ident| $release:block) => {
        impl TestBackend for $db {
            const LABEL: &'static str = $name;
            const DOWN_URL: &'static str = $down;

            fn param($n: usize) -> String {
                $param
            }

            async fn pool($test: &str, $file: &str) -> Option<sqlx::Pool<Self>> $pool

            fn execute<'c>(
                conn: &'c mut <$db as sqlx::Database>::Connection,
                sql: String,
                args: Vec<Arg>,
            ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let mut query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql));
                    for arg in args {
                        query = match arg {
                            Arg::I64(value) => query.bind(value),
                            Arg::Text(value) => query.bind(value),
                        };
                    }
                    Ok(query.execute(&mut *conn).await?.rows_affected())
                })
            }

            fn fetch_i64<'c>(
                conn: &'c mut <$db as sqlx::Database>::Connection,
                sql: String,
                args: Vec<Arg>,
            ) -> BoxFuture<'c, Result<Option<i64>, sqlx::Error>> {
                Box::pin(async move {
                    use sqlx::Row as _;
                    let mut query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql));
                    for arg in args {
                        query = match arg {
                            Arg::I64(value) => query.bind(value),
                            Arg::Text(value) => query.bind(value),
                        };
                    }
                    let row = query.fetch_optional(&mut *conn).await?;
                    row.map(|row| row.try_get::<i64, _>(0)).transpose()
                })
            }

            fn fetch_text_i64<'c>(
                conn: &'c mut <$db as sqlx::Database>::Connection,
                sql: String,
                args: Vec<Arg>,
            ) -> BoxFuture<'c, Result<Option<(String, i64)>, sqlx::Error>> {
                Box::pin(async move {
                    use sqlx::Row as _;
                    let mut query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql));
                    for arg in args {
                        query = match arg {
                            Arg::I64(value) => query.bind(value),
                            Arg::Text(value) => query.bind(value),
                        };
                    }
                    let row = query.fetch_optional(&mut *conn).await?;
                    row.map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?))).transpose()
                })
            }

            async fn cleanup<M: StateMachine>(store: &SqlStore<M, Self>, table: &str) {
                RawAccess::cleanup(store, table).await;
            }

            async fn corrupt<M: StateMachine>(store: &SqlStore<M, Self>, table: &str, id: i64, value: &str) {
                RawAccess::corrupt(store, table, id, value).await;
            }

            async fn release($used: &sqlx::Pool<Self>, $db_file: &str) $release
        }
    };
}

test_backend!(
    sqlx::Sqlite,
    "SQLite",
    "sqlite:///nonexistent-fsm-test-dir/down.db",
    |_n| "?".to_owned(),
    |_test, file| { Some(backends::sqlite_pool(file).await) },
    |pool, file| {
        pool.close().await;
        let path = std::env::temp_dir().join(format!("{file}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
);
test_backend!(
    sqlx::Postgres,
    "PostgreSQL",
    "postgres://postgres@127.0.0.1:1/test",
    |n| format!("${n}"),
    |test, _file| { backends::postgres_pool(test).await },
    |_pool, _file| {}
);
test_backend!(
    sqlx::MySql,
    "MySQL/MariaDB",
    "mysql://root@127.0.0.1:1/test",
    |_n| "?".to_owned(),
    |test, _file| { backends::mysql_pool(test).await },
    |_pool, _file| {}
);

/// A store of machine `M` on a fresh entity table (`id BIGINT` primary key), and the extra
/// tables the test created; [`run`] drops all of them when the test ends, passed or failed.
pub struct Fixture<B: TestBackend, M: StateMachine> {
    /// The store under test.
    pub store: SqlStore<M, B>,
    /// Its entity table.
    pub table: String,
    /// The test's name.
    pub test: String,
    extra: Mutex<Vec<String>>,
}

impl<B: TestBackend, M: StateMachine> Fixture<B, M> {
    /// A fixture on a pool of the test servers, or `None` when the server does not answer.
    pub async fn new(test: &str) -> Option<Self> {
        let table = backends::unique_table(test);
        let pool = B::pool(test, &table).await?;
        Some(Self::with_pool(test, table, pool).await)
    }

    /// A fixture on `pool`, with the entity table `table`.
    pub async fn with_pool(test: &str, table: String, pool: sqlx::Pool<B>) -> Self {
        let mut conn = pool.acquire().await.expect("acquire a connection");
        B::execute(&mut conn, backends::create_table_sql(&table), Vec::new()).await.expect("create the entity table");
        drop(conn);
        let store =
            SqlStore::<M, B>::with_mapping(pool, backends::mapping_for::<M>(&table)).await.expect("build the store");
        Self { store, table, test: test.to_owned(), extra: Mutex::new(Vec::new()) }
    }

    /// The store's pool.
    pub fn pool(&self) -> &sqlx::Pool<B> {
        self.store.pool()
    }

    /// The `n`th parameter in this dialect.
    pub fn p(&self, n: usize) -> String {
        B::param(n)
    }

    /// A fresh table name, dropped (with its history rows) when the test ends; create it with
    /// [`Fixture::exec`].
    pub fn extra_table(&self, prefix: &str) -> String {
        let name = backends::unique_table(prefix);
        self.extra.lock().expect("extra tables").push(name.clone());
        name
    }

    /// Runs the caller's own statement on a pooled connection; rows affected.
    pub async fn exec(&self, sql: impl Into<String>, args: impl IntoIterator<Item = Arg>) -> u64 {
        let sql = sql.into();
        let mut conn = self.pool().acquire().await.expect("acquire a connection");
        B::execute(&mut conn, sql.clone(), args.into_iter().collect())
            .await
            .unwrap_or_else(|e| panic!("{}: `{sql}` failed: {e}", B::LABEL))
    }

    /// The first column of the first row of `sql`, as `BIGINT`.
    pub async fn fetch_i64(&self, sql: impl Into<String>, args: impl IntoIterator<Item = Arg>) -> Option<i64> {
        let sql = sql.into();
        let mut conn = self.pool().acquire().await.expect("acquire a connection");
        B::fetch_i64(&mut conn, sql.clone(), args.into_iter().collect())
            .await
            .unwrap_or_else(|e| panic!("{}: `{sql}` failed: {e}", B::LABEL))
    }

    /// The entity's row in `table` as written, `(state, version)`, read with raw SQL.
    pub async fn raw_row(&self, table: &str, id: impl Into<Arg>) -> Option<(String, i64)> {
        let sql = format!("SELECT state, version FROM {table} WHERE id = {}", B::param(1));
        let mut conn = self.pool().acquire().await.expect("acquire a connection");
        B::fetch_text_i64(&mut conn, sql.clone(), vec![id.into()])
            .await
            .unwrap_or_else(|e| panic!("{}: `{sql}` failed: {e}", B::LABEL))
    }

    /// How many history rows the runtime holds for entity `id` (as text) of `table`.
    pub async fn history_rows(&self, table: &str, id: &str) -> i64 {
        let sql = format!(
            "SELECT COUNT(*) FROM fsm_history WHERE entity_table = {} AND entity_id = {}",
            B::param(1),
            B::param(2)
        );
        self.fetch_i64(sql, [Arg::from(table), Arg::from(id)]).await.unwrap_or(0)
    }

    /// Writes `value` into the state column of entity `id` of the fixture's table.
    pub async fn corrupt(&self, id: i64, value: &str) {
        B::corrupt(&self.store, &self.table, id, value).await;
    }

    async fn cleanup(&self) {
        B::cleanup(&self.store, &self.table).await;
        let extra = std::mem::take(&mut *self.extra.lock().expect("extra tables"));
        for table in extra {
            self.exec(format!("DROP TABLE IF EXISTS {table}"), []).await;
            self.exec(format!("DELETE FROM fsm_history WHERE entity_table = {}", B::param(1)), [Arg::from(table)])
                .await;
        }
        B::release(self.pool(), &self.table).await;
    }
}

/// Runs `case` on a fresh fixture (skipped when the server does not answer), then drops its
/// tables, also when the case panics (the panic is then resumed).
pub async fn run<B, M, Fut>(test: &str, case: impl FnOnce(Arc<Fixture<B, M>>) -> Fut)
where
    B: TestBackend,
    M: StateMachine,
    Fut: Future<Output = ()>,
{
    let Some(fixture) = Fixture::<B, M>::new(test).await else {
        return;
    };
    run_on(Arc::new(fixture), case).await;
}

/// Runs `case` on `fixture`, then drops its tables, also when the case panics.
pub async fn run_on<B, M, Fut>(fixture: Arc<Fixture<B, M>>, case: impl FnOnce(Arc<Fixture<B, M>>) -> Fut)
where
    B: TestBackend,
    M: StateMachine,
    Fut: Future<Output = ()>,
{
    let result = AssertUnwindSafe(case(fixture.clone())).catch_unwind().await;
    fixture.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Instantiates each generic case `async fn case<B: TestBackend>(fixture: Arc<Fixture<B, M>>)`
/// of the calling test file as one `#[tokio::test]` per backend, in modules `sqlite`,
/// `postgres` and `mysql`.
#[allow(unused_macros)]
macro_rules! per_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $crate::sql_support::per_backend!(@cases fsm_runtime::sqlx::Sqlite; $($case),*);
        }
        mod postgres {
            $crate::sql_support::per_backend!(@cases fsm_runtime::sqlx::Postgres; $($case),*);
        }
        mod mysql {
            $crate::sql_support::per_backend!(@cases fsm_runtime::sqlx::MySql; $($case),*);
        }
    };
    (@cases $db:ty; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::sql_support::run(stringify!($case), super::$case::<$db>).await;
            }
        )*
    };
}

#[allow(unused_imports)]
pub(crate) use per_backend;
