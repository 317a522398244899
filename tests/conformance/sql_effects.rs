//! Effects that run the caller's own SQL in the transition's transaction, on SQLite, PostgreSQL
//! and MySQL/MariaDB: a debit of an `accounts` table that refuses to go below zero.
//!
//! - an applied transition debits once; a replay (by target or by event) debits nothing;
//! - an insufficient balance fails the transition with `Error::Effect` whose source is the
//!   caller's own error, and rolls everything back: state, version, history and balances
//!   (including the debit an earlier effect of the same transition had made);
//! - the effect's connection is the transition's transaction: it sees the moved row, which
//!   another connection does not see until the commit;
//! - an effect whose SQL fails in the database rolls back the same way, and the store keeps
//!   working afterwards;
//! - an effect sees the transition it runs in (`SqlTx::transition`), a keyed operation none.

use fsm_runtime::sql::SqlTx;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::store::EffectFuture;
use fsm_runtime::store::Snapshot;
use fsm_runtime::{Error, Outcome, Store, TransitionRequest};

/// The caller's own error: the account cannot pay.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InsufficientFunds {
    account: i64,
    amount: i64,
}

impl std::fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account {} cannot pay {}", self.account, self.amount)
    }
}

impl std::error::Error for InsufficientFunds {}

/// Creates an accounts table with `balances` (id, balance); its name.
async fn accounts<B: TestBackend>(fx: &Fixture<B, Order>, balances: &[(i64, i64)]) -> String {
    let table = fx.extra_table("accounts");
    fx.exec(format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"), []).await;
    for &(id, balance) in balances {
        fx.exec(
            format!("INSERT INTO {table} (id, balance) VALUES ({}, {})", fx.p(1), fx.p(2)),
            [id.into(), balance.into()],
        )
        .await;
    }
    table
}

/// An account's balance, read outside any transition.
async fn balance<B: TestBackend>(fx: &Fixture<B, Order>, accounts: &str, id: i64) -> i64 {
    fx.fetch_i64(format!("SELECT balance FROM {accounts} WHERE id = {}", fx.p(1)), [id.into()])
        .await
        .expect("the account exists")
}

/// An effect debiting `amount` from `account` on the transition's own connection, counting its
/// runs; it fails with [`InsufficientFunds`] when the guarded `UPDATE` matched no row.
fn debit<B: TestBackend>(
    accounts: &str,
    account: i64,
    amount: i64,
    runs: &Arc<AtomicUsize>,
) -> impl for<'t> FnOnce(&'t mut SqlTx<B>) -> EffectFuture<'t> + Send + 'static {
    let sql = format!(
        "UPDATE {accounts} SET balance = balance - {} WHERE id = {} AND balance - {} >= 0",
        B::param(1),
        B::param(2),
        B::param(3)
    );
    let runs = runs.clone();
    move |conn: &mut SqlTx<B>| -> EffectFuture<'_> {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let updated = B::execute(conn, sql, vec![amount.into(), account.into(), amount.into()]).await?;
            if updated == 0 {
                return Err(InsufficientFunds { account, amount }.into());
            }
            assert_eq!(updated, 1, "the debit matched {updated} accounts");
            Ok(())
        })
    }
}

