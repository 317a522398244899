//! The conformance cases: each one is a generic function over any [`Store`], run against every
//! adapter by `main.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fsm_runtime::store::CreateOutcome;
use fsm_runtime::store::DeleteOutcome;
use fsm_runtime::store::EffectFuture;
use fsm_runtime::store::LockedEntity;
use fsm_runtime::store::Snapshot;
use fsm_runtime::store::{ColumnProblem, ColumnValue, NewEntity};
use fsm_runtime::{Error, Fingerprint, IdempotencyKey, Once, Outcome, Store, TransitionRequest};

use fsm_runtime::Keys as _;
use fsm_runtime::inbox::Inbox as _;
use fsm_runtime::outbox::{Outbox, OutboxMessage, PendingMessage, Publisher, Relay, RelayReport};

pub use crate::audit_cases::{audit_columns_recorded, delete_keeps_the_audit_trail};
use crate::fixture::backends::RawAccess;
use crate::fixture::columns::RawColumns;
use crate::fixture::machines::{Light, LightEvent, Order, OrderEvent, Payment, PaymentEvent, Ticket, TicketEvent};

/// Create is idempotent: the second create reports the existing entity and writes nothing.
pub async fn create_is_idempotent<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    assert_eq!(store.create(1).await.unwrap(), CreateOutcome::Created { state: Order::Created });
    store.transition(1, Order::Paid).await.unwrap();
    assert_eq!(store.create(1).await.unwrap(), CreateOutcome::AlreadyExists { state: Order::Paid, version: 1 });
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(store.create_in(2, Order::Shipped).await.unwrap(), CreateOutcome::Created { state: Order::Shipped });
    assert_eq!(store.get(2).await.unwrap(), Snapshot { state: Order::Shipped, version: 0 });
}

/// Row 1 and 2 of the outcome table: applied once, then a no-op that writes nothing.
pub async fn transition_applies_once<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let applied = store.transition(1, Order::Paid).await.unwrap();
    assert_eq!(applied, Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    let replay = store.transition(1, Order::Paid).await.unwrap();
    assert_eq!(replay, Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    assert!(!replay.is_applied());
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    let history = store.history(1).await.unwrap();
    assert_eq!(history.len(), 1, "a replay must not write history: {history:?}");
    assert_eq!((history[0].version, history[0].from, history[0].to), (1, Order::Created, Order::Paid));
    assert_eq!(history[0].event, None);
    assert!(history[0].at_micros > 1_600_000_000_000_000, "timestamp in microseconds: {}", history[0].at_micros);
}

/// Row 3: an illegal move is a typed error naming the states, and writes nothing.
pub async fn illegal_transition_is_refused<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let error = store.transition(1, Order::Shipped).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidTransition { machine: "Order", from: "created", to: "shipped", id } if id.to_string() == "1"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert!(store.history(1).await.unwrap().is_empty());
    // From a terminal state nothing leaves.
    store.transition(1, Order::Cancelled).await.unwrap();
    let error = store.transition(1, Order::Paid).await.unwrap_err();
    assert!(matches!(error, Error::InvalidTransition { from: "cancelled", to: "paid", .. }), "{error:?}");
}

/// Row 4: no such row.
pub async fn missing_entity_is_not_found<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    let error = store.transition(404, Order::Paid).await.unwrap_err();
    assert!(matches!(&error, Error::NotFound { machine: "Order", id, .. } if id.to_string() == "404"), "{error:?}");
    assert!(matches!(store.get(404).await.unwrap_err(), Error::NotFound { .. }));
    assert!(matches!(store.fire(404, OrderEvent::Pay).await.unwrap_err(), Error::NotFound { .. }));
    assert!(matches!(store.lock(404).await.unwrap_err(), Error::NotFound { .. }));
    assert!(store.history(404).await.unwrap().is_empty());
}

/// Row 5: a stored string no state maps to is a typed error, never a panic, and nothing is
/// written.
pub async fn unknown_state_is_an_error<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    store.create(1).await.unwrap();
    store.corrupt(&table, 1, "teleported").await;
    let error = store.transition(1, Order::Paid).await.unwrap_err();
    match &error {
        Error::UnknownState { machine, id, value, expected, .. } => {
            assert_eq!((*machine, id.to_string(), value.as_str()), ("Order", "1".to_owned(), "teleported"));
            assert!(expected.contains("created") && expected.contains("refunded"), "{expected}");
        }
        other => panic!("expected UnknownState, got {other:?}"),
    }
    assert!(matches!(store.get(1).await.unwrap_err(), Error::UnknownState { .. }));
    assert!(matches!(store.fire(1, OrderEvent::Pay).await.unwrap_err(), Error::UnknownState { .. }));
    assert!(store.history(1).await.unwrap().is_empty());
}

/// Firing an event: recorded with its name, replay is a no-op, an event with no edge from the
/// state is `InvalidEvent`.
pub async fn fire_follows_the_event<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let error = store.fire(1, OrderEvent::Ship).await.unwrap_err();
    assert!(matches!(error, Error::InvalidEvent { state: "created", event: "ship", .. }), "{error:?}");
    assert_eq!(
        store.fire(1, OrderEvent::Pay).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(
        store.fire(1, OrderEvent::Pay).await.unwrap(),
        Outcome::AlreadyApplied { state: Order::Paid, version: 1 }
    );
    assert_eq!(
        store.fire(1, OrderEvent::Cancel).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Cancelled, version: 2 }
    );
    let events: Vec<_> = store.history(1).await.unwrap().into_iter().map(|h| h.event).collect();
    assert_eq!(events, [Some("pay".to_owned()), Some("cancel".to_owned())]);
}

/// A target with several legal sources is reached from each of them.
pub async fn multi_source_target<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    store.create(2).await.unwrap();
    store.transition(2, Order::Paid).await.unwrap();
    assert_eq!(
        store.transition(1, Order::Cancelled).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Cancelled, version: 1 }
    );
    assert_eq!(
        store.transition(2, Order::Cancelled).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Cancelled, version: 2 }
    );
}

/// Compare-and-set on an observed state.
pub async fn transition_from_observed_state<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    assert_eq!(
        store.transition_from(1, Order::Created, Order::Paid).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    // The same request again: the row moved on to the target.
    assert_eq!(
        store.transition_from(1, Order::Created, Order::Paid).await.unwrap(),
        Outcome::AlreadyApplied { state: Order::Paid, version: 1 }
    );
    // A decision taken on a stale read: retryable conflict, nothing written.
    let error = store.transition_from(1, Order::Created, Order::Cancelled).await.unwrap_err();
    assert!(matches!(error, Error::Conflict { expected: "created", actual: "paid", .. }), "{error:?}");
    assert!(error.is_retryable());
    // An edge the table does not have is refused before any I/O.
    let error = store.transition_from(1, Order::Created, Order::Shipped).await.unwrap_err();
    assert!(matches!(error, Error::InvalidTransition { from: "created", to: "shipped", .. }), "{error:?}");
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
}

