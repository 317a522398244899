//! The story `examples/orders.rs` tells, as a library function so that a test runs it on every
//! database: create an order, pay, replay the payment, refuse an illegal move, race sixteen
//! tasks to ship it, refuse a cancel after shipping, print the history.

use std::io::Write;
use std::sync::Arc;

use fsm_runtime::error::BoxError;
use fsm_runtime::sqlx;
use fsm_runtime::store::{CreateOutcome, HistoryEntry, Snapshot};
use fsm_runtime::{Error, MySqlStore, Outcome, PostgresStore, SqliteStore, Store};

use crate::order::{OrderEvent, OrderState, create_orders_table_sql};

/// How many tasks race to ship the order.
pub const RACERS: usize = 16;

/// What the story did, step by step, for a test to check.
#[derive(Debug)]
pub struct Report {
    /// The order's id.
    pub id: i64,
    /// The first create.
    pub created: CreateOutcome<OrderState>,
    /// The same create again.
    pub created_again: CreateOutcome<OrderState>,
    /// The payment.
    pub paid: Outcome<OrderState>,
    /// The payment retried.
    pub paid_again: Outcome<OrderState>,
    /// Delivering before shipping: the error.
    pub illegal: Error,
    /// How many racers got `Applied`.
    pub ship_applied: usize,
    /// How many racers got `AlreadyApplied`.
    pub ship_already_applied: usize,
    /// Cancelling after shipping: the error.
    pub cancel_refused: Error,
    /// The order's history.
    pub history: Vec<HistoryEntry<OrderState>>,
    /// The order at the end.
    pub now: Snapshot<OrderState>,
}

/// The database of `cargo run --example orders` with no flag: SQLite, in memory.
pub const DEFAULT_URL: &str = "sqlite::memory:";

/// The order example's command line: `orders [--database-url URL]`, with `DATABASE_URL` as the
/// default and an in-memory SQLite database ([`DEFAULT_URL`]) without either.
///
/// ```
/// use clap::Parser as _;
/// let args = fsm_suite::order_demo::DemoArgs::try_parse_from(["orders", "--database-url=sqlite::memory:"]).unwrap();
/// assert_eq!(args.database_url, "sqlite::memory:");
/// assert!(fsm_suite::order_demo::DemoArgs::try_parse_from(["orders", "--databse-url", "x"]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
#[command(name = "orders", about = "The order example: create, pay, replay, refuse, race, refuse again, history", long_about = None)]
pub struct DemoArgs {
    /// `sqlite:…`, `postgres://…` or `mysql://…`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_URL)]
    pub database_url: String,
}

/// Connects to `url` (`sqlite:…`, `postgres://…`, `mysql://…`), creates the `orders` table if
/// missing and tells the story on it, writing to `out`.
pub async fn run_url(url: &str, out: &mut (dyn Write + Send)) -> Result<Report, BoxError> {
    writeln!(out, "database: {url}")?;
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query(create_orders_table_sql(url)).execute(&pool).await?;
        run(PostgresStore::<OrderState>::new(pool).await?, out).await
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let pool = sqlx::MySqlPool::connect(url).await?;
        sqlx::query(create_orders_table_sql(url)).execute(&pool).await?;
        run(MySqlStore::<OrderState>::new(pool).await?, out).await
    } else if url.starts_with("sqlite:") {
        // One connection: an in-memory SQLite database lives as long as its connection.
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query(create_orders_table_sql(url)).execute(&pool).await?;
        run(SqliteStore::<OrderState>::new(pool).await?, out).await
    } else {
        Err(format!("unsupported database URL `{url}` (expected sqlite:, postgres:// or mysql://)").into())
    }
}

/// Tells the story on `store`, writing each step to `out`.
pub async fn run<S: Store<OrderState> + 'static>(store: S, out: &mut (dyn Write + Send)) -> Result<Report, BoxError> {
    let store = Arc::new(store);
    // A fresh order id per run, so the story can run again on a persistent database.
    let id = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros())?;

    let created = store.create(id).await?;
    writeln!(out, "\n1. create order {id}")?;
    writeln!(out, "   create:                  {created:?}")?;
    let created_again = store.create(id).await?;
    writeln!(out, "   create it again:         {created_again:?}")?;
    let paid = store.fire(id, OrderEvent::Pay).await?;
    writeln!(out, "2. pay:                     {}", show(paid))?;
    let paid_again = store.fire(id, OrderEvent::Pay).await?;
    writeln!(out, "3. pay again (a retry):     {}", show(paid_again))?;
    let illegal = match store.transition(id, OrderState::Delivered).await {
        Err(error @ Error::InvalidTransition { .. }) => error,
        other => return Err(format!("expected InvalidTransition, got {other:?}").into()),
    };
    writeln!(out, "4. deliver before shipping: refused, Error::InvalidTransition: {illegal}")?;

    writeln!(out, "5. {RACERS} tasks race to ship:")?;
    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.fire(id, OrderEvent::Ship).await })
        })
        .collect();
    let (mut ship_applied, mut ship_already_applied) = (0, 0);
    for racer in racers {
        match racer.await?? {
            Outcome::Applied { .. } => ship_applied += 1,
            Outcome::AlreadyApplied { .. } => ship_already_applied += 1,
            other => return Err(format!("unexpected outcome of a racer: {other:?}").into()),
        }
    }
    writeln!(out, "   {ship_applied} Applied, {ship_already_applied} AlreadyApplied")?;
    if ship_applied != 1 {
        return Err(format!("expected exactly one Applied, got {ship_applied}").into());
    }

    let cancel_refused = match store.fire(id, OrderEvent::Cancel).await {
        Err(error @ Error::InvalidEvent { .. }) => error,
        other => return Err(format!("expected InvalidEvent, got {other:?}").into()),
    };
    writeln!(out, "6. cancel after shipping:   refused, Error::InvalidEvent: {cancel_refused}")?;

    writeln!(out, "7. history of order {id}:")?;
    let history = store.history(id).await?;
    for entry in &history {
        let event = entry.event.as_deref().unwrap_or("-");
        writeln!(out, "   v{}  {:<8} -> {:<8} on {event}", entry.version, entry.from.as_str(), entry.to.as_str())?;
    }
    let now = store.get(id).await?;
    writeln!(out, "\nnow: {} at version {}", now.state, now.version)?;
    Ok(Report {
        id,
        created,
        created_again,
        paid,
        paid_again,
        illegal,
        ship_applied,
        ship_already_applied,
        cancel_refused,
        history,
        now,
    })
}

fn show(outcome: Outcome<OrderState>) -> String {
    match outcome {
        Outcome::Applied { from, to, version } => format!("Applied {from} -> {to}, version {version}"),
        Outcome::AlreadyApplied { state, version } => {
            format!("AlreadyApplied: already {state}, version {version} unchanged (a no-op)")
        }
        other => format!("{other:?}"),
    }
}