/// The applied transition debits once; replays, by target and by event, debit nothing and run no
/// effect.
async fn debit_applies_once<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    let accounts = accounts(&fx, &[(1, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    store.create(1).await.unwrap();

    let request = TransitionRequest::to(1, Order::Paid).effect(debit::<B>(&accounts, 1, 30, &runs));
    assert_eq!(
        store.apply(request).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(balance(&fx, &accounts, 1).await, 70);

    // The same request again (a retry, a double click): nothing runs, nothing is debited.
    let replay = TransitionRequest::to(1, Order::Paid).effect(debit::<B>(&accounts, 1, 30, &runs));
    assert_eq!(store.apply(replay).await.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    let replay = TransitionRequest::fire(1, OrderEvent::Pay).effect(debit::<B>(&accounts, 1, 30, &runs));
    assert_eq!(store.apply(replay).await.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    let replay = TransitionRequest::from(1, Order::Created, Order::Paid).effect(debit::<B>(&accounts, 1, 30, &runs));
    assert_eq!(store.apply(replay).await.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a replay must not run its effects");
    assert_eq!(balance(&fx, &accounts, 1).await, 70, "a replay must not debit");

    // A refused transition runs nothing either.
    let illegal = TransitionRequest::to(1, Order::Delivered).effect(debit::<B>(&accounts, 1, 30, &runs));
    assert!(matches!(store.apply(illegal).await.unwrap_err(), Error::InvalidTransition { .. }));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(balance(&fx, &accounts, 1).await, 70);

    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(store.history(1).await.unwrap().len(), 1);
}

/// An insufficient balance: `Error::Effect` with the caller's error as its source, and nothing
/// written: not the state, the version, the history, nor the debit of the effect that ran before
/// the failing one. After a top-up the same request applies and debits once.
async fn insufficient_funds_rolls_back<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    let accounts = accounts(&fx, &[(1, 10), (2, 50)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    store.create(1).await.unwrap();
    store.transition(1, Order::Paid).await.unwrap();

    // Shipping charges account 2 (which can pay) and then account 1 (which cannot).
    let ship = || {
        TransitionRequest::to(1, Order::Shipped)
            .effect(debit::<B>(&accounts, 2, 20, &runs))
            .effect(debit::<B>(&accounts, 1, 30, &runs))
    };
    let error = store.apply(ship()).await.unwrap_err();
    match &error {
        Error::Effect { machine, id, from, to, source } => {
            assert_eq!((*machine, id.to_string(), *from, *to), ("Order", "1".to_owned(), "paid", "shipped"));
            assert_eq!(source.downcast_ref::<InsufficientFunds>(), Some(&InsufficientFunds { account: 1, amount: 30 }));
        }
        other => panic!("{}: expected Error::Effect, got {other:?}", B::LABEL),
    }
    // The same error through the standard error chain.
    let source = std::error::Error::source(&error).expect("Error::Effect has a source");
    assert_eq!(source.downcast_ref::<InsufficientFunds>(), Some(&InsufficientFunds { account: 1, amount: 30 }));
    assert!(error.to_string().contains("account 1 cannot pay 30"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(runs.load(Ordering::SeqCst), 2, "both effects ran");

    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(fx.raw_row(&fx.table, 1).await, Some(("paid".to_owned(), 1)));
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1);
    assert_eq!(balance(&fx, &accounts, 1).await, 10, "the failing debit wrote nothing");
    assert_eq!(balance(&fx, &accounts, 2).await, 50, "the first effect's debit was rolled back");

    // By event: the same failure, the same nothing.
    let fire = TransitionRequest::fire(1, OrderEvent::Ship).effect(debit::<B>(&accounts, 1, 30, &runs));
    let error = store.apply(fire).await.unwrap_err();
    assert!(
        matches!(&error, Error::Effect { from: "paid", to: "shipped", source, .. } if source.is::<InsufficientFunds>()),
        "{error:?}"
    );
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1);

    // Top up account 1: the same request now applies, each debit once.
    fx.exec(format!("UPDATE {accounts} SET balance = 100 WHERE id = 1"), []).await;
    assert_eq!(
        store.apply(ship()).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }
    );
    assert_eq!((balance(&fx, &accounts, 1).await, balance(&fx, &accounts, 2).await), (70, 30));
    assert_eq!(store.apply(ship()).await.unwrap(), Outcome::AlreadyApplied { state: Order::Shipped, version: 2 });
    assert_eq!((balance(&fx, &accounts, 1).await, balance(&fx, &accounts, 2).await), (70, 30));
    let history = store.history(1).await.unwrap();
    assert_eq!(
        history.iter().map(|h| (h.version, h.from, h.to)).collect::<Vec<_>>(),
        [(1, Order::Created, Order::Paid), (2, Order::Paid, Order::Shipped)]
    );
}

/// The effect's connection is inside the transition's transaction: it sees the row already moved
/// and its own debit, while another connection still sees neither until the commit.
async fn effect_sees_its_own_transaction<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    let accounts = accounts(&fx, &[(1, 100)]).await;
    store.create(1).await.unwrap();
    let pool = fx.pool().clone();
    let (table, accounts_in) = (fx.table.clone(), accounts.clone());
    let seen = Arc::new(Mutex::new(None));
    let seen_in = seen.clone();
    let request = TransitionRequest::to(1, Order::Paid).effect(move |conn: &mut SqlTx<B>| -> EffectFuture<'_> {
        Box::pin(async move {
            let read_row = format!("SELECT state, version FROM {table} WHERE id = {}", B::param(1));
            let debit = format!("UPDATE {accounts_in} SET balance = balance - 30 WHERE id = {}", B::param(1));
            let read_balance = format!("SELECT balance FROM {accounts_in} WHERE id = {}", B::param(1));
            B::execute(conn, debit, vec![Arg::I64(1)]).await?;
            let inside = (
                B::fetch_text_i64(conn, read_row.clone(), vec![Arg::I64(1)]).await?,
                B::fetch_i64(conn, read_balance.clone(), vec![Arg::I64(1)]).await?,
            );
            let mut other = pool.acquire().await?;
            let outside = (
                B::fetch_text_i64(&mut other, read_row, vec![Arg::I64(1)]).await?,
                B::fetch_i64(&mut other, read_balance, vec![Arg::I64(1)]).await?,
            );
            *seen_in.lock().expect("seen") = Some((inside, outside));
            Ok(())
        })
    });
    assert!(store.apply(request).await.unwrap().is_applied());
    let (inside, outside) = seen.lock().expect("seen").take().expect("the effect ran");
    assert_eq!(
        inside,
        (Some(("paid".to_owned(), 1)), Some(70)),
        "{}: the effect's connection sees the transition",
        B::LABEL
    );
    assert_eq!(outside, (Some(("created".to_owned(), 0)), Some(100)), "{}: uncommitted work leaked", B::LABEL);
    assert_eq!(fx.raw_row(&fx.table, 1).await, Some(("paid".to_owned(), 1)));
    assert_eq!(balance(&fx, &accounts, 1).await, 70);
}

/// An effect whose own SQL fails in the database (a duplicate key) rolls the transition back with
/// the driver's error as the source; the store and its pool keep working afterwards.
async fn effect_sql_error_rolls_back<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    let accounts = accounts(&fx, &[(1, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    store.create(1).await.unwrap();
    for _ in 0..3 {
        let insert = format!("INSERT INTO {accounts} (id, balance) VALUES ({}, {})", B::param(1), B::param(2));
        let request = TransitionRequest::to(1, Order::Paid).effect(debit::<B>(&accounts, 1, 30, &runs)).effect(
            move |conn: &mut SqlTx<B>| -> EffectFuture<'_> {
                Box::pin(async move {
                    B::execute(conn, insert, vec![Arg::I64(1), Arg::I64(5)]).await?;
                    Ok(())
                })
            },
        );
        let error = store.apply(request).await.unwrap_err();
        match &error {
            Error::Effect { from: "created", to: "paid", source, .. } => {
                let sqlx_error = source.downcast_ref::<fsm_runtime::sqlx::Error>().expect("the driver's error");
                assert!(
                    matches!(sqlx_error, fsm_runtime::sqlx::Error::Database(db) if db.is_unique_violation()),
                    "{sqlx_error:?}"
                );
            }
            other => panic!("{}: expected Error::Effect, got {other:?}", B::LABEL),
        }
        assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
        assert_eq!(fx.history_rows(&fx.table, "1").await, 0);
        assert_eq!(balance(&fx, &accounts, 1).await, 100);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let request = TransitionRequest::to(1, Order::Paid).effect(debit::<B>(&accounts, 1, 30, &runs));
    assert!(store.apply(request).await.unwrap().is_applied());
    assert_eq!(balance(&fx, &accounts, 1).await, 70);
    assert_eq!(store.history(1).await.unwrap().len(), 1);
}

/// An effect that updates two accounts in the opposite order of a concurrent one.
fn cross_debit<B: TestBackend>(
    accounts: &str,
    first: i64,
    second: i64,
    both_locked_one: Arc<tokio::sync::Barrier>,
) -> impl for<'t> FnOnce(&'t mut SqlTx<B>) -> EffectFuture<'t> + Send + 'static {
    let sql = format!("UPDATE {accounts} SET balance = balance - 1 WHERE id = {}", B::param(1));
    move |conn: &mut SqlTx<B>| -> EffectFuture<'_> {
        Box::pin(async move {
            B::execute(conn, sql.clone(), vec![first.into()]).await?;
            both_locked_one.wait().await;
            B::execute(conn, sql, vec![second.into()]).await?;
            Ok(())
        })
    }
}

/// Two transitions whose effects lock two accounts in opposite orders: the database picks one
/// as a deadlock victim. Its `Error::Effect` says a retry is safe (`is_retryable`), nothing of
/// it stays (state, version, history, debit), and the retry applies. SQLite has one writer at a
/// time, so its effects cannot interleave: the case runs on PostgreSQL and MySQL/MariaDB.
async fn deadlocked_effect_is_retryable<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    if B::LABEL == "SQLite" {
        return;
    }
    let accounts = accounts(&fx, &[(1, 100), (2, 100)]).await;
    fx.store.create(1).await.unwrap();
    fx.store.create(2).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (one, two) = (fx.clone(), fx.clone());
    let (a, b) = (cross_debit::<B>(&accounts, 1, 2, barrier.clone()), cross_debit::<B>(&accounts, 2, 1, barrier));
    let first = tokio::spawn(async move { one.store.apply(TransitionRequest::to(1, Order::Paid).effect(a)).await });
    let second = tokio::spawn(async move { two.store.apply(TransitionRequest::to(2, Order::Paid).effect(b)).await });
    let results = [first.await.unwrap(), second.await.unwrap()];
    let applied = results.iter().filter(|r| matches!(r, Ok(o) if o.is_applied())).count();
    let victims: Vec<_> = results.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e))).collect();
    assert_eq!((applied, victims.len()), (1, 1), "{}: {results:?}", B::LABEL);
    let (index, error) = victims[0];
    assert!(matches!(error, Error::Effect { .. }), "{}: {error:?}", B::LABEL);
    assert!(error.is_retryable(), "{}: a deadlock victim must be retryable: {error:?}", B::LABEL);
    let victim = i64::try_from(index).unwrap() + 1;
    assert_eq!(fx.store.get(victim).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert_eq!(fx.history_rows(&fx.table, &victim.to_string()).await, 0);
    // Only the winner's two debits stay.
    assert_eq!(balance(&fx, &accounts, 1).await + balance(&fx, &accounts, 2).await, 198);
    // The retry applies (no concurrent effect now: the barrier is passed by one task alone).
    let alone = Arc::new(tokio::sync::Barrier::new(1));
    let retry = TransitionRequest::to(victim, Order::Paid).effect(cross_debit::<B>(&accounts, 1, 2, alone));
    assert!(fx.store.apply(retry).await.unwrap().is_applied());
    assert_eq!(balance(&fx, &accounts, 1).await + balance(&fx, &accounts, 2).await, 196);
}

/// An SQL effect sees the transition it runs in, as a memory effect does: the machine, the
/// entity, the states it leaves and reaches, and the version it produces; a keyed operation
/// runs in no transition. Both go through the outbox of the same `SqlTx`.
async fn effect_sees_its_transition<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    use fsm_runtime::Keys as _;
    use fsm_runtime::outbox::{Outbox as _, OutboxMessage};
    use fsm_runtime::store::{EntityId, Transition};

    let store = &fx.store;
    store.create(7).await.unwrap();
    let seen: Arc<Mutex<Option<Transition>>> = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let topic = fx.table.clone();
    let pay = TransitionRequest::fire(7, OrderEvent::Pay).effect(move |tx: &mut SqlTx<B>| -> EffectFuture<'_> {
        Box::pin(async move {
            *record.lock().expect("seen") = tx.transition().cloned();
            tx.enqueue(OutboxMessage::new(topic, serde_json::json!({ "order": 7 }))).await?;
            Ok(())
        })
    });
    assert!(store.apply(pay).await.unwrap().is_applied());
    let expected = Transition { machine: "Order", id: EntityId::Int(7), from: "created", to: "paid", version: 1 };
    assert_eq!(seen.lock().expect("seen").clone(), Some(expected));

    let count = format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {}", B::param(1));
    assert_eq!(fx.fetch_i64(count, [Arg::from(fx.table.clone())]).await, Some(1), "the effect's message");

    // The fixture's cleanup removes the keys of source `table` and the messages of topic `table`.
    let key = fsm_runtime::IdempotencyKey::new(fx.table.clone(), 1).unwrap();
    let fingerprint = fsm_runtime::Fingerprint::new("op").unwrap();
    let in_transition = store
        .keys()
        .run_once(key, fingerprint, |tx: &mut SqlTx<B>| Box::pin(async move { Ok(tx.transition().is_some()) }))
        .await
        .unwrap();
    assert_eq!(in_transition, fsm_runtime::Once::Ran(false));
}

crate::fixture::sql::per_backend!(
    deadlocked_effect_is_retryable,
    effect_sees_its_transition,
    debit_applies_once,
    insufficient_funds_rolls_back,
    effect_sees_its_own_transaction,
    effect_sql_error_rolls_back,
);