/// Optimistic locking: an expected version must match; a replay still is a no-op.
pub async fn expected_version_is_checked<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let error = store.apply(TransitionRequest::to(1, Order::Paid).expect_version(5)).await.unwrap_err();
    assert!(matches!(error, Error::VersionConflict { expected: 5, actual: 0, .. }), "{error:?}");
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    let applied = store.apply(TransitionRequest::to(1, Order::Paid).expect_version(0)).await.unwrap();
    assert_eq!(applied, Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    let replay = store.apply(TransitionRequest::to(1, Order::Paid).expect_version(0)).await.unwrap();
    assert_eq!(replay, Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    let error = store.apply(TransitionRequest::to(1, Order::Shipped).expect_version(0)).await.unwrap_err();
    assert!(matches!(error, Error::VersionConflict { expected: 0, actual: 1, .. }), "{error:?}");
}

/// An effect that counts its runs.
fn counting<Tx>(runs: Arc<AtomicUsize>) -> impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send {
    move |_tx| {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// Effects run only with `Applied`; a failing effect rolls the transition back.
pub async fn effects_run_only_when_applied<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    // A failing effect: typed error, nothing written.
    let failing = TransitionRequest::to(1, Order::Paid)
        .effect(counting::<S::Tx>(runs.clone()))
        .effect(|_tx| Box::pin(async { Err("card declined".into()) }));
    let error = store.apply(failing).await.unwrap_err();
    match &error {
        Error::Effect { from, to, source, .. } => {
            assert_eq!((*from, *to), ("created", "paid"));
            assert_eq!(source.to_string(), "card declined");
        }
        other => panic!("expected Effect, got {other:?}"),
    }
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert!(store.history(1).await.unwrap().is_empty());
    // The same transition again, with effects that succeed.
    runs.store(0, Ordering::SeqCst);
    let request = TransitionRequest::to(1, Order::Paid).effect(counting::<S::Tx>(runs.clone()));
    assert!(store.apply(request).await.unwrap().is_applied());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A replay runs nothing.
    let request = TransitionRequest::to(1, Order::Paid).effect(counting::<S::Tx>(runs.clone()));
    assert!(!store.apply(request).await.unwrap().is_applied());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(store.history(1).await.unwrap().len(), 1);
}

/// Delete is idempotent and takes the history with it, so the id can be created again.
pub async fn delete_is_idempotent<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    store.transition(1, Order::Paid).await.unwrap();
    assert_eq!(store.delete(1).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(store.delete(1).await.unwrap(), DeleteOutcome::AlreadyAbsent);
    assert!(matches!(store.get(1).await.unwrap_err(), Error::NotFound { .. }));
    assert!(store.history(1).await.unwrap().is_empty());
    assert_eq!(store.create(1).await.unwrap(), CreateOutcome::Created { state: Order::Created });
    assert!(store.transition(1, Order::Paid).await.unwrap().is_applied());
}

/// Pessimistic locking: read, decide, transition and commit under the lock; a dropped lock
/// writes nothing.
pub async fn lock_read_decide_write<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    {
        let mut locked = store.lock(1).await.unwrap();
        assert_eq!(locked.snapshot(), Snapshot { state: Order::Created, version: 0 });
        assert!(locked.transition(Order::Paid).await.unwrap().is_applied());
        // Dropped without commit: rolled back.
    }
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    let mut locked = store.lock(1).await.unwrap();
    assert_eq!(locked.id().to_string(), "1");
    let decided = if locked.snapshot().state == Order::Created { Order::Paid } else { Order::Cancelled };
    assert_eq!(
        locked.transition(decided).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(
        locked.transition(Order::Paid).await.unwrap(),
        Outcome::AlreadyApplied { state: Order::Paid, version: 1 }
    );
    let error = locked.transition(Order::Delivered).await.unwrap_err();
    assert!(matches!(error, Error::InvalidTransition { from: "paid", to: "delivered", .. }), "{error:?}");
    assert!(locked.transition(Order::Shipped).await.unwrap().is_applied());
    locked.commit().await.unwrap();
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Shipped, version: 2 });
    let history = store.history(1).await.unwrap();
    assert_eq!(history.iter().map(|h| (h.version, h.to)).collect::<Vec<_>>(), [(1, Order::Paid), (2, Order::Shipped)]);
}

/// 64 tasks racing the same transition: exactly one `Applied`, the rest `AlreadyApplied`.
pub async fn racing_tasks_apply_once<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.transition(1, Order::Paid).await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Outcome::Applied { .. } => applied += 1,
            Outcome::AlreadyApplied { state, version } => assert_eq!((state, version), (Order::Paid, 1)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
}

/// An event with two targets: its replay is recognised from either target.
pub async fn event_with_two_targets<S: Store<Ticket> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    store.create(2).await.unwrap();
    store.fire(2, TicketEvent::Resolve).await.unwrap();
    assert_eq!(
        store.fire(1, TicketEvent::Close).await.unwrap(),
        Outcome::Applied { from: Ticket::Open, to: Ticket::Closed, version: 1 }
    );
    assert_eq!(
        store.fire(1, TicketEvent::Close).await.unwrap(),
        Outcome::AlreadyApplied { state: Ticket::Closed, version: 1 }
    );
    assert_eq!(
        store.fire(2, TicketEvent::Close).await.unwrap(),
        Outcome::Applied { from: Ticket::Resolved, to: Ticket::Archived, version: 2 }
    );
    assert_eq!(
        store.fire(2, TicketEvent::Close).await.unwrap(),
        Outcome::AlreadyApplied { state: Ticket::Archived, version: 2 }
    );
    let error = store.fire(1, TicketEvent::Resolve).await.unwrap_err();
    assert!(matches!(error, Error::InvalidEvent { state: "closed", event: "resolve", .. }), "{error:?}");
}

/// A cyclic event moves on every call (it is declared replay-unsafe), and with an observed
/// state it is exact.
pub async fn cyclic_event_moves_each_time<S: Store<Light> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(store.fire(1, LightEvent::Next).await.unwrap().state());
    }
    assert_eq!(seen, [Light::Green, Light::Yellow, Light::Red, Light::Green]);
    assert_eq!(store.get(1).await.unwrap().version, 4);
    // Exactly-once for a cyclic machine: compare-and-set on the observed state.
    assert!(store.transition_from(1, Light::Green, Light::Yellow).await.unwrap().is_applied());
    assert!(!store.transition_from(1, Light::Green, Light::Yellow).await.unwrap().is_applied());
}

