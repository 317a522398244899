//! Keyed operations and keyed transitions on a `wallets` table, on SQLite, PostgreSQL and
//! MySQL/MariaDB: the work is the caller's own SQL, run by `Store::run_once` (a top-up, which is
//! not a transition) or by the effect of a keyed transition (a capture that debits).
//!
//! - 64 tasks sending the same keyed top-up: the balance grows once; one `Once::Ran`, 63
//!   `Once::Replayed` with the same stored result, no error (never a constraint violation);
//! - 64 tasks with 64 keys: the balance grows 64 times, each task sees its own new balance;
//! - the same key with another amount: `Error::IdempotencyKeyReused`, nothing run (also when
//!   both amounts race);
//! - a failed operation (a debit below zero) stores nothing: the same key runs again, and
//!   succeeds after a top-up;
//! - `purge_keys_of(Some(source), Duration::ZERO)` makes a key new again, and only that
//!   source's keys;
//! - keys are validated, and the longest valid key and an opaque key work on every backend;
//! - 64 concurrent identical keyed captures whose effect debits the wallet debit once; 64
//!   captures with 64 keys debit once too, the other 63 being refused (the capture is strict).
//!
//! Every key's source is the fixture's table name, so test runs never share keys and the fixture
//! deletes them when the test ends.

use fsm_runtime::Keys as _;
use fsm_runtime::sql::SqlTx;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::fixture::machines::{Payment, PaymentEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::idempotency::InvalidKey;
use fsm_runtime::store::EffectFuture;
use fsm_runtime::store::OpFuture;
use fsm_runtime::store::Snapshot;
use fsm_runtime::{Error, Fingerprint, IdempotencyKey, Once, Outcome, Store, TransitionRequest};

/// A request on a wallet, as fingerprinted: a top-up and a debit of the same amount differ.
#[derive(Debug, serde::Serialize)]
enum WalletRequest {
    TopUp { wallet: i64, amount: i64 },
    Debit { wallet: i64, amount: i64 },
    Capture { payment: i64, wallet: i64, amount: i64 },
}

/// The caller's own error: the wallet cannot pay.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InsufficientFunds {
    wallet: i64,
    amount: i64,
}

impl std::fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wallet {} cannot pay {}", self.wallet, self.amount)
    }
}

impl std::error::Error for InsufficientFunds {}

/// Creates a `wallets` table (dropped when the test ends) with `balances`; its name.
async fn wallets<B: TestBackend>(fx: &Fixture<B, Payment>, balances: &[(i64, i64)]) -> String {
    let table = fx.extra_table("wallets");
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

/// A wallet's balance, read outside any operation.
async fn balance<B: TestBackend>(fx: &Fixture<B, Payment>, wallets: &str, id: i64) -> i64 {
    fx.fetch_i64(format!("SELECT balance FROM {wallets} WHERE id = {}", fx.p(1)), [id.into()])
        .await
        .expect("the wallet exists")
}

/// How many idempotency keys are stored under `source`.
async fn stored_keys<B: TestBackend>(fx: &Fixture<B, Payment>, source: &str) -> i64 {
    fx.fetch_i64(format!("SELECT COUNT(*) FROM fsm_idempotency_keys WHERE source = {}", fx.p(1)), [source.into()])
        .await
        .unwrap_or(0)
}

/// Adds `delta` to the wallet on the operation's connection (inside its transaction) and
/// returns the new balance; with `guard`, refuses (with [`InsufficientFunds`]) to go below
/// zero. Counts its runs.
fn change_balance<B: TestBackend>(
    wallets: &str,
    wallet: i64,
    delta: i64,
    runs: &Arc<AtomicUsize>,
) -> impl for<'t> FnOnce(&'t mut SqlTx<B>) -> OpFuture<'t, i64> + Send + 'static {
    let update = format!(
        "UPDATE {wallets} SET balance = balance + {} WHERE id = {} AND balance + {} >= 0",
        B::param(1),
        B::param(2),
        B::param(3)
    );
    let read = format!("SELECT balance FROM {wallets} WHERE id = {}", B::param(1));
    let runs = runs.clone();
    move |conn: &mut SqlTx<B>| -> OpFuture<'_, i64> {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let updated = B::execute(conn, update, vec![delta.into(), wallet.into(), delta.into()]).await?;
            if updated == 0 {
                return Err(InsufficientFunds { wallet, amount: -delta }.into());
            }
            let balance = B::fetch_i64(conn, read, vec![wallet.into()]).await?;
            Ok(balance.expect("the wallet exists inside the transaction"))
        })
    }
}

