//! Leases with fencing tokens on every backend: memory, SQLite, PostgreSQL, MySQL/MariaDB and
//! Redis (whose fences are checked by a SQLite store).
//!
//! - 16 concurrent acquisitions of one free lease: exactly one holder;
//! - fencing tokens only grow: across a release, and across a takeover after expiry;
//! - owner check: releasing or extending a lease with another owner, or with another fencing
//!   token, answers `NotHeld` and changes nothing (the holder still holds it and can extend and
//!   release it); releasing twice answers `NotHeld` the second time;
//! - a holder whose lease expired and was taken over can neither extend nor release it;
//! - the paused holder: A acquires (TTL 200 ms), pauses past the TTL, B acquires and writes a
//!   transition carrying its fence; A's late transition with its older fence is refused with a
//!   `StaleFencingToken` naming both tokens, and nothing of A's is persisted (state, version and
//!   history are B's); A's own earlier write with its fence, before B, was accepted; B can write
//!   again with the same fence;
//! - bounded wait: `acquire` with a 300 ms wait on a held lease returns `LockError::Timeout`,
//!   and succeeds once the holder releases or the lease expires;
//! - a server that is down (a closed port): a typed error, at connect and at the first
//!   operation, never a panic.

use std::sync::Arc;
use std::time::Duration;

use crate::fixture::backends::{self, RawAccess};
use crate::fixture::guarded;
use crate::fixture::machines::Order;
use fsm_runtime::fence::{self, CheckFence, MemoryFences};
use fsm_runtime::lock::{
    ExtendOutcome, FencingToken, Lease, LeaseStore, LockError, MemoryLeases, RedisLeases, ReleaseOutcome, SqlLeases,
};
use fsm_runtime::store::EffectFuture;
use fsm_runtime::store::MemoryTx;
use fsm_runtime::store::SqlStore;
use fsm_runtime::{MemoryStore, SqliteStore, Store, sqlx};

/// An effect that checks a fencing token, boxed.
type FenceEffect<Tx> = Box<dyn for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send + 'static>;

/// Makes the fence effect of a store's transactions.
trait Fencer<Tx>: Send + Sync {
    fn guard(&self, table: &str, id: i64, token: FencingToken) -> FenceEffect<Tx>;
}

impl Fencer<MemoryTx> for MemoryFences {
    fn guard(&self, table: &str, id: i64, token: FencingToken) -> FenceEffect<MemoryTx> {
        Box::new(MemoryFences::guard(self, table, id, token))
    }
}

/// The fences of the SQL stores.
struct SqlFence;

impl<C: CheckFence + 'static> Fencer<C> for SqlFence {
    fn guard(&self, table: &str, id: i64, token: FencingToken) -> FenceEffect<C> {
        Box::new(fence::guard::<C>(table, id, token))
    }
}

/// Leases, a store whose transitions carry fences, and the fences.
struct Fixture<L, S, F> {
    leases: Arc<L>,
    store: Arc<S>,
    fences: F,
    /// The store's table; also the prefix of the test's resource names.
    table: String,
}

impl<L, S: RawAccess, F> Fixture<L, S, F> {
    fn resource(&self) -> String {
        format!("{}-lock", self.table)
    }

    async fn cleanup(&self) {
        self.store.cleanup(&self.table).await;
    }
}

async fn memory(test: &str) -> Option<Fixture<MemoryLeases, MemoryStore<Order>, MemoryFences>> {
    let (store, _) = backends::memory_store::<Order>(test).await?;
    let table = backends::unique_table(test);
    Some(Fixture { leases: Arc::new(MemoryLeases::new()), store: Arc::new(store), fences: MemoryFences::new(), table })
}

async fn sql<B>(
    store: Option<(SqlStore<Order, B>, String)>,
) -> Option<Fixture<SqlLeases<B>, SqlStore<Order, B>, SqlFence>>
where
    B: fsm_runtime::sql::Backend,
{
    let (store, table) = store?;
    let leases = SqlLeases::new(store.pool().clone()).await.expect("leases");
    Some(Fixture { leases: Arc::new(leases), store: Arc::new(store), fences: SqlFence, table })
}