/// A key whose source is the test's table, so that test runs never share keys.
fn key(table: &str, seq: i64) -> IdempotencyKey {
    IdempotencyKey::new(table, seq).unwrap()
}

fn fingerprint(body: &str) -> Fingerprint {
    Fingerprint::of(&body).unwrap()
}

/// A keyed transition: the same key and fingerprint replay the stored outcome; another
/// fingerprint is a reused key; another key finds the entity already there.
pub async fn keyed_transition_replays<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    store.create(1).await.unwrap();
    let pay = |seq: i64, body: &str| {
        TransitionRequest::to(1, Order::Paid).idempotency_key(key(&table, seq), fingerprint(body))
    };
    assert_eq!(
        store.apply(pay(1, "pay 1")).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    let replay = store.apply(pay(1, "pay 1")).await.unwrap();
    assert_eq!(replay, Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 });
    assert!(replay.is_replay() && !replay.is_applied());
    let error = store.apply(pay(1, "pay 2")).await.unwrap_err();
    assert!(matches!(&error, Error::IdempotencyKeyReused { key } if *key == format!("{table}#1")), "{error:?}");
    assert_eq!(store.apply(pay(2, "pay 1")).await.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    // The replay is recognised even after the entity moved on.
    store.transition(1, Order::Shipped).await.unwrap();
    assert_eq!(
        store.apply(pay(1, "pay 1")).await.unwrap(),
        Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(store.history(1).await.unwrap().len(), 2);
}

/// Keys are compared byte for byte: sources that differ only in letter case (or in trailing
/// spaces) are different keys, never a replay of each other (MySQL/MariaDB compare text
/// case-insensitively unless the column is declared binary).
pub async fn keys_differing_in_case_are_different<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    for id in [1, 2, 3] {
        store.create(id).await.unwrap();
    }
    let upper = IdempotencyKey::new(format!("{table}-Web"), 1).unwrap();
    let lower = IdempotencyKey::new(format!("{table}-web"), 1).unwrap();
    let padded = IdempotencyKey::new(format!("{table}-web "), 1).unwrap();
    for (id, key) in [(1, upper), (2, lower), (3, padded)] {
        let request =
            TransitionRequest::to(id, Order::Paid).idempotency_key(key.clone(), fingerprint(&format!("pay {id}")));
        assert_eq!(
            store.apply(request).await.unwrap(),
            Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 },
            "key {key} on entity {id}"
        );
    }
    let (a, b) = (
        IdempotencyKey::opaque(format!("{table}-Op")).unwrap(),
        IdempotencyKey::opaque(format!("{table}-op")).unwrap(),
    );
    let first = store
        .keys()
        .run_once(a, fingerprint("a"), |_tx| Box::pin(async { Ok::<_, fsm_runtime::error::BoxError>(1) }))
        .await
        .unwrap();
    let second = store
        .keys()
        .run_once(b, fingerprint("b"), |_tx| Box::pin(async { Ok::<_, fsm_runtime::error::BoxError>(2) }))
        .await
        .unwrap();
    assert_eq!((first.into_inner(), second.into_inner()), (1, 2));
}

/// A keyed transition that fails stores nothing: the same key works once the cause is fixed.
pub async fn failed_keyed_transition_stores_nothing<S: Store<Order> + RawAccess + 'static>(
    store: Arc<S>,
    table: String,
) {
    store.create(1).await.unwrap();
    let ship = || TransitionRequest::to(1, Order::Shipped).idempotency_key(key(&table, 10), fingerprint("ship"));
    assert!(matches!(store.apply(ship()).await.unwrap_err(), Error::InvalidTransition { .. }));
    let failing = ship().effect(|_tx| Box::pin(async { Err("carrier down".into()) }));
    store.transition(1, Order::Paid).await.unwrap();
    assert!(matches!(store.apply(failing).await.unwrap_err(), Error::Effect { .. }));
    assert_eq!(
        store.apply(ship()).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }
    );
    assert!(store.apply(ship()).await.unwrap().is_replay());
}

/// A keyed fire with a cyclic event: the key makes it exactly-once.
pub async fn keyed_cyclic_event_runs_once<S: Store<Light> + RawAccess + 'static>(store: Arc<S>, table: String) {
    store.create(1).await.unwrap();
    let next = || TransitionRequest::fire(1, LightEvent::Next).idempotency_key(key(&table, 20), fingerprint("next"));
    assert!(store.apply(next()).await.unwrap().is_applied());
    assert_eq!(
        store.apply(next()).await.unwrap(),
        Outcome::Replayed { from: Light::Red, to: Light::Green, version: 1 }
    );
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Light::Green, version: 1 });
}

/// 64 tasks racing one keyed transition: one `Applied`, 63 `Replayed`, never an error.
pub async fn racing_keyed_transition<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (store, key) = (store.clone(), key(&table, 30));
            tokio::spawn(async move {
                let request = TransitionRequest::to(1, Order::Paid).idempotency_key(key, fingerprint("pay"));
                store.apply(request).await
            })
        })
        .collect();
    let (mut applied, mut replayed) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Outcome::Applied { .. } => applied += 1,
            Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 } => replayed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((applied, replayed), (1, 63));
}

/// A keyed operation runs once per key, even with 64 concurrent requests, and stores nothing
/// when it fails.
pub async fn run_once_per_key<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    let runs = Arc::new(AtomicUsize::new(0));
    let top_up = |store: Arc<S>, seq: i64, body: &'static str, runs: Arc<AtomicUsize>| {
        let key = key(&table, seq);
        async move {
            loop {
                let runs = runs.clone();
                let once = store
                    .keys()
                    .run_once(key.clone(), fingerprint(body), move |_tx| {
                        Box::pin(async move { Ok(runs.fetch_add(1, Ordering::SeqCst) + 1000) })
                    })
                    .await;
                match once {
                    // Lost the certification on a multi-primary cluster after the operation
                    // ran: rolled back, and sent again as a client would.
                    Err(error) if S::MULTI_PRIMARY && error.is_retryable() => continue,
                    once => return once,
                }
            }
        }
    };
    // Same key: once.
    let tasks: Vec<_> = (0..64).map(|_| tokio::spawn(top_up(store.clone(), 40, "top up 5", runs.clone()))).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    // One committed run, which every request answers with; on several primaries, the runs of
    // the requests that lost the certification were rolled back.
    assert_eq!(results.iter().filter(|r| !r.is_replay()).count(), 1);
    let committed = results[0].clone().into_inner();
    assert!(results.iter().all(|r| r.clone().into_inner() == committed));
    let extra_runs = if S::MULTI_PRIMARY { runs.load(Ordering::SeqCst) - 1 } else { 0 };
    assert_eq!(runs.load(Ordering::SeqCst), 1 + extra_runs);
    if !S::MULTI_PRIMARY {
        assert_eq!(committed, 1000);
    }
    // Another fingerprint under the same key.
    let error = top_up(store.clone(), 40, "top up 9", runs.clone()).await.unwrap_err();
    assert!(matches!(error, Error::IdempotencyKeyReused { .. }), "{error:?}");
    // Different keys: once each.
    let tasks: Vec<_> =
        (100..164).map(|seq| tokio::spawn(top_up(store.clone(), seq, "top up 5", runs.clone()))).collect();
    for task in tasks {
        assert!(!task.await.unwrap().unwrap().is_replay());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 65 + extra_runs);
    // A failing operation stores nothing: the key can be used again.
    let error = store
        .keys()
        .run_once(key(&table, 200), fingerprint("x"), |_tx| Box::pin(async { Err::<u32, _>("declined".into()) }))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Operation { .. }), "{error:?}");
    let ran =
        store.keys().run_once(key(&table, 200), fingerprint("x"), |_tx| Box::pin(async { Ok(7u32) })).await.unwrap();
    assert_eq!(ran, Once::Ran(7));
    assert_eq!(
        store.keys().run_once(key(&table, 200), fingerprint("x"), |_tx| Box::pin(async { Ok(8u32) })).await.unwrap(),
        Once::Replayed(7)
    );
}