/// A keyed top-up of `amount` on `wallet` under `(source, seq)`.
async fn top_up<B: TestBackend>(
    fx: &Fixture<B, Payment>,
    wallets: &str,
    (source, seq): (&str, i64),
    wallet: i64,
    amount: i64,
    runs: &Arc<AtomicUsize>,
) -> Result<Once<i64>, Error> {
    let key = IdempotencyKey::new(source, seq)?;
    let fingerprint = Fingerprint::of(&WalletRequest::TopUp { wallet, amount })?;
    fx.store.keys().run_once(key, fingerprint, change_balance::<B>(wallets, wallet, amount, runs)).await
}

/// A keyed debit of `amount` from `wallet` under `(source, seq)`, refused below zero.
async fn debit<B: TestBackend>(
    fx: &Fixture<B, Payment>,
    wallets: &str,
    (source, seq): (&str, i64),
    wallet: i64,
    amount: i64,
    runs: &Arc<AtomicUsize>,
) -> Result<Once<i64>, Error> {
    let key = IdempotencyKey::new(source, seq)?;
    let fingerprint = Fingerprint::of(&WalletRequest::Debit { wallet, amount })?;
    fx.store.keys().run_once(key, fingerprint, change_balance::<B>(wallets, wallet, -amount, runs)).await
}

/// 64 tasks send the same keyed top-up at once: it runs once, one task gets `Ran`, the other 63
/// get `Replayed` with the same stored balance, none gets an error, and one key is stored.
async fn same_key_tops_up_once<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { top_up(&fx, &wallets, (&fx.table, 1), 1, 25, &runs).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        match task.await.expect("the task") {
            Ok(once) => results.push(once),
            Err(error) => panic!("{}: a keyed top-up failed: {error:?}", B::LABEL),
        }
    }
    let ran: Vec<_> = results.iter().filter(|once| !once.is_replay()).collect();
    assert_eq!(ran, [&Once::Ran(125)], "{}: exactly one request runs the top-up", B::LABEL);
    assert_eq!(results.iter().filter(|once| **once == Once::Replayed(125)).count(), 63, "{}", B::LABEL);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{}: the operation ran more than once", B::LABEL);
    assert_eq!(balance(&fx, &wallets, 1).await, 125, "{}: the balance grew more than once", B::LABEL);
    assert_eq!(stored_keys(&fx, &fx.table).await, 1);

    // A late retry is a replay too.
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 1), 1, 25, &runs).await.unwrap(), Once::Replayed(125));
    assert_eq!((runs.load(Ordering::SeqCst), balance(&fx, &wallets, 1).await), (1, 125));
}

/// 64 tasks with 64 keys: 64 top-ups, each `Ran`, each seeing a different new balance (the
/// database serialised them on the wallet's row).
async fn different_keys_top_up_each<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 0)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|seq| {
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { top_up(&fx, &wallets, (&fx.table, seq), 1, 1, &runs).await })
        })
        .collect();
    let mut balances = Vec::new();
    for task in tasks {
        match task.await.expect("the task") {
            Ok(Once::Ran(balance)) => balances.push(balance),
            other => panic!("{}: a top-up with a new key gave {other:?}", B::LABEL),
        }
    }
    balances.sort_unstable();
    assert_eq!(balances, (1..=64).collect::<Vec<i64>>(), "{}: each top-up saw its own new balance", B::LABEL);
    assert_eq!(runs.load(Ordering::SeqCst), 64);
    assert_eq!(balance(&fx, &wallets, 1).await, 64);
    assert_eq!(stored_keys(&fx, &fx.table).await, 64);
}

