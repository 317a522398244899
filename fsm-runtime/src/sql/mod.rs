//! The SQL layer under the stores, tokens, leases, fences and the outbox.
//!
//! Shaped like sqlx's own driver crates: a small core of primitives, generic statements, and
//! one file per database with only what really differs there.
//!
//! - [`Backend`]: a database the layer runs on (`sqlx::Sqlite`, `sqlx::Postgres`,
//!   `sqlx::MySql`). Sealed by a hidden associated `Driver`, a trait only this crate can name
//!   or call: two primitives (execute and fetch over one typed argument list) and the real
//!   differences (the one-statement transition and how the store may use it, how a write
//!   transaction begins, the outbox claim, the lease and fence upserts, duplicate-object
//!   errors, the migration scripts), each database's in its own file.
//! - the statements, as plain generic functions over those primitives: entity table and
//!   history, idempotency keys, outbox and inbox, tokens, leases, fences;
//! - one migration runner for every runtime table, recorded in `fsm_schema_migrations`;
//! - [`SqlTx`]: the transaction an effect, a keyed operation or a locked entity works in;
//! - [`is_transient`]: whether a driver error may be retried; `RolledBack`: when the store
//!   itself sends again a request the database rolled back (a deadlock, a lost certification);
//! - [`pool_options`]: the pool settings of the `connect` constructors.

mod backend;
pub(crate) mod batch;
pub(crate) mod claim;
mod classify;
pub(crate) mod entity;
pub(crate) mod fences;
pub(crate) mod in_flight;
pub(crate) mod inbox;
pub(crate) mod insert_with;
pub(crate) mod keys;
pub(crate) mod leases;
pub(crate) mod migrate;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "mysql")]
mod mysql_procedure;
pub(crate) mod outbox;
mod pool;
#[cfg(feature = "postgres")]
mod postgres;
mod rolled_back;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod timers;
pub(crate) mod tokens;
pub(crate) mod transition;
mod tx;
pub(crate) mod value;

pub use backend::Backend;
pub(crate) use backend::private::{Driver, LeaseRequest};
pub use classify::is_transient;
pub(crate) use classify::{is_deadlock, is_key_violation, is_lock_timeout, is_unique_violation};
pub use pool::{ACQUIRE_TIMEOUT, PING_IF_IDLE_FOR, pool_options};
#[cfg(feature = "mysql")]
pub use pool::{GALERA_SYNC_WAIT, galera_pool_options};
pub(crate) use rolled_back::{RolledBack, again_after_rollback};
pub(crate) use tx::Nested;
pub use tx::SqlTx;