/// An operation that returns `value`.
fn returning<Tx>(value: u32) -> impl for<'t> FnOnce(&'t mut Tx) -> fsm_runtime::store::OpFuture<'t, u32> + Send {
    move |_tx| Box::pin(async move { Ok(value) })
}

/// Purged keys are new again.
pub async fn purged_keys_are_new_again<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    let op = returning::<S::Tx>;
    assert_eq!(store.keys().run_once(key(&table, 300), fingerprint("a"), op(1)).await.unwrap(), Once::Ran(1));
    assert_eq!(store.keys().purge_of(Some(&table), std::time::Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(store.keys().run_once(key(&table, 300), fingerprint("a"), op(2)).await.unwrap(), Once::Replayed(1));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Only this test's source: other tests share the database.
    assert_eq!(store.keys().purge_of(Some(&table), std::time::Duration::ZERO).await.unwrap(), 1);
    assert_eq!(store.keys().run_once(key(&table, 300), fingerprint("a"), op(3)).await.unwrap(), Once::Ran(3));
}

/// A publisher that records what it publishes; it can be told to hang (a relay that dies
/// between publishing and marking).
#[derive(Clone, Default)]
pub struct Recorder {
    published: Arc<std::sync::Mutex<Vec<PendingMessage>>>,
    hang_after_publish: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    fn messages(&self) -> Vec<PendingMessage> {
        self.published.lock().unwrap().clone()
    }
}

impl Publisher for Recorder {
    async fn publish(&self, message: &PendingMessage) -> Result<(), fsm_runtime::error::BoxError> {
        self.published.lock().unwrap().push(message.clone());
        if self.hang_after_publish.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// An effect that enqueues a receipt for order 1.
fn enqueue_receipt<Tx: Outbox>(topic: String) -> impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send {
    move |tx| {
        Box::pin(async move {
            tx.enqueue(OutboxMessage::new(topic, serde_json::json!({"order": 1, "receipt": true})).with_key("1"))
                .await?;
            Ok(())
        })
    }
}

/// A message exists if and only if its transition was applied, and the relay publishes it once.
pub async fn outbox_message_iff_applied<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    store.create(1).await.unwrap();
    let outbox = store.outbox(&table).await;
    // A failing effect after the enqueue: no message.
    let failing = TransitionRequest::to(1, Order::Paid)
        .effect(enqueue_receipt::<S::Tx>(table.clone()))
        .effect(|_tx| Box::pin(async { Err("declined".into()) }));
    assert!(store.apply(failing).await.is_err());
    // Applied: one message. Replayed: none more.
    for _ in 0..3 {
        let request = TransitionRequest::to(1, Order::Paid).effect(enqueue_receipt::<S::Tx>(table.clone()));
        store.apply(request).await.unwrap();
    }
    let recorder = Recorder::default();
    let relay = Relay::new(outbox.clone()).lease(std::time::Duration::from_secs(30));
    assert_eq!(relay.run_once(&recorder).await.unwrap(), RelayReport { published: 1, failed: 0, dead: 0 });
    assert_eq!(relay.run_once(&recorder).await.unwrap(), RelayReport { published: 0, failed: 0, dead: 0 });
    let messages = recorder.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].topic, table);
    assert_eq!(messages[0].key.as_deref(), Some("1"));
    assert_eq!(messages[0].payload, serde_json::json!({"order": 1, "receipt": true}));
    assert_eq!(messages[0].attempts, 1);
}

/// A relay killed between publish and mark: the message is published again, with the same id,
/// after the lease; the inbox makes the consumer apply it once.
pub async fn relay_crash_republishes_with_the_same_id<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    for id in 1..=3 {
        store.create(id).await.unwrap();
        let request = TransitionRequest::to(id, Order::Paid).effect(enqueue_receipt::<S::Tx>(table.clone()));
        assert!(store.apply(request).await.unwrap().is_applied());
    }
    let outbox = store.outbox(&table).await;
    let recorder = Recorder::default();
    recorder.hang_after_publish.store(true, Ordering::SeqCst);
    let lease = std::time::Duration::from_millis(300);
    let mut crashing = {
        let (outbox, recorder) = (outbox.clone(), recorder.clone());
        tokio::spawn(async move { Relay::new(outbox).lease(lease).run_once(&recorder).await })
    };
    while recorder.messages().is_empty() {
        // A pass that ends without publishing (it claimed nothing, or failed) never hangs.
        if crashing.is_finished() {
            panic!("the relay's pass ended before publishing: {:?}", (&mut crashing).await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    crashing.abort();
    assert!(crashing.await.unwrap_err().is_cancelled());
    // A new relay at once: everything is still claimed by the dead one.
    recorder.hang_after_publish.store(false, Ordering::SeqCst);
    let relay = Relay::new(outbox).lease(lease);
    assert_eq!(relay.run_once(&recorder).await.unwrap().published, 0);
    tokio::time::sleep(lease + std::time::Duration::from_millis(100)).await;
    // The three messages share a key: one pass publishes one of them, in order.
    for _ in 0..3 {
        assert_eq!(relay.run_once(&recorder).await.unwrap().published, 1);
    }
    let messages = recorder.messages();
    assert_eq!(messages.len(), 4, "one publish lost its mark and was repeated: {messages:#?}");
    assert_eq!(messages[0].message_id, messages[1].message_id, "the repeat carries the same id");
    assert_eq!(messages[1].attempts, 2);
    let mut inbox = fsm_runtime::inbox::MemoryInbox::new();
    let mut applied = 0;
    for message in &messages {
        if inbox.record("receipts", &message.message_id).await.unwrap() {
            applied += 1;
        }
    }
    assert_eq!(applied, 3);
}

/// Two relays at once never publish the same message twice while their claims hold.
pub async fn concurrent_relays_share_the_work<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    for id in 1..=40 {
        store.create(id).await.unwrap();
        let request = TransitionRequest::to(id, Order::Paid).effect(enqueue_receipt::<S::Tx>(table.clone()));
        store.apply(request).await.unwrap();
    }
    let outbox = store.outbox(&table).await;
    let recorder = Recorder::default();
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let (outbox, recorder) = (outbox.clone(), recorder.clone());
            tokio::spawn(async move {
                let relay = Relay::new(outbox).batch(5);
                let mut published = 0;
                loop {
                    let report = relay.run_once(&recorder).await.unwrap();
                    if report.published == 0 {
                        return published;
                    }
                    published += report.published;
                }
            })
        })
        .collect();
    let mut total = 0;
    for relay in relays {
        total += relay.await.unwrap();
    }
    assert_eq!(total, 40);
    let mut ids: Vec<_> = recorder.messages().into_iter().map(|m| m.message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
}

