//! Metrics and traces: what the stores, the relay and the key purges report, through the
//! ecosystem's facades, the [`metrics`] crate and [`tracing`]. Install any `metrics` recorder
//! (the Prometheus exporter, a StatsD one, …) and any `tracing` subscriber in the application;
//! without them, reporting costs next to nothing.
//!
//! The metric names below are a contract: dashboards and alerts are written against them.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | [`TRANSITIONS_TOTAL`] | counter | `machine`, `outcome` | transition requests, by [`OutcomeLabel`] |
//! | [`TRANSITION_DURATION_SECONDS`] | histogram | `machine` | how long a transition request took |
//! | [`OUTBOX_PENDING`] | gauge | | outbox messages not yet published |
//! | [`OUTBOX_DEAD`] | gauge | | outbox messages parked as dead |
//! | [`OUTBOX_OLDEST_AGE_SECONDS`] | gauge | | age of the oldest pending message (0 when none) |
//! | [`RELAY_PUBLISHED_TOTAL`] | counter | `topic` | messages a relay published |
//! | [`RELAY_FAILURES_TOTAL`] | counter | `topic` | publications that failed |
//! | [`KEYS_PURGED_TOTAL`] | counter | | idempotency keys the purges removed |
//!
//! Every store operation runs in a `tracing` span (`fsm.apply`, `fsm.create`, `fsm.get`,
//! `fsm.delete`, `fsm.history`, `fsm.lock`) with the fields `machine`, `entity`, `store`,
//! `target` or `event`, `key_source`, `in_caller_tx`, and, when it ends, `outcome`,
//! `duration_us` and (when it failed) `error`.
//!
//! ```
//! use fsm_runtime::telemetry::TRANSITIONS_TOTAL;
//! use fsm_runtime::{MemoryStore, StateMachine, Store};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//!
//! #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
//! enum Invoice {
//!     #[state(initial)]
//!     Open,
//!     #[transition(from = Open)]
//!     Paid,
//! }
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let _local = metrics::set_default_local_recorder(&recorder);
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::<Invoice>::new();
//! store.create(1).await?;
//! store.transition(1, Invoice::Paid).await?;
//! store.transition(1, Invoice::Paid).await?;
//! # Ok::<(), fsm_runtime::Error>(())
//! # }).unwrap();
//! let counted: Vec<_> = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == TRANSITIONS_TOTAL)
//!     .map(|(key, _, _, value)| {
//!         let outcome = key.key().labels().find(|l| l.key() == "outcome").map(|l| l.value().to_owned());
//!         (outcome, value)
//!     })
//!     .collect();
//! assert!(counted.contains(&(Some("applied".to_owned()), DebugValue::Counter(1))));
//! assert!(counted.contains(&(Some("already_applied".to_owned()), DebugValue::Counter(1))));
//! ```

mod outbox;
mod outcome_label;
mod traced;

pub use outcome_label::OutcomeLabel;

pub(crate) use outbox::{keys_purged, outbox_gauges, relay_failed, relay_published};
pub(crate) use traced::{Fields, Operation, Reported, Traced};

/// Counter of transition requests, labelled `machine` and `outcome` ([`OutcomeLabel`]).
pub const TRANSITIONS_TOTAL: &str = "fsm_transitions_total";

/// Histogram of the duration of transition requests in seconds, labelled `machine`.
pub const TRANSITION_DURATION_SECONDS: &str = "fsm_transition_duration_seconds";

/// Gauge of the outbox messages not yet published (and not dead).
pub const OUTBOX_PENDING: &str = "fsm_outbox_pending";

/// Gauge of the outbox messages parked as dead.
pub const OUTBOX_DEAD: &str = "fsm_outbox_dead";

/// Gauge of the age in seconds of the oldest pending outbox message (0 when none is pending).
pub const OUTBOX_OLDEST_AGE_SECONDS: &str = "fsm_outbox_oldest_age_seconds";

/// Counter of the messages relays published, labelled `topic`.
pub const RELAY_PUBLISHED_TOTAL: &str = "fsm_relay_published_total";

/// Counter of the publications that failed, labelled `topic`.
pub const RELAY_FAILURES_TOTAL: &str = "fsm_relay_failures_total";

/// Counter of the idempotency keys removed by [`Keys::purge`](crate::Keys::purge).
pub const KEYS_PURGED_TOTAL: &str = "fsm_keys_purged_total";

/// Describes every metric (its unit and help text) to the installed recorder, for the `# HELP`
/// lines of an exporter. Call it once after installing the recorder; metrics work without it.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(TRANSITIONS_TOTAL, Unit::Count, "Transition requests, by machine and outcome.");
    describe_histogram!(TRANSITION_DURATION_SECONDS, Unit::Seconds, "Duration of transition requests.");
    describe_gauge!(OUTBOX_PENDING, Unit::Count, "Outbox messages not yet published.");
    describe_gauge!(OUTBOX_DEAD, Unit::Count, "Outbox messages parked as dead.");
    describe_gauge!(OUTBOX_OLDEST_AGE_SECONDS, Unit::Seconds, "Age of the oldest pending outbox message.");
    describe_counter!(RELAY_PUBLISHED_TOTAL, Unit::Count, "Outbox messages published by relays.");
    describe_counter!(RELAY_FAILURES_TOTAL, Unit::Count, "Outbox publications that failed.");
    describe_counter!(KEYS_PURGED_TOTAL, Unit::Count, "Idempotency keys removed by purges.");
}
