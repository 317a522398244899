//! The outbox that lasts, on every store (memory, SQLite, PostgreSQL, MySQL/MariaDB), through
//! the `OutboxSource` and `OutboxMaintenance` of `RawAccess::outbox` (an SQL outbox claims only
//! the test's topic, the fixture's table name):
//!
//! - a poison message among 1,000 others: they all flow, it ends dead with its attempts and last
//!   error (holding back the later messages of its key only while it is alive), and a requeue
//!   delivers it;
//! - per-key order: a key's messages are published in enqueue order even when the first one
//!   failed and backed off, while messages of other keys pass during the backoff;
//! - purge under load: published messages purged while relays publish and messages are enqueued:
//!   no unpublished message is lost.
//!
//! Backoffs are a few milliseconds, set on the relay; the waits are conditions polled with a
//! deadline.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fixture::backends::RawAccess;
use crate::fixture::machines::Order;
use fsm_runtime::error::BoxError;
use fsm_runtime::outbox::{
    Outbox, OutboxMaintenance, OutboxMessage, OutboxSource, PendingMessage, Publisher, Relay, RelayReport,
};
use fsm_runtime::store::EffectFuture;
use fsm_runtime::{Store, TransitionRequest};

/// A publisher that fails some messages (by their `n`) always, some once, and records the
/// others in the order it published them.
#[derive(Default)]
pub struct Flaky {
    always: Mutex<HashSet<i64>>,
    once: Mutex<HashSet<i64>>,
    published: Mutex<Vec<PendingMessage>>,
}

impl Flaky {
    fn published(&self) -> Vec<PendingMessage> {
        self.published.lock().unwrap().clone()
    }

    fn published_ns(&self) -> Vec<i64> {
        self.published().iter().map(n_of).collect()
    }
}

impl Publisher for Flaky {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        let n = n_of(message);
        if self.always.lock().unwrap().contains(&n) {
            return Err(format!("poison pill {n}").into());
        }
        if self.once.lock().unwrap().remove(&n) {
            return Err(format!("the broker failed once on {n}").into());
        }
        self.published.lock().unwrap().push(message.clone());
        Ok(())
    }
}

fn n_of(message: &PendingMessage) -> i64 {
    message.payload["n"].as_i64().expect("a message with n")
}

/// Message `n` of `topic` with `key`.
fn message(topic: &str, n: i64, key: Option<String>) -> OutboxMessage {
    let message = OutboxMessage::new(topic, serde_json::json!({ "n": n }));
    match key {
        Some(key) => message.with_key(key),
        None => message,
    }
}

/// Creates entity `id` and pays it with an effect that enqueues `messages`, in order.
async fn enqueue<S>(store: &S, id: i64, messages: Vec<OutboxMessage>)
where
    S: Store<Order>,
    S::Tx: Outbox,
{
    store.create(id).await.unwrap();
    let request = TransitionRequest::to(id, Order::Paid).effect(enqueue_all::<S::Tx>(messages));
    assert!(store.apply(request).await.unwrap().is_applied());
}

/// An effect that enqueues `messages`, in order.
fn enqueue_all<Tx: Outbox>(messages: Vec<OutboxMessage>) -> impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send {
    move |tx| {
        Box::pin(async move {
            for message in messages {
                tx.enqueue(message).await?;
            }
            Ok(())
        })
    }
}

/// Polls `done` every few milliseconds until it holds; fails after `limit`.
async fn eventually<F: Future<Output = bool>>(what: &str, limit: Duration, mut done: impl FnMut() -> F) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The `n`s of `published`, grouped by key in publication order.
fn by_key(published: &[PendingMessage]) -> BTreeMap<String, Vec<i64>> {
    let mut keys = BTreeMap::<String, Vec<i64>>::new();
    for message in published {
        if let Some(key) = &message.key {
            keys.entry(key.clone()).or_default().push(n_of(message));
        }
    }
    keys
}

