//! The payment service: an HTTP API over the payment machine, with `Idempotency-Key` headers.
//!
//! ```text
//! cargo run --example payments                                   # SQLite file target/payments.db, port 3000
//! cargo run --example payments -- --port 8080 --database-url postgres://postgres@127.0.0.1/test
//! DATABASE_URL=mysql://root@127.0.0.1/test cargo run --example payments
//! RUST_LOG=debug cargo run --example payments                    # more logs
//! cargo run --example payments -- --log-format json                # JSON lines, one per store operation too
//! cargo run --example payments -- --processor-url http://127.0.0.1:4000 --recovery-after 5s
//!                                                                  # captures through a card processor
//! curl -s localhost:3000/metrics                                   # Prometheus text
//! ```
//!
//! The service itself (routes, handlers, the machine, problem responses) is
//! `fsm_suite::payments`, so that `tests/conformance/payments_service.rs` can start it in process.

#![forbid(unsafe_code)]

use fsm_suite::payments::{self, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = payments::ServiceArgs::parse_checked();
    init_logging(args.log_format);
    let database_url =
        args.database_url_or_file_in(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    tracing::info!(database = %payments::redacted(&database_url), "connecting");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing the requests in flight");
    };
    payments::serve_url(&database_url, args.authorization_ttl, args.lock_wait, args.processor(), listener, shutdown)
        .await
}

/// The log: `RUST_LOG` (default `info`), as text or as JSON lines; in JSON, each store
/// operation's span is also logged when it closes, with its fields (machine, entity, outcome, …).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::CLOSE)
            .init(),
    }
}
