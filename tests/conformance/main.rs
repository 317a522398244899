//! The conformance suite: the same cases, written once, against every adapter.
//!
//! - `cases.rs`: the stores (memory, SQLite, PostgreSQL, MySQL/MariaDB): transitions, keys,
//!   the outbox, locks;
//! - `tokens.rs`: single-use tokens (memory, the three SQL databases, Redis);
//! - `leases.rs`: leases with fencing tokens (memory, the three SQL databases, Redis).
//!
//! PostgreSQL and MySQL/MariaDB cases skip with a visible message when their server does not
//! answer, unless `FSM_REQUIRE_SERVERS=1` (see `tests/common/backends.rs`).

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod leases;
mod tokens;

use std::sync::Arc;

use common::backends::RawAccess;

/// Runs `case` on a fresh store from `make`, then drops the test's table.
async fn run<S, Fut, Case>(test: &str, make: impl FnOnce(String) -> Fut, case: impl FnOnce(Arc<S>, String) -> Case)
where
    S: RawAccess,
    Fut: std::future::Future<Output = Option<(S, String)>>,
    Case: std::future::Future<Output = ()>,
{
    let Some((store, table)) = make(test.to_owned()).await else {
        return;
    };
    let store = Arc::new(store);
    case(store.clone(), table.clone()).await;
    store.cleanup(&table).await;
    // The SQLite store's database file (other backends have none).
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{table}.db{suffix}")));
    }
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
            );
        }
    };
    (@cases $make:ident; $($case:ident: $machine:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let test = stringify!($case);
                run(test, |name: String| async move { common::backends::$make::<common::machines::$machine>(&name).await }, |store, table| async move {
                    cases::$case(store, table).await
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