async fn sqlite(test: &str) -> Option<Fixture<SqlLeases<sqlx::Sqlite>, SqliteStore<Order>, SqlFence>> {
    sql(backends::sqlite_store::<Order>(test).await).await
}

async fn postgres(test: &str) -> Option<Fixture<SqlLeases<sqlx::Postgres>, SqlStore<Order, sqlx::Postgres>, SqlFence>> {
    sql(backends::postgres_store::<Order>(test).await).await
}

async fn mysql(test: &str) -> Option<Fixture<SqlLeases<sqlx::MySql>, SqlStore<Order, sqlx::MySql>, SqlFence>> {
    sql(backends::mysql_store::<Order>(test).await).await
}

/// Leases on Redis; the fences in a SQLite store.
async fn redis(test: &str) -> Option<Fixture<RedisLeases, SqliteStore<Order>, SqlFence>> {
    let url = backends::redis_available(test)?;
    let (store, table) = backends::sqlite_store::<Order>(test).await?;
    fence::create_table(store.pool()).await.expect("fsm_fences");
    let leases = RedisLeases::connect(&url).await.expect("leases on Redis").with_prefix(backends::unique_prefix(test));
    Some(Fixture { leases: Arc::new(leases), store: Arc::new(store), fences: SqlFence, table })
}

/// The cases, generic over the backend.
mod cases {
    use super::*;
    use fsm_runtime::store::Snapshot;
    use fsm_runtime::{Error, TransitionRequest};

    const LONG: Duration = Duration::from_secs(30);

