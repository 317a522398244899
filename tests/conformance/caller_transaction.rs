//! Transitions inside the caller's transaction (`SqlStore::begin`, `SqlStore::within`), on
//! SQLite, PostgreSQL and MySQL/MariaDB: an order (the fixture's table) and its payment (a
//! second machine on a second table, a second store on the same pool) and the caller's own
//! `receipts` row.
//!
//! - both transitions and the caller's row commit together; nothing shows before the commit;
//! - a refused second transition (`InvalidTransition`, `NotFound`) or a failing effect, then the
//!   caller's rollback: both unmoved, no history, no key, no outbox message;
//! - the caller's rollback (or drop) after an `Applied` persists nothing, and the same keyed
//!   request then applies;
//! - the outcome table inside the transaction: `AlreadyApplied`, `Replayed` (a key committed
//!   earlier, or stored by the same transaction), `IdempotencyKeyReused`; a refused request,
//!   including one whose statement failed on a stored key (PostgreSQL's aborted-transaction
//!   trap), leaves the transaction usable;
//! - a keyed request whose key another uncommitted transaction holds waits for it, then answers
//!   `Replayed` (the holder committed) or applies (the holder rolled back);
//! - a transaction whose snapshot is older than the row (REPEATABLE READ via `SqlTx::begin`)
//!   gets `AlreadyApplied` or a retryable error, never a loop or a wrong `Applied`;
//! - a request dropped halfway (a timeout around it) makes the commit fail and persist nothing.
//!
//! Keys use the fixture's table as their source and messages as their topic, so the fixture
//! removes them.

use std::sync::Arc;
use std::time::Duration;

use crate::fixture::backends::{create_table_sql, mapping_for};
use crate::fixture::machines::{Order, OrderEvent, Payment, PaymentEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::outbox::{Outbox as _, OutboxMessage};
use fsm_runtime::sql::SqlTx;
use fsm_runtime::store::{CreateOutcome, EffectFuture, NewEntity, Snapshot, SqlStore};
use fsm_runtime::{Error, Fingerprint, IdempotencyKey, Outcome, Store, TransitionRequest};

/// The second machine's store (payments) on the fixture's pool, and the caller's `receipts`
/// table; both tables are dropped when the test ends.
struct World<B: TestBackend> {
    payments: SqlStore<Payment, B>,
    payments_table: String,
    receipts: String,
}

async fn world<B: TestBackend>(fx: &Fixture<B, Order>) -> World<B> {
    let payments_table = fx.extra_table("payments");
    fx.exec(create_table_sql(&payments_table), []).await;
    let receipts = fx.extra_table("receipts");
    fx.exec(format!("CREATE TABLE {receipts} (order_id BIGINT NOT NULL)"), []).await;
    let payments = SqlStore::<Payment, B>::with_mapping(fx.pool().clone(), mapping_for::<Payment>(&payments_table))
        .await
        .expect("build the payments store");
    World { payments, payments_table, receipts }
}

/// The caller's own statement in its transaction: a receipt for `order`.
async fn insert_receipt<B: TestBackend>(tx: &mut SqlTx<B>, receipts: &str, order: i64) {
    let sql = format!("INSERT INTO {receipts} (order_id) VALUES ({})", B::param(1));
    B::execute(&mut **tx, sql, vec![order.into()]).await.expect("the caller's statement runs in its transaction");
}

async fn count<B: TestBackend>(fx: &Fixture<B, Order>, sql: String, arg: &str) -> i64 {
    fx.fetch_i64(sql, [Arg::from(arg)]).await.unwrap_or(0)
}

async fn receipts<B: TestBackend>(fx: &Fixture<B, Order>, table: &str) -> i64 {
    fx.fetch_i64(format!("SELECT COUNT(*) FROM {table}"), []).await.unwrap_or(0)
}

async fn stored_keys<B: TestBackend>(fx: &Fixture<B, Order>) -> i64 {
    count(fx, format!("SELECT COUNT(*) FROM fsm_idempotency_keys WHERE source = {}", B::param(1)), &fx.table).await
}

async fn messages<B: TestBackend>(fx: &Fixture<B, Order>) -> i64 {
    count(fx, format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {}", B::param(1)), &fx.table).await
}

/// A keyed `Pay` of `order` whose effect enqueues a message (topic: the fixture's table).
fn keyed_pay<'a, B: TestBackend>(
    fx: &Fixture<B, Order>,
    order: i64,
    seq: i64,
) -> TransitionRequest<'a, Order, SqlTx<B>> {
    let key = IdempotencyKey::new(fx.table.clone(), seq).expect("a valid key");
    let fingerprint = Fingerprint::of(&("pay", order)).expect("a fingerprint");
    let topic = fx.table.clone();
    TransitionRequest::fire(order, OrderEvent::Pay).idempotency_key(key, fingerprint).effect(
        move |tx: &mut SqlTx<B>| -> EffectFuture<'_> {
            Box::pin(async move {
                tx.enqueue(OutboxMessage::new(topic, serde_json::json!({ "order": order }))).await?;
                Ok(())
            })
        },
    )
}

