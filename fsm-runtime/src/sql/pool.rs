//! The pool settings of the `connect` constructors ([`pool_options`]).

use std::time::Duration;

/// How long a connection may sit idle in the pool before it is pinged on the way out.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// How long an acquire waits for a connection before it gives up.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool settings that `SqlStore::connect`, `SqlTokens::connect` and `SqlLeases::connect`
/// use; start from them to build a pool of your own for [`SqlStore::new`](crate::store::SqlStore::new).
///
/// - Acquiring gives up after [`ACQUIRE_TIMEOUT`]: a server that is down is a retryable error,
///   not a hang.
/// - A connection is pinged before it is handed out only when it sat idle in the pool for
///   [`PING_IF_IDLE_FOR`] or longer. sqlx's default pings every connection on every acquire,
///   although sqlx already pings it when it comes back to the pool: one more round trip per
///   operation, about a fifth of the throughput of a one-statement transition (see
///   `docs/benchmarks.md`). A connection that fails its ping is dropped and another one is used; one
///   that breaks within those seconds fails its next operation with a retryable
///   [`Error::Database`](crate::Error::Database), which every operation of this crate may
///   safely be retried on.
///
/// ```
/// # async fn demo() -> Result<(), fsm_runtime::sqlx::Error> {
/// let pool = fsm_runtime::sql::pool_options::<fsm_runtime::sqlx::Sqlite>()
///     .max_connections(4)
///     .connect("sqlite::memory:")
///     .await?;
/// assert_eq!(pool.options().get_max_connections(), 4);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new().acquire_timeout(ACQUIRE_TIMEOUT).test_before_acquire(false).before_acquire(
        |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        },
    )
}

/// What [`galera_pool_options`] sets on every connection: each statement waits until its node
/// has applied every write the cluster committed before it (reads `1`, updates and deletes `2`,
/// inserts `4`, `SHOW` `8`).
#[cfg(feature = "mysql")]
pub const GALERA_SYNC_WAIT: &str = "SET SESSION wsrep_sync_wait = 15";

/// [`pool_options`] for one node of a MariaDB Galera cluster: every connection sets
/// [`GALERA_SYNC_WAIT`], so that a request on this node sees what a request on another node
/// committed before it, as on one server.
///
/// Galera replicates synchronously but applies asynchronously: without it a node answers
/// from a state a few milliseconds old, and a read there may miss a write just acknowledged
/// by another node (a client that moved an entity on node 1 and reads it on node 2 may see the
/// old state). Transitions stay correct either way (a lost certification is sent again and
/// answers `AlreadyApplied`); the wait makes the reads causal. Build one pool (and one
/// `MySqlStore`) per node; see `docs/scaling.md`.
///
/// ```
/// let options = fsm_runtime::sql::galera_pool_options().max_connections(16);
/// assert_eq!(options.get_max_connections(), 16);
/// // let node1 = MySqlStore::<Order>::new(options.connect("mysql://root@db1:3306/app").await?).await?;
/// ```
#[cfg(feature = "mysql")]
pub fn galera_pool_options() -> sqlx::pool::PoolOptions<sqlx::MySql> {
    pool_options::<sqlx::MySql>().after_connect(|conn, _| {
        Box::pin(async move { sqlx::Executor::execute(conn, GALERA_SYNC_WAIT).await.map(drop) })
    })
}
