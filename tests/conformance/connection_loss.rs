//! A pooled connection that the server closes (a restart, an idle timeout, an administrator's
//! kill), on PostgreSQL and MySQL/MariaDB, with the pool of `fsm_runtime::sql::pool_options` (the
//! pool of every `connect`):
//!
//! - killed while it sat idle for less than `PING_IF_IDLE_FOR`: the next transition fails with a
//!   retryable `Error::Database` and writes nothing; the pool drops the connection, and the
//!   retry applies, once;
//! - killed and left idle for `PING_IF_IDLE_FOR`: the ping on the way out of the pool finds it
//!   dead, a new connection is opened, and the transition applies at the first attempt.
//!
//! - a `Session` holds the pool's connection across requests; killed, it fails one request
//!   with a retryable error, and the next one takes a new connection; a request cancelled
//!   halfway leaves the session usable.
//!
//! The pool holds one connection, so the killed one is the one the store gets next; the kill
//! comes from a second pool.

use std::time::Duration;

use crate::fixture::machines::Order;
use crate::fixture::{Leftovers, backends};
use fsm_runtime::sql::PING_IF_IDLE_FOR;
use fsm_runtime::sql::pool_options;
use fsm_runtime::store::Snapshot;
use fsm_runtime::store::SqlStore;
use fsm_runtime::{Error, Outcome, Store, TransitionRequest, sqlx};

/// One database: how to name, reach and kill a connection.
trait Server: fsm_runtime::sql::Backend {
    /// The server's id of the connection behind `pool` (one connection).
    async fn connection_id(pool: &sqlx::Pool<Self>) -> i64;
    /// Closes connection `id` from `admin`, and waits until the server has.
    async fn kill(admin: &sqlx::Pool<Self>, id: i64);
    /// A pool for the test's own statements, or `None` (skipped) when the server is down.
    async fn admin(test: &str) -> Option<sqlx::Pool<Self>>;
    /// The URL of the server.
    fn url() -> String;
    /// Runs `sql` on `admin`.
    async fn exec(admin: &sqlx::Pool<Self>, sql: String);
    /// What a store on the entity table `table` leaves behind.
    fn leftovers(table: &str) -> Leftovers;
    /// A transaction on `admin` that holds row 1 of `table` (`FOR UPDATE`).
    async fn lock_row(admin: &sqlx::Pool<Self>, table: &str) -> sqlx::Transaction<'static, Self>;
}

impl Server for sqlx::Postgres {
    async fn lock_row(admin: &sqlx::Pool<Self>, table: &str) -> sqlx::Transaction<'static, Self> {
        let mut locker = admin.begin().await.unwrap();
        let lock = format!("SELECT version FROM {table} WHERE id = 1 FOR UPDATE");
        sqlx::query(sqlx::AssertSqlSafe(lock)).fetch_one(&mut *locker).await.unwrap();
        locker
    }

    async fn connection_id(pool: &sqlx::Pool<Self>) -> i64 {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await.unwrap();
        i64::from(pid)
    }

    async fn kill(admin: &sqlx::Pool<Self>, id: i64) {
        let pid = i32::try_from(id).unwrap();
        let killed: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(admin).await.unwrap();
        assert!(killed, "backend {pid} terminated");
        wait_until_gone(|| async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_one(admin)
                .await
                .unwrap()
        })
        .await;
    }

    async fn admin(test: &str) -> Option<sqlx::Pool<Self>> {
        backends::postgres_pool(test).await
    }

    fn url() -> String {
        backends::postgres_url()
    }

    fn leftovers(table: &str) -> Leftovers {
        Leftovers::postgres(table)
    }

    async fn exec(admin: &sqlx::Pool<Self>, sql: String) {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await.unwrap();
    }
}

impl Server for sqlx::MySql {
    async fn lock_row(admin: &sqlx::Pool<Self>, table: &str) -> sqlx::Transaction<'static, Self> {
        let mut locker = admin.begin().await.unwrap();
        let lock = format!("SELECT version FROM {table} WHERE id = 1 FOR UPDATE");
        sqlx::query(sqlx::AssertSqlSafe(lock)).fetch_one(&mut *locker).await.unwrap();
        locker
    }

    async fn connection_id(pool: &sqlx::Pool<Self>) -> i64 {
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()").fetch_one(pool).await.unwrap();
        i64::try_from(id).unwrap()
    }

    async fn kill(admin: &sqlx::Pool<Self>, id: i64) {
        sqlx::query(sqlx::AssertSqlSafe(format!("KILL {id}"))).execute(admin).await.unwrap();
        wait_until_gone(|| async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?")
                .bind(id)
                .fetch_one(admin)
                .await
                .unwrap()
        })
        .await;
    }

    async fn admin(test: &str) -> Option<sqlx::Pool<Self>> {
        backends::mysql_pool(test).await
    }

    fn url() -> String {
        backends::mysql_url()
    }

    fn leftovers(table: &str) -> Leftovers {
        Leftovers::mysql(table)
    }

    async fn exec(admin: &sqlx::Pool<Self>, sql: String) {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await.unwrap();
    }
}