/// A keyed `Pay` of `order` without effects (on PostgreSQL one statement, which fails on a
/// stored key).
fn keyed_pay_plain<'a, B: TestBackend>(
    fx: &Fixture<B, Order>,
    order: i64,
    seq: i64,
) -> TransitionRequest<'a, Order, SqlTx<B>> {
    let key = IdempotencyKey::new(fx.table.clone(), seq).expect("a valid key");
    let fingerprint = Fingerprint::of(&("pay", order)).expect("a fingerprint");
    TransitionRequest::fire(order, OrderEvent::Pay).idempotency_key(key, fingerprint)
}

/// Nothing of the transaction was persisted: order 1 and payment 1 as created, no history, no
/// key, no message, no receipt.
async fn nothing_persisted<B: TestBackend>(fx: &Fixture<B, Order>, w: &World<B>) {
    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 }, "{}", B::LABEL);
    assert_eq!(w.payments.get(1).await.unwrap(), Snapshot { state: Payment::Authorized, version: 0 });
    assert_eq!(fx.history_rows(&fx.table, "1").await, 0, "{}: order history", B::LABEL);
    assert_eq!(fx.history_rows(&w.payments_table, "1").await, 0, "{}: payment history", B::LABEL);
    assert_eq!(stored_keys(fx).await, 0, "{}: keys", B::LABEL);
    assert_eq!(messages(fx).await, 0, "{}: outbox", B::LABEL);
    assert_eq!(receipts(fx, &w.receipts).await, 0, "{}: receipts", B::LABEL);
}

/// The order and its payment move in one transaction with the caller's receipt; another
/// connection sees none of it before the commit, all of it after.
async fn order_and_payment_commit_together<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let w = world(&fx).await;
    fx.store.create(1).await.unwrap();
    w.payments.create(1).await.unwrap();

    let mut tx = fx.store.begin().await.unwrap();
    assert!(fx.store.within(&mut tx).apply(keyed_pay(&fx, 1, 1)).await.unwrap().is_applied());
    assert!(w.payments.within(&mut tx).fire(1, PaymentEvent::Capture).await.unwrap().is_applied());
    insert_receipt(&mut tx, &w.receipts, 1).await;
    let second = w.payments.within(&mut tx).create_with(NewEntity::new(2).state(Payment::Authorized)).await;
    assert_eq!(second.unwrap(), CreateOutcome::Created { state: Payment::Authorized });
    assert_eq!(fx.store.within(&mut tx).get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    // Not committed yet: another connection sees the old rows.
    assert_eq!(fx.raw_row(&w.payments_table, 2).await, None, "{}: the created payment is not committed", B::LABEL);
    assert_eq!(fx.raw_row(&fx.table, 1).await, Some(("created".to_owned(), 0)), "{}", B::LABEL);
    assert_eq!(stored_keys(&fx).await, 0, "{}: the key is not committed yet", B::LABEL);
    tx.commit().await.unwrap();

    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(w.payments.get(1).await.unwrap(), Snapshot { state: Payment::Captured, version: 1 });
    assert_eq!(w.payments.get(2).await.unwrap(), Snapshot { state: Payment::Authorized, version: 0 });
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1, "{}: order history == version", B::LABEL);
    assert_eq!(fx.history_rows(&w.payments_table, "1").await, 1, "{}: payment history == version", B::LABEL);
    assert_eq!(stored_keys(&fx).await, 1);
    assert_eq!(messages(&fx).await, 1);
    assert_eq!(receipts(&fx, &w.receipts).await, 1);
}

