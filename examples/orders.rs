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

use clap::Parser as _;
use fsm_suite::order_demo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = order_demo::DemoArgs::parse();
    order_demo::run_url(&args.database_url, &mut std::io::stdout()).await?;
    Ok(())
}
