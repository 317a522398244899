//! The end-to-end chain of a paid order, on SQLite, PostgreSQL and MySQL/MariaDB:
//!
//! order paid (a transition whose effect enqueues a message on the transition's connection)
//! -> outbox row -> `Relay` over `SqlOutbox` (only this test's topic) -> a consumer that, in its
//! own transaction on the same database, records the message id in the inbox and inserts a
//! `receipts` row only the first time -> exactly one receipt per paid order,
//!
//! under retries of every step:
//! - the payment: sent several times, at once and one after another, by target, by event and
//!   with an idempotency key; a first attempt whose later effect fails enqueues nothing;
//! - the relay: run several times; killed (task aborted) between publish and mark, with a new
//!   relay republishing the same message id after the lease; several relays at once;
//! - the consumer: a duplicate delivery (the inbox says it was seen: no second receipt); a
//!   failure before commit (the relay releases the message and delivers it again, and the inbox
//!   record was rolled back with the receipt); a broker that delivers every message twice at
//!   once.
//!
//! The `receipts` table has no unique constraint on purpose: a second receipt would show as a
//! second row, not be hidden behind a constraint error. The topic, the idempotency keys' source
//! and the inbox consumer are the fixture's table name; the fixture deletes the outbox rows and
//! keys, and [`with_inbox_cleanup`] the inbox rows.

use fsm_runtime::sql::SqlTx;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::error::BoxError;
use fsm_runtime::inbox::Inbox;
use fsm_runtime::outbox::SqlOutbox;
use fsm_runtime::outbox::{Outbox, OutboxMessage, PendingMessage, Publisher, Relay, RelayReport};
use fsm_runtime::store::EffectFuture;
use fsm_runtime::{Error, Fingerprint, IdempotencyKey, Outcome, Store, TransitionRequest, sqlx};
use futures_util::FutureExt as _;

/// What a client sends to pay an order, as fingerprinted.
#[derive(Debug, serde::Serialize)]
struct PayRequest {
    order: i64,
    amount: i64,
}

/// The effect of a payment: enqueue "order paid" on the transition's own connection.
fn enqueue_paid<Tx: Outbox>(topic: String, order: i64) -> impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send {
    move |tx| {
        Box::pin(async move {
            let message = OutboxMessage::new(topic, serde_json::json!({ "order": order, "event": "paid" }));
            tx.enqueue(message.with_key(order.to_string())).await?;
            Ok(())
        })
    }
}

/// The payment of `order`, by target.
fn pay<'a, B: TestBackend>(topic: &str, order: i64) -> TransitionRequest<'a, Order, SqlTx<B>>
where
{
    TransitionRequest::to(order, Order::Paid).effect(enqueue_paid::<SqlTx<B>>(topic.to_owned(), order))
}

/// The payment of `order` with the idempotency key `(topic, order)`.
fn keyed_pay<'a, B: TestBackend>(topic: &str, order: i64) -> TransitionRequest<'a, Order, SqlTx<B>>
where
{
    let key = IdempotencyKey::new(topic, order).expect("a valid key");
    let fingerprint = Fingerprint::of(&PayRequest { order, amount: 100 * order }).expect("a fingerprint");
    pay::<B>(topic, order).idempotency_key(key, fingerprint)
}