/// The order applied, then the payment's transition is refused or its effect fails; the caller
/// rolls back: nothing of either is persisted.
async fn failure_in_the_second_leaves_both_unmoved<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let w = world(&fx).await;
    fx.store.create(1).await.unwrap();
    w.payments.create(1).await.unwrap();
    let failing_effect = TransitionRequest::fire(1, PaymentEvent::Capture)
        .effect(|_: &mut SqlTx<B>| -> EffectFuture<'_> { Box::pin(async { Err("the card was declined".into()) }) });
    let seconds: [(&str, TransitionRequest<'_, Payment, SqlTx<B>>); 3] = [
        ("invalid", TransitionRequest::to(1, Payment::Refunded)),
        ("not found", TransitionRequest::fire(2, PaymentEvent::Capture)),
        ("failing effect", failing_effect),
    ];
    for (what, second) in seconds {
        let mut tx = fx.store.begin().await.unwrap();
        assert!(fx.store.within(&mut tx).apply(keyed_pay(&fx, 1, 1)).await.unwrap().is_applied());
        insert_receipt(&mut tx, &w.receipts, 1).await;
        let failed = w.payments.within(&mut tx).apply(second).await;
        match (what, &failed) {
            ("invalid", Err(Error::InvalidTransition { .. }))
            | ("not found", Err(Error::NotFound { .. }))
            | ("failing effect", Err(Error::Effect { .. })) => {}
            _ => panic!("{}: {what}: {failed:?}", B::LABEL),
        }
        // The transaction is still usable after the refusal, and sees the order moved.
        assert_eq!(fx.store.within(&mut tx).get(1).await.unwrap().state, Order::Paid, "{}: {what}", B::LABEL);
        tx.rollback().await.unwrap();
        nothing_persisted(&fx, &w).await;
    }
}

/// The caller rolls back (or drops the transaction) after an `Applied` with a key and an
/// outbox message: nothing persisted, and the same keyed request applies afterwards.
async fn rollback_after_applied_persists_nothing<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let w = world(&fx).await;
    fx.store.create(1).await.unwrap();
    w.payments.create(1).await.unwrap();

    let mut tx = fx.store.begin().await.unwrap();
    assert!(fx.store.within(&mut tx).apply(keyed_pay(&fx, 1, 1)).await.unwrap().is_applied());
    assert!(w.payments.within(&mut tx).fire(1, PaymentEvent::Capture).await.unwrap().is_applied());
    let created = w.payments.within(&mut tx).create_with(NewEntity::new(3)).await.unwrap();
    assert_eq!(created, CreateOutcome::Created { state: Payment::Authorized });
    tx.rollback().await.unwrap();
    nothing_persisted(&fx, &w).await;
    assert_eq!(fx.raw_row(&w.payments_table, 3).await, None, "{}: the create rolled back", B::LABEL);

    let mut dropped = SqlTx::begin(fx.pool()).await.unwrap();
    assert!(fx.store.within(&mut dropped).apply(keyed_pay(&fx, 1, 1)).await.unwrap().is_applied());
    drop(dropped);
    nothing_persisted(&fx, &w).await;

    // The key was never stored: the same request applies now, once.
    assert!(fx.store.apply(keyed_pay(&fx, 1, 1)).await.unwrap().is_applied());
    assert_eq!((stored_keys(&fx).await, messages(&fx).await), (1, 1));
}

/// The outcome table inside the transaction, and a transaction that stays usable after each
/// refusal (on PostgreSQL, a failed statement outside a savepoint would abort it).
async fn outcome_table_inside<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let w = world(&fx).await;
    for id in 1..=3 {
        fx.store.create(id).await.unwrap();
    }
    // Key 1 applied to order 1 and committed, outside any transaction of the caller's.
    assert!(fx.store.apply(keyed_pay(&fx, 1, 1)).await.unwrap().is_applied());

    let mut tx = fx.store.begin().await.unwrap();
    let mut orders = fx.store.within(&mut tx);
    assert!(matches!(orders.apply(keyed_pay(&fx, 1, 1)).await, Ok(Outcome::Replayed { version: 1, .. })));
    assert!(matches!(orders.fire(1, OrderEvent::Pay).await, Ok(Outcome::AlreadyApplied { version: 1, .. })));
    // Key 1 again for order 2: its keyed statement moves order 2 and fails on the stored key
    // (a unique violation on PostgreSQL), which names another entity: reused.
    let reused = orders.apply(keyed_pay_plain(&fx, 2, 1)).await;
    assert!(matches!(reused, Err(Error::IdempotencyKeyReused { .. })), "{}: {reused:?}", B::LABEL);
    assert!(matches!(orders.transition(1, Order::Delivered).await, Err(Error::InvalidTransition { .. })));
    assert!(matches!(orders.fire(9, OrderEvent::Pay).await, Err(Error::NotFound { .. })));
    let stale = orders.transition_from(3, Order::Paid, Order::Shipped).await;
    assert!(matches!(stale, Err(Error::Conflict { .. })), "{}: {stale:?}", B::LABEL);
    // A key stored by this transaction replays inside it.
    assert!(orders.apply(keyed_pay(&fx, 3, 2)).await.unwrap().is_applied());
    assert!(matches!(orders.apply(keyed_pay(&fx, 3, 2)).await, Ok(Outcome::Replayed { version: 1, .. })));
    // After every refusal the transaction takes the caller's statements and more transitions.
    assert_eq!(orders.get(2).await.unwrap(), Snapshot { state: Order::Created, version: 0 }, "{}", B::LABEL);
    assert!(orders.transition(2, Order::Cancelled).await.unwrap().is_applied());
    insert_receipt(&mut tx, &w.receipts, 2).await;
    tx.commit().await.unwrap();

    assert_eq!(fx.store.get(2).await.unwrap(), Snapshot { state: Order::Cancelled, version: 1 });
    assert_eq!(fx.store.get(3).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(fx.history_rows(&fx.table, "2").await, 1, "{}", B::LABEL);
    assert_eq!((stored_keys(&fx).await, messages(&fx).await, receipts(&fx, &w.receipts).await), (2, 2, 1));
}