/// A strict target: the same request (same key) replays; any other request that finds the
/// entity already there is an error.
pub async fn strict_target_refuses_another_request<S: Store<Payment> + RawAccess + 'static>(
    store: Arc<S>,
    table: String,
) {
    use fsm_runtime::StateMachine as _;
    assert!(Payment::is_strict(Payment::Captured));
    assert!(!Payment::is_strict(Payment::Voided) && !Payment::is_strict(Payment::Refunded));
    store.create(1).await.unwrap();
    let capture = |seq: i64| {
        TransitionRequest::fire(1, PaymentEvent::Capture).idempotency_key(key(&table, seq), fingerprint("capture"))
    };
    assert!(store.apply(capture(1)).await.unwrap().is_applied());
    assert_eq!(
        store.apply(capture(1)).await.unwrap(),
        Outcome::Replayed { from: Payment::Authorized, to: Payment::Captured, version: 1 }
    );
    let error = store.apply(capture(2)).await.unwrap_err();
    assert!(matches!(error, Error::ReachedByAnotherRequest { state: "captured", .. }), "{error:?}");
    let error = store.transition(1, Payment::Captured).await.unwrap_err();
    assert!(matches!(error, Error::ReachedByAnotherRequest { state: "captured", .. }), "{error:?}");
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Payment::Captured, version: 1 });
    // A non-strict target stays a no-op.
    store.create(2).await.unwrap();
    assert!(store.fire(2, PaymentEvent::Void).await.unwrap().is_applied());
    assert_eq!(
        store.fire(2, PaymentEvent::Void).await.unwrap(),
        Outcome::AlreadyApplied { state: Payment::Voided, version: 1 }
    );
}

/// A decision taken on a stale read conflicts; `retry_on_conflict` reads and decides again.
pub async fn retry_on_conflict_decides_again<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let attempts = AtomicUsize::new(0);
    let outcome = fsm_runtime::retry::retry_on_conflict(5, || async {
        let now = store.get(1).await?;
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            // Another caller pays the order between our read and our write.
            store.transition(1, Order::Paid).await?;
        }
        let next = match now.state {
            Order::Created => Order::Cancelled,
            Order::Paid => Order::Shipped,
            other => panic!("unexpected state {other:?}"),
        };
        store.transition_from(1, now.state, next).await
    })
    .await
    .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(outcome, Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 });
    // A conflict that never resolves is returned after the last attempt.
    let tries = AtomicUsize::new(0);
    let error = fsm_runtime::retry::retry_on_conflict(3, || {
        tries.fetch_add(1, Ordering::SeqCst);
        store.transition_from(1, Order::Paid, Order::Cancelled)
    })
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Conflict { expected: "paid", actual: "shipped", .. }), "{error:?}");
    assert_eq!(tries.load(Ordering::SeqCst), 3);
}

/// Racing fires of one event: 64 concurrent tasks fire `Pay` on the same entity; exactly one
/// applies, the others see it applied, and one history row is written.
pub async fn racing_fires_apply_once<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.fire(1, OrderEvent::Pay).await })
        })
        .collect();
    let (mut applied, mut already) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Outcome::Applied { from, to, version } => {
                assert_eq!((from, to, version), (Order::Created, Order::Paid, 1));
                applied += 1;
            }
            Outcome::AlreadyApplied { state, version } => {
                assert_eq!((state, version), (Order::Paid, 1));
                already += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((applied, already), (1, 63));
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    let history = store.history(1).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].event.as_deref(), Some("pay"));
}

/// Idempotency keys are one set per database, shared by its machines: a key that a transition
/// of one machine stored is taken for every other machine's transitions and keyed operations,
/// and for the same machine's other entities; a purge through one machine's keys purges all.
/// Memory stores built on one `MemoryKeys` behave as the SQL stores of one database.
pub async fn one_key_across_two_machines<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    let tickets = store.tickets(&table).await;
    store.create(1).await.unwrap();
    tickets.create(1).await.unwrap();
    let shared = key(&table, 1);
    let pay = TransitionRequest::to(1, Order::Paid).idempotency_key(shared.clone(), fingerprint("one body"));
    assert!(store.apply(pay).await.unwrap().is_applied());

    // The same key and fingerprint on the other machine: taken, nothing moves.
    let resolve =
        TransitionRequest::fire(1, TicketEvent::Resolve).idempotency_key(shared.clone(), fingerprint("one body"));
    let error = tickets.apply(resolve).await.unwrap_err();
    assert!(matches!(&error, Error::IdempotencyKeyReused { key } if *key == shared.to_string()), "{error:?}");
    assert_eq!(tickets.get(1).await.unwrap(), Snapshot { state: Ticket::Open, version: 0 });
    assert!(tickets.history(1).await.unwrap().is_empty());

    // The same key on another entity of the same machine: taken too.
    store.create(2).await.unwrap();
    let other = TransitionRequest::to(2, Order::Paid).idempotency_key(shared.clone(), fingerprint("one body"));
    assert!(matches!(store.apply(other).await, Err(Error::IdempotencyKeyReused { .. })));
    assert_eq!(store.get(2).await.unwrap(), Snapshot { state: Order::Created, version: 0 });

    // A keyed operation through the other machine's keys finds it stored.
    let keys = tickets.keys();
    let op = keys.run_once(shared.clone(), fingerprint("an operation"), |_tx| Box::pin(async { Ok(1u8) }));
    assert!(matches!(op.await, Err(Error::IdempotencyKeyReused { .. })));

    // A key the other machine stores replays there and is taken here.
    let second = key(&table, 2);
    let resolve =
        || TransitionRequest::fire(1, TicketEvent::Resolve).idempotency_key(second.clone(), fingerprint("resolve"));
    assert!(tickets.apply(resolve()).await.unwrap().is_applied());
    assert!(tickets.apply(resolve()).await.unwrap().is_replay());
    let ship = TransitionRequest::to(1, Order::Shipped).idempotency_key(second.clone(), fingerprint("resolve"));
    assert!(matches!(store.apply(ship).await, Err(Error::IdempotencyKeyReused { .. })));

    // A transition's key with the same fingerprint is no operation's, and the other way round.
    let same = keys.run_once(shared.clone(), fingerprint("one body"), |_tx| Box::pin(async { Ok(1u8) }));
    assert!(matches!(same.await, Err(Error::IdempotencyKeyReused { .. })));
    let third = key(&table, 3);
    let op = keys.run_once(third.clone(), fingerprint("body"), |_tx| Box::pin(async { Ok(3u8) }));
    assert_eq!(op.await.unwrap(), Once::Ran(3));
    let ship = TransitionRequest::to(1, Order::Shipped).idempotency_key(third, fingerprint("body"));
    assert!(matches!(store.apply(ship).await, Err(Error::IdempotencyKeyReused { .. })));

    // One purge through either machine's keys forgets every key.
    assert_eq!(store.keys().purge_of(Some(&table), std::time::Duration::ZERO).await.unwrap(), 3);
    assert_eq!(tickets.keys().purge_of(Some(&table), std::time::Duration::ZERO).await.unwrap(), 0);
}

