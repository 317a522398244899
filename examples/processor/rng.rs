//! The random draws of the processor: SplitMix64, enough to pick failures (no crate needed).

use std::time::{SystemTime, UNIX_EPOCH};

/// A SplitMix64 generator (Steele, Lea and Flood, 2014): not cryptographic, just uniform.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from `seed`, or seeded from the clock and the process id when `None`.
    pub fn new(seed: Option<u64>) -> Self {
        Self { state: seed.unwrap_or_else(clock_seed) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `true` with probability `rate` (never for 0.0, always for 1.0).
    pub fn chance(&mut self, rate: f64) -> bool {
        // 53 random bits: a uniform float in [0, 1).
        let draw = (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
        draw < rate
    }
}

/// A seed from the nanoseconds of the clock and the process id.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    // Folding the 128 bits of nanoseconds into 64 is the point: truncation is wanted.
    (nanos as u64) ^ ((nanos >> 64) as u64) ^ (u64::from(std::process::id()) << 32)
}
