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
//! `fsm_suite::payments`, so that `tests/payments_service.rs` can start it in process.

#![forbid(unsafe_code)]

use fsm_suite::payments;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: payments [--port PORT] [--database-url URL]

  --port PORT          where to listen on 127.0.0.1 (default 3000)
  --database-url URL   sqlite:PATH, postgres://… or mysql://… (default: DATABASE_URL, else the
                       SQLite file target/payments.db of this repository)";

struct Args {
    port: u16,
    database_url: String,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut port = 3000;
    let mut database_url = std::env::var("DATABASE_URL").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"));
        match flag.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}\n\n{USAGE}"))?,
            "--database-url" => database_url = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
        }
    }
    let database_url = match database_url {
        Some(url) => url,
        None => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
            std::fs::create_dir_all(&dir)?;
            format!("sqlite://{}?mode=rwc", dir.join("payments.db").display())
        }
    };
    Ok(Args { port, database_url })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = parse_args()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    tracing::info!(database = %redacted(&args.database_url), "connecting");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing the requests in flight");
    };
    payments::serve_url(&args.database_url, listener, shutdown).await
}

/// The URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