/// Polls `count` until it says 0.
async fn wait_until_gone<F: std::future::Future<Output = i64>>(count: impl Fn() -> F) {
    for _ in 0..200 {
        if count().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the killed connection is still listed after 2 s");
}

/// Waits until the pool's connection is idle again: sqlx pings a connection when it comes
/// back, in a task of its own, and a kill before that ping would be found by it.
async fn back_in_the_pool<B: Server>(pool: &sqlx::Pool<B>) {
    for _ in 0..200 {
        if pool.num_idle() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the connection did not come back to the pool within 2 s");
}

/// A store on a one-connection pool of `pool_options`, its table, the admin pool, and what the
/// test leaves behind (dropped when the test ends, passed or failed).
async fn setup<B: Server>(test: &str) -> Option<(SqlStore<Order, B>, String, sqlx::Pool<B>, Leftovers)> {
    let admin = B::admin(test).await?;
    let table = backends::unique_table(test);
    let leftovers = B::leftovers(&table);
    B::exec(&admin, backends::create_table_sql(&table)).await;
    let pool = pool_options::<B>().max_connections(1).connect(&B::url()).await.unwrap();
    let store = SqlStore::<Order, B>::with_mapping(pool, backends::mapping_for::<Order>(&table)).await.unwrap();
    store.create(1).await.unwrap();
    Some((store, table, admin, leftovers))
}

async fn teardown<B: Server>(admin: &sqlx::Pool<B>, table: &str) {
    B::exec(admin, format!("DROP TABLE {table}")).await;
    B::exec(admin, format!("DELETE FROM fsm_history WHERE entity_table = '{table}'")).await;
}

/// Killed while recently used: one retryable error that wrote nothing, then the retry applies.
async fn killed_connection_fails_once_retryably<B: Server>(test: &str) {
    let Some((store, table, admin, _leftovers)) = setup::<B>(test).await else { return };
    let id = B::connection_id(store.pool()).await;
    back_in_the_pool(store.pool()).await;
    B::kill(&admin, id).await;

    let first = store.apply(TransitionRequest::to(1, Order::Paid)).await;
    match &first {
        Err(error @ Error::Database { .. }) => assert!(error.is_retryable(), "{error:?}"),
        other => panic!("a dead connection used without a ping: expected Error::Database, got {other:?}"),
    }
    assert_ne!(B::connection_id(store.pool()).await, id, "the pool replaced the dead connection");
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 }, "nothing was written");
    assert_eq!(
        store.apply(TransitionRequest::to(1, Order::Paid)).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    teardown(&admin, &table).await;
}

/// Killed and idle past `PING_IF_IDLE_FOR`: the ping replaces it, the transition applies at once.
async fn idle_dead_connection_is_replaced_before_use<B: Server>(test: &str) {
    let Some((store, table, admin, _leftovers)) = setup::<B>(test).await else { return };
    let id = B::connection_id(store.pool()).await;
    back_in_the_pool(store.pool()).await;
    B::kill(&admin, id).await;
    tokio::time::sleep(PING_IF_IDLE_FOR + Duration::from_millis(500)).await;

    assert_eq!(
        store.apply(TransitionRequest::to(1, Order::Paid)).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_ne!(B::connection_id(store.pool()).await, id);
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    teardown(&admin, &table).await;
}

/// A session keeps its connection across requests (the pool's only one stays taken), gives it
/// back when dropped, and after its connection was killed: one retryable error that wrote
/// nothing, then the next request takes a new connection and applies, once.
async fn session_survives_a_killed_connection<B: Server>(test: &str) {
    let Some((store, table, admin, _leftovers)) = setup::<B>(test).await else { return };
    let mut session = store.session();
    assert_eq!(session.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert_eq!((store.pool().size(), store.pool().num_idle()), (1, 0), "the session holds the connection");
    let id = {
        // The server's id of the held connection, from the server's list (the session has no
        // statement of its own): the only connection of the store's pool.
        drop(session);
        back_in_the_pool(store.pool()).await;
        let id = B::connection_id(store.pool()).await;
        back_in_the_pool(store.pool()).await;
        id
    };
    let mut session = store.session();
    assert_eq!(session.get(1).await.unwrap().version, 0);
    B::kill(&admin, id).await;

    match session.transition(1, Order::Paid).await {
        Err(error @ Error::Database { .. }) => assert!(error.is_retryable(), "{error:?}"),
        other => panic!("the session's connection was killed: expected Error::Database, got {other:?}"),
    }
    assert_eq!(
        session.transition(1, Order::Paid).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(
        session.transition(1, Order::Paid).await.unwrap(),
        Outcome::AlreadyApplied { state: Order::Paid, version: 1 }
    );
    drop(session);
    assert_ne!(B::connection_id(store.pool()).await, id, "a new connection replaced the killed one");
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    teardown(&admin, &table).await;
}

/// A request cancelled halfway (a timeout around it, while it waits for a row another
/// transaction holds) leaves the session usable: the connection the request left in an unknown
/// state is closed, the session takes another one, and the next request applies once. (Two connections: sqlx may take a few seconds to close one that
/// was cut off mid-request, and keeps its place in the pool meanwhile.)
async fn session_request_cancelled<B: Server>(test: &str) {
    let Some((store, table, admin, _leftovers)) = setup::<B>(test).await else { return };
    let pool = pool_options::<B>().max_connections(2).connect(&B::url()).await.unwrap();
    let store = SqlStore::<Order, B>::with_mapping(pool, store.mapping().clone()).await.unwrap();
    let mut session = store.session();
    assert_eq!(session.get(1).await.unwrap().version, 0, "the session holds a connection");
    // Another transaction holds the row: the request waits for it, and is cancelled waiting.
    let locker = B::lock_row(&admin, &table).await;
    let cut = tokio::time::timeout(Duration::from_millis(300), session.transition(1, Order::Paid)).await;
    assert!(cut.is_err(), "cancelled while it waited for the row");
    locker.rollback().await.unwrap();
    let again = session.transition(1, Order::Paid).await.unwrap();
    assert_eq!(again.state(), Order::Paid);
    assert_eq!(session.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(store.history(1).await.unwrap().len(), 1, "applied once, whichever attempt did");
    teardown(&admin, &table).await;
}

/// A request whose effect fails leaves no transaction open on the session's connection: the
/// entity is not locked while the session waits for its next request.
async fn session_effect_fails<B: Server>(test: &str) {
    let Some((store, table, admin, _leftovers)) = setup::<B>(test).await else { return };
    let pool = pool_options::<B>().max_connections(2).connect(&B::url()).await.unwrap();
    let store = SqlStore::<Order, B>::with_mapping(pool, store.mapping().clone()).await.unwrap();
    let mut session = store.session();
    let failing = TransitionRequest::to(1, Order::Paid).effect(|_tx| Box::pin(async { Err("declined".into()) }));
    assert!(matches!(session.apply(failing).await, Err(Error::Effect { .. })));
    let other = tokio::time::timeout(Duration::from_secs(3), store.transition(1, Order::Paid)).await;
    let other = other.expect("the row is not locked by the session").unwrap();
    assert_eq!(other, Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    assert_eq!(session.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    teardown(&admin, &table).await;
}

macro_rules! per_server {
    ($($module:ident: $db:ty),*) => {
        $(
            mod $module {
                use super::*;

                #[tokio::test]
                async fn killed_connection_fails_once_retryably() {
                    super::killed_connection_fails_once_retryably::<$db>(concat!(stringify!($module), "_killed")).await;
                }

                #[tokio::test]
                async fn session_survives_a_killed_connection() {
                    super::session_survives_a_killed_connection::<$db>(concat!(stringify!($module), "_session")).await;
                }

                #[tokio::test]
                async fn session_effect_fails() {
                    super::session_effect_fails::<$db>(concat!(stringify!($module), "_effect")).await;
                }

                #[tokio::test]
                async fn session_request_cancelled() {
                    super::session_request_cancelled::<$db>(concat!(stringify!($module), "_cancel")).await;
                }

                #[tokio::test]
                async fn idle_dead_connection_is_replaced_before_use() {
                    super::idle_dead_connection_is_replaced_before_use::<$db>(concat!(stringify!($module), "_idle"))
                        .await;
                }
            }
        )*
    };
}

per_server!(postgres: sqlx::Postgres, mysql: sqlx::MySql);