/// A payment attempt whose second effect fails after the message was enqueued (the card is
/// declined): nothing of it may remain.
fn declined<B: TestBackend>(request: TransitionRequest<'_, Order, SqlTx<B>>) -> TransitionRequest<'_, Order, SqlTx<B>> {
    request.effect(|_tx| Box::pin(async { Err("card declined".into()) }))
}

/// One delivery as the consumer saw it.
#[derive(Debug, Clone)]
struct Delivery {
    message: PendingMessage,
    /// What the inbox said: `true` the first time the id was recorded (in this transaction).
    first: bool,
    /// Whether the consumer's transaction committed (else it failed before the commit).
    committed: bool,
}

/// The receiving side: in one transaction on the same database, `Inbox::record` and, the first
/// time, a `receipts` row. It can be told to fail before the commit once per order, and to hang
/// after the commit (a relay that dies between publish and mark).
struct ReceiptConsumer<B: TestBackend> {
    pool: sqlx::Pool<B>,
    name: String,
    receipts: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    fail_once: Arc<Mutex<HashSet<i64>>>,
    hang_after_commit: Arc<AtomicBool>,
}

impl<B: TestBackend> Clone for ReceiptConsumer<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            name: self.name.clone(),
            receipts: self.receipts.clone(),
            deliveries: self.deliveries.clone(),
            fail_once: self.fail_once.clone(),
            hang_after_commit: self.hang_after_commit.clone(),
        }
    }
}

impl<B: TestBackend> ReceiptConsumer<B> {
    fn new(fx: &Fixture<B, Order>, receipts: &str) -> Self {
        Self {
            pool: fx.pool().clone(),
            name: fx.table.clone(),
            receipts: receipts.to_owned(),
            deliveries: Arc::default(),
            fail_once: Arc::default(),
            hang_after_commit: Arc::default(),
        }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("deliveries").clone()
    }

    fn fail_once_for(&self, order: i64) {
        self.fail_once.lock().expect("fail_once").insert(order);
    }

    fn log(&self, message: &PendingMessage, first: bool, committed: bool) {
        self.deliveries.lock().expect("deliveries").push(Delivery { message: message.clone(), first, committed });
    }
}

impl<B: TestBackend> Publisher for ReceiptConsumer<B> {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        let order = message.payload["order"].as_i64().ok_or("a message without an order")?;
        let mut tx = SqlTx::begin(&self.pool).await?;
        let first = tx.record(&self.name, &message.message_id).await?;
        if first {
            let sql = format!(
                "INSERT INTO {} (order_id, message_id) VALUES ({}, {})",
                self.receipts,
                B::param(1),
                B::param(2)
            );
            B::execute(&mut *tx, sql, vec![order.into(), message.message_id.clone().into()]).await?;
        }
        let fail = self.fail_once.lock().expect("fail_once").remove(&order);
        if fail {
            // The transaction is dropped: the inbox record and the receipt roll back.
            self.log(message, first, false);
            return Err(format!("consumer crashed on order {order} before its commit").into());
        }
        tx.commit().await?;
        self.log(message, first, true);
        if self.hang_after_commit.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// A broker that hands every message to `copies` consumers at once (an at-least-once broker
/// with duplicates); it fails when one of them fails.
struct DuplicatingBroker<P> {
    consumer: P,
    copies: usize,
}

impl<P: Publisher> Publisher for DuplicatingBroker<P> {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        let deliveries = (0..self.copies).map(|_| self.consumer.publish(message));
        futures_util::future::join_all(deliveries).await.into_iter().collect()
    }
}

/// Creates the `receipts` table (dropped when the test ends); its name.
async fn receipts<B: TestBackend>(fx: &Fixture<B, Order>) -> String {
    let table = fx.extra_table("receipts");
    fx.exec(format!("CREATE TABLE {table} (order_id BIGINT, message_id VARCHAR(64))"), []).await;
    table
}

/// The outbox of the fixture's database, claiming only the fixture's topic.
async fn outbox<B: TestBackend>(fx: &Fixture<B, Order>) -> SqlOutbox<B> {
    SqlOutbox::new(fx.pool().clone()).await.expect("the outbox").only_topic(fx.table.clone())
}

