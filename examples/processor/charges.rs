//! The processor's books: the charges made, and what each `Idempotency-Key` has answered.
//!
//! [`Ledger`] is plain synchronous state; `http.rs` keeps it in a `Mutex` and never holds the
//! lock across an `.await`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Amounts whose last two digits are this are declined (like Stripe's test card numbers):
/// `amount % 100 == 51`, e.g. `51`, `1051`, `99951`.
pub const DECLINED_CENTS: i64 = 51;

/// The body of `POST /charges`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChargeRequest {
    /// The amount, in minor units (cents); positive.
    pub amount: i64,
    /// The caller's payment this charge is for.
    pub payment_id: String,
}

/// A charge made: money moved, once, for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Charge {
    /// `ch_1`, `ch_2`, … in the order the charges were made.
    pub id: String,
    /// The key of the request that made it.
    pub idempotency_key: String,
    /// The caller's payment.
    pub payment_id: String,
    /// The amount charged, in minor units.
    pub amount: i64,
}

/// A definite decline (see [`DECLINED_CENTS`]): recorded under its key, but not a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// The key of the declined request.
    pub idempotency_key: String,
    /// The caller's payment.
    pub payment_id: String,
    /// The declined amount.
    pub amount: i64,
}

/// What a key's first request ended with; the same key and body get it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A charge was made (201, then 200 on a replay).
    Charged(Charge),
    /// The card was declined (402, again on a replay).
    Declined(Decline),
}

/// Where a key stands.
#[derive(Debug, Clone)]
enum Entry {
    /// Its first request is still being processed (attempt number, body).
    InFlight { attempt: u64, request: ChargeRequest },
    /// Its first request ended (body, outcome).
    Done { request: ChargeRequest, outcome: Outcome },
}

/// What to do with a request, given its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A new key (or one freed by a failure): process it; [`Ledger::settle`] or
    /// [`Ledger::abandon`] with this attempt must follow.
    Fresh { attempt: u64 },
    /// The key's first request is still being processed: 409.
    InFlight,
    /// The key ended with this outcome, for the same body: answer it again.
    Replay(Outcome),
    /// The key was used with another body: 422.
    Mismatch,
}

/// How a fresh request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// A processor error: nothing charged, the key is free again (500).
    Failed,
    /// Recorded under the key; `late` asks for the answer to be delayed past the caller's timeout.
    Recorded { outcome: Outcome, late: bool },
}

/// The probabilities of the faults the processor injects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// A 500 that charges nothing.
    pub fail_rate: f64,
    /// A charge whose answer comes too late.
    pub timeout_rate: f64,
}

/// The charges in the order they were made, the keys, and the random draws.
#[derive(Debug)]
pub struct Ledger {
    charges: Vec<Charge>,
    keys: HashMap<String, Entry>,
    attempts: u64,
    faults: Faults,
    rng: SplitMix64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(faults: Faults, rng: SplitMix64) -> Self {
        Self { charges: Vec::new(), keys: HashMap::new(), attempts: 0, faults, rng }
    }

    /// Every charge ever made, oldest first.
    pub fn charges(&self) -> &[Charge] {
        &self.charges
    }

    /// Looks `key` up for `request`, and marks it in flight if it is new.
    pub fn admit(&mut self, key: &str, request: &ChargeRequest) -> Admission {
        match self.keys.get(key) {
            Some(Entry::InFlight { .. }) => Admission::InFlight,
            Some(Entry::Done { request: first, outcome }) if first == request => Admission::Replay(outcome.clone()),
            Some(Entry::Done { .. }) => Admission::Mismatch,
            None => {
                self.attempts += 1;
                let attempt = self.attempts;
                self.keys.insert(key.to_owned(), Entry::InFlight { attempt, request: request.clone() });
                Admission::Fresh { attempt }
            }
        }
    }

    /// Ends the fresh `attempt` of `key`: a failure (the key is freed), a decline or a charge.
    pub fn settle(&mut self, key: &str, attempt: u64) -> Option<Settlement> {
        let request = self.in_flight(key, attempt)?.clone();
        if self.rng.chance(self.faults.fail_rate) {
            self.keys.remove(key);
            return Some(Settlement::Failed);
        }
        let (outcome, late) = if request.amount % 100 == DECLINED_CENTS {
            (Outcome::Declined(decline(key, &request)), false)
        } else {
            (Outcome::Charged(self.charge(key, &request)), self.rng.chance(self.faults.timeout_rate))
        };
        self.keys.insert(key.to_owned(), Entry::Done { request, outcome: outcome.clone() });
        Some(Settlement::Recorded { outcome, late })
    }

    /// Frees `key` if its `attempt` is still in flight (the caller went away before it ended).
    pub fn abandon(&mut self, key: &str, attempt: u64) {
        if self.in_flight(key, attempt).is_some() {
            self.keys.remove(key);
        }
    }

    /// The body of `key`'s in-flight `attempt`, if that attempt is the one in flight.
    fn in_flight(&self, key: &str, attempt: u64) -> Option<&ChargeRequest> {
        match self.keys.get(key) {
            Some(Entry::InFlight { attempt: current, request }) if *current == attempt => Some(request),
            _ => None,
        }
    }

    /// Makes and records a charge.
    fn charge(&mut self, key: &str, request: &ChargeRequest) -> Charge {
        let charge = Charge {
            id: format!("ch_{}", self.charges.len() + 1),
            idempotency_key: key.to_owned(),
            payment_id: request.payment_id.clone(),
            amount: request.amount,
        };
        self.charges.push(charge.clone());
        charge
    }
}

/// The decline of `request` under `key`.
fn decline(key: &str, request: &ChargeRequest) -> Decline {
    Decline { idempotency_key: key.to_owned(), payment_id: request.payment_id.clone(), amount: request.amount }
}