/// Runs relays over `outbox` in tasks until `stop` is set; their reports summed.
fn spawn_relays<O>(
    outbox: &O,
    relays: usize,
    publisher: &Arc<Flaky>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<RelayReport>>
where
    O: OutboxSource + Clone + 'static,
{
    (0..relays)
        .map(|_| {
            let (outbox, publisher, stop) = (outbox.clone(), publisher.clone(), stop.clone());
            tokio::spawn(async move {
                let tiny = Duration::from_millis(2);
                let relay = Relay::new(outbox).batch(64).max_attempts(3).backoff(tiny, tiny * 2);
                let mut total = RelayReport::default();
                while !stop.load(Ordering::SeqCst) {
                    let report = relay.run_once(&*publisher).await.expect("a relay pass");
                    total.published += report.published;
                    total.failed += report.failed;
                    total.dead += report.dead;
                    if report == RelayReport::default() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                total
            })
        })
        .collect()
}

/// Sets `stop` and sums the relays' reports.
async fn stop_relays(stop: &AtomicBool, relays: Vec<tokio::task::JoinHandle<RelayReport>>) -> RelayReport {
    stop.store(true, Ordering::SeqCst);
    let mut total = RelayReport::default();
    for relay in relays {
        let report = relay.await.expect("the relay task");
        total.published += report.published;
        total.failed += report.failed;
        total.dead += report.dead;
    }
    total
}

/// One poison message (`n` = 3, key `k3`) among 1,000 others, two relays at once: the 1,000
/// are published once each, in order per key; the poison one ends dead after 3 attempts with
/// its error; a requeue and a healthy publisher deliver it.
pub async fn poison_message_goes_dead<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    const POISON: i64 = 3;
    let key = |n: i64| (n % 4 != 0).then(|| format!("k{}", n % 7));
    for (id, chunk) in (0..=1_000).collect::<Vec<i64>>().chunks(250).enumerate() {
        let messages = chunk.iter().map(|&n| message(&table, n, key(n))).collect();
        enqueue(&*store, i64::try_from(id).unwrap() + 1, messages).await;
    }
    let outbox = store.outbox(&table).await;
    let publisher = Arc::new(Flaky::default());
    publisher.always.lock().unwrap().insert(POISON);
    let stop = Arc::new(AtomicBool::new(false));
    let relays = spawn_relays(&outbox, 2, &publisher, &stop);
    eventually("1,000 published and the poison one dead", Duration::from_secs(120), || async {
        publisher.published().len() >= 1_000 && !outbox.dead_letters(10).await.unwrap().is_empty()
    })
    .await;
    let total = stop_relays(&stop, relays).await;
    assert_eq!((total.published, total.failed, total.dead), (1_000, 3, 1), "{total:?}");

    let mut published = publisher.published_ns();
    for (key, ns) in by_key(&publisher.published()) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "key {key} out of order: {ns:?}");
    }
    published.sort_unstable();
    assert_eq!(published, (0..=1_000).filter(|&n| n != POISON).collect::<Vec<_>>(), "each published once");

    let dead = outbox.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!((n_of(&dead[0].message), dead[0].message.attempts), (POISON, 3));
    assert_eq!(dead[0].message.last_error.as_deref(), Some("poison pill 3"));
    assert!(dead[0].dead_at_micros > 0);

    let id = dead[0].message.message_id.clone();
    assert!(outbox.requeue(&id).await.unwrap());
    assert!(!outbox.requeue(&id).await.unwrap(), "no longer dead");
    assert_eq!(outbox.requeue_all_dead().await.unwrap(), 0);
    publisher.always.lock().unwrap().clear();
    let relay = Relay::new(outbox.clone());
    assert_eq!(relay.run_once(&*publisher).await.unwrap(), RelayReport { published: 1, failed: 0, dead: 0 });
    let delivered = publisher.published().pop().unwrap();
    assert_eq!((n_of(&delivered), delivered.message_id.as_str(), delivered.attempts), (POISON, id.as_str(), 1));
    assert_eq!(delivered.last_error.as_deref(), Some("poison pill 3"), "the last error is kept");
    assert!(outbox.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(relay.run_once(&*publisher).await.unwrap(), RelayReport::default());
}