/// Runs `case`, then deletes the inbox rows of the fixture's consumer, also when it panics.
async fn with_inbox_cleanup<B: TestBackend>(fx: &Fixture<B, Order>, case: impl Future<Output = ()>) {
    let result = AssertUnwindSafe(case).catch_unwind().await;
    fx.exec(format!("DELETE FROM fsm_inbox WHERE consumer = {}", fx.p(1)), [Arg::from(fx.table.clone())]).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Applies `request` from `n` tasks at once; the outcomes.
async fn at_once<B: TestBackend>(
    fx: &Arc<Fixture<B, Order>>,
    n: usize,
    request: impl Fn(&str) -> TransitionRequest<'static, Order, SqlTx<B>>,
) -> Vec<Result<Outcome<Order>, Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let fx = fx.clone();
            let request = request(&fx.table);
            tokio::spawn(async move { fx.store.apply(request).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("the task"));
    }
    outcomes
}

/// How many outcomes are `Applied`, and whether all the others are what a retry gets.
fn count_applied(outcomes: &[Result<Outcome<Order>, Error>], keyed: bool) -> usize {
    let mut applied = 0;
    for outcome in outcomes {
        match outcome {
            Ok(Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }) => applied += 1,
            Ok(Outcome::Replayed { from: Order::Created, to: Order::Paid, version: 1 }) if keyed => {}
            Ok(Outcome::AlreadyApplied { state: Order::Paid, version: 1 }) if !keyed => {}
            other => panic!("a payment retry gave {other:?}"),
        }
    }
    applied
}

/// What the database holds in the end for `orders`: exactly one receipt per order, carrying the
/// id of the order's only outbox message, which is published; one inbox row per message.
async fn assert_exactly_one_receipt_each<B: TestBackend>(fx: &Fixture<B, Order>, receipts: &str, orders: &[i64]) {
    let topic = &fx.table;
    for &order in orders {
        let count = format!("SELECT COUNT(*) FROM {receipts} WHERE order_id = {}", fx.p(1));
        assert_eq!(fx.fetch_i64(count, [order.into()]).await, Some(1), "{}: receipts of order {order}", B::LABEL);
        let messages =
            format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {} AND message_key = {}", fx.p(1), fx.p(2));
        let key = Arg::from(order.to_string());
        assert_eq!(fx.fetch_i64(messages, [topic.as_str().into(), key.clone()]).await, Some(1), "order {order}");
        let mut conn = fx.pool().acquire().await.expect("a connection");
        let receipt = format!("SELECT message_id, order_id FROM {receipts} WHERE order_id = {}", fx.p(1));
        let (receipt_id, _) =
            B::fetch_text_i64(&mut conn, receipt, vec![order.into()]).await.expect("read").expect("the receipt");
        let published = format!(
            "SELECT message_id, attempts FROM fsm_outbox WHERE topic = {} AND message_key = {} \
             AND published_at_micros IS NOT NULL",
            fx.p(1),
            fx.p(2)
        );
        let (message_id, attempts) = B::fetch_text_i64(&mut conn, published, vec![topic.as_str().into(), key])
            .await
            .expect("read")
            .expect("the message is published");
        assert_eq!(receipt_id, message_id, "{}: the receipt of order {order} names its message", B::LABEL);
        assert!(attempts >= 1);
    }
    let all = format!("SELECT COUNT(*) FROM {receipts}");
    assert_eq!(fx.fetch_i64(all, []).await, Some(i64::try_from(orders.len()).unwrap()), "{}", B::LABEL);
    let pending = format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {} AND published_at_micros IS NULL", fx.p(1));
    assert_eq!(fx.fetch_i64(pending, [topic.as_str().into()]).await, Some(0), "{}: unpublished messages", B::LABEL);
    let inbox = format!("SELECT COUNT(*) FROM fsm_inbox WHERE consumer = {}", fx.p(1));
    assert_eq!(fx.fetch_i64(inbox, [topic.as_str().into()]).await, Some(i64::try_from(orders.len()).unwrap()));
}

