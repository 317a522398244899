//! The payment service of `examples/payments`: an HTTP API (axum) over the payment machine.
//!
//! Every state change of a payment is a transition of [`PaymentState`]; capture debits the
//! account with a conditional update and enqueues a receipt in the outbox, both as effects in
//! the transaction of the transition. Every `POST` takes an `Idempotency-Key` header, stored in
//! the same transaction as the work: with the response for a create, with the transition's
//! outcome (from, to, version) for a transition, whose body a replay rebuilds from it. A retry
//! with the same key and request gets the same status and body again with
//! `Idempotent-Replayed: true`. Ids and strings of a request are checked before any SQL.
//!
//! | endpoint | does |
//! |---|---|
//! | `POST /accounts` `{"balance": 10000}` | opens an account (201) |
//! | `GET /accounts/{id}` | its balance |
//! | `POST /payments` `{"account_id": "acc_…", "amount": 2500}` | a payment intent, `created` (201) |
//! | `POST /payments/{id}/authorize` | `created` → `authorized` |
//! | `POST /payments/{id}/capture` | `authorized` → `captured`: debits the account, enqueues a receipt (strict); through a card processor when the service has one (below) |
//! | `POST /payments/{id}/refund` | `captured` → `refunded`: credits the account, enqueues a receipt (strict) |
//! | `POST /payments/{id}/cancel` | `created` or `authorized` → `cancelled` |
//! | `GET /payments/{id}` | the payment and its history |
//! | `GET /metrics` | the metrics of the process, in Prometheus text |
//!
//! Errors are RFC 9457 problem bodies ([`Problem`]).
//!
//! A service given a card processor ([`PaymentService::with_processor`], `--processor-url`)
//! captures in two phases: `authorized` → `capturing` (keyed by the request, reserving the
//! amount), the processor's `POST /charges` with the outbound key of that entry, then
//! `captured` (the debit and the receipt) on a 2xx or `declined` on a 402. While the processor
//! has not answered, the capture answers 409 `capture-in-progress` with `Retry-After: 1`, and a
//! retry with the same `Idempotency-Key` makes the call again with the same outbound key; a
//! recovery worker ([`serve`]) settles the payments left `capturing`. See [`ProcessorCall`].

mod args;
mod capture;
mod keys;
mod ledger;
mod machine;
mod metrics;
mod problem;
mod processor;
mod routes;
mod validate;

use std::future::Future;
use std::time::Duration;

use fsm_runtime::error::BoxError;
use fsm_runtime::outbound::InFlightScan as _;
use fsm_runtime::outbox::{OutboxMessage, PendingMessage, Publisher, Relay, SqlOutbox};
use fsm_runtime::sqlx;
use fsm_runtime::store::SqlStore;
use fsm_runtime::timer::{Clock, Scheduler, SqlTimers, SystemClock};
use fsm_runtime::{Error, Keys as _, Store as _};
use serde::Serialize;

pub use args::{LogFormat, ServiceArgs, parse_ttl, parse_wait, redacted};
pub use keys::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, StoredResponse, idempotency_key};
pub use ledger::{Ledger, PaymentRow};
pub use machine::{PaymentEvent, PaymentState};
pub use metrics::{PROMETHEUS_TEXT, prometheus};
pub use problem::{PROBLEM_JSON, PROBLEM_TYPE_BASE, Problem};
pub use processor::{
    CLAIM_MARGIN, PROCESSOR_TIMEOUT, PaymentOutbound, PaymentRecovery, ProcessorCall, ProcessorCapture,
    ProcessorSettings, RECOVERY_AFTER, RECOVERY_IDLE,
};

/// The scheduler of the service: it fires the `expire` timers of authorizations.
pub type PaymentScheduler<B, C> = Scheduler<PaymentState, SqlStore<PaymentState, B>, SqlTimers<B>, C>;

/// The outbox topic of receipts.
pub const RECEIPTS: &str = "payment_receipts";

/// How long a stored response answers a retry with its key (as the IETF draft suggests, a
/// day); after that the key is purged and a request with it is new again.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How often [`serve`] purges the keys older than [`KEY_RETENTION`].
pub const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The payment service on one database: the store of the payment machine, on the pool that
/// also holds `accounts` and `payments`.
#[derive(Debug)]
pub struct PaymentService<B: Ledger> {
    store: SqlStore<PaymentState, B>,
    authorization_ttl: Duration,
    outbox: SqlOutbox<B>,
    processor: Option<ProcessorCapture<B>>,
}