/// `create_with` writes the entity's own columns, the state and version 0 in one row; a column
/// left out is `NULL`; `state` chooses another state than the initial one.
pub async fn create_with_writes_one_row<S: Store<Order> + RawAccess + RawColumns + 'static>(
    store: Arc<S>,
    table: String,
) {
    store.add_columns(&table).await;
    let payment = NewEntity::new(1).column("amount", 1250_i64).column("currency", "EUR");
    assert_eq!(store.create_with(payment).await.unwrap(), CreateOutcome::Created { state: Order::Created });
    let row = store.read_row(&table, 1).await.expect("the row");
    assert_eq!((row.state.as_str(), row.version), ("created", 0));
    assert_eq!((row.get("amount"), row.get("currency")), (&ColumnValue::Int(1250), &ColumnValue::Text("EUR".into())));
    assert_eq!(row.get("note"), &ColumnValue::Null);
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    let imported = NewEntity::new(2).state(Order::Paid).column("amount", 7_i32);
    assert_eq!(store.create_with(imported).await.unwrap(), CreateOutcome::Created { state: Order::Paid });
    assert_eq!(
        store.transition(2, Order::Shipped).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 1 }
    );
    let row = store.read_row(&table, 2).await.expect("the row");
    assert_eq!((row.state.as_str(), row.version, row.get("amount")), ("shipped", 1, &ColumnValue::Int(7)));
}

/// A second `create_with` of an existing id is `AlreadyExists` and changes none of its columns,
/// whether the entity was made by `create_with` or by `create`.
pub async fn create_with_existing_unchanged<S: Store<Order> + RawAccess + RawColumns + 'static>(
    store: Arc<S>,
    table: String,
) {
    store.add_columns(&table).await;
    store.create_with(NewEntity::new(1).column("amount", 1250_i64).column("currency", "EUR")).await.unwrap();
    store.transition(1, Order::Paid).await.unwrap();
    let again = NewEntity::new(1).column("amount", 9999_i64).column("currency", "USD").column("note", "again");
    assert_eq!(
        store.create_with(again).await.unwrap(),
        CreateOutcome::AlreadyExists { state: Order::Paid, version: 1 }
    );
    let row = store.read_row(&table, 1).await.expect("the row");
    assert_eq!((row.state.as_str(), row.version), ("paid", 1));
    assert_eq!((row.get("amount"), row.get("currency")), (&ColumnValue::Int(1250), &ColumnValue::Text("EUR".into())));
    assert_eq!(row.get("note"), &ColumnValue::Null);
    store.create(2).await.unwrap();
    let late = NewEntity::new(2).state(Order::Shipped).column("amount", 5_i64);
    assert_eq!(
        store.create_with(late).await.unwrap(),
        CreateOutcome::AlreadyExists { state: Order::Created, version: 0 }
    );
    assert_eq!(store.read_row(&table, 2).await.expect("the row").get("amount"), &ColumnValue::Null);
}

