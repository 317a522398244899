//! A store with a bounded lock wait (`SqlStore::lock_wait`) on SQLite, PostgreSQL and
//! MySQL/MariaDB: a request that meets a lock another request holds (the entity's row under a
//! lock, an idempotency key whose first request has not committed) fails with
//! `Error::LockTimeout`, retryable, having written nothing; once the holder is done the same
//! request goes through (`Replayed` for the key). A store without a bound waits for the holder.

use std::sync::Arc;
use std::time::Duration;

use crate::fixture::machines::Order;
use crate::fixture::sql::{Fixture, TestBackend};
use fsm_runtime::store::{LockedEntity as _, Snapshot};
use fsm_runtime::{Error, Fingerprint, IdempotencyKey, Outcome, Store, TransitionRequest};

/// Far longer than any bound of these tests: a request still waiting then was not bounded.
const GENEROUS: Duration = Duration::from_secs(30);

/// The row of entity 1 locked by another request: the bounded store gives up with
/// `LockTimeout`, writes nothing, and applies once the lock is gone.
async fn held_row_times_out<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    fx.store.create(1).await.unwrap();
    let bounded = fx.store.clone().lock_wait(Duration::from_millis(200));
    let locked = fx.store.lock(1).await.unwrap();
    let refused = tokio::time::timeout(GENEROUS, bounded.transition(1, Order::Paid)).await.expect("bounded");
    match &refused {
        Err(error @ Error::LockTimeout { waited, .. }) => {
            assert_eq!(*waited, Duration::from_millis(200));
            assert!(error.is_retryable());
        }
        other => panic!("{}: expected LockTimeout, got {other:?}", B::LABEL),
    }
    locked.commit().await.unwrap();
    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert!(bounded.transition(1, Order::Paid).await.unwrap().is_applied(), "{}", B::LABEL);
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1);
    // The connections of the bounded requests went back with the database's default: an
    // unbounded request now waits for a lock instead of failing.
    let locked = fx.store.lock(1).await.unwrap();
    let waiting = tokio::spawn({
        let store = fx.store.clone();
        async move { store.transition(1, Order::Shipped).await }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    locked.commit().await.unwrap();
    assert!(waiting.await.unwrap().unwrap().is_applied(), "{}: the unbounded request waited", B::LABEL);
}

/// An idempotency key whose first request is inside an uncommitted transaction: a second
/// request with the key gives up with `LockTimeout`; after the commit it is a replay.
async fn key_in_flight_times_out<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    fx.store.create(1).await.unwrap();
    let key = IdempotencyKey::scoped(&fx.table, "pay-1").unwrap();
    let request =
        || TransitionRequest::to(1, Order::Paid).idempotency_key(key.clone(), Fingerprint::of_bytes(b"pay 1"));
    let mut tx = fx.store.begin().await.unwrap();
    assert!(fx.store.within(&mut tx).apply(request()).await.unwrap().is_applied());
    let bounded = fx.store.clone().lock_wait(Duration::from_millis(200));
    let refused = tokio::time::timeout(GENEROUS, bounded.apply(request())).await.expect("bounded");
    assert!(matches!(refused, Err(Error::LockTimeout { .. })), "{}: {refused:?}", B::LABEL);
    tx.commit().await.unwrap();
    let replayed = bounded.apply(request()).await.unwrap();
    assert_eq!(replayed, Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 }, "{}", B::LABEL);
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1);
}

crate::fixture::sql::per_backend!(held_row_times_out, key_in_flight_times_out);

/// PostgreSQL undoes a `SET` made inside a transaction that rolls back: a bounded request whose
/// effect failed (its transaction still open) must not give its connection back to the pool
/// with the bound on. On a pool of one connection, the setting after such a request is the
/// one of before.
#[tokio::test]
async fn postgres_failed_effect_leaves_no_bound_on_the_pool() {
    use crate::fixture::backends::{self, RawAccess as _};
    use fsm_runtime::store::EffectFuture;
    use fsm_runtime::{PostgresStore, sql::SqlTx, sqlx};

    let Some((store, table)) = backends::postgres_store::<Order>("lock_wait_effect").await else {
        return;
    };
    let _leftovers = store.leftovers(&table);
    let options = (*store.pool().connect_options()).clone();
    let one = sqlx::pool::PoolOptions::<sqlx::Postgres>::new().max_connections(1).connect_with(options).await.unwrap();
    let bounded = PostgresStore::<Order>::with_mapping(one.clone(), store.mapping().clone())
        .await
        .unwrap()
        .lock_wait(Duration::from_millis(150));
    let setting = || async { sqlx::query_scalar::<_, String>("SHOW lock_timeout").fetch_one(&one).await.unwrap() };
    let before = setting().await;
    bounded.create(1).await.unwrap();
    let failing = TransitionRequest::to(1, Order::Paid)
        .effect(|_: &mut SqlTx<sqlx::Postgres>| -> EffectFuture<'_> { Box::pin(async { Err("declined".into()) }) });
    assert!(matches!(bounded.apply(failing).await, Err(Error::Effect { .. })));
    assert_eq!(setting().await, before, "the bound stayed on a pooled connection");
    assert!(bounded.transition(1, Order::Paid).await.unwrap().is_applied());
    assert_eq!(setting().await, before);
    store.cleanup(&table).await;
}
