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
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod entity_id;
mod error;
pub mod idempotency;
pub mod inbox;
mod machine;
mod machine_error;
pub mod mapping;
pub mod outbox;
mod outcome;
pub mod store;

pub use entity_id::EntityId;
pub use error::{BoxError, Error};
pub use fsm_macros::StateMachine;
pub use idempotency::{Fingerprint, IdempotencyKey, InvalidKey, Once};
pub use machine::{Edge, StateMachine};
pub use machine_error::{InvalidEvent, UnknownState};
pub use mapping::TableMapping;
pub use outcome::{CreateOutcome, DeleteOutcome, HistoryEntry, Outcome, Snapshot};
#[cfg(feature = "_sql")]
pub use sqlx;
pub use store::memory::{MemoryLocked, MemoryOutbox, MemoryStore, MemoryTransition, MemoryTx};
#[cfg(feature = "mysql")]
pub use store::mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "_sql")]
pub use store::sql::{Backend, SqlLocked, SqlOutbox, SqlStore};
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{Effect, EffectFuture, LockedEntity, OpFuture, Store, Target, TransitionRequest};

#[doc(hidden)]
pub mod __private;