/// A column name that is not an identifier, the id, state or version column, or a name given
/// twice is refused with a typed error naming the column and the table, and nothing is written.
pub async fn create_with_refuses_bad_columns<S: Store<Order> + RawAccess + RawColumns + 'static>(
    store: Arc<S>,
    table: String,
) {
    store.add_columns(&table).await;
    let cases: [(NewEntity<Order>, &str, ColumnProblem); 6] = [
        (
            NewEntity::new(1).column("amount; DROP TABLE x", 1_i64),
            "amount; DROP TABLE x",
            ColumnProblem::InvalidIdentifier,
        ),
        (NewEntity::new(1).column("", 1_i64), "", ColumnProblem::InvalidIdentifier),
        (
            NewEntity::new(1).column("amount", 1_i64).column("state", "paid"),
            "state",
            ColumnProblem::Reserved("state column"),
        ),
        (NewEntity::new(1).column("ID", 2_i64), "ID", ColumnProblem::Reserved("id column")),
        (NewEntity::new(1).column("version", 5_i64), "version", ColumnProblem::Reserved("version column")),
        (NewEntity::new(1).column("amount", 1_i64).column("Amount", 2_i64), "Amount", ColumnProblem::Duplicate),
    ];
    for (entity, column, problem) in cases {
        let error = store.create_with(entity).await.unwrap_err();
        match &error {
            Error::InvalidColumn { machine: "Order", table: t, column: c, problem: p } => {
                assert_eq!((t.as_str(), c.as_str(), *p), (table.as_str(), column, problem), "{error}");
            }
            other => panic!("expected InvalidColumn for `{column}`, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&format!("`{column}`")) && message.contains(&format!("`{table}`")), "{message}");
        assert!(!error.is_retryable());
        assert!(matches!(store.get(1).await.unwrap_err(), Error::NotFound { .. }), "{column}: nothing written");
        assert_eq!(store.read_row(&table, 1).await, None);
    }
}

/// A column the table does not have is the database's error naming the table, and the one
/// statement wrote nothing; the memory store, which has no schema, keeps any column.
pub async fn create_with_unknown_column<S: Store<Order> + RawAccess + RawColumns + 'static>(
    store: Arc<S>,
    table: String,
) {
    store.add_columns(&table).await;
    let entity = NewEntity::new(1).column("amount", 1250_i64).column("no_such_column", "x");
    if !S::HAS_SCHEMA {
        assert_eq!(store.create_with(entity).await.unwrap(), CreateOutcome::Created { state: Order::Created });
        return;
    }
    let error = store.create_with(entity).await.unwrap_err();
    assert!(
        matches!(&error, Error::Database { machine: "Order", table: t, retryable: false, .. } if *t == table),
        "{error:?}"
    );
    assert!(error.to_string().contains("no_such_column"), "the database names the column: {error}");
    assert_eq!(store.read_row(&table, 1).await, None);
    assert!(matches!(store.get(1).await.unwrap_err(), Error::NotFound { .. }));
    // The id is still free.
    assert_eq!(
        store.create_with(NewEntity::new(1).column("amount", 1_i64)).await.unwrap(),
        CreateOutcome::Created { state: Order::Created }
    );
}

/// Every kind of value reaches its column and reads back the same: `NULL`, booleans, floats,
/// JSON (PostgreSQL `jsonb` and `json`, MySQL `JSON`, text columns), binary strings.
pub async fn create_with_values_round_trip<S: Store<Order> + RawAccess + RawColumns + 'static>(
    store: Arc<S>,
    table: String,
) {
    store.add_columns(&table).await;
    let meta = serde_json::json!({"tags": ["a", "b"], "n": 3, "nested": {"ok": true}});
    let doc = serde_json::json!([1, "two", null]);
    let blob = vec![0_u8, 1, 127, 128, 255];
    let first = NewEntity::new(1)
        .column("amount", None::<i64>)
        .column("note", ColumnValue::Null)
        .column("paid", true)
        .column("rate", 12.5_f64)
        .column("meta", meta.clone())
        .column("doc", doc.clone())
        .column("attachment", blob.clone())
        .column("currency", Some("EUR"));
    store.create_with(first).await.unwrap();
    let row = store.read_row(&table, 1).await.expect("the row");
    let expected: [(&str, ColumnValue); 8] = [
        ("amount", ColumnValue::Null),
        ("note", ColumnValue::Null),
        ("paid", ColumnValue::Bool(true)),
        ("rate", ColumnValue::Float(12.5)),
        ("meta", ColumnValue::Json(meta)),
        ("doc", ColumnValue::Json(doc)),
        ("attachment", ColumnValue::Bytes(blob)),
        ("currency", ColumnValue::Text("EUR".into())),
    ];
    for (name, value) in &expected {
        assert_eq!(row.get(name), value, "column `{name}`");
    }
    let second = NewEntity::new(2)
        .column("paid", false)
        .column("rate", -0.25_f64)
        .column("meta", serde_json::json!("a string"))
        .column("attachment", Vec::<u8>::new())
        .column("note", "l'été \"quoted\"");
    store.create_with(second).await.unwrap();
    let row = store.read_row(&table, 2).await.expect("the row");
    assert_eq!(row.get("paid"), &ColumnValue::Bool(false));
    assert_eq!(row.get("rate"), &ColumnValue::Float(-0.25));
    assert_eq!(row.get("meta"), &ColumnValue::Json(serde_json::json!("a string")));
    assert_eq!(row.get("attachment"), &ColumnValue::Bytes(Vec::new()));
    assert_eq!(row.get("note"), &ColumnValue::Text("l'été \"quoted\"".into()));
}

/// Clones of a store share the same data: entities, history, idempotency keys and outbox.
pub async fn clones_share_state<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + Clone + 'static,
    S::Tx: Outbox,
{
    let clone = S::clone(&store);
    clone.create(1).await.unwrap();
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    let pay = || TransitionRequest::to(1, Order::Paid).idempotency_key(key(&table, 1), fingerprint("pay"));
    assert!(store.apply(pay().effect(enqueue_receipt::<S::Tx>(table.clone()))).await.unwrap().is_applied());
    assert_eq!(clone.get(1).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
    assert_eq!(clone.history(1).await.unwrap().len(), 1);
    assert_eq!(
        clone.apply(pay()).await.unwrap(),
        Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 }
    );
    let relay = Relay::new(clone.outbox(&table).await).lease(std::time::Duration::from_secs(30));
    assert_eq!(relay.run_once(&Recorder::default()).await.unwrap(), RelayReport { published: 1, failed: 0, dead: 0 });
    assert_eq!(clone.delete(1).await.unwrap(), DeleteOutcome::Deleted);
    assert!(matches!(store.get(1).await.unwrap_err(), Error::NotFound { .. }));
}