/// The same key for another amount is a reused key: an error, nothing run, the balance
/// unchanged; also when the two amounts race under one key (one of them wins, once).
async fn reused_key_is_refused<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 100), (2, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 1), 1, 10, &runs).await.unwrap(), Once::Ran(110));
    let error = top_up(&fx, &wallets, (&fx.table, 1), 1, 20, &runs).await.unwrap_err();
    assert!(
        matches!(&error, Error::IdempotencyKeyReused { key } if *key == format!("{}#1", fx.table)),
        "{}: {error:?}",
        B::LABEL
    );
    assert!(!error.is_retryable());
    // Another wallet under the same key is another request too.
    let error = top_up(&fx, &wallets, (&fx.table, 1), 2, 10, &runs).await.unwrap_err();
    assert!(matches!(error, Error::IdempotencyKeyReused { .. }), "{}: {error:?}", B::LABEL);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!((balance(&fx, &wallets, 1).await, balance(&fx, &wallets, 2).await), (110, 100));

    // 32 tasks top up 10 and 32 top up 20 under one new key: one runs; those with its amount
    // replay it, the others are refused.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let amount = if i % 2 == 0 { 10 } else { 20 };
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { (amount, top_up(&fx, &wallets, (&fx.table, 2), 2, amount, &runs).await) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("the task"));
    }
    let winners: Vec<_> = outcomes.iter().filter(|(_, r)| matches!(r, Ok(Once::Ran(_)))).map(|(a, _)| *a).collect();
    assert_eq!(winners.len(), 1, "{}: {outcomes:?}", B::LABEL);
    let won = winners[0];
    for (amount, result) in &outcomes {
        match result {
            Ok(Once::Ran(balance) | Once::Replayed(balance)) if *amount == won => assert_eq!(*balance, 100 + won),
            Err(Error::IdempotencyKeyReused { .. }) if *amount != won => {}
            other => panic!("{}: a top-up of {amount} (the key ran {won}) gave {other:?}", B::LABEL),
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(balance(&fx, &wallets, 2).await, 100 + won);
    assert_eq!(stored_keys(&fx, &fx.table).await, 2);
}

/// A debit below zero fails in the caller's own SQL: `Error::Operation` with the caller's error,
/// nothing stored, the balance unchanged; the same key runs again (and fails again) until a
/// top-up makes it pass, and from then on it is a replay.
async fn failed_operation_stores_nothing<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 10)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for attempt in 1..=2 {
        let error = debit(&fx, &wallets, (&fx.table, 7), 1, 30, &runs).await.unwrap_err();
        match &error {
            Error::Operation { key, source } => {
                assert_eq!(*key, format!("{}#7", fx.table));
                assert_eq!(
                    source.downcast_ref::<InsufficientFunds>(),
                    Some(&InsufficientFunds { wallet: 1, amount: 30 })
                );
            }
            other => panic!("{}: expected Error::Operation, got {other:?}", B::LABEL),
        }
        assert!(error.to_string().contains("wallet 1 cannot pay 30"), "{error}");
        assert_eq!(runs.load(Ordering::SeqCst), attempt, "{}: the failed key was not stored", B::LABEL);
        assert_eq!(balance(&fx, &wallets, 1).await, 10);
        assert_eq!(stored_keys(&fx, &fx.table).await, 0, "{}: a failed operation stored its key", B::LABEL);
    }
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 8), 1, 50, &runs).await.unwrap(), Once::Ran(60));
    assert_eq!(debit(&fx, &wallets, (&fx.table, 7), 1, 30, &runs).await.unwrap(), Once::Ran(30));
    assert_eq!(debit(&fx, &wallets, (&fx.table, 7), 1, 30, &runs).await.unwrap(), Once::Replayed(30));
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(balance(&fx, &wallets, 1).await, 30);
    // A debit and a top-up of the same amount are different requests.
    let error = top_up(&fx, &wallets, (&fx.table, 7), 1, 30, &runs).await.unwrap_err();
    assert!(matches!(error, Error::IdempotencyKeyReused { .. }), "{}: {error:?}", B::LABEL);
    assert_eq!(stored_keys(&fx, &fx.table).await, 2);
}

/// 32 concurrent requests with one key whose operation fails (the debit is refused): each
/// either runs it and gets `Error::Operation`, or waits for a holder of the key that rolls back
/// and then runs it; none gets a database error, nothing is stored, nothing is debited.
async fn concurrent_failures_of_one_key<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 10)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { debit(&fx, &wallets, (&fx.table, 9), 1, 30, &runs).await })
        })
        .collect();
    let mut unexpected = Vec::new();
    for task in tasks {
        match task.await.expect("the task") {
            Err(Error::Operation { source, .. }) if source.is::<InsufficientFunds>() => {}
            other => unexpected.push(format!("{other:?}")),
        }
    }
    assert!(unexpected.is_empty(), "{}: {} of 32 requests gave {unexpected:#?}", B::LABEL, unexpected.len());
    assert_eq!(runs.load(Ordering::SeqCst), 32, "{}: every request ran the failing debit", B::LABEL);
    assert_eq!(balance(&fx, &wallets, 1).await, 10);
    assert_eq!(stored_keys(&fx, &fx.table).await, 0);
    // The key is still new.
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 10), 1, 50, &runs).await.unwrap(), Once::Ran(60));
    assert_eq!(debit(&fx, &wallets, (&fx.table, 9), 1, 30, &runs).await.unwrap(), Once::Ran(30));
}

