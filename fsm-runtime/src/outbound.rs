//! Exactly-once calls to an outside service (a card processor, a bank, a mail provider): the
//! entity moves into an *in-flight* state (`#[state(in_flight)]`), the call is made with an
//! [`OutboundKey`] that every attempt of that entry shares, and its definite answer is recorded
//! by a second transition. A call without a definite answer (a timeout, a 500) leaves the
//! entity in flight, and it is made again later with the same key: by the next request for the
//! entity ([`Outbound::resume`]) or by the [`Recovery`] worker, which finds the entities that
//! stayed in flight too long.
//!
//! The outside service must deduplicate by the key (the `Idempotency-Key` of Stripe and of the
//! IETF draft): the library makes sure every call of one entry carries the same key, and that
//! two calls for one entity are never made at the same time by two of your processes (a lease
//! per entity, [`LeaseStore`](crate::lock::LeaseStore)); the service makes sure that a key is
//! charged once.
//!
//! ```
//! use fsm_runtime::lock::MemoryLeases;
//! use fsm_runtime::outbound::{Call, CallOutcome, Outbound, OutboundCall, StepOutcome};
//! use fsm_runtime::{MemoryStore, StateMachine, Store};
//!
//! #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! enum Payment {
//!     #[state(initial)]
//!     Authorized,
//!     #[state(in_flight)]
//!     #[transition(from = Authorized)]
//!     Capturing,
//!     #[transition(from = Capturing)]
//!     Captured,
//!     #[transition(from = Capturing)]
//!     Declined,
//! }
//!
//! /// The processor: here, one that accepts every charge.
//! struct Processor;
//!
//! impl<Tx> OutboundCall<Payment, Tx> for Processor {
//!     async fn call(&self, call: Call<'_, Payment>) -> CallOutcome<Payment> {
//!         // POST /charges with `Idempotency-Key: call.key`…
//!         assert!(call.key.as_str().starts_with("Payment/7/"));
//!         CallOutcome::Settled(Payment::Captured)
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::<Payment>::new();
//! store.create(7).await?;
//! let outbound = Outbound::new(store.clone(), MemoryLeases::new(), Processor);
//! let step = outbound.run(fsm_runtime::TransitionRequest::to(7, Payment::Capturing)).await?;
//! assert!(matches!(step, StepOutcome::Settled { state: Payment::Captured, .. }));
//! // Again: the entity is past the call; nothing is called twice.
//! let again = outbound.resume(7).await?;
//! assert!(matches!(again, StepOutcome::Settled { state: Payment::Captured, .. }));
//! # Ok::<(), fsm_runtime::Error>(())
//! # }).unwrap();
//! ```

mod call;
mod recovery;
mod scan;
mod step;

pub use call::{Call, CallOutcome, OutboundCall, OutboundKey};
pub use recovery::{InFlightScan, Recovery, RecoveryReport, StuckEntity};
pub use step::{Outbound, StepOutcome};