/// Every row of the outcome table as items of one batch, mixed: one answer per request, in
/// order, each what `apply` answers alone; two items for one entity run in their order; a
/// refused item fails alone.
pub async fn batch_follows_outcome_table<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    for id in 1..=5 {
        store.create(id).await.unwrap();
    }
    let pay = |seq| TransitionRequest::to(3, Order::Paid).idempotency_key(key(&table, seq), fingerprint("pay 3"));
    let answers = store
        .apply_many(vec![
            TransitionRequest::to(1, Order::Paid),
            TransitionRequest::to(1, Order::Paid),
            TransitionRequest::to(1, Order::Shipped),
            TransitionRequest::to(99, Order::Paid),
            TransitionRequest::to(2, Order::Shipped),
            pay(7),
            pay(7),
            TransitionRequest::to(4, Order::Paid).expect_version(5),
            TransitionRequest::fire(5, OrderEvent::Pay),
            TransitionRequest::to(5, Order::Cancelled),
        ])
        .await;
    assert_eq!(answers.len(), 10);
    let mut answers = answers.into_iter();
    let mut next = || answers.next().unwrap();
    assert_eq!(next().unwrap(), Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    assert_eq!(next().unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
    assert_eq!(next().unwrap(), Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 });
    assert!(matches!(next(), Err(Error::NotFound { .. })));
    assert!(matches!(next(), Err(Error::InvalidTransition { from: "created", to: "shipped", .. })));
    assert_eq!(next().unwrap(), Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    assert_eq!(next().unwrap(), Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 });
    assert!(matches!(next(), Err(Error::VersionConflict { expected: 5, actual: 0, .. })));
    assert_eq!(next().unwrap(), Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    assert_eq!(next().unwrap(), Outcome::Applied { from: Order::Paid, to: Order::Cancelled, version: 2 });
    for (id, state, version) in [
        (1, Order::Shipped, 2),
        (2, Order::Created, 0),
        (3, Order::Paid, 1),
        (4, Order::Created, 0),
        (5, Order::Cancelled, 2),
    ] {
        assert_eq!(store.get(id).await.unwrap(), Snapshot { state, version }, "entity {id}");
        assert_eq!(store.history(id).await.unwrap().len(), usize::try_from(version).unwrap(), "entity {id}");
    }
    assert!(store.apply_many(Vec::new()).await.is_empty());
}

/// Batches racing each other and single transitions on the same entities: exactly one
/// `Applied` per move, the others `AlreadyApplied`; history == version.
pub async fn batches_race_singles<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    const ENTITIES: i64 = 20;
    for id in 1..=ENTITIES {
        store.create(id).await.unwrap();
    }
    let batches = (0..6).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let requests = (1..=ENTITIES).map(|id| TransitionRequest::to(id, Order::Paid)).collect();
            store.apply_many(requests).await.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        })
    });
    let singles = (0..6).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for id in (1..=ENTITIES).rev() {
                answers.push(store.transition(id, Order::Paid).await.unwrap());
            }
            answers
        })
    });
    let tasks: Vec<_> = batches.chain(singles).collect();
    let mut applied = 0;
    for task in tasks {
        for answer in task.await.unwrap() {
            match answer {
                Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 } => applied += 1,
                Outcome::AlreadyApplied { state: Order::Paid, version: 1 } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(applied, ENTITIES, "one Applied per entity");
    for id in 1..=ENTITIES {
        assert_eq!(store.get(id).await.unwrap(), Snapshot { state: Order::Paid, version: 1 });
        assert_eq!(store.history(id).await.unwrap().len(), 1, "entity {id}");
    }
}

/// A batch's history rows record each request's actor, reason, metadata and key, as
/// `apply` does; a key replayed in a later batch gives `Replayed`, the same key with another
/// fingerprint `IdempotencyKeyReused`, and an entity whose stored state is no state
/// `UnknownState`, each failing alone.
pub async fn batch_records_audit_and_keys<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    for id in 1..=4 {
        store.create(id).await.unwrap();
    }
    store.corrupt(&table, 4, "teleported").await;
    let keyed = |id: i64, seq, body: &str| {
        TransitionRequest::to(id, Order::Paid).idempotency_key(key(&table, seq), fingerprint(body))
    };
    let first = store
        .apply_many(vec![
            TransitionRequest::to(1, Order::Paid)
                .actor("clerk")
                .reason("paid at the desk")
                .metadata(serde_json::json!({"till": 3})),
            keyed(2, 20, "pay 2").actor("api"),
            TransitionRequest::to(4, Order::Paid),
        ])
        .await;
    assert!(first[0].as_ref().unwrap().is_applied(), "{first:?}");
    assert!(first[1].as_ref().unwrap().is_applied(), "{first:?}");
    assert!(matches!(first[2], Err(Error::UnknownState { ref value, .. }) if value == "teleported"), "{first:?}");
    let entry = store.history(1).await.unwrap().remove(0);
    assert_eq!((entry.actor.as_deref(), entry.reason.as_deref()), (Some("clerk"), Some("paid at the desk")));
    assert_eq!(entry.metadata, Some(serde_json::json!({"till": 3})));
    assert_eq!(entry.idempotency_key, None);
    let entry = store.history(2).await.unwrap().remove(0);
    assert_eq!(entry.actor.as_deref(), Some("api"));
    assert_eq!(entry.idempotency_key, Some(key(&table, 20).to_string()));

    let second = store.apply_many(vec![keyed(2, 20, "pay 2"), keyed(3, 20, "pay 3"), keyed(3, 30, "pay 3")]).await;
    assert_eq!(second[0].as_ref().unwrap(), &Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 });
    assert!(matches!(second[1], Err(Error::IdempotencyKeyReused { .. })), "{second:?}");
    assert_eq!(second[2].as_ref().unwrap(), &Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    for (id, versions) in [(1, 1), (2, 1), (3, 1), (4, 0)] {
        assert_eq!(store.history(id).await.unwrap().len(), versions, "entity {id}");
    }
}

/// Effects in a batch run per request: a failing effect fails its request only, and writes
/// nothing of it; the requests around it apply.
pub async fn batch_effect_fails_alone<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    for id in 1..=3 {
        store.create(id).await.unwrap();
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let answers = store
        .apply_many(vec![
            TransitionRequest::to(1, Order::Paid),
            TransitionRequest::to(2, Order::Paid)
                .effect(counting::<S::Tx>(runs.clone()))
                .effect(|_tx| Box::pin(async { Err("card declined".into()) })),
            TransitionRequest::to(3, Order::Paid).effect(counting::<S::Tx>(runs.clone())),
            TransitionRequest::to(3, Order::Paid).effect(counting::<S::Tx>(runs.clone())),
        ])
        .await;
    assert!(answers[0].as_ref().unwrap().is_applied(), "{answers:?}");
    assert!(matches!(answers[1], Err(Error::Effect { .. })), "{answers:?}");
    assert!(answers[2].as_ref().unwrap().is_applied(), "{answers:?}");
    assert!(matches!(answers[3], Ok(Outcome::AlreadyApplied { .. })), "{answers:?}");
    // The failed request's first effect ran and was rolled back with it; the replay ran none.
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(store.get(2).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    assert!(store.history(2).await.unwrap().is_empty());
    assert_eq!(store.history(3).await.unwrap().len(), 1);
}

/// Batches racing batches: each names every entity twice (to `Paid`, then to `Shipped`), so
/// a batch holds two rounds; across all of them exactly one `Applied` per move, and history ==
/// version.
pub async fn batches_race_batches<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    const ENTITIES: i64 = 30;
    for id in 1..=ENTITIES {
        store.create(id).await.unwrap();
    }
    let tasks: Vec<_> = (0..6_i64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                // Each task in its own order of entities, so that the batches overlap in
                // different orders.
                let ids: Vec<i64> = (0..ENTITIES).map(|k| 1 + (k * (task + 1) * 7) % ENTITIES).collect();
                let requests = ids
                    .iter()
                    .map(|&id| TransitionRequest::to(id, Order::Paid))
                    .chain(ids.iter().map(|&id| TransitionRequest::to(id, Order::Shipped)))
                    .collect();
                store.apply_many(requests).await
            })
        })
        .collect();
    let (mut paid, mut shipped) = (0, 0);
    for task in tasks {
        for answer in task.await.unwrap() {
            match answer {
                Ok(Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }) => paid += 1,
                Ok(Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }) => shipped += 1,
                Ok(Outcome::AlreadyApplied { state: Order::Paid | Order::Shipped, .. }) => {}
                // Another batch shipped the entity before this one's move to `Paid`.
                Err(Error::InvalidTransition { from: "shipped", to: "paid", .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!((paid, shipped), (ENTITIES, ENTITIES), "one Applied per move");
    for id in 1..=ENTITIES {
        assert_eq!(store.get(id).await.unwrap(), Snapshot { state: Order::Shipped, version: 2 });
        assert_eq!(store.history(id).await.unwrap().len(), 2, "entity {id}");
    }
}