/// A keyed request whose key (and row) another uncommitted transaction holds waits for it:
/// `Replayed` once the holder commits; applied by itself once the holder rolls back.
async fn key_held_by_another_transaction<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    for (order, holder_commits) in [(1, false), (2, true)] {
        fx.store.create(order).await.unwrap();
        let mut holder = fx.store.begin().await.unwrap();
        assert!(fx.store.within(&mut holder).apply(keyed_pay(&fx, order, order)).await.unwrap().is_applied());
        let waiter = {
            let fx = fx.clone();
            tokio::spawn(async move {
                let mut tx = fx.store.begin().await.map_err(|e| e.to_string())?;
                let outcome = fx.store.within(&mut tx).apply(keyed_pay(&fx, order, order)).await;
                tx.commit().await.map_err(|e| e.to_string())?;
                outcome.map_err(|e| e.to_string())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "{}: the waiter waits for the key's holder", B::LABEL);
        if holder_commits {
            holder.commit().await.unwrap();
        } else {
            holder.rollback().await.unwrap();
        }
        let outcome = waiter.await.expect("the waiter");
        match (holder_commits, &outcome) {
            (true, Ok(Outcome::Replayed { version: 1, .. })) | (false, Ok(Outcome::Applied { version: 1, .. })) => {}
            _ => panic!("{}: holder commits: {holder_commits}: {outcome:?}", B::LABEL),
        }
    }
    for order in [1, 2] {
        assert_eq!(fx.store.get(order).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
        assert_eq!(fx.history_rows(&fx.table, &order.to_string()).await, 1, "{}", B::LABEL);
    }
    assert_eq!((stored_keys(&fx).await, messages(&fx).await), (2, 2));
}

/// A transaction that read the row before another one moved it (REPEATABLE READ on MySQL
/// through `SqlTx::begin`, a WAL snapshot on SQLite): `AlreadyApplied` where the database reads
/// the latest row (PostgreSQL), else a retryable error; never a second `Applied`.
async fn stale_snapshot_is_retryable<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    fx.store.create(1).await.unwrap();
    let mut tx = SqlTx::begin(fx.pool()).await.unwrap();
    assert_eq!(fx.store.within(&mut tx).get(1).await.unwrap().state, Order::Created);
    assert!(fx.store.fire(1, OrderEvent::Pay).await.unwrap().is_applied());
    let outcome = tokio::time::timeout(Duration::from_secs(20), fx.store.within(&mut tx).fire(1, OrderEvent::Pay))
        .await
        .expect("no endless retry on an old snapshot");
    match &outcome {
        Ok(Outcome::AlreadyApplied { version: 1, .. }) => {}
        Err(error) if error.is_retryable() => {}
        _ => panic!("{}: {outcome:?}", B::LABEL),
    }
    tx.rollback().await.unwrap();
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1, "{}", B::LABEL);
}

