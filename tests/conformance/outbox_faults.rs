//! Relays that die, on SQLite, PostgreSQL and MySQL/MariaDB, with a consumer that records each
//! message in the inbox and inserts a `receipts` row the first time, in one transaction:
//!
//! - relays killed mid-batch, while they hold claims: a task aborted, a future dropped, and a
//!   relay whose connection the server kills between publish and mark (SQLite, which has no
//!   server: its pool is closed): every message is eventually published, and each is received
//!   exactly once;
//! - the inbox's and the outbox's purge running in a loop while relays publish and messages are
//!   enqueued: nothing unpublished is lost, every message is received once.
//!
//! The consumer can be stopped after its `n`th commit (it then waits, between publish and mark,
//! until it is resumed or its relay is killed).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tokio::sync::Notify;

use crate::fixture::machines::Order;
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::error::BoxError;
use fsm_runtime::inbox::{Inbox, SqlInbox};
use fsm_runtime::outbox::{Outbox, OutboxMaintenance, OutboxMessage, PendingMessage, Publisher, Relay, SqlOutbox};
use fsm_runtime::sql::SqlTx;
use fsm_runtime::sqlx;

/// The receiving side: inbox record and, the first time, a receipt, in one transaction.
struct Consumer<B: TestBackend> {
    pool: sqlx::Pool<B>,
    name: String,
    receipts: String,
    committed: AtomicUsize,
    stop_at: AtomicUsize,
    stopped: Notify,
    resume: Notify,
}

impl<B: TestBackend> Consumer<B> {
    fn new(fx: &Fixture<B, Order>, receipts: &str) -> Self {
        Self {
            pool: fx.pool().clone(),
            name: fx.table.clone(),
            receipts: receipts.to_owned(),
            committed: AtomicUsize::new(0),
            stop_at: AtomicUsize::new(usize::MAX),
            stopped: Notify::new(),
            resume: Notify::new(),
        }
    }

    /// Stops after the `n`th commit (counted from the start), until resumed.
    fn stop_after(&self, n: usize) {
        self.stop_at.store(n, Ordering::SeqCst);
    }
}

impl<B: TestBackend> Publisher for Consumer<B> {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        let n = message.payload["n"].as_i64().ok_or("a message without n")?;
        let mut tx = SqlTx::begin(&self.pool).await?;
        if tx.record(&self.name, &message.message_id).await? {
            let sql =
                format!("INSERT INTO {} (n, message_id) VALUES ({}, {})", self.receipts, B::param(1), B::param(2));
            B::execute(&mut *tx, sql, vec![n.into(), message.message_id.clone().into()]).await?;
        }
        tx.commit().await?;
        let count = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        if count == self.stop_at.load(Ordering::SeqCst) {
            self.stopped.notify_one();
            self.resume.notified().await;
        }
        Ok(())
    }
}

/// Creates the `receipts` table (dropped when the test ends); its name.
async fn receipts<B: TestBackend>(fx: &Fixture<B, Order>) -> String {
    let table = fx.extra_table("receipts");
    fx.exec(format!("CREATE TABLE {table} (n BIGINT, message_id VARCHAR(64))"), []).await;
    table
}

