//! The fixture's promise: what a test made is removed also when the test panics, on SQLite,
//! PostgreSQL and MySQL/MariaDB, by each way a test holds it:
//!
//! - the SQL fixture's `run` (the case panics after creating the entity table, an extra table,
//!   an entity and a history row): the case's panic is caught, the tables and the history rows
//!   are dropped, the panic goes on;
//! - the conformance suite's `run` (a store from `backends::*_store`): the same;
//! - a `Leftovers` kept as a guard by a task that panics: its drop, during the unwinding,
//!   removes the table on a thread of its own.
//!
//! Each test makes the case panic, checks that the panic came through, then looks at the
//! database on a connection of its own: the tables are gone (on SQLite, the database file is).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt as _;

use crate::fixture::backends;
use crate::fixture::machines::Order;
use crate::fixture::sql::{self, Arg, Fixture, TestBackend};
use fsm_runtime::{Store, sqlx};

/// The message of the panics of this file.
const ON_PURPOSE: &str = "a case that fails on purpose";

/// Checks that `result` is the panic of a case of this file (and resumes any other panic: a
/// setup that failed, a server required but down).
fn assert_panicked_on_purpose(result: std::thread::Result<()>) -> bool {
    match result {
        // The server did not answer and is not required: skipped (the SKIPPED line is printed).
        Ok(()) => false,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if message != ON_PURPOSE {
                std::panic::resume_unwind(panic);
            }
            true
        }
    }
}

/// The SQLite database file a fixture named `name` made.
fn sqlite_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.db"))
}

/// Asserts that `tables` are gone, and that no history row names them, looking on a connection
/// of the test's own; on SQLite, that their database file `sqlite_name` is gone.
async fn assert_gone<B: TestBackend>(test: &str, sqlite_name: &str, tables: &[String]) {
    if B::LABEL == "SQLite" {
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", sqlite_file(sqlite_name).display());
            assert!(!std::path::Path::new(&path).exists(), "{path} is still there after the case panicked");
        }
        return;
    }
    let pool = B::pool(test, "unused").await.expect("the server answered a moment ago");
    let mut conn = pool.acquire().await.expect("acquire a connection");
    let schema = if B::LABEL == "PostgreSQL" { "current_schema()" } else { "DATABASE()" };
    for table in tables {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {schema} AND table_name = {}",
            B::param(1)
        );
        let count = B::fetch_i64(&mut conn, sql, vec![Arg::from(table.as_str())]).await.expect("list the tables");
        assert_eq!(count, Some(0), "{}: table {table} is still there after the case panicked", B::LABEL);
        let sql = format!("SELECT COUNT(*) FROM fsm_history WHERE entity_table = {}", B::param(1));
        let count = B::fetch_i64(&mut conn, sql, vec![Arg::from(table.as_str())]).await.expect("count history");
        assert_eq!(count, Some(0), "{}: history rows of {table} are still there after the case panicked", B::LABEL);
    }
    drop(conn);
    pool.close().await;
}

/// The SQL fixture's `run`: the case makes an entity, a history row and an extra table, then
/// panics.
async fn sql_fixture_run<B: TestBackend>(test: &str) {
    let made: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = made.clone();
    let result = AssertUnwindSafe(sql::run(test, |fx: Arc<Fixture<B, Order>>| async move {
        let extra = fx.extra_table("panic_extra");
        fx.exec(backends::create_table_sql(&extra), []).await;
        fx.store.create(1).await.unwrap();
        assert!(fx.store.transition(1, Order::Paid).await.unwrap().is_applied());
        assert_eq!(fx.history_rows(&fx.table, "1").await, 1);
        seen.lock().unwrap().extend([fx.table.clone(), extra]);
        panic!("{}", ON_PURPOSE);
    }))
    .catch_unwind()
    .await;
    if !assert_panicked_on_purpose(result) {
        return;
    }
    let made = made.lock().unwrap().clone();
    assert_eq!(made.len(), 2, "the case ran up to its panic");
    assert_gone::<B>(test, &made[0], &made).await;
}

/// The conformance suite's `run`, on a store of `make` (one of `backends::*_store`).
async fn conformance_run<B, S, Fut, Make>(test: &str, make: Make)
where
    B: TestBackend,
    Make: FnOnce(String) -> Fut,
    S: Store<Order> + backends::RawAccess,
    Fut: Future<Output = Option<(S, String)>>,
{
    let made: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = made.clone();
    let result = AssertUnwindSafe(crate::run(test, make, |store: Arc<S>, table| async move {
        store.create(1).await.unwrap();
        seen.lock().unwrap().push(table);
        panic!("{}", ON_PURPOSE);
    }))
    .catch_unwind()
    .await;
    if !assert_panicked_on_purpose(result) {
        return;
    }
    let made = made.lock().unwrap().clone();
    assert_eq!(made.len(), 1, "the case ran up to its panic");
    assert_gone::<B>(test, &made[0], &made).await;
}

/// A `Leftovers` held by a task that panics: dropped while the panic unwinds, it drops the
/// table (on a thread and a connection of its own).
async fn guard_in_a_panicking_task<B: TestBackend>(test: &str) {
    let table = backends::unique_table(test);
    let Some(pool) = B::pool(test, &table).await else {
        return;
    };
    let mut conn = pool.acquire().await.expect("acquire a connection");
    let leftovers = B::leftovers(&table);
    B::execute(&mut conn, backends::create_table_sql(&table), Vec::new()).await.expect("create the table");
    drop(conn);
    pool.close().await;
    let task = tokio::spawn(async move {
        let _leftovers = leftovers;
        panic!("{}", ON_PURPOSE);
    });
    let error = task.await.expect_err("the task panicked");
    assert!(error.is_panic(), "{error}");
    assert_panicked_on_purpose(Err(error.into_panic()));
    assert_gone::<B>(test, &table, std::slice::from_ref(&table)).await;
}

macro_rules! per_database {
    ($($backend:ident: $db:ty, $make:ident),* $(,)?) => {
        $(
            mod $backend {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sql_fixture_run_cleans_up_after_a_panic() {
                    sql_fixture_run::<$db>(concat!("panic_fixture_", stringify!($backend))).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn conformance_run_cleans_up_after_a_panic() {
                    let make = |name: String| async move { backends::$make::<Order>(&name).await };
                    conformance_run::<$db, _, _, _>(concat!("panic_run_", stringify!($backend)), make).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn dropped_leftovers_clean_up_while_a_task_unwinds() {
                    guard_in_a_panicking_task::<$db>(concat!("panic_guard_", stringify!($backend))).await;
                }
            }
        )*
    };
}

per_database!(
    sqlite: sqlx::Sqlite, sqlite_store,
    postgres: sqlx::Postgres, postgres_store,
    mysql: sqlx::MySql, mysql_store,
);
