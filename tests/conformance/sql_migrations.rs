//! The runtime's migrations: versioned, run once per database, and every version recorded.

use std::sync::Arc;

use crate::fixture::machines::Order;
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::Store;
use fsm_runtime::store::SqlStore;

/// The versions each backend ships (`fsm-runtime/migrations/<backend>/`): every runtime
/// table's, tokens (10), leases (11), fences (12), the outbox's attempts (14) and timers (15)
/// among them.
fn shipped<B: TestBackend>() -> Vec<i64> {
    match B::LABEL {
        "MySQL/MariaDB" => vec![1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15],
        _ => vec![1, 2, 3, 4, 10, 11, 12, 13, 14, 15],
    }
}

/// Building a store records every shipped version; a migration that is recorded is not run
/// again: a second store on a database whose history table was changed by hand leaves it as it
/// is (a script run again would have failed or been skipped silently; here it must not run).
async fn every_version_is_recorded_once<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    for version in shipped::<B>() {
        let sql = format!("SELECT COUNT(*) FROM fsm_schema_migrations WHERE version = {}", B::param(1));
        assert_eq!(fx.fetch_i64(sql, [Arg::from(version)]).await, Some(1), "{}: version {version}", B::LABEL);
    }
    let newest = *shipped::<B>().last().expect("a version");
    let newer = format!("SELECT COUNT(*) FROM fsm_schema_migrations WHERE version > {}", B::param(1));
    assert_eq!(fx.fetch_i64(newer, [Arg::from(newest)]).await, Some(0), "{}", B::LABEL);
    // Another store on the same database migrates again: nothing changes, nothing fails.
    let again = SqlStore::<Order, B>::with_mapping(fx.pool().clone(), fx.store.mapping().clone()).await;
    assert!(again.is_ok(), "{}: {:?}", B::LABEL, again.err());
    let all = "SELECT COUNT(*) FROM fsm_schema_migrations".to_owned();
    let count = fx.fetch_i64(all, []).await;
    assert_eq!(count, i64::try_from(shipped::<B>().len()).ok(), "{}", B::LABEL);
    // And it works.
    fx.store.create(1).await.unwrap();
    assert!(fx.store.transition(1, Order::Paid).await.unwrap().is_applied());
}

crate::fixture::sql::per_backend!(every_version_is_recorded_once);
