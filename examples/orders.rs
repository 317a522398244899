//! The order example: create, pay, replay, refuse, race, refuse again, history.
//!
//! ```text
//! cargo run --example orders                                   # SQLite, in memory
//! cargo run --example orders -- --database-url postgres://postgres@127.0.0.1/test
//! DATABASE_URL=mysql://root@127.0.0.1/test cargo run --example orders
//! ```

use std::sync::Arc;

use fsm_runtime::sqlx;
use fsm_runtime::{Error, MySqlStore, Outcome, PostgresStore, SqliteStore, Store};
use fsm_suite::order::{OrderEvent, OrderState, create_orders_table_sql};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = database_url()?;
    println!("database: {url}");
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let pool = sqlx::PgPool::connect(&url).await?;
        sqlx::query(create_orders_table_sql(&url)).execute(&pool).await?;
        run(PostgresStore::<OrderState>::new(pool).await?).await
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let pool = sqlx::MySqlPool::connect(&url).await?;
        sqlx::query(create_orders_table_sql(&url)).execute(&pool).await?;
        run(MySqlStore::<OrderState>::new(pool).await?).await
    } else {
        // One connection: an in-memory SQLite database lives as long as its connection.
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await?;
        sqlx::query(create_orders_table_sql(&url)).execute(&pool).await?;
        run(SqliteStore::<OrderState>::new(pool).await?).await
    }
}

/// `--database-url URL`, else `DATABASE_URL`, else an in-memory SQLite database.
fn database_url() -> Result<String, BoxError> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--database-url") => args.next().ok_or_else(|| "--database-url needs a URL".into()),
        Some(other) => Err(format!("unknown argument `{other}` (expected --database-url URL)").into()),
        None => Ok(std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".to_owned())),
    }
}

async fn run<S: Store<OrderState> + 'static>(store: S) -> Result<(), BoxError> {
    let store = Arc::new(store);
    // A fresh order id per run, so the example can run again on a persistent database.
    let id = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros())?;

    println!("\n1. create order {id}:        {:?}", store.create(id).await?);
    println!("   create it again:         {:?}", store.create(id).await?);
    println!("2. pay:                     {}", show(store.fire(id, OrderEvent::Pay).await?));
    println!("3. pay again (a retry):     {}", show(store.fire(id, OrderEvent::Pay).await?));
    match store.transition(id, OrderState::Delivered).await {
        Err(error @ Error::InvalidTransition { .. }) => println!("4. deliver before shipping: refused: {error}"),
        other => return Err(format!("expected InvalidTransition, got {other:?}").into()),
    }

    println!("5. 16 tasks race to ship:");
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.fire(id, OrderEvent::Ship).await })
        })
        .collect();
    let (mut applied, mut already) = (0, 0);
    for racer in racers {
        match racer.await?? {
            Outcome::Applied { .. } => applied += 1,
            _ => already += 1,
        }
    }
    println!("   {applied} Applied, {already} AlreadyApplied");
    if applied != 1 {
        return Err(format!("expected exactly one Applied, got {applied}").into());
    }

    match store.fire(id, OrderEvent::Cancel).await {
        Err(error @ Error::InvalidEvent { .. }) => println!("6. cancel after shipping:   refused: {error}"),
        other => return Err(format!("expected InvalidEvent, got {other:?}").into()),
    }

    println!("7. history of order {id}:");
    for entry in store.history(id).await? {
        let event = entry.event.as_deref().unwrap_or("-");
        println!("   v{}  {:<8} -> {:<8} on {event}", entry.version, entry.from.as_str(), entry.to.as_str());
    }
    let now = store.get(id).await?;
    println!("\nnow: {} at version {}", now.state, now.version);
    Ok(())
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