/// What the consumer saw: one message id per order; every delivery of an id carries the same
/// topic, key and payload, with attempts that never go down; exactly one delivery of each id
/// both recorded it first and committed. Returns the deliveries by order.
fn assert_deliveries(deliveries: &[Delivery], topic: &str, orders: &[i64]) -> BTreeMap<i64, Vec<Delivery>> {
    let mut by_order: BTreeMap<i64, Vec<Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        let order = delivery.message.payload["order"].as_i64().expect("an order");
        by_order.entry(order).or_default().push(delivery.clone());
    }
    assert_eq!(by_order.keys().copied().collect::<Vec<_>>(), orders, "every order's message was delivered");
    for (order, deliveries) in &by_order {
        let first = &deliveries[0].message;
        assert_eq!(first.topic, topic);
        assert_eq!(first.key.as_deref(), Some(order.to_string().as_str()));
        assert_eq!(first.payload, serde_json::json!({ "order": order, "event": "paid" }));
        for delivery in deliveries {
            assert_eq!(delivery.message.message_id, first.message_id, "a duplicate of order {order} has another id");
            assert_eq!((&delivery.message.topic, &delivery.message.payload), (&first.topic, &first.payload));
        }
        let attempts: Vec<_> = deliveries.iter().map(|d| d.message.attempts).collect();
        assert!(attempts.is_sorted(), "attempts of order {order}: {attempts:?}");
        let applied = deliveries.iter().filter(|d| d.first && d.committed).count();
        assert_eq!(applied, 1, "order {order} was applied {applied} times by the consumer: {deliveries:#?}");
    }
    by_order
}

