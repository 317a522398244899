//! What only a multi-primary cluster can show, on the Galera cluster of `cluster/galera.sh up`
//! (skipped when it does not answer, failing under `FSM_CLUSTER_TESTS=1`), besides the
//! conformance suite spread over its nodes (the `galera` module of `main.rs`). `cargo test --test
//! conformance galera` runs both:
//!
//! - two relays on two nodes and an inbox consumer on the third: every message delivered and
//!   recorded once;
//! - the caller's transaction on one node losing the certification to a transition on another:
//!   a retryable error, and one history row;
//! - stores built on the three nodes at the same moment on a fresh database: every migration
//!   runs and is recorded once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fsm_runtime::inbox::Inbox as _;
use fsm_runtime::keys::SqlKeys;
use fsm_runtime::outbox::{Outbox, OutboxMessage, PendingMessage, Publisher, Relay, SqlOutbox};
use fsm_runtime::sql::SqlTx;
use fsm_runtime::store::EffectFuture;
use fsm_runtime::{MySqlStore, Outcome, Store, TransitionRequest, sqlx};

use crate::fixture::backends::{galera_pool, galera_store, galera_urls, unique_table};
use crate::fixture::machines::Order;
use crate::fixture::spread::Spread;

/// Runs `case` on a store spread over the Galera nodes, on a fresh table.
async fn on_galera<Case, Fut>(test: &str, case: Case)
where
    Case: FnOnce(Arc<Spread<MySqlStore<Order>>>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    crate::run(test, |name: String| async move { galera_store::<Order>(&name).await }, case).await;
}

/// An effect that enqueues one message for entity `id` on `topic`.
fn enqueue_for(topic: String, id: i64) -> impl for<'t> FnOnce(&'t mut SqlTx<sqlx::MySql>) -> EffectFuture<'t> + Send {
    move |tx| {
        Box::pin(async move {
            tx.enqueue(OutboxMessage::new(topic, serde_json::json!({ "order": id }))).await?;
            Ok(())
        })
    }
}

/// A consumer on its own node: records each delivery in the inbox, in a transaction there.
#[derive(Clone)]
struct InboxConsumer {
    pool: sqlx::MySqlPool,
    name: String,
    /// The ids the inbox saw for the first time, in a committed transaction.
    first: Arc<Mutex<Vec<String>>>,
    deliveries: Arc<Mutex<usize>>,
}

impl InboxConsumer {
    fn recorded(&self) -> usize {
        self.first.lock().expect("first").len()
    }
}

