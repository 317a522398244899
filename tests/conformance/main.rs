//! Every test that talks to a store, a database or Redis, in one binary (one link instead of
//! one per file), on one fixture (`fixture`): servers found or skipped, fresh tables, and their
//! removal also when a test panics.
//!
//! The conformance suite, the same cases written once against every adapter:
//!
//! - `cases.rs`: the stores (memory, SQLite, PostgreSQL, MySQL/MariaDB): transitions, keys,
//!   the outbox, locks (the modules `memory`, `sqlite`, `postgres` and `mysql` below), with the
//!   audit trail's cases in `audit_cases.rs` and the outbox's retries, dead letters, per-key order
//!   and purge in `outbox_cases.rs`;
//! - `tokens.rs`: single-use tokens (memory, the three SQL databases, Redis);
//! - `leases.rs`: leases with fencing tokens (memory, the three SQL databases, Redis);
//! - `telemetry.rs`: metrics and spans (memory and the three SQL databases);
//! - `outbound_calls.rs`: exactly-once outside calls, their keys, claims and recovery (memory
//!   and the three SQL databases).
//! - `payments_processor.rs`: the payment service capturing through the fake card processor (a child process), under its faults and crashes.
//!
//! The SQL adapters, one module per subject: `sql_effects`, `sql_races`, `sql_bad_input`,
//! `sql_migrations`, `statement_count`, `keyed_top_up`, `caller_transaction`, `lock_wait`, `outbox_e2e`, `outbox_faults`, `connection_loss`,
//! `ids_as_stored`, `galera_cluster` (what only a multi-primary cluster shows; the `galera` module
//! below runs the conformance cases spread over its nodes),
//! `mysql_found_rows`, `mysql_procedure`, `sqlite_cancelled_batch`, `upgrade_from_first_release`; the examples on every
//! database: `orders_example`, `payments_service`; and the fixture's own promise:
//! `cleanup_on_panic`.
//!
//! PostgreSQL, MySQL/MariaDB and Redis cases skip with a visible message when their server does
//! not answer, unless `FSM_REQUIRE_SERVERS=1` (see `fixture/backends.rs`). One test or one
//! subject: `cargo test --test conformance sql_races::`, `cargo test --test conformance redis`.

mod fixture;

mod audit_cases;
mod caller_transaction;
mod cases;
mod cleanup_on_panic;
mod connection_loss;
mod future_sizes;
mod galera_cluster;
mod ids_as_stored;
mod keyed_top_up;
mod leases;
mod lock_wait;
mod mysql_found_rows;
mod mysql_procedure;
mod orders_example;
mod outbound_calls;
mod outbox_cases;
mod outbox_e2e;
mod outbox_faults;
mod payments_processor;
mod payments_service;
mod sql_bad_input;
mod sql_effects;
mod sql_migrations;
mod sql_races;
mod sqlite_cancelled_batch;
mod statement_count;
mod telemetry;
mod timer_claims;
mod timers;
mod tokens;
mod upgrade_from_first_release;

use std::sync::Arc;

use fixture::backends::RawAccess;

/// Runs `case` on a fresh store from `make`, then drops the test's table (and removes the SQLite
/// store's file), also when the case panics.
async fn run<S, Fut, Case>(test: &str, make: impl FnOnce(String) -> Fut, case: impl FnOnce(Arc<S>, String) -> Case)
where
    S: RawAccess,
    Fut: std::future::Future<Output = Option<(S, String)>>,
    Case: std::future::Future<Output = ()>,
{
    let Some((store, table)) = make(test.to_owned()).await else {
        return;
    };
    let leftovers = store.leftovers(&table);
    let store = Arc::new(store);
    fixture::guarded(leftovers, case(store.clone(), table.clone())).await;
}

macro_rules! conformance {
    ($backend:ident, $make:ident) => {
        mod $backend {
            use super::*;

            conformance!(@cases $make;
                create_is_idempotent: Order,
                transition_applies_once: Order,
                illegal_transition_is_refused: Order,
                missing_entity_is_not_found: Order,
                unknown_state_is_an_error: Order,
                fire_follows_the_event: Order,
                multi_source_target: Order,
                transition_from_observed_state: Order,
                expected_version_is_checked: Order,
                effects_run_only_when_applied: Order,
                delete_is_idempotent: Order,
                lock_read_decide_write: Order,
                racing_tasks_apply_once: Order,
                racing_fires_apply_once: Order,
                event_with_two_targets: Ticket,
                cyclic_event_moves_each_time: Light,
                keyed_transition_replays: Order,
                keys_differing_in_case_are_different: Order,
                failed_keyed_transition_stores_nothing: Order,
                keyed_cyclic_event_runs_once: Light,
                racing_keyed_transition: Order,
                run_once_per_key: Order,
                purged_keys_are_new_again: Order,
                outbox_message_iff_applied: Order,
                relay_crash_republishes_with_the_same_id: Order,
                concurrent_relays_share_the_work: Order,
                strict_target_refuses_another_request: Payment,
                retry_on_conflict_decides_again: Order,
                one_key_across_two_machines: Order,
                audit_columns_recorded: Order,
                delete_keeps_the_audit_trail: Order,
                create_with_writes_one_row: Order,
                create_with_existing_unchanged: Order,
                create_with_refuses_bad_columns: Order,
                create_with_unknown_column: Order,
                create_with_values_round_trip: Order,
                clones_share_state: Order,
                batch_follows_outcome_table: Order,
                batches_race_singles: Order,
                batch_records_audit_and_keys: Order,
                batch_effect_fails_alone: Order,
                batches_race_batches: Order,
            );
        }
    };
    (@cases $make:ident; $($case:ident: $machine:ident,)*) => {
        conformance!(@cases_of cases, $make; $($case: $machine,)*);
        conformance!(@cases_of outbox_cases, $make;
            poison_message_goes_dead: Order,
            key_order_survives_backoff: Order,
            purge_under_load: Order,
        );
    };
    (@cases_of $module:ident, $make:ident; $($case:ident: $machine:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let test = stringify!($case);
                run(test, |name: String| async move { fixture::backends::$make::<fixture::machines::$machine>(&name).await }, |store, table| async move {
                    $module::$case(store, table).await
                })
                .await;
            }
        )*
    };
}

conformance!(memory, memory_store);
conformance!(sqlite, sqlite_store);
conformance!(postgres, postgres_store);
conformance!(mysql, mysql_store);
conformance!(galera, galera_store);