/// Retention: a purge with a long age keeps the key; a purge of another source keeps it; a
/// purge of this source with `Duration::ZERO` forgets it, and the same request runs again.
async fn purged_key_is_new_again<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 1), 1, 5, &runs).await.unwrap(), Once::Ran(105));
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 2), 1, 5, &runs).await.unwrap(), Once::Ran(110));
    assert_eq!(fx.store.keys().purge_of(Some(&fx.table), Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let absent = format!("{}-other", fx.table);
    assert_eq!(fx.store.keys().purge_of(Some(&absent), Duration::ZERO).await.unwrap(), 0);
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 1), 1, 5, &runs).await.unwrap(), Once::Replayed(105));
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    assert_eq!(fx.store.keys().purge_of(Some(&fx.table), Duration::ZERO).await.unwrap(), 2);
    assert_eq!(stored_keys(&fx, &fx.table).await, 0);
    // A purged key is new: the same request runs (and counts) again.
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 1), 1, 5, &runs).await.unwrap(), Once::Ran(115));
    assert_eq!(top_up(&fx, &wallets, (&fx.table, 1), 1, 5, &runs).await.unwrap(), Once::Replayed(115));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(balance(&fx, &wallets, 1).await, 115);
}

/// Keys and fingerprints are validated before anything is sent; the longest valid source (191
/// bytes, multi-byte characters included) and an opaque key are stored and replayed.
async fn keys_are_validated<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    assert_eq!(IdempotencyKey::new("", 1), Err(InvalidKey::EmptySource));
    assert_eq!(IdempotencyKey::opaque(""), Err(InvalidKey::EmptySource));
    assert_eq!(IdempotencyKey::new("x".repeat(192), 1), Err(InvalidKey::SourceTooLong { len: 192 }));
    assert_eq!(IdempotencyKey::new("web", -1), Err(InvalidKey::NegativeSequence { seq: -1 }));
    assert_eq!(Fingerprint::new(""), Err(InvalidKey::EmptyFingerprint));
    assert_eq!(Fingerprint::new("f".repeat(129)), Err(InvalidKey::FingerprintTooLong { len: 129 }));
    assert!(matches!(Error::from(InvalidKey::EmptySource), Error::InvalidKey(InvalidKey::EmptySource)));

    let wallets = wallets(&fx, &[(1, 0)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    // 191 bytes: the table name, then 'é' (two bytes each) and 'x' to fill.
    let mut longest = format!("{}-", fx.table);
    while longest.len() + 2 <= 191 {
        longest.push('é');
    }
    while longest.len() < 191 {
        longest.push('x');
    }
    assert_eq!(longest.len(), 191);
    assert_eq!(top_up(&fx, &wallets, (&longest, 0), 1, 3, &runs).await.unwrap(), Once::Ran(3));
    assert_eq!(top_up(&fx, &wallets, (&longest, 0), 1, 3, &runs).await.unwrap(), Once::Replayed(3));
    let error = top_up(&fx, &wallets, (&format!("{longest}x"), 0), 1, 3, &runs).await.unwrap_err();
    assert!(matches!(error, Error::InvalidKey(InvalidKey::SourceTooLong { len: 192 })), "{error:?}");

    // An opaque key (an `Idempotency-Key` header) and a fingerprint of the raw body.
    let header = format!("{}-8e03978e-40d5-43e8-bc93-6894a57f9324", fx.table);
    let body = br#"{"wallet":1,"amount":4}"#;
    for expected in [Once::Ran(7), Once::Replayed(7)] {
        let key = IdempotencyKey::opaque(header.clone()).unwrap();
        let keys = fx.store.keys();
        let once = keys.run_once(key, Fingerprint::of_bytes(body), change_balance::<B>(&wallets, 1, 4, &runs));
        assert_eq!(once.await.unwrap(), expected);
    }
    let key = IdempotencyKey::opaque(header.clone()).unwrap();
    let other_body = Fingerprint::of_bytes(br#"{"wallet":1,"amount":5}"#);
    let error =
        fx.store.keys().run_once(key, other_body, change_balance::<B>(&wallets, 1, 5, &runs)).await.unwrap_err();
    assert!(matches!(&error, Error::IdempotencyKeyReused { key } if *key == header), "{error:?}");
    assert_eq!((runs.load(Ordering::SeqCst), balance(&fx, &wallets, 1).await), (2, 7));

    tokio::time::sleep(Duration::from_millis(5)).await;
    for source in [&longest, &header] {
        assert_eq!(fx.store.keys().purge_of(Some(source), Duration::ZERO).await.unwrap(), 1);
    }
}

/// An effect debiting `amount` from `wallet` on the transition's connection, refused below zero;
/// counts its runs.
fn debit_effect<B: TestBackend>(
    wallets: &str,
    wallet: i64,
    amount: i64,
    runs: &Arc<AtomicUsize>,
) -> impl for<'t> FnOnce(&'t mut SqlTx<B>) -> EffectFuture<'t> + Send + 'static {
    let debit = change_balance::<B>(wallets, wallet, -amount, runs);
    move |conn: &mut SqlTx<B>| -> EffectFuture<'_> {
        Box::pin(async move {
            debit(conn).await?;
            Ok(())
        })
    }
}