impl<B: Ledger> Clone for PaymentService<B> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            authorization_ttl: self.authorization_ttl,
            outbox: self.outbox.clone(),
            processor: self.processor.clone(),
        }
    }
}

/// How long an authorization holds by default before the scheduler voids it.
pub const AUTHORIZATION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long the scheduler of [`serve`] sleeps after a pass that found no due timer.
pub const SCHEDULER_IDLE: Duration = Duration::from_secs(1);

impl<B: Ledger> PaymentService<B> {
    /// Creates the service's tables (`accounts`, `payments`) and the runtime's (history,
    /// idempotency keys, outbox) if missing, and builds the store.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, BoxError> {
        let mut conn = pool.acquire().await?;
        B::create_tables(&mut conn).await?;
        drop(conn);
        let store = SqlStore::new(pool.clone()).await?;
        Ok(Self { store, authorization_ttl: AUTHORIZATION_TTL, outbox: SqlOutbox::new(pool).await?, processor: None })
    }

    /// The same service, its transitions waiting at most `wait` for a lock another request holds
    /// (a payment's row, or an `Idempotency-Key` whose first request has not committed): past
    /// it a request answers `409 request-in-progress` with `Retry-After: 1` instead of holding a
    /// pooled connection for as long as the database lets it ([`SqlStore::lock_wait`]). Call it
    /// before [`PaymentService::with_processor`], whose calls then wait the same.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.store = self.store.lock_wait(wait);
        self
    }

    /// The same service, capturing through the card processor of `settings` (see
    /// [`ProcessorCall`]); creates the runtime's lease table, where the claims of the
    /// processor calls are kept, if missing.
    pub async fn with_processor(mut self, settings: ProcessorSettings) -> Result<Self, BoxError> {
        self.processor = Some(ProcessorCapture::new(self.store.clone(), settings).await?);
        Ok(self)
    }

    /// The processor captures go through, if the service has one.
    pub fn processor(&self) -> Option<&ProcessorCapture<B>> {
        self.processor.as_ref()
    }

    /// The same service, voiding authorizations `ttl` after they were given (instead of
    /// [`AUTHORIZATION_TTL`]).
    pub fn with_authorization_ttl(mut self, ttl: Duration) -> Self {
        self.authorization_ttl = ttl;
        self
    }

    /// How long an authorization holds before the scheduler voids it.
    pub fn authorization_ttl(&self) -> Duration {
        self.authorization_ttl
    }

    /// The scheduler that voids expired authorizations (`authorized` → `voided`), by `clock`.
    pub fn scheduler<C: Clock>(&self, clock: C) -> PaymentScheduler<B, C> {
        Scheduler::new(self.store.clone(), self.store.timers(), clock)
    }

    /// The ids of the payments `capturing` (charged or not: the processor's answer is not
    /// recorded), at most `limit`, oldest first. Only a service with a processor settles them;
    /// [`serve`] warns when it starts without one while there are some, since their amounts
    /// stay reserved until then.
    pub async fn capturing(&self, limit: usize) -> Result<Vec<String>, Error> {
        let stuck = self.store.in_flight(i64::MAX, limit).await?;
        Ok(stuck.into_iter().map(|payment| payment.id.to_string()).collect())
    }

    /// The store of the payment machine.
    pub fn store(&self) -> &SqlStore<PaymentState, B> {
        &self.store
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<B> {
        self.store.pool()
    }

    /// The HTTP API, with `GET /metrics` (which installs the process's Prometheus recorder,
    /// [`prometheus`], if it is not yet).
    pub fn router(&self) -> axum::Router {
        prometheus();
        routes::router(self.clone())
    }

    /// The outbox of receipts, for a relay.
    pub async fn receipts(&self) -> Result<SqlOutbox<B>, Error> {
        Ok(self.outbox.clone().only_topic(RECEIPTS))
    }

    /// The whole outbox of the service's database, every topic: its stats feed the outbox
    /// gauges of `GET /metrics`.
    pub fn outbox(&self) -> &SqlOutbox<B> {
        &self.outbox
    }

    /// Forgets the idempotency keys (and their stored responses) stored more than `older_than`
    /// ago; how many. The service owns its database's key table: every key is the client's.
    pub async fn purge_keys(&self, older_than: Duration) -> Result<u64, Error> {
        self.store.keys().purge(older_than).await
    }

    /// Reads a payment.
    pub async fn payment(&self, id: &str) -> Result<Option<PaymentRow>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        B::read_payment(&mut conn, id).await
    }

    /// How many receipts the outbox holds for a payment, and how many of them were published.
    pub async fn receipts_of(&self, payment_id: &str) -> Result<(i64, i64), sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        B::count_receipts(&mut conn, payment_id).await
    }

    /// The balance of an account.
    pub async fn balance(&self, account_id: &str) -> Result<Option<i64>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        B::account_balance(&mut conn, account_id).await
    }

    /// The amount reserved on an account by its captures under way at the processor.
    pub async fn reserved(&self, account_id: &str) -> Result<Option<i64>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        B::account_reserved(&mut conn, account_id).await
    }
}