    /// 16 concurrent acquisitions of a free lease: one holder.
    pub async fn one_holder_at_a_time<L, S, F>(f: Fixture<L, S, F>)
    where
        L: LeaseStore + 'static,
        S: RawAccess,
    {
        let resource = f.resource();
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (leases, resource, start) = (f.leases.clone(), resource.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    leases.try_acquire(&resource, &format!("worker-{i}"), LONG).await.unwrap()
                })
            })
            .collect();
        let mut holders = Vec::new();
        for task in tasks {
            holders.extend(task.await.unwrap());
        }
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_eq!(holders[0].resource(), resource);
        assert!(holders[0].remaining() > Duration::from_secs(20));
        f.cleanup().await;
    }

    /// Fencing tokens grow across a release and across a takeover after expiry.
    pub async fn fencing_tokens_only_grow<L: LeaseStore, S: RawAccess, F>(f: Fixture<L, S, F>) {
        let resource = f.resource();
        let first = f.leases.try_acquire(&resource, "a", LONG).await.unwrap().expect("free");
        assert_eq!(f.leases.release(&first).await.unwrap(), ReleaseOutcome::Released);
        let second = f.leases.try_acquire(&resource, "b", Duration::from_millis(100)).await.unwrap().expect("released");
        assert!(second.fence() > first.fence(), "{second:?} after {first:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let third = f.leases.try_acquire(&resource, "b", LONG).await.unwrap().expect("expired");
        assert!(third.fence() > second.fence(), "{third:?} after {second:?}");
        // Held: even its own owner does not acquire it again (extend keeps a lease).
        assert!(f.leases.try_acquire(&resource, "b", LONG).await.unwrap().is_none());
        f.cleanup().await;
    }

    /// Only the holder, with its fencing token, extends or releases a lease.
    pub async fn owner_check<L: LeaseStore, S: RawAccess, F>(f: Fixture<L, S, F>) {
        let resource = f.resource();
        let mut held = f.leases.try_acquire(&resource, "a", LONG).await.unwrap().expect("free");
        let mut other_owner = Lease::from_parts(resource.clone(), "b", held.fence());
        let mut other_fence = Lease::from_parts(resource.clone(), "a", FencingToken::new(held.fence().value() + 1));
        for lease in [&mut other_owner, &mut other_fence] {
            assert_eq!(f.leases.release(lease).await.unwrap(), ReleaseOutcome::NotHeld, "{lease:?}");
            assert_eq!(f.leases.extend(lease, LONG).await.unwrap(), ExtendOutcome::NotHeld, "{lease:?}");
        }
        assert!(f.leases.try_acquire(&resource, "c", LONG).await.unwrap().is_none(), "still held by a");
        assert_eq!(f.leases.extend(&mut held, LONG).await.unwrap(), ExtendOutcome::Extended);
        assert_eq!(f.leases.release(&held).await.unwrap(), ReleaseOutcome::Released);
        assert_eq!(f.leases.release(&held).await.unwrap(), ReleaseOutcome::NotHeld);
        assert_eq!(f.leases.extend(&mut held, LONG).await.unwrap(), ExtendOutcome::NotHeld);
        f.cleanup().await;
    }

    /// A holder whose lease expired and was taken over neither extends nor releases it.
    pub async fn expired_holder_is_locked_out<L: LeaseStore, S: RawAccess, F>(f: Fixture<L, S, F>) {
        let resource = f.resource();
        let mut a = f.leases.try_acquire(&resource, "a", Duration::from_millis(200)).await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(f.leases.extend(&mut a, LONG).await.unwrap(), ExtendOutcome::NotHeld, "expired");
        let b = f.leases.try_acquire(&resource, "b", LONG).await.unwrap().expect("expired, so free");
        assert_eq!(f.leases.release(&a).await.unwrap(), ReleaseOutcome::NotHeld);
        assert_eq!(f.leases.extend(&mut a, LONG).await.unwrap(), ExtendOutcome::NotHeld);
        assert!(f.leases.try_acquire(&resource, "c", LONG).await.unwrap().is_none(), "still held by b");
        assert_eq!(f.leases.release(&b).await.unwrap(), ReleaseOutcome::Released);
        f.cleanup().await;
    }

    /// The paused holder's late write is refused by the fence; nothing of it is persisted.
    pub async fn paused_holder_is_fenced_off<L, S, F>(f: Fixture<L, S, F>)
    where
        L: LeaseStore,
        S: Store<Order> + RawAccess,
        F: Fencer<S::Tx>,
    {
        let (resource, table) = (f.resource(), f.table.clone());
        f.store.create(1).await.unwrap();
        f.store.create(2).await.unwrap();
        let a = f.leases.try_acquire(&resource, "a", Duration::from_millis(200)).await.unwrap().expect("free");
        // While A holds the lease its writes pass (entity 2).
        let write = TransitionRequest::to(2, Order::Paid).effect(f.fences.guard(&table, 2, a.fence()));
        assert!(f.store.apply(write).await.unwrap().is_applied());

        tokio::time::sleep(Duration::from_millis(400)).await; // A pauses past its TTL
        let b = f.leases.try_acquire(&resource, "b", LONG).await.unwrap().expect("A's lease expired");
        assert!(b.fence() > a.fence());
        let write = TransitionRequest::to(1, Order::Paid).effect(f.fences.guard(&table, 1, b.fence()));
        assert!(f.store.apply(write).await.unwrap().is_applied());

        // A wakes up and writes with its old fence: a move that is legal from B's state.
        let late = TransitionRequest::to(1, Order::Cancelled).effect(f.fences.guard(&table, 1, a.fence()));
        let error = f.store.apply(late).await.unwrap_err();
        assert!(matches!(error, Error::Effect { from: "paid", to: "cancelled", .. }), "{error:?}");
        let stale = fence::stale_token(&error).unwrap_or_else(|| panic!("not a stale token: {error:?}"));
        assert_eq!((stale.token, stale.highest), (a.fence(), b.fence()));
        assert_eq!(stale.resource, format!("{table}/1"));
        assert!(!error.is_retryable());

        // Nothing of A's: B's state, B's version, B's history row only.
        assert_eq!(f.store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
        let history = f.store.history(1).await.unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!((history[0].from, history[0].to, history[0].version), (Order::Created, Order::Paid, 1));

        // B writes again with the same fence.
        let write = TransitionRequest::to(1, Order::Shipped).effect(f.fences.guard(&table, 1, b.fence()));
        assert!(f.store.apply(write).await.unwrap().is_applied());
        f.cleanup().await;
    }

    /// `acquire` waits a bounded time: a timeout on a held lease, success once it is free.
    pub async fn bounded_wait<L: LeaseStore, S: RawAccess, F>(f: Fixture<L, S, F>) {
        let resource = f.resource();
        let held = f.leases.try_acquire(&resource, "a", LONG).await.unwrap().expect("free");
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            f.leases.acquire(&resource, "b", LONG, Duration::from_millis(300)),
        )
        .await
        .expect("acquire returns after its wait");
        match waited {
            Err(error @ LockError::Timeout { .. }) => {
                assert!(error.is_retryable());
                assert!(error.to_string().contains(&resource), "{error}");
            }
            other => panic!("expected LockError::Timeout, got {other:?}"),
        }
        assert_eq!(f.leases.release(&held).await.unwrap(), ReleaseOutcome::Released);
        let b = f.leases.acquire(&resource, "b", Duration::from_millis(200), Duration::from_secs(1)).await.unwrap();
        // Held by B for 200 ms: C waits for the expiry and gets it.
        let c = f.leases.acquire(&resource, "c", LONG, Duration::from_secs(5)).await.unwrap();
        assert!(c.fence() > b.fence());
        f.cleanup().await;
    }
}

