//! A fake card processor: the outside world of an exactly-once charge, with the faults that
//! make exactly-once hard (errors, answers lost to a client timeout, concurrent retries).
//!
//! ```text
//! cargo run --example processor -- --port 4000
//! cargo run --example processor -- --port 0 --fail-rate 0.3 --timeout-rate 0.2 --latency-ms 50
//! curl -s -X POST localhost:4000/charges -H 'Idempotency-Key: k1' -d '{"amount": 1000, "payment_id": "p1"}'
//! curl -s localhost:4000/charges
//! ```
//!
//! On start it prints one line to stdout, `processor listening on http://127.0.0.1:<port>`
//! (with the port bound, also for `--port 0`), and listens on 127.0.0.1. The charges live in
//! memory: a restart forgets them.
//!
//! # `POST /charges`
//!
//! An `Idempotency-Key` header and a JSON body `{"amount": <positive integer>, "payment_id": "<string>"}`:
//!
//! | the request | the answer |
//! |---|---|
//! | no or empty `Idempotency-Key`; a body that is not JSON, lacks a field, or has `amount <= 0` | 400 `{"error", "message"}` |
//! | the first of its key | after `--latency-ms`: 500 `processor_error` with probability `--fail-rate`, nothing charged and the key free again; else 402 for a declined amount; else 201 with the charge `{"id", "idempotency_key", "payment_id", "amount"}` |
//! | the same key while its first request is still being processed | 409 `request_in_progress`, `Retry-After: 1` (whatever the body) |
//! | the same key and body after it ended | its answer again (a charge with 200 instead of 201), with `Idempotent-Replayed: true`: never a second charge |
//! | the same key, another `amount` or `payment_id` | 422 `idempotency_key_reused`, naming the key |
//!
//! **Declines**: like Stripe's test cards, every amount with `amount % 100 == 51` (`51`, `1051`,
//! …) is a definite decline: 402 `{"error": "card_declined", "message", "idempotency_key",
//! "payment_id", "amount"}`, recorded under its key (the same key and body get the same 402), and
//! not a charge.
//!
//! **Timeouts**: with probability `--timeout-rate`, a charge is made and recorded, and only then
//! is its 201 delayed by `--timeout-delay-ms`, so that the caller's client times out: the charge
//! stands, and a retry with the same key gets it (200).
//!
//! A client that goes away during the latency frees its key: nothing was charged.
//!
//! # `GET /charges`
//!
//! Every charge ever made, as a JSON array of `{"id", "idempotency_key", "payment_id", "amount"}`,
//! oldest first. Declines and failures are not charges.
//!
//! # Flags
//!
//! - `--port P` (required): the port on 127.0.0.1; 0 for a free one.
//! - `--fail-rate F` (default 0): the probability of a 500 on the first request of a key.
//! - `--timeout-rate T` (default 0): the probability that a charge is answered late.
//! - `--latency-ms L` (default 0): how long the first request of a key takes.
//! - `--timeout-delay-ms D` (default 10000): how late a late answer comes.
//! - `--seed S` (default: from the clock): the seed of the random draws, for a reproducible run.
//!
//! A rate outside [0, 1] is a usage error (exit code 2).

#![forbid(unsafe_code)]

mod args;
mod charges;
mod http;
mod rng;

use std::io::Write as _;
use std::time::Duration;

use clap::Parser as _;

use crate::charges::{Faults, Ledger};
use crate::rng::SplitMix64;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args::Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let app = http::App::new(
        Ledger::new(Faults { fail_rate: args.fail_rate, timeout_rate: args.timeout_rate }, SplitMix64::new(args.seed)),
        Duration::from_millis(args.latency_ms),
        Duration::from_millis(args.timeout_delay_ms),
    );
    announce(port)?;
    axum::serve(listener, http::router(app)).await?;
    Ok(())
}

/// Prints the one line a script or a test reads the port from, and flushes it.
fn announce(port: u16) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "processor listening on http://127.0.0.1:{port}")?;
    stdout.flush()
}
