//! The processor's command line ([`Args`]), parsed by clap.

/// `processor --port P [--fail-rate F] [--timeout-rate T] [--latency-ms L] [--timeout-delay-ms D] [--seed S]`.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(
    name = "processor",
    about = "A fake card processor: POST /charges with an Idempotency-Key header, GET /charges",
    long_about = None
)]
pub struct Args {
    /// Where to listen on 127.0.0.1 (0: a free port, printed on the first line of stdout).
    #[arg(long)]
    pub port: u16,
    /// The probability, in [0, 1], that the first request of a key fails with a 500 and charges
    /// nothing (the key is free again afterwards).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,
    /// The probability, in [0, 1], that a charge is made but its 201 is sent only after
    /// `--timeout-delay-ms`, so that the caller's client times out.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub timeout_rate: f64,
    /// How long the first request of a key takes before it fails, declines or charges
    /// (meanwhile, the same key answers 409).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// How late the answer of a charge picked by `--timeout-rate` is sent.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_delay_ms: u64,
    /// The seed of the random draws (default: from the clock), for a reproducible run.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A probability as `--fail-rate` and `--timeout-rate` take it: a number in [0, 1].
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|error| format!("`{text}` is not a number: {error}"))?;
    if (0.0..=1.0).contains(&rate) { Ok(rate) } else { Err(format!("{rate} is not a rate between 0.0 and 1.0")) }
}
