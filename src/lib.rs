//! Examples, integration tests and benchmarks of `fsm-runtime`.
//!
//! The machines shared by the examples live here, so that tests can check what the README and
//! the manual in `docs/` show against what the macro generates.
#![forbid(unsafe_code)]

pub mod order;
pub mod order_demo;
pub mod payments;
pub mod toggle;

/// The README's Rust code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The Rust code blocks of `docs/audit-trail.md`, compiled and run as doctests.
#[doc = include_str!("../docs/audit-trail.md")]
#[cfg(doctest)]
pub struct AuditTrailDoctests;

/// The Rust code blocks of `docs/idempotency-keys.md`, compiled and run as doctests.
#[doc = include_str!("../docs/idempotency-keys.md")]
#[cfg(doctest)]
pub struct IdempotencyKeysDoctests;

/// The Rust code blocks of `docs/outbox-and-inbox.md`, compiled and run as doctests.
#[doc = include_str!("../docs/outbox-and-inbox.md")]
#[cfg(doctest)]
pub struct OutboxAndInboxDoctests;

/// The Rust code blocks of `docs/timers.md`, compiled and run as doctests.
#[doc = include_str!("../docs/timers.md")]
#[cfg(doctest)]
pub struct TimersDoctests;

/// The Rust code blocks of `docs/stores.md`, compiled and run as doctests.
#[doc = include_str!("../docs/stores.md")]
#[cfg(doctest)]
pub struct StoresDoctests;

/// The Rust code blocks of `docs/derive.md`, compiled and run as doctests.
#[doc = include_str!("../docs/derive.md")]
#[cfg(doctest)]
pub struct DeriveDoctests;

/// The Rust code blocks of `docs/outside-calls.md`, compiled and run as doctests.
#[doc = include_str!("../docs/outside-calls.md")]
#[cfg(doctest)]
pub struct OutsideCallsDoctests;

/// The Rust code blocks of `docs/tokens-and-leases.md`, compiled and run as doctests.
#[doc = include_str!("../docs/tokens-and-leases.md")]
#[cfg(doctest)]
pub struct TokensAndLeasesDoctests;

/// The Rust code blocks of `docs/caller-transaction.md`, compiled and run as doctests.
#[doc = include_str!("../docs/caller-transaction.md")]
#[cfg(doctest)]
pub struct CallerTransactionDoctests;

/// The Rust code blocks of `docs/scaling.md`, compiled and run as doctests.
#[doc = include_str!("../docs/scaling.md")]
#[cfg(doctest)]
pub struct ScalingDoctests;

/// The Rust code blocks of `docs/operating.md`, compiled and run as doctests.
#[doc = include_str!("../docs/operating.md")]
#[cfg(doctest)]
pub struct OperatingDoctests;