/// A request dropped halfway (its effect never ends; a timeout gives up on it): the commit
/// fails, and nothing of the transaction is persisted.
async fn interrupted_request_fails_the_commit<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let w = world(&fx).await;
    fx.store.create(1).await.unwrap();
    w.payments.create(1).await.unwrap();
    let mut tx = fx.store.begin().await.unwrap();
    insert_receipt(&mut tx, &w.receipts, 1).await;
    assert!(w.payments.within(&mut tx).fire(1, PaymentEvent::Capture).await.unwrap().is_applied());
    let hangs = TransitionRequest::fire(1, OrderEvent::Pay)
        .effect(|_: &mut SqlTx<B>| -> EffectFuture<'_> { Box::pin(std::future::pending()) });
    let gave_up = tokio::time::timeout(Duration::from_millis(200), fx.store.within(&mut tx).apply(hangs)).await;
    assert!(gave_up.is_err(), "{}: the effect never ends", B::LABEL);
    let committed = tx.commit().await;
    assert!(committed.is_err(), "{}: an interrupted transaction does not commit: {committed:?}", B::LABEL);
    nothing_persisted(&fx, &w).await;
}

/// A batch inside the caller's transaction (`Within::apply_many`): one answer per request, a
/// refused request (a stored key with another fingerprint, which fails PostgreSQL's batch
/// statement) and a failing effect leave the transaction usable; the caller's commit persists
/// the applied requests together, and its rollback (all or nothing) persists none.
async fn batch_inside<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let w = world(&fx).await;
    for id in 1..=4 {
        fx.store.create(id).await.unwrap();
    }
    w.payments.create(1).await.unwrap();
    let earlier = fx.store.apply(keyed_pay(&fx, 4, 40)).await.unwrap();
    assert!(earlier.is_applied());
    let batch = |fx: &Arc<Fixture<B, Order>>| {
        let reused = IdempotencyKey::new(fx.table.clone(), 40).expect("a valid key");
        let other = Fingerprint::of(&("pay", 3)).expect("a fingerprint");
        vec![
            TransitionRequest::to(1, Order::Paid),
            TransitionRequest::to(2, Order::Paid),
            TransitionRequest::to(3, Order::Paid).idempotency_key(reused, other),
            TransitionRequest::to(2, Order::Shipped)
                .effect(|_: &mut SqlTx<B>| -> EffectFuture<'_> { Box::pin(async { Err("no courier".into()) }) }),
            TransitionRequest::to(99, Order::Paid),
        ]
    };
    // All or nothing: an error among the answers, so the caller rolls back.
    let mut tx = fx.store.begin().await.unwrap();
    let answers = fx.store.within(&mut tx).apply_many(batch(&fx)).await;
    assert!(answers[0].as_ref().is_ok_and(Outcome::is_applied), "{}: {answers:?}", B::LABEL);
    assert!(answers[1].as_ref().is_ok_and(Outcome::is_applied), "{}: {answers:?}", B::LABEL);
    assert!(matches!(answers[2], Err(Error::IdempotencyKeyReused { .. })), "{}: {answers:?}", B::LABEL);
    assert!(matches!(answers[3], Err(Error::Effect { .. })), "{}: {answers:?}", B::LABEL);
    assert!(matches!(answers[4], Err(Error::NotFound { .. })), "{}: {answers:?}", B::LABEL);
    // The transaction is usable after the refusals: the caller's own row goes in it.
    insert_receipt(&mut tx, &w.receipts, 1).await;
    assert_eq!(fx.raw_row(&fx.table, 1).await, Some(("created".to_owned(), 0)), "{}: not committed", B::LABEL);
    tx.rollback().await.unwrap();
    for id in 1..=3 {
        assert_eq!(fx.store.get(id).await.unwrap(), Snapshot { state: Order::Created, version: 0 }, "{}", B::LABEL);
        assert_eq!(fx.history_rows(&fx.table, &id.to_string()).await, 0, "{}: history of {id}", B::LABEL);
    }
    assert_eq!(receipts(&fx, &w.receipts).await, 0, "{}", B::LABEL);
    // The same batch, committed: what applied is persisted together.
    let mut tx = fx.store.begin().await.unwrap();
    let answers = fx.store.within(&mut tx).apply_many(batch(&fx)).await;
    assert_eq!(answers.iter().filter(|answer| answer.is_ok()).count(), 2, "{}: {answers:?}", B::LABEL);
    tx.commit().await.unwrap();
    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(fx.store.get(2).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(fx.store.get(3).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert_eq!(fx.history_rows(&fx.table, "2").await, 1, "{}: history == version", B::LABEL);
}

crate::fixture::sql::per_backend!(
    batch_inside,
    order_and_payment_commit_together,
    failure_in_the_second_leaves_both_unmoved,
    rollback_after_applied_persists_nothing,
    outcome_table_inside,
    key_held_by_another_transaction,
    stale_snapshot_is_retryable,
    interrupted_request_fails_the_commit,
);