impl Publisher for InboxConsumer {
    async fn publish(&self, message: &PendingMessage) -> Result<(), fsm_runtime::error::BoxError> {
        *self.deliveries.lock().expect("deliveries") += 1;
        let mut tx = SqlTx::begin(&self.pool).await?;
        let first = tx.record(&self.name, &message.message_id).await?;
        // A lost certification here is an error: the relay delivers the message again.
        tx.commit().await?;
        if first {
            self.first.lock().expect("first").push(message.message_id.clone());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_on_two_nodes() {
    on_galera("relays_on_two_nodes", |store, table| async move {
        for id in 1..=40 {
            store.create(id).await.unwrap();
            let request = TransitionRequest::to(id, Order::Paid).effect(enqueue_for(table.clone(), id));
            assert!(matches!(store.apply(request).await.unwrap(), Outcome::Applied { .. }));
        }
        let nodes = store.nodes();
        let consumer = InboxConsumer {
            pool: nodes[2].pool().clone(),
            name: table.clone(),
            first: Arc::default(),
            deliveries: Arc::default(),
        };
        let relays: Vec<_> = nodes[..2]
            .iter()
            .map(|node| {
                let (pool, topic, consumer) = (node.pool().clone(), table.clone(), consumer.clone());
                tokio::spawn(async move {
                    let outbox = SqlOutbox::new(pool).await.expect("an outbox").only_topic(&topic);
                    let backoff = Duration::from_millis(50);
                    let relay = Relay::new(outbox).batch(3).backoff(backoff, backoff);
                    let (mut published, mut failed) = (0, 0);
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    // Until the inbox has every message: a delivery that failed (a consumer's
                    // commit that lost a certification) comes again after its backoff.
                    while consumer.recorded() < 40 && tokio::time::Instant::now() < deadline {
                        let report = relay.run_once(&consumer).await.expect("a relay pass");
                        (published, failed) = (published + report.published, failed + report.failed);
                        if report.published == 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    (published, failed)
                })
            })
            .collect();
        let mut reports = Vec::new();
        for relay in relays {
            reports.push(relay.await.expect("a relay"));
        }
        let (published, failed): (usize, usize) = reports.iter().fold((0, 0), |(p, f), r| (p + r.0, f + r.1));
        let deliveries = *consumer.deliveries.lock().expect("deliveries");
        // At least once: a delivery whose mark was lost comes again (and the inbox says so).
        assert!(published >= 40, "every message published: {reports:?}");
        assert_eq!(deliveries, published + failed, "{reports:?}");
        let mut first = consumer.first.lock().expect("first").clone();
        assert_eq!(first.len(), 40, "each message recorded once by the inbox");
        first.sort();
        first.dedup();
        assert_eq!(first.len(), 40, "40 different messages");
        let pool = nodes[0].pool();
        let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fsm_inbox WHERE consumer = ?")
            .bind(&table)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(recorded, 40);
        sqlx::query("DELETE FROM fsm_inbox WHERE consumer = ?").bind(&table).execute(pool).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_tx_loses_certification() {
    on_galera("caller_tx_loses_cert", |store, _table| async move {
        store.create(1).await.unwrap();
        let nodes = store.nodes();
        let mut tx = nodes[0].begin().await.unwrap();
        let mine = nodes[0].within(&mut tx).transition(1, Order::Paid).await.unwrap();
        assert!(matches!(mine, Outcome::Applied { .. }), "{mine:?}");
        // The same move on another node, committed (and certified) first.
        let theirs = nodes[1].transition(1, Order::Paid).await.unwrap();
        assert!(matches!(theirs, Outcome::Applied { .. }), "{theirs:?}");
        let error = tx.commit().await.expect_err("the caller's transaction lost the certification");
        assert!(fsm_runtime::sql::is_transient(&error), "a retryable error: {error}");
        // Sent again, the caller's move finds the other's.
        let mut tx = nodes[0].begin().await.unwrap();
        let again = nodes[0].within(&mut tx).transition(1, Order::Paid).await.unwrap();
        assert_eq!(again, Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
        tx.commit().await.unwrap();
        assert_eq!(store.history(1).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_on_three_nodes() {
    let urls = galera_urls();
    let Some(admin) = galera_pool(&urls[0], "migrations_on_three_nodes").await else {
        return;
    };
    let database = unique_table("galera_migrations");
    let create = format!("CREATE DATABASE {database} CHARACTER SET utf8mb4");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
    let migrated = async {
        let mut nodes = Vec::new();
        for url in &urls {
            let url = format!("{}/{database}", url.rsplit_once('/').expect("a URL with a database").0);
            nodes.push(galera_pool(&url, "migrations_on_three_nodes").await.expect("a node of the cluster"));
        }
        let built = futures_util::future::join_all(nodes.iter().map(|pool| SqlKeys::new(pool.clone()))).await;
        for keys in built {
            keys.expect("every node's migrations succeed");
        }
        let (rows, versions): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM fsm_schema_migrations")
                .fetch_one(&nodes[1])
                .await
                .unwrap();
        (rows, versions)
    };
    let migrated = tokio::time::timeout(Duration::from_secs(120), migrated).await;
    let drop = format!("DROP DATABASE {database}");
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await.unwrap();
    let (rows, versions) = migrated.expect("the migrations finish");
    assert_eq!(rows, versions, "each version recorded once");
    assert!(versions >= 11, "every migration recorded: {versions}");
}