/// The receipt a capture enqueues in the outbox, in the transaction of its debit.
pub(crate) fn capture_receipt(payment_id: &str, account_id: &str, amount: i64) -> OutboxMessage {
    let receipt =
        serde_json::json!({ "kind": "capture", "payment_id": payment_id, "account_id": account_id, "amount": amount });
    OutboxMessage::new(RECEIPTS, receipt).with_key(payment_id)
}

/// Serves the API on `listener`, relays receipts from the outbox (to the log, see
/// [`LogPublisher`]), voids expired authorizations (a [`Scheduler`] on the system clock),
/// purges the keys older than [`KEY_RETENTION`] every [`KEY_PURGE_INTERVAL`] and, with a
/// processor, settles the payments left `capturing` (a [`PaymentRecovery`], every
/// [`RECOVERY_IDLE`] when idle), until `shutdown` completes; then stops accepting, finishes the
/// requests in flight and stops the relay, the scheduler, the purge and the recovery (a
/// recovery pass still running after the processor's timeout and [`CLAIM_MARGIN`] is dropped:
/// its payments stay `capturing`, for the next process).
pub async fn serve<B: Ledger>(
    service: PaymentService<B>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let relay = Relay::new(service.receipts().await?);
    let (stop_relay, stopped) = tokio::sync::watch::channel(());
    let relay = tokio::spawn(async move {
        let mut stopped = stopped;
        relay
            .run(&LogPublisher, Duration::from_millis(200), async move { while stopped.changed().await.is_ok() {} })
            .await;
    });
    let purge = tokio::spawn(purge_keys_periodically(service.clone(), stop_relay.subscribe()));
    let scheduler = service.scheduler(SystemClock);
    let mut stop_scheduler = stop_relay.subscribe();
    let scheduler = tokio::spawn(async move {
        scheduler.run(SCHEDULER_IDLE, async move { while stop_scheduler.changed().await.is_ok() {} }).await;
    });
    if service.processor().is_none() {
        warn_of_capturing(&service).await;
    }
    let recovery = service.processor().map(|processor| {
        let (recovery, grace) = (processor.recovery(), processor.settings().claim());
        let mut stop_recovery = stop_relay.subscribe();
        tracing::info!(
            processor = %processor.settings().url,
            timeout = ?processor.settings().timeout,
            recovery_after = ?processor.settings().recovery_after,
            "capturing through the processor"
        );
        let task = tokio::spawn(async move {
            recovery.run(RECOVERY_IDLE, async move { while stop_recovery.changed().await.is_ok() {} }).await;
        });
        (task, grace)
    });
    tracing::info!(address = %listener.local_addr()?, "payment service listening");
    let served = axum::serve(listener, service.router()).with_graceful_shutdown(shutdown).await;
    drop(stop_relay);
    relay.await?;
    purge.await?;
    scheduler.await?;
    if let Some((mut task, grace)) = recovery
        && tokio::time::timeout(grace, &mut task).await.is_err()
    {
        tracing::warn!("the recovery pass did not end in time: dropped, its payments stay capturing");
        task.abort();
    }
    tracing::info!("payment service stopped");
    Ok(served?)
}

/// Logs a warning when payments are `capturing` while the service runs without a processor:
/// nothing settles them, and their amounts stay reserved, until it runs with one again.
async fn warn_of_capturing<B: Ledger>(service: &PaymentService<B>) {
    match service.capturing(10).await {
        Ok(ids) if !ids.is_empty() => tracing::warn!(
            payments = ?ids,
            "payments are capturing, their amounts reserved, and only a service with --processor-url settles them"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not look for payments left capturing"),
    }
}

/// Purges the keys older than [`KEY_RETENTION`] now and every [`KEY_PURGE_INTERVAL`], until
/// the sender of `stopped` is dropped. A failed purge is logged and tried again next time.
async fn purge_keys_periodically<B: Ledger>(service: PaymentService<B>, mut stopped: tokio::sync::watch::Receiver<()>) {
    let mut interval = tokio::time::interval(KEY_PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => match service.purge_keys(KEY_RETENTION).await {
                Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
                Err(error) => tracing::warn!(%error, "purging expired idempotency keys failed"),
            },
            changed = stopped.changed() => if changed.is_err() { return },
        }
    }
}