/// Enqueues messages `ns` of the fixture's topic, in one transaction: every third with the key
/// `n % 9`, the others without a key (so that a batch is not cut short by the keys' order).
async fn enqueue<B: TestBackend>(fx: &Fixture<B, Order>, ns: impl IntoIterator<Item = i64>) {
    let mut tx = SqlTx::begin(fx.pool()).await.unwrap();
    for n in ns {
        let message = OutboxMessage::new(fx.table.clone(), serde_json::json!({ "n": n }));
        let message = if n % 3 == 0 { message.with_key(format!("{}", n % 9)) } else { message };
        tx.enqueue(message).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The outbox of the fixture's topic on `pool`.
async fn outbox<B: TestBackend>(fx: &Fixture<B, Order>, pool: sqlx::Pool<B>) -> SqlOutbox<B> {
    SqlOutbox::new(pool).await.expect("the outbox").only_topic(fx.table.clone())
}

/// How many messages of the fixture's topic are unpublished.
async fn unpublished<B: TestBackend>(fx: &Fixture<B, Order>) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM fsm_outbox WHERE topic = {} AND published_at_micros IS NULL", fx.p(1));
    fx.fetch_i64(sql, [Arg::from(fx.table.clone())]).await.unwrap_or(-1)
}

/// Every `n` of `0..count` has exactly one receipt.
async fn assert_one_receipt_each<B: TestBackend>(fx: &Fixture<B, Order>, receipts: &str, count: i64) {
    let all = format!("SELECT COUNT(*) FROM {receipts}");
    let distinct = format!("SELECT COUNT(DISTINCT n) FROM {receipts}");
    let outside = format!("SELECT COUNT(*) FROM {receipts} WHERE n < 0 OR n >= {}", fx.p(1));
    assert_eq!(fx.fetch_i64(all, []).await, Some(count), "{}: one receipt per message", B::LABEL);
    assert_eq!(fx.fetch_i64(distinct, []).await, Some(count), "{}", B::LABEL);
    assert_eq!(fx.fetch_i64(outside, [Arg::from(count)]).await, Some(0), "{}", B::LABEL);
}

/// Runs `case`, then deletes the inbox rows of the fixture's consumer, also when it panics.
async fn with_inbox_cleanup<B: TestBackend>(fx: &Fixture<B, Order>, case: impl Future<Output = ()>) {
    let result = AssertUnwindSafe(case).catch_unwind().await;
    fx.exec(format!("DELETE FROM fsm_inbox WHERE consumer = {}", fx.p(1)), [Arg::from(fx.table.clone())]).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Waits for the consumer to stop, at most 20 seconds.
async fn stopped<B: TestBackend>(consumer: &Consumer<B>) {
    tokio::time::timeout(Duration::from_secs(20), consumer.stopped.notified()).await.expect("the consumer stops");
}

/// Kills the one connection of `victim` from the fixture's pool (SQLite, which has no server:
/// closes `victim`).
async fn kill_connection<B: TestBackend>(fx: &Fixture<B, Order>, victim: &sqlx::Pool<B>) {
    let who = match B::LABEL {
        "PostgreSQL" => "SELECT CAST(pg_backend_pid() AS BIGINT)",
        "MySQL/MariaDB" => "SELECT CAST(CONNECTION_ID() AS SIGNED)",
        _ => {
            victim.close().await;
            return;
        }
    };
    let mut conn = victim.acquire().await.unwrap();
    let id = B::fetch_i64(&mut conn, who.to_owned(), vec![]).await.unwrap().expect("a connection id");
    drop(conn);
    let kill = match B::LABEL {
        "PostgreSQL" => format!("SELECT pg_terminate_backend({id})"),
        _ => format!("KILL {id}"),
    };
    let mut admin = fx.pool().acquire().await.unwrap();
    B::execute(&mut admin, kill, vec![]).await.unwrap();
    // The server ends the connection asynchronously: wait until it is gone.
    let listed = match B::LABEL {
        "PostgreSQL" => format!("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {id}"),
        _ => format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"),
    };
    let start = Instant::now();
    while B::fetch_i64(&mut admin, listed.clone(), vec![]).await.unwrap() != Some(0) {
        assert!(start.elapsed() < Duration::from_secs(5), "{}: connection {id} still listed", B::LABEL);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// 90 messages (30 of them on 3 keys); three relays die in turn while they hold claims (batches of 20, a
/// lease of 1 s): one aborted, one dropped, one whose connection is killed between publish and
/// mark. Then two relays publish the rest: each message received once.
async fn relays_killed_mid_batch<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    with_inbox_cleanup(&fx, async {
        const MESSAGES: i64 = 90;
        let receipts = receipts(&fx).await;
        enqueue(&fx, 0..MESSAGES).await;
        let consumer = Arc::new(Consumer::<B>::new(&fx, &receipts));
        let lease = Duration::from_secs(1);
        let relay_on = |outbox: SqlOutbox<B>| Relay::new(outbox).batch(20).lease(lease);

        // 1. A relay task aborted after its 5th publication, before marking it.
        consumer.stop_after(5);
        let aborted = {
            let (relay, consumer) = (relay_on(outbox(&fx, fx.pool().clone()).await), consumer.clone());
            tokio::spawn(async move { relay.run_once(&*consumer).await })
        };
        let mut aborted = aborted;
        tokio::select! {
            ended = &mut aborted => panic!("{}: the pass ended: {ended:?}", B::LABEL),
            () = stopped(&consumer) => {}
        }
        aborted.abort();
        assert!(aborted.await.unwrap_err().is_cancelled());

        // 2. A relay's future dropped after its 5th publication (10th in all).
        consumer.stop_after(10);
        let relay = relay_on(outbox(&fx, fx.pool().clone()).await);
        tokio::select! {
            report = relay.run_once(&*consumer) => panic!("the pass ended: {report:?}"),
            () = stopped(&consumer) => {}
        }

        // 3. A relay whose connection is killed after its 5th publication (15th in all).
        let victim = sqlx::pool::PoolOptions::<B>::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with((*fx.pool().connect_options()).clone())
            .await
            .unwrap();
        consumer.stop_after(15);
        let killed = relay_on(outbox(&fx, victim.clone()).await);
        let pass = killed.run_once(&*consumer);
        let kill = async {
            stopped(&consumer).await;
            kill_connection(&fx, &victim).await;
            consumer.stop_after(usize::MAX);
            consumer.resume.notify_one();
        };
        let (report, ()) = tokio::join!(pass, kill);
        // Marking on the killed connection fails the pass (its other claims wait for their
        // lease), unless the pool found the connection closed first (sqlx pings a connection
        // coming back to the pool, in a task of its own, which may run after the kill) and
        // opened another: then the pass goes on. Either way nothing may be lost or received
        // twice, which the rest of the case checks.
        if let Err(error) = &report {
            assert!(error.is_retryable(), "{}: a killed connection is a retryable error: {error:?}", B::LABEL);
        }
        // The publications no relay marked: one per dead relay, the killed one's only if its
        // pass failed (a pass that went on marked it).
        let unmarked = if report.is_err() { 3 } else { 2 };
        victim.close().await;
        assert!(unpublished(&fx).await > 0);

        // 4. Two relays until every message is published (the dead relays' claims expire).
        let start = Instant::now();
        let survivors: Vec<_> = (0..2)
            .map(|_| {
                let (fx, consumer) = (fx.clone(), consumer.clone());
                tokio::spawn(async move {
                    let relay = Relay::new(outbox(&fx, fx.pool().clone()).await).batch(20).lease(lease);
                    while unpublished(&fx).await > 0 {
                        assert!(start.elapsed() < Duration::from_secs(60), "{}: still unpublished", B::LABEL);
                        if relay.run_once(&*consumer).await.unwrap().published == 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        for survivor in survivors {
            survivor.await.unwrap();
        }
        assert_one_receipt_each(&fx, &receipts, MESSAGES).await;
        let deliveries = consumer.committed.load(Ordering::SeqCst);
        assert!(
            deliveries >= usize::try_from(MESSAGES).unwrap() + unmarked,
            "{}: the {unmarked} publications the dead relays never marked came again ({deliveries})",
            B::LABEL
        );
        let outbox = outbox(&fx, fx.pool().clone()).await;
        assert!(outbox.dead_letters(10).await.unwrap().is_empty());
    })
    .await;
}

/// Purges of the outbox's published messages and of the consumer's inbox records in a loop
/// while two relays publish and 120 messages are enqueued in 40 transactions.
async fn purge_inbox_under_load<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    with_inbox_cleanup(&fx, async {
        const MESSAGES: i64 = 120;
        let receipts = receipts(&fx).await;
        let consumer = Arc::new(Consumer::<B>::new(&fx, &receipts));
        let stop = Arc::new(AtomicBool::new(false));
        let relays: Vec<_> = (0..2)
            .map(|_| {
                let (fx, consumer, stop) = (fx.clone(), consumer.clone(), stop.clone());
                tokio::spawn(async move {
                    let relay = Relay::new(outbox(&fx, fx.pool().clone()).await).batch(16);
                    while !stop.load(Ordering::SeqCst) {
                        if relay.run_once(&*consumer).await.unwrap().published == 0 {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                })
            })
            .collect();
        let purger = {
            let (fx, stop) = (fx.clone(), stop.clone());
            tokio::spawn(async move {
                let outbox = outbox(&fx, fx.pool().clone()).await;
                let inbox = SqlInbox::new(fx.pool().clone()).await.unwrap();
                let (mut messages, mut records) = (0, 0);
                while !stop.load(Ordering::SeqCst) {
                    messages += outbox.purge_published(Duration::ZERO).await.unwrap();
                    records += inbox.purge_of(&fx.table, Duration::ZERO).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (messages, records)
            })
        };
        for batch in 0..40 {
            enqueue(&fx, batch * 3..batch * 3 + 3).await;
        }
        let start = Instant::now();
        while consumer.committed.load(Ordering::SeqCst) < 120 || unpublished(&fx).await > 0 {
            assert!(start.elapsed() < Duration::from_secs(60), "{}: still unpublished", B::LABEL);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::SeqCst);
        for relay in relays {
            relay.await.unwrap();
        }
        let (mut messages, mut records) = purger.await.unwrap();
        messages += outbox(&fx, fx.pool().clone()).await.purge_published(Duration::ZERO).await.unwrap();
        records += SqlInbox::new(fx.pool().clone()).await.unwrap().purge_of(&fx.table, Duration::ZERO).await.unwrap();
        assert_eq!((messages, records), (120, 120), "{}: each published message and record purged once", B::LABEL);
        assert_eq!(consumer.committed.load(Ordering::SeqCst), 120, "{}: no redelivery", B::LABEL);
        assert_one_receipt_each(&fx, &receipts, MESSAGES).await;
    })
    .await;
}

crate::fixture::sql::per_backend!(relays_killed_mid_batch, purge_inbox_under_load);