/// The keyed capture of `payment`, debiting `amount` from `wallet` in its transaction.
fn capture<'a, B: TestBackend>(
    source: &str,
    seq: i64,
    (payment, wallet, amount): (i64, i64, i64),
    wallets: &str,
    runs: &Arc<AtomicUsize>,
) -> TransitionRequest<'a, Payment, SqlTx<B>> {
    let key = IdempotencyKey::new(source, seq).expect("a valid key");
    let fingerprint = Fingerprint::of(&WalletRequest::Capture { payment, wallet, amount }).expect("a fingerprint");
    TransitionRequest::fire(payment, PaymentEvent::Capture)
        .idempotency_key(key, fingerprint)
        .effect(debit_effect::<B>(wallets, wallet, amount, runs))
}

/// 64 concurrent identical keyed captures whose effect debits the wallet: one `Applied`, 63
/// `Replayed`, one debit, one history row. Then the strict capture refuses any other request,
/// keyed or not, and the same key with another amount is a reused key.
async fn keyed_captures_debit_once<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    fx.store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { fx.store.apply(capture::<B>(&fx.table, 1, (1, 1, 30), &wallets, &runs)).await })
        })
        .collect();
    let (mut applied, mut replayed) = (0, 0);
    for task in tasks {
        match task.await.expect("the task") {
            Ok(Outcome::Applied { from: Payment::Authorized, to: Payment::Captured, version: 1 }) => applied += 1,
            Ok(Outcome::Replayed { from: Payment::Authorized, to: Payment::Captured, version: 1 }) => replayed += 1,
            other => panic!("{}: a keyed capture gave {other:?}", B::LABEL),
        }
    }
    assert_eq!((applied, replayed), (1, 63), "{}", B::LABEL);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{}: the debit ran more than once", B::LABEL);
    assert_eq!(balance(&fx, &wallets, 1).await, 70, "{}: debited more than once", B::LABEL);
    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Payment::Captured, version: 1 });
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1);

    // Captured is strict: another request reaching it is an error, not a no-op.
    let error = fx.store.apply(capture::<B>(&fx.table, 2, (1, 1, 30), &wallets, &runs)).await.unwrap_err();
    assert!(matches!(error, Error::ReachedByAnotherRequest { state: "captured", .. }), "{}: {error:?}", B::LABEL);
    let error = fx.store.fire(1, PaymentEvent::Capture).await.unwrap_err();
    assert!(matches!(error, Error::ReachedByAnotherRequest { state: "captured", .. }), "{}: {error:?}", B::LABEL);
    // The same key for another amount.
    let error = fx.store.apply(capture::<B>(&fx.table, 1, (1, 1, 40), &wallets, &runs)).await.unwrap_err();
    assert!(matches!(error, Error::IdempotencyKeyReused { .. }), "{}: {error:?}", B::LABEL);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(balance(&fx, &wallets, 1).await, 70);
    // Only the applied capture stored its key.
    assert_eq!(stored_keys(&fx, &fx.table).await, 1);
}