/// Key `K`'s messages 0, 1 and 4 are published in that order although 0 failed once and
/// backed off; messages of other keys (2, and 5 enqueued during the backoff) and without a key
/// (3) pass meanwhile.
pub async fn key_order_survives_backoff<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    let k = || Some("K".to_owned());
    let first = vec![
        message(&table, 0, k()),
        message(&table, 1, k()),
        message(&table, 2, Some("other".to_owned())),
        message(&table, 3, None),
        message(&table, 4, k()),
    ];
    enqueue(&*store, 1, first).await;
    let outbox = store.outbox(&table).await;
    let publisher = Flaky::default();
    publisher.once.lock().unwrap().insert(0);
    // Half a second at least: the passes below run well within it.
    let backoff = Duration::from_secs(1);
    let relay = Relay::new(outbox).backoff(backoff, backoff);

    let failed_at = Instant::now();
    assert_eq!(relay.run_once(&publisher).await.unwrap(), RelayReport { published: 2, failed: 1, dead: 0 });
    assert_eq!(publisher.published_ns(), [2, 3], "K's head failed; K's others wait");
    assert_eq!(relay.run_once(&publisher).await.unwrap(), RelayReport::default(), "K backs off");
    enqueue(&*store, 2, vec![message(&table, 5, Some("late".to_owned()))]).await;
    assert_eq!(relay.run_once(&publisher).await.unwrap().published, 1, "another key passes during the backoff");
    assert_eq!(publisher.published_ns(), [2, 3, 5]);
    assert!(failed_at.elapsed() < backoff / 2, "the passes ran within the backoff: {:?}", failed_at.elapsed());

    eventually("every message published", Duration::from_secs(20), || async {
        relay.run_once(&publisher).await.unwrap();
        publisher.published().len() == 6
    })
    .await;
    assert!(failed_at.elapsed() >= backoff / 2, "K waited for its backoff");
    assert_eq!(by_key(&publisher.published())["K"], [0, 1, 4]);
    let head = publisher.published().into_iter().find(|m| n_of(m) == 0).unwrap();
    assert_eq!(head.attempts, 2);
    assert_eq!(head.last_error.as_deref(), Some("the broker failed once on 0"));
}

/// 60 payments of 3 messages each (one key per payment) enqueued while two relays publish and a
/// third task purges published messages in a loop: every message is published, in order per
/// key, and purged exactly once; nothing unpublished is purged.
pub async fn purge_under_load<S>(store: Arc<S>, table: String)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    const PAYMENTS: i64 = 60;
    let outbox = store.outbox(&table).await;
    let publisher = Arc::new(Flaky::default());
    let stop = Arc::new(AtomicBool::new(false));
    let relays = spawn_relays(&outbox, 2, &publisher, &stop);
    let purger = {
        let (outbox, stop) = (outbox.clone(), stop.clone());
        tokio::spawn(async move {
            let mut purged = 0;
            while !stop.load(Ordering::SeqCst) {
                purged += outbox.purge_published(Duration::ZERO).await.expect("a purge");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            purged
        })
    };
    for id in 1..=PAYMENTS {
        let messages = (0..3).map(|j| message(&table, id * 10 + j, Some(format!("p{id}")))).collect();
        enqueue(&*store, id, messages).await;
    }
    eventually("every message published", Duration::from_secs(120), || async { publisher.published().len() >= 3 * 60 })
        .await;
    let total = stop_relays(&stop, relays).await;
    let purged = purger.await.expect("the purger") + outbox.purge_published(Duration::ZERO).await.unwrap();
    assert_eq!((total.published, total.failed), (180, 0));
    assert_eq!(purged, 180, "every published message purged once, nothing else");
    let mut published = publisher.published_ns();
    for (key, ns) in by_key(&publisher.published()) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "key {key} out of order: {ns:?}");
    }
    published.sort_unstable();
    let expected: Vec<i64> = (1..=PAYMENTS).flat_map(|id| (0..3).map(move |j| id * 10 + j)).collect();
    assert_eq!(published, expected);
    assert_eq!(outbox.purge_published(Duration::ZERO).await.unwrap(), 0);
}