/// The whole chain, one step after the other, each step retried; see the file's documentation.
async fn exactly_one_receipt_under_retries<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    with_inbox_cleanup(&fx, async {
        let topic = fx.table.clone();
        let receipts = receipts(&fx).await;
        let store = &fx.store;
        for order in 1..=6 {
            store.create(order).await.unwrap();
        }

        // 1. Payments, each sent several times.
        // Order 1: 8 identical requests at once (a double click, a client's retry): one applies.
        assert_eq!(count_applied(&at_once(&fx, 8, |topic| pay::<B>(topic, 1)).await, false), 1, "{}", B::LABEL);
        // Order 2: a first attempt declined after it enqueued: no message; then three sends.
        let error = store.apply(declined::<B>(pay::<B>(&topic, 2))).await.unwrap_err();
        assert!(matches!(error, Error::Effect { from: "created", to: "paid", .. }), "{error:?}");
        let outcomes = [
            store.apply(pay::<B>(&topic, 2)).await,
            store.apply(pay::<B>(&topic, 2)).await,
            store.apply(pay::<B>(&topic, 2)).await,
        ];
        assert_eq!(count_applied(&outcomes, false), 1);
        // Order 3: by event, three times.
        for expected in [1, 0, 0] {
            let fire = TransitionRequest::fire(3, OrderEvent::Pay).effect(enqueue_paid::<SqlTx<B>>(topic.clone(), 3));
            assert_eq!(count_applied(&[store.apply(fire).await], false), expected);
        }
        // Order 4: keyed, three times: applied, then replayed.
        let outcomes = [
            store.apply(keyed_pay::<B>(&topic, 4)).await,
            store.apply(keyed_pay::<B>(&topic, 4)).await,
            store.apply(keyed_pay::<B>(&topic, 4)).await,
        ];
        assert_eq!(count_applied(&outcomes, true), 1);
        // Order 5: keyed, declined first (the key stays new), then three sends.
        let error = store.apply(declined::<B>(keyed_pay::<B>(&topic, 5))).await.unwrap_err();
        assert!(matches!(error, Error::Effect { .. }), "{error:?}");
        let outcomes = [
            store.apply(keyed_pay::<B>(&topic, 5)).await,
            store.apply(keyed_pay::<B>(&topic, 5)).await,
            store.apply(keyed_pay::<B>(&topic, 5)).await,
        ];
        assert_eq!(count_applied(&outcomes, true), 1);
        // Order 6: keyed, 8 at once.
        assert_eq!(count_applied(&at_once(&fx, 8, |topic| keyed_pay::<B>(topic, 6)).await, true), 1, "{}", B::LABEL);
        // Another request (a new key) for a paid order finds it paid and enqueues nothing.
        let other_key = IdempotencyKey::new(topic.as_str(), 1_000).unwrap();
        let other = pay::<B>(&topic, 4).idempotency_key(other_key, Fingerprint::new("another request").unwrap());
        assert_eq!(store.apply(other).await.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
        // One message per paid order, nothing from the declined attempts or the retries.
        let messages = format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {}", fx.p(1));
        assert_eq!(fx.fetch_i64(messages.clone(), [topic.as_str().into()]).await, Some(6), "{}", B::LABEL);

        // 2. A relay killed between publish and mark: the consumer committed order 1's receipt,
        // the relay never marked it.
        let lease = Duration::from_millis(1_500);
        let outbox = outbox(&fx).await;
        let consumer = ReceiptConsumer::<B>::new(&fx, &receipts);
        consumer.hang_after_commit.store(true, Ordering::SeqCst);
        let crashing = {
            let (outbox, consumer) = (outbox.clone(), consumer.clone());
            // It polls until it claims something (another topic's relay may hold a lock for a
            // moment), then hangs in the consumer until it is killed.
            tokio::spawn(async move {
                let relay = Relay::new(outbox).lease(lease);
                loop {
                    if let Err(error) = relay.run_once(&consumer).await {
                        return error;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(20), async {
            while consumer.deliveries().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the first relay delivers a message");
        crashing.abort();
        assert!(crashing.await.unwrap_err().is_cancelled());
        consumer.hang_after_commit.store(false, Ordering::SeqCst);
        let delivered = consumer.deliveries();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].message.payload["order"], 1, "messages are claimed in order");
        assert!(delivered[0].first && delivered[0].committed);
        // A new relay at once: every message is still claimed by the dead one.
        let relay = Relay::new(outbox.clone()).lease(lease);
        assert_eq!(
            relay.run_once(&consumer).await.unwrap(),
            RelayReport { published: 0, failed: 0, dead: 0 },
            "{}",
            B::LABEL
        );
        tokio::time::sleep(lease + Duration::from_millis(200)).await;

        // 3. After the lease, with a consumer that fails once on order 3 before its commit: order
        // 1 again (the inbox says seen: no second receipt), order 2, then order 3 fails and
        // waits for its backoff while the others (other keys) pass; then order 3.
        consumer.fail_once_for(3);
        let backoff = Duration::from_millis(300);
        let relay = relay.backoff(backoff, backoff);
        assert_eq!(
            relay.run_once(&consumer).await.unwrap(),
            RelayReport { published: 5, failed: 1, dead: 0 },
            "{}",
            B::LABEL
        );
        assert_eq!(relay.run_once(&consumer).await.unwrap(), RelayReport::default(), "{}: order 3 backs off", B::LABEL);
        tokio::time::sleep(backoff).await;
        assert_eq!(
            relay.run_once(&consumer).await.unwrap(),
            RelayReport { published: 1, failed: 0, dead: 0 },
            "{}",
            B::LABEL
        );
        for _ in 0..3 {
            assert_eq!(relay.run_once(&consumer).await.unwrap(), RelayReport::default());
        }

        // 4. The broker delivers every message once more (its last delivery): the inbox says
        // seen each time.
        let before = consumer.deliveries().len();
        let mut seen = HashSet::new();
        for delivery in consumer.deliveries().into_iter().rev() {
            if seen.insert(delivery.message.message_id.clone()) {
                consumer.publish(&delivery.message).await.unwrap();
            }
        }
        let redelivered = &consumer.deliveries()[before..];
        assert_eq!(redelivered.len(), 6);
        assert!(redelivered.iter().all(|d| !d.first && d.committed), "{redelivered:#?}");

        assert_exactly_one_receipt_each(&fx, &receipts, &[1, 2, 3, 4, 5, 6]).await;
        let by_order = assert_deliveries(&consumer.deliveries(), &topic, &[1, 2, 3, 4, 5, 6]);
        // Order 1: the dead relay's delivery, the republication after the lease, the redelivery.
        let attempts: Vec<_> = by_order[&1].iter().map(|d| (d.message.attempts, d.first, d.committed)).collect();
        assert_eq!(attempts, [(1, true, true), (2, false, true), (2, false, true)], "{}", B::LABEL);
        // Order 3: recorded first in a transaction that failed, so recorded first again.
        let attempts: Vec<_> = by_order[&3].iter().map(|d| (d.message.attempts, d.first, d.committed)).collect();
        assert_eq!(attempts, [(2, true, false), (3, true, true), (3, false, true)], "{}", B::LABEL);
        for order in [2, 4, 5, 6] {
            let attempts: Vec<_> = by_order[&order].iter().map(|d| (d.first, d.committed)).collect();
            assert_eq!(attempts, [(true, true), (false, true)], "{}: order {order}", B::LABEL);
        }
        assert_eq!(fx.fetch_i64(messages, [topic.as_str().into()]).await, Some(6));
    })
    .await;
}

/// Many orders paid at once (each payment sent twice at once), three relays at once with small
/// batches, a broker that delivers every message to two consumers at once, and a consumer that
/// fails once on every fifth order: still exactly one receipt per order.
async fn concurrent_relays_and_duplicating_broker<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    with_inbox_cleanup(&fx, async {
        const ORDERS: i64 = 24;
        let topic = fx.table.clone();
        let receipts = receipts(&fx).await;
        let payments: Vec<_> = (1..=ORDERS)
            .map(|order| {
                let fx = fx.clone();
                tokio::spawn(async move {
                    fx.store.create(order).await.unwrap();
                    let keyed = order % 2 == 0;
                    let request =
                        |topic: &str| if keyed { keyed_pay::<B>(topic, order) } else { pay::<B>(topic, order) };
                    count_applied(&at_once(&fx, 2, request).await, keyed)
                })
            })
            .collect();
        for payment in payments {
            assert_eq!(payment.await.expect("the payment task"), 1, "{}", B::LABEL);
        }

        let consumer = ReceiptConsumer::<B>::new(&fx, &receipts);
        for order in (5..=ORDERS).step_by(5) {
            consumer.fail_once_for(order);
        }
        let broker = Arc::new(DuplicatingBroker { consumer: consumer.clone(), copies: 2 });
        let outbox = outbox(&fx).await;
        let unpublished =
            format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {} AND published_at_micros IS NULL", fx.p(1));
        let relays: Vec<_> = (0..3)
            .map(|_| {
                let (fx, outbox, broker, unpublished) =
                    (fx.clone(), outbox.clone(), broker.clone(), unpublished.clone());
                tokio::spawn(async move {
                    let tiny = Duration::from_millis(5);
                    let relay = Relay::new(outbox).batch(4).lease(Duration::from_secs(10)).backoff(tiny, tiny);
                    let mut total = RelayReport::default();
                    loop {
                        let report = relay.run_once(&*broker).await.expect("a relay pass");
                        total.published += report.published;
                        total.failed += report.failed;
                        if report == RelayReport::default() {
                            if fx.fetch_i64(unpublished.clone(), [fx.table.as_str().into()]).await == Some(0) {
                                return total;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        let mut total = RelayReport::default();
        for relay in relays {
            let report = tokio::time::timeout(Duration::from_secs(60), relay)
                .await
                .expect("the relays finish")
                .expect("the relay task");
            total.published += report.published;
            total.failed += report.failed;
        }
        let orders: Vec<i64> = (1..=ORDERS).collect();
        assert_eq!(total.published, orders.len(), "{}: each message is marked once while its claim holds", B::LABEL);
        assert_eq!(total.failed, 4, "{}: the consumer failed once on orders 5, 10, 15, 20, nothing else", B::LABEL);

        assert_exactly_one_receipt_each(&fx, &receipts, &orders).await;
        let by_order = assert_deliveries(&consumer.deliveries(), &topic, &orders);
        for (order, deliveries) in &by_order {
            assert!(deliveries.len() >= 2, "{}: the broker delivered order {order} twice", B::LABEL);
            if order % 5 == 0 {
                assert!(deliveries.iter().any(|d| !d.committed), "order {order} failed once: {deliveries:#?}");
            }
        }
    })
    .await;
}

/// A publisher that records the payloads' `n` and always succeeds.
#[derive(Default)]
struct Collecting(Mutex<Vec<i64>>);

impl Publisher for Collecting {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        let n = message.payload["n"].as_i64().ok_or("a message without n")?;
        self.0.lock().expect("the collected messages").push(n);
        Ok(())
    }
}

/// A relay of one topic claims every pending message of its topic while a transaction holds
/// the row locks of another topic's pending messages, as that topic's relay does while it
/// claims (PostgreSQL and MySQL/MariaDB: `FOR UPDATE`, on MySQL in READ COMMITTED like the
/// relay; SQLite has one writer at a time, so there the other topic's messages are only
/// pending), and leaves the other topic's messages pending. (The relays' claims used to run in
/// REPEATABLE READ over the `published_at_micros` index on MariaDB: a claim of one topic kept
/// locks on the rows of every topic it scanned, and a relay of another topic that claimed
/// at that moment skipped its own rows as locked and found nothing to do.)
async fn topic_relay_skips_no_row_of_its_topic<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let mine = fx.table.clone();
    let other = format!("{}_b", fx.table);
    let mut conn = fx.pool().acquire().await.unwrap();
    for n in 0..6 {
        for topic in [&mine, &other, &mine] {
            let message = OutboxMessage::new(topic.clone(), serde_json::json!({ "n": n }));
            let mut tx = SqlTx::begin(fx.pool()).await.unwrap();
            tx.enqueue(message).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
    if B::LABEL == "MySQL/MariaDB" {
        // The relay claims in READ COMMITTED (no gap locks), and so does its stand-in.
        B::execute(&mut conn, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED".into(), vec![]).await.unwrap();
    }
    let mut holder = sqlx::Connection::begin(&mut *conn).await.unwrap();
    if B::LABEL != "SQLite" {
        let lock = format!(
            "SELECT id FROM fsm_outbox WHERE topic = {} AND published_at_micros IS NULL ORDER BY id FOR UPDATE",
            fx.p(1)
        );
        B::execute(&mut holder, lock, vec![Arg::from(other.clone())]).await.unwrap();
    }

    let relay = Relay::new(outbox(&fx).await).batch(100);
    let publisher = Collecting::default();
    let report = tokio::time::timeout(Duration::from_secs(20), relay.run_once(&publisher))
        .await
        .expect("the relay does not wait for the other topic's locks")
        .unwrap();
    assert_eq!(report, RelayReport { published: 12, failed: 0, dead: 0 }, "{}", B::LABEL);
    let mut published = publisher.0.lock().unwrap().clone();
    published.sort_unstable();
    assert_eq!(published, (0..6).flat_map(|n| [n, n]).collect::<Vec<_>>(), "{}", B::LABEL);
    sqlx::Transaction::rollback(holder).await.unwrap();

    let pending = format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {} AND published_at_micros IS NULL", fx.p(1));
    assert_eq!(
        fx.fetch_i64(pending, [other.as_str().into()]).await,
        Some(6),
        "the other topic's messages stay pending"
    );
    fx.exec(format!("DELETE FROM fsm_outbox WHERE topic = {}", fx.p(1)), [other.into()]).await;
}

crate::fixture::sql::per_backend!(
    exactly_one_receipt_under_retries,
    concurrent_relays_and_duplicating_broker,
    topic_relay_skips_no_row_of_its_topic
);
