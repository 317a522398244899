//! The order example: create, pay, replay, refuse, race, refuse again, history.
//!
//! ```text
//! cargo run --example orders                                   # SQLite, in memory
//! cargo run --example orders -- --database-url postgres://postgres@127.0.0.1/test
//! DATABASE_URL=mysql://root@127.0.0.1/test cargo run --example orders
//! ```
//!
//! The story itself is `fsm_suite::order_demo::run`, so that a test tells it on every database.

#![forbid(unsafe_code)]

use fsm_suite::order_demo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = database_url()?;
    order_demo::run_url(&url, &mut std::io::stdout()).await?;
    Ok(())
}

/// `--database-url URL`, else `DATABASE_URL`, else an in-memory SQLite database.
fn database_url() -> Result<String, BoxError> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--database-url") => args.next().ok_or_else(|| "--database-url needs a URL".into()),
        Some(other) => Err(format!("unknown argument `{other}` (expected --database-url URL)").into()),
        None => Ok(std::env::var("DATABASE_URL").unwrap_or_else(|_| order_demo::DEFAULT_URL.to_owned())),
    }
}
