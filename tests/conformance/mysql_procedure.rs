//! MySQL/MariaDB: the store's transition procedure (one `CALL` per transition), and the
//! client-side path it falls back to when the server does not let the store create it.

use crate::fixture::Leftovers;
use crate::fixture::backends::{self, DropProcedures as _, RawAccess as _};
use crate::fixture::machines::Order;
use fsm_runtime::{Error, MySqlStore, Outcome, Store, sqlx};

/// How many procedures of the store (transition, keyed transition, batch) name `table`.
async fn procedures_of(pool: &sqlx::MySqlPool, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
         AND ROUTINE_NAME LIKE 'fsm\\_%' AND ROUTINE_DEFINITION LIKE CONCAT('%`', ?, '`%')",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The outcome table, on a store of `pool`.
async fn outcomes(store: &MySqlStore<Order>) {
    store.create(1).await.unwrap();
    assert_eq!(
        store.transition(1, Order::Paid).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(
        store.transition(1, Order::Paid).await.unwrap(),
        Outcome::AlreadyApplied { state: Order::Paid, version: 1 }
    );
    assert!(matches!(store.transition(1, Order::Delivered).await.unwrap_err(), Error::InvalidTransition { .. }));
    assert!(matches!(store.transition(2, Order::Paid).await.unwrap_err(), Error::NotFound { .. }));
    let stale = fsm_runtime::TransitionRequest::to(1, Order::Shipped).expect_version(0);
    assert!(matches!(store.apply(stale).await.unwrap_err(), Error::VersionConflict { expected: 0, actual: 1, .. }));
    assert_eq!(store.history(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_store_creates_its_procedure_and_transitions_through_it() {
    let Some((store, table)) = backends::mysql_store::<Order>("procedure").await else {
        return;
    };
    let _leftovers = store.leftovers(&table);
    assert_eq!(procedures_of(store.pool(), &table).await, 3, "plain, keyed and batch");
    outcomes(&store).await;
    // A second store on the same mapping finds the procedure there.
    let again = MySqlStore::<Order>::with_mapping(store.pool().clone(), store.mapping().clone()).await.unwrap();
    assert_eq!(procedures_of(store.pool(), &table).await, 3, "plain, keyed and batch");
    assert_eq!(again.get(1).await.unwrap().version, 1);
    store.cleanup(&table).await;
    assert_eq!(procedures_of(store.pool(), &table).await, 0);
}

#[tokio::test]
async fn without_create_routine_the_store_sends_the_transaction_itself() {
    let Some(root) = backends::mysql_pool("procedure_refused").await else {
        return;
    };
    // A user who may read and write tables but not create routines.
    for statement in [
        "CREATE USER IF NOT EXISTS 'fsm_no_routines'@'%'",
        "CREATE USER IF NOT EXISTS 'fsm_no_routines'@'localhost'",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON test.* TO 'fsm_no_routines'@'%'",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON test.* TO 'fsm_no_routines'@'localhost'",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&root).await.unwrap();
    }
    let table = backends::unique_table("procedure_refused");
    let _leftovers = Leftovers::mysql(&table);
    sqlx::raw_sql(sqlx::AssertSqlSafe(backends::create_table_sql(&table))).execute(&root).await.unwrap();
    let options: sqlx::mysql::MySqlConnectOptions = backends::mysql_url().parse().unwrap();
    let limited = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .connect_with(options.username("fsm_no_routines"))
        .await
        .unwrap();
    let store = MySqlStore::<Order>::with_mapping(limited, backends::mapping_for::<Order>(&table)).await.unwrap();
    assert_eq!(procedures_of(&root, &table).await, 0, "the server was expected to refuse CREATE PROCEDURE");
    outcomes(&store).await;
    store.cleanup(&table).await;
    root.drop_procedures_of(&table).await;
}
