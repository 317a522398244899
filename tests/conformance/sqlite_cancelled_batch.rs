//! A SQLite transition dropped halfway leaves nothing behind: no open transaction on a pooled
//! connection, no half-written row.
//!
//! `SqliteStore` sends a transition without key or effects as one batch (`BEGIN IMMEDIATE` …
//! `COMMIT`) to the connection's worker thread. When the caller's future is dropped while the
//! worker runs the batch, the worker stops at the next row it cannot hand over, inside the
//! transaction; the store then closes that connection instead of pooling it (closing rolls the
//! transaction back). Pooled again, the connection would carry the open transaction into the
//! next request, and SQLite would refuse the next `BEGIN` on it.

use std::time::Duration;

use crate::fixture::machines::Order;
use fsm_runtime::{SqliteStore, Store, sqlx};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transition_leaves_no_open_transaction_and_no_partial_write() {
    let table = crate::fixture::backends::unique_table("cancelled_batch");
    let path = std::env::temp_dir().join(format!("{table}.db"));
    let _leftovers = crate::fixture::Leftovers::sqlite_file(&path);
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    // One connection: every request and every check below runs on the connection the dropped
    // request used, or on the one that replaced it.
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(crate::fixture::backends::create_table_sql(&table))).execute(&pool).await.unwrap();
    let store =
        SqliteStore::<Order>::with_mapping(pool.clone(), crate::fixture::backends::mapping_for::<Order>(&table))
            .await
            .unwrap();

    // Another connection holds the write lock, so that the batch's `BEGIN IMMEDIATE` waits in
    // the worker; the request is dropped while it waits; then the lock is released and the
    // worker goes on with the batch of a request nobody waits for any more.
    let mut blocker = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
    for id in 1..=3 {
        store.create(id).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();
        let racing = store.clone();
        let task = tokio::spawn(async move { racing.transition(id, Order::Paid).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        task.abort();
        assert!(task.await.is_err(), "the request finished although the write lock was held");
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        // The pooled connection is in autocommit mode: a `BEGIN` on it works.
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *conn).await.expect("no transaction left open on the pooled connection");
        sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
        drop(conn);
        // The dropped transition happened entirely or not at all.
        let now = store.get(id).await.unwrap();
        let history = store.history(id).await.unwrap();
        match now.state {
            Order::Created => assert!(now.version == 0 && history.is_empty(), "entity {id}: {now:?}, {history:?}"),
            Order::Paid => assert!(now.version == 1 && history.len() == 1, "entity {id}: {now:?}, {history:?}"),
            other => panic!("entity {id} in {other:?}"),
        }
        // And the store goes on: the transition applies, or is already applied.
        assert_eq!(store.transition(id, Order::Paid).await.unwrap().version(), 1);
        // Another writer gets the write lock: nothing holds it.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    }
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
