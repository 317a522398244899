//! Idempotent, persisted state machines.
//!
//! Derive [`StateMachine`] on a unit-only enum; the macro checks the machine at compile time and
//! generates its transition table as constants. A [`Store`] persists each entity's state and
//! moves it with a compare-and-set on the legal sources of the target, so that a transition
//! replayed after a retry, a double click or a redelivered message is a no-op
//! ([`Outcome::AlreadyApplied`]), never a second effect.
//!
//! | the row's state | result | writes |
//! |---|---|---|
//! | a legal source of the target | [`Outcome::Applied`] | state, version + 1, one history row, the effects |
//! | already the target | [`Outcome::AlreadyApplied`] | nothing |
//! | anything else | [`Error::InvalidTransition`] | nothing |
//! | no such row | [`Error::NotFound`] | nothing |
//! | a string no state maps to | [`Error::UnknownState`] | nothing |
//!
//! ```
//! use fsm_runtime::{MemoryStore, Outcome, StateMachine, Store};
//!
//! #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! #[state_machine(rename_all = "snake_case", event = PaymentEvent)]
//! enum Payment {
//!     #[state(initial)]
//!     Pending,
//!     #[transition(from = Pending, on = Capture)]
//!     Captured,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::<Payment>::new();
//! store.create(7).await?;
//! assert!(store.fire(7, PaymentEvent::Capture).await?.is_applied());
//! assert!(matches!(store.fire(7, PaymentEvent::Capture).await?, Outcome::AlreadyApplied { .. }));
//! # Ok::<(), fsm_runtime::Error>(())
//! # }).unwrap();
//! ```
//!
//! Around the compare-and-set: [`TransitionRequest::expect_version`] (optimistic locking),
//! [`Store::transition_from`] (compare-and-set on an observed state), [`Store::lock`]
//! (pessimistic locking), [`TransitionRequest::effect`] (work in the same transaction),
//! [`TransitionRequest::idempotency_key`] and [`Keys::run_once`] (idempotency keys, one set per
//! database, shared by its machines), and [`outbox`] / [`inbox`] (messages sent exactly once).
//! Beside the machines: [`token`] (single-use tokens), [`lock`] (leases with fencing tokens) and
//! [`fence`] (transitions that a holder whose lease was taken over cannot write).
//!
//! The crate root holds what a user writes every day; the rest lives in modules: [`store`] (the
//! store contract's types, the memory and SQL stores, effects), [`sql`] (the SQL layer:
//! backends, [`sql::SqlTx`], pool settings, [`sql::is_transient`]), [`keys`], [`machine`],
//! [`mapping`], [`error`], [`retry`].
//!
//! Features: `sqlite` (default) for [`SqliteStore`], `postgres` for `PostgresStore`, `mysql`
//! for `MySqlStore` (MySQL and MariaDB), `serde` to (de)serialise derived states as their
//! stored names, `redis` for tokens and leases on Redis. [`MemoryStore`] is always there.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod column_problem;
mod column_value;
mod entity_id;
pub mod error;
pub mod fence;
pub mod idempotency;
pub mod inbox;
pub mod keys;
pub mod lock;
pub mod machine;
mod machine_error;
pub mod mapping;
mod memory_tx;
mod message;
pub mod outbound;
pub mod outbox;
mod outcome;
mod random;
#[cfg(feature = "redis")]
mod redis_connection;
pub mod retry;
mod scheduled;
#[cfg(feature = "_sql")]
pub mod sql;
pub mod store;
pub mod telemetry;
pub mod timer;
pub mod token;
mod transition;
mod worker;

pub use error::Error;
pub use fsm_macros::StateMachine;
pub use idempotency::{Fingerprint, IdempotencyKey, Once};
pub use keys::Keys;
pub use machine::StateMachine;
pub use outcome::Outcome;
#[cfg(feature = "redis")]
pub use redis;
#[cfg(feature = "_sql")]
pub use sqlx;
pub use store::MemoryStore;
#[cfg(feature = "mysql")]
pub use store::MySqlStore;
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{Store, TransitionRequest};

#[doc(hidden)]
pub mod __private;
#[cfg(test)]
mod module_graph;