/// 64 concurrent captures of one payment with 64 different keys: one applies and debits; the
/// other 63 find it captured by another request and are refused (strict); nothing else is stored.
async fn racing_captures_with_different_keys<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 100)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    fx.store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|seq| {
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { fx.store.apply(capture::<B>(&fx.table, seq, (1, 1, 30), &wallets, &runs)).await })
        })
        .collect();
    let (mut applied, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("the task") {
            Ok(Outcome::Applied { version: 1, .. }) => applied += 1,
            Err(Error::ReachedByAnotherRequest { state: "captured", .. }) => refused += 1,
            other => panic!("{}: a capture gave {other:?}", B::LABEL),
        }
    }
    assert_eq!((applied, refused), (1, 63), "{}", B::LABEL);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(balance(&fx, &wallets, 1).await, 70);
    assert_eq!(stored_keys(&fx, &fx.table).await, 1);
    assert_eq!(fx.history_rows(&fx.table, "1").await, 1);
}

/// A keyed capture whose debit fails rolls back the capture and stores no key; after a top-up
/// the same key captures (and debits) once.
async fn failed_keyed_capture_stores_nothing<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 10)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    fx.store.create(1).await.unwrap();
    let error = fx.store.apply(capture::<B>(&fx.table, 1, (1, 1, 30), &wallets, &runs)).await.unwrap_err();
    assert!(
        matches!(&error, Error::Effect { from: "authorized", to: "captured", source, .. } if source.is::<InsufficientFunds>()),
        "{}: {error:?}",
        B::LABEL
    );
    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Payment::Authorized, version: 0 });
    assert_eq!(stored_keys(&fx, &fx.table).await, 0);
    assert_eq!(fx.history_rows(&fx.table, "1").await, 0);

    assert_eq!(top_up(&fx, &wallets, (&fx.table, 100), 1, 50, &runs).await.unwrap(), Once::Ran(60));
    assert!(fx.store.apply(capture::<B>(&fx.table, 1, (1, 1, 30), &wallets, &runs)).await.unwrap().is_applied());
    assert!(fx.store.apply(capture::<B>(&fx.table, 1, (1, 1, 30), &wallets, &runs)).await.unwrap().is_replay());
    assert_eq!(runs.load(Ordering::SeqCst), 3, "failed debit, top-up, debit");
    assert_eq!(balance(&fx, &wallets, 1).await, 30);
    assert_eq!(
        fx.store.history(1).await.unwrap().iter().map(|h| (h.from, h.to)).collect::<Vec<_>>(),
        [(Payment::Authorized, Payment::Captured)]
    );
    // The fixture's raw view agrees.
    assert_eq!(fx.raw_row(&fx.table, Arg::I64(1)).await, Some(("captured".to_owned(), 1)));
}

/// 32 concurrent identical keyed captures whose debit fails: each fails with the effect's error
/// (a request that waited for the key's holder to roll back runs the capture itself); none gets
/// a database error, nothing is stored or debited, and the payment stays authorized.
async fn concurrent_failed_captures<B: TestBackend>(fx: Arc<Fixture<B, Payment>>) {
    let wallets = wallets(&fx, &[(1, 10)]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    fx.store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (fx, wallets, runs) = (fx.clone(), wallets.clone(), runs.clone());
            tokio::spawn(async move { fx.store.apply(capture::<B>(&fx.table, 1, (1, 1, 30), &wallets, &runs)).await })
        })
        .collect();
    let mut unexpected = Vec::new();
    for task in tasks {
        match task.await.expect("the task") {
            Err(Error::Effect { source, .. }) if source.is::<InsufficientFunds>() => {}
            other => unexpected.push(format!("{other:?}")),
        }
    }
    assert!(unexpected.is_empty(), "{}: {} of 32 captures gave {unexpected:#?}", B::LABEL, unexpected.len());
    assert_eq!(runs.load(Ordering::SeqCst), 32, "{}: every capture ran its failing debit", B::LABEL);
    assert_eq!(fx.store.get(1).await.unwrap(), Snapshot { state: Payment::Authorized, version: 0 });
    assert_eq!(balance(&fx, &wallets, 1).await, 10);
    assert_eq!(stored_keys(&fx, &fx.table).await, 0);
    assert_eq!(fx.history_rows(&fx.table, "1").await, 0);
}

crate::fixture::sql::per_backend!(
    same_key_tops_up_once,
    different_keys_top_up_each,
    reused_key_is_refused,
    failed_operation_stores_nothing,
    concurrent_failures_of_one_key,
    purged_key_is_new_again,
    keys_are_validated,
    keyed_captures_debit_once,
    racing_captures_with_different_keys,
    failed_keyed_capture_stores_nothing,
    concurrent_failed_captures,
);