/// A relay's publisher that writes each receipt to the log (a stand-in for a broker or a
/// mailer).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogPublisher;

impl Publisher for LogPublisher {
    async fn publish(&self, message: &PendingMessage) -> Result<(), BoxError> {
        tracing::info!(
            message_id = %message.message_id,
            topic = %message.topic,
            payment = message.key.as_deref().unwrap_or("-"),
            payload = %message.payload,
            "receipt published"
        );
        Ok(())
    }
}

/// A pool on SQLite for the service: WAL (readers do not wait for the writer), a 30 s busy
/// timeout (writers queue instead of failing), the file created if missing. `sqlite::memory:`
/// gets one connection, since an in-memory database lives as long as its connection.
pub async fn sqlite_pool(url: &str) -> Result<sqlx::SqlitePool, sqlx::Error> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options: SqliteConnectOptions = url.parse()?;
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = options.create_if_missing(true).busy_timeout(Duration::from_secs(30));
    let options = if in_memory { options } else { options.journal_mode(SqliteJournalMode::Wal) };
    SqlitePoolOptions::new().max_connections(if in_memory { 1 } else { 8 }).connect_with(options).await
}

/// Connects to `url` (`sqlite:…`, `postgres://…`, `mysql://…`), creates the tables and serves
/// until `shutdown` completes, voiding authorizations `authorization_ttl` after they were given,
/// with `lock_wait` bounding each transition's wait for a lock ([`PaymentService::with_lock_wait`])
/// and, with `processor`, capturing through it.
pub async fn serve_url(
    url: &str,
    authorization_ttl: Duration,
    lock_wait: Option<Duration>,
    processor: Option<ProcessorSettings>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let timeout = Duration::from_secs(5);
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let pool =
            sqlx::postgres::PgPoolOptions::new().max_connections(16).acquire_timeout(timeout).connect(url).await?;
        let service = PaymentService::<sqlx::Postgres>::new(pool).await?;
        serve(configured(service, authorization_ttl, lock_wait, processor).await?, listener, shutdown).await
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let pool =
            sqlx::mysql::MySqlPoolOptions::new().max_connections(16).acquire_timeout(timeout).connect(url).await?;
        let service = PaymentService::<sqlx::MySql>::new(pool).await?;
        serve(configured(service, authorization_ttl, lock_wait, processor).await?, listener, shutdown).await
    } else if url.starts_with("sqlite:") {
        let service = PaymentService::<sqlx::Sqlite>::new(sqlite_pool(url).await?).await?;
        serve(configured(service, authorization_ttl, lock_wait, processor).await?, listener, shutdown).await
    } else {
        Err(format!("unsupported database URL `{url}` (expected sqlite:, postgres:// or mysql://)").into())
    }
}

/// `service` with its authorization TTL, its lock wait and, if given, its processor.
async fn configured<B: Ledger>(
    service: PaymentService<B>,
    authorization_ttl: Duration,
    lock_wait: Option<Duration>,
    processor: Option<ProcessorSettings>,
) -> Result<PaymentService<B>, BoxError> {
    let mut service = service.with_authorization_ttl(authorization_ttl);
    if let Some(wait) = lock_wait {
        service = service.with_lock_wait(wait);
    }
    match processor {
        Some(settings) => service.with_processor(settings).await,
        None => Ok(service),
    }
}

/// A capture's debit found the balance too low: the effect's error, which rolls the capture
/// back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientFunds {
    /// The account.
    pub account_id: String,
    /// The amount it could not pay.
    pub amount: i64,
}

impl std::fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account `{}` cannot pay {}: its balance is lower", self.account_id, self.amount)
    }
}

impl std::error::Error for InsufficientFunds {}

/// A new payment names an account that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAccount(pub String);

impl std::fmt::Display for UnknownAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account `{}` does not exist", self.0)
    }
}

impl std::error::Error for UnknownAccount {}

/// A payment as the API shows it after a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    /// Its id.
    pub id: String,
    /// The account it debits.
    pub account_id: String,
    /// The amount, in minor units.
    pub amount: i64,
    /// Its state.
    pub state: &'static str,
    /// Its version.
    pub version: i64,
}

impl PaymentView {
    /// `payment` in `state` at `version`.
    pub fn of(payment: &PaymentRow, state: PaymentState, version: i64) -> Self {
        Self {
            id: payment.id.clone(),
            account_id: payment.account_id.clone(),
            amount: payment.amount,
            state: state.as_str(),
            version,
        }
    }
}