macro_rules! lease_tests {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                use super::*;

                lease_tests!(@cases $backend;
                    one_holder_at_a_time,
                    fencing_tokens_only_grow,
                    owner_check,
                    expired_holder_is_locked_out,
                    paused_holder_is_fenced_off,
                    bounded_wait,
                );
            }
        )*
    };
    (@cases $backend:ident; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let test = concat!("l_", stringify!($case));
                let Some(fixture) = super::$backend(test).await else { return };
                let leftovers = fixture.store.leftovers(&fixture.table);
                guarded(leftovers, cases::$case(fixture)).await;
            }
        )*
    };
}

lease_tests!(memory, sqlite, postgres, mysql, redis);

/// A server that is down: a typed error, no panic, no hang.
mod server_down {
    use super::*;
    use fsm_runtime::redis;

    fn assert_connect_error(result: Result<impl std::fmt::Debug, LockError>, backend: &str) {
        match result {
            Err(error @ LockError::Connect { .. }) => {
                assert!(error.is_retryable());
                assert!(error.to_string().contains(backend), "{error}");
            }
            other => panic!("expected LockError::Connect from {backend}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn redis_connect() {
        assert_connect_error(RedisLeases::connect("redis://127.0.0.1:1").await, "Redis");
    }

    #[tokio::test]
    async fn redis_operation() {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let config = redis::aio::ConnectionManagerConfig::new().set_number_of_retries(0);
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
        let leases = RedisLeases::new(conn);
        let error = leases.acquire("down", "a", Duration::from_secs(1), Duration::from_secs(1)).await.unwrap_err();
        assert!(
            matches!(&error, LockError::Backend { backend: "Redis", resource, operation: "acquire", .. } if resource == "down"),
            "{error:?}"
        );
        assert!(error.is_retryable(), "{error:?}");
    }

    #[tokio::test]
    async fn postgres_connect() {
        assert_connect_error(
            SqlLeases::<sqlx::Postgres>::connect("postgres://postgres@127.0.0.1:1/test").await,
            "PostgreSQL",
        );
    }

    #[tokio::test]
    async fn postgres_operation() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .unwrap();
        let error = SqlLeases::new(pool).await.unwrap_err();
        assert!(matches!(error, LockError::Backend { backend: "PostgreSQL", retryable: true, .. }), "{error:?}");
    }

    #[tokio::test]
    async fn mysql_connect() {
        assert_connect_error(SqlLeases::<sqlx::MySql>::connect("mysql://root@127.0.0.1:1/test").await, "MySQL");
    }

    #[tokio::test]
    async fn mysql_operation() {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy("mysql://root@127.0.0.1:1/test")
            .unwrap();
        let error = SqlLeases::new(pool).await.unwrap_err();
        assert!(matches!(error, LockError::Backend { backend: "MySQL", retryable: true, .. }), "{error:?}");
    }
}
