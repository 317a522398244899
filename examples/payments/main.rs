//! The payment service: an HTTP API over the payment machine, with `Idempotency-Key` headers.
//!
//! ```text
//! cargo run --example payments                                   # SQLite file target/payments.db, port 3000
//! cargo run --example payments -- --port 8080 --database-url postgres://postgres@127.0.0.1/test
//! DATABASE_URL=mysql://root@127.0.0.1/test cargo run --example payments
//! RUST_LOG=debug cargo run --example payments                    # more logs
//! ```
//!
//! The service itself (routes, handlers, the machine, problem responses) is
//! `fsm_suite::payments`, so that `tests/conformance/payments_service.rs` can start it in process.

#![forbid(unsafe_code)]

use clap::Parser as _;
use fsm_suite::payments;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = payments::ServiceArgs::parse();
    let database_url =
        args.database_url_or_file_in(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    tracing::info!(database = %payments::redacted(&database_url), "connecting");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing the requests in flight");
    };
    payments::serve_url(&database_url, args.authorization_ttl, listener, shutdown).await
}
