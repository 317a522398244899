//! The conformance cases of the audit trail: who, why and which request each history row
//! records, and histories that outlive their entity. Run on every adapter through `cases.rs`.

use std::sync::Arc;
use std::time::Duration;

use fsm_runtime::store::{CreateOutcome, DeleteOutcome, EffectFuture, Snapshot};
use fsm_runtime::{Fingerprint, IdempotencyKey, Outcome, Store, TransitionRequest};
use serde_json::json;

use crate::fixture::backends::RawAccess;
use crate::fixture::machines::{Order, OrderEvent};

/// Each history row carries the actor, the reason, the key that applied it and the caller's
/// metadata, on every path of a store (plain, keyed, with effects); a replay adds no row.
pub async fn audit_columns_recorded<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, table: String) {
    store.create(1).await.unwrap();
    let pay = TransitionRequest::fire(1, OrderEvent::Pay)
        .actor("user:7")
        .reason("paid at the till")
        .metadata(json!({ "till": 3, "tags": ["cash"] }));
    assert!(store.apply(pay).await.unwrap().is_applied());
    let key = IdempotencyKey::new(format!("{table}-ship"), 1).unwrap();
    let fingerprint = Fingerprint::of(&"ship 1").unwrap();
    let ship = || TransitionRequest::to(1, Order::Shipped).idempotency_key(key.clone(), fingerprint.clone());
    assert!(store.apply(ship().actor("svc:shipping")).await.unwrap().is_applied());
    assert!(matches!(store.apply(ship().actor("someone else")).await.unwrap(), Outcome::Replayed { version: 2, .. }));

    store.create(2).await.unwrap();
    let with_effect = TransitionRequest::to(2, Order::Cancelled)
        .actor("job:cleanup")
        .reason("unpaid for 7 days")
        .idempotency_key(IdempotencyKey::new(format!("{table}-cancel"), 2).unwrap(), Fingerprint::of(&"2").unwrap())
        .effect(|_tx| -> EffectFuture<'_> { Box::pin(async { Ok(()) }) });
    assert!(store.apply(with_effect).await.unwrap().is_applied());
    store.create(3).await.unwrap();
    assert!(store.fire(3, OrderEvent::Pay).await.unwrap().is_applied());

    let history = store.history(1).await.unwrap();
    assert_eq!(history.len(), 2, "a replay writes no history: {history:?}");
    let paid = &history[0];
    assert_eq!((paid.actor.as_deref(), paid.reason.as_deref()), (Some("user:7"), Some("paid at the till")));
    assert_eq!(paid.idempotency_key, None);
    assert_eq!(paid.metadata, Some(json!({ "till": 3, "tags": ["cash"] })));
    assert_eq!(paid.event.as_deref(), Some("pay"));
    assert_eq!(paid.deleted_at_micros, None);
    let shipped = &history[1];
    assert_eq!((shipped.actor.as_deref(), shipped.reason.as_deref()), (Some("svc:shipping"), None));
    assert_eq!(shipped.idempotency_key, Some(format!("{table}-ship#1")));
    assert_eq!(shipped.metadata, None);

    let cancelled = store.history(2).await.unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].actor.as_deref(), Some("job:cleanup"));
    assert_eq!(cancelled[0].reason.as_deref(), Some("unpaid for 7 days"));
    assert_eq!(cancelled[0].idempotency_key, Some(format!("{table}-cancel#2")));

    let plain = store.history(3).await.unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!((&plain[0].actor, &plain[0].reason, &plain[0].idempotency_key), (&None, &None, &None));
    assert_eq!(plain[0].metadata, None);
}

/// `delete` keeps the history as the audit trail of an earlier life of the id; the id created
/// again starts a history of its own; the purges remove what they say.
pub async fn delete_keeps_the_audit_trail<S: Store<Order> + RawAccess + 'static>(store: Arc<S>, _table: String) {
    store.create(1).await.unwrap();
    store.apply(TransitionRequest::fire(1, OrderEvent::Pay).actor("first life")).await.unwrap();
    store.fire(1, OrderEvent::Ship).await.unwrap();
    assert_eq!(store.delete(1).await.unwrap(), DeleteOutcome::Deleted);
    assert!(store.history(1).await.unwrap().is_empty(), "a deleted entity has no live history");
    let first_life = store.audit(1).await.unwrap();
    assert_eq!(first_life.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
    assert!(first_life.iter().all(|e| e.deleted_at_micros.is_some_and(|at| at > 1_600_000_000_000_000)));
    assert_eq!(first_life[0].actor.as_deref(), Some("first life"));

    assert_eq!(store.create(1).await.unwrap(), CreateOutcome::Created { state: Order::Created });
    let again = store.fire(1, OrderEvent::Pay).await.unwrap();
    assert_eq!(again, Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
    let live = store.history(1).await.unwrap();
    assert_eq!(live.len(), 1, "the new life's history only: {live:?}");
    assert_eq!((live[0].version, live[0].deleted_at_micros), (1, None));
    let audit = store.audit(1).await.unwrap();
    assert_eq!(
        audit.iter().map(|e| (e.version, e.deleted_at_micros.is_some())).collect::<Vec<_>>(),
        [(1, true), (2, true), (1, false)]
    );

    assert_eq!(store.delete(1).await.unwrap(), DeleteOutcome::Deleted);
    let lives = store.audit(1).await.unwrap();
    assert_eq!(lives.len(), 3);
    assert!(lives[0].deleted_at_micros < lives[2].deleted_at_micros, "oldest life first: {lives:?}");

    assert_eq!(store.purge_deleted_history(Duration::from_secs(3600)).await.unwrap(), 0, "deleted just now");
    assert_eq!(store.audit(1).await.unwrap().len(), 3);
    assert_eq!(store.purge_deleted_history(Duration::ZERO).await.unwrap(), 3);
    assert!(store.audit(1).await.unwrap().is_empty());

    store.create(2).await.unwrap();
    store.fire(2, OrderEvent::Pay).await.unwrap();
    assert_eq!(store.purge_deleted_history(Duration::ZERO).await.unwrap(), 0, "a live entity's history stays");
    assert_eq!(store.purge_history(2).await.unwrap(), 1);
    assert!(store.history(2).await.unwrap().is_empty());
    assert_eq!(store.get(2).await.unwrap(), Snapshot { state: Order::Paid, version: 1 }, "the entity stays");
    assert_eq!(store.purge_history(2).await.unwrap(), 0);
}
