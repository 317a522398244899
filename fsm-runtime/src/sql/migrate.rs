//! The one migration runner of every runtime table (history, idempotency keys, outbox, inbox,
//! tokens, leases, fences): each script of [`Driver::MIGRATIONS`] whose version
//! `fsm_schema_migrations` does not list runs once, in order, and is recorded.
//!
//! Every script may run twice (`CREATE … IF NOT EXISTS`, an index that exists is ignored, a
//! collation converted again is unchanged): a database created before a version was recorded
//! (the tokens, leases and fences tables of the first release were created without a record)
//! runs it once more, and keeps its rows.

use sqlx::SqlSafeStr;
use sqlx_core::transaction::TransactionManager as _;

use crate::clock::now_micros;
use crate::sql::backend::Backend;
use crate::sql::backend::private::Driver;
use crate::sql::classify::is_unique_violation;
use crate::sql::rolled_back::RolledBack;
use crate::sql::value::{Arg, fixed, owned};

/// The table of applied versions.
const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS fsm_schema_migrations \
     (version BIGINT NOT NULL PRIMARY KEY, applied_at_micros BIGINT NOT NULL)";

/// Runs the migrations that the database behind `pool` has not recorded.
pub(crate) async fn migrate<B: Backend>(pool: &sqlx::Pool<B>) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    run::<B::Driver>(&mut conn).await
}

/// Runs the migrations of `B` that the database behind `conn` has not recorded.
async fn run<B: Driver>(conn: &mut B::Connection) -> Result<(), sqlx::Error> {
    run_tolerating_races::<B>(&mut *conn, CREATE_MIGRATIONS_TABLE).await?;
    let applied = applied_versions::<B>(&mut *conn).await?;
    for &(version, script) in B::MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        if B::TRANSACTIONAL_DDL {
            apply_in_transaction::<B>(&mut *conn, version, script).await?;
        } else {
            apply::<B>(&mut *conn, version, script).await?;
        }
    }
    Ok(())
}

/// Runs one script and records its version.
async fn apply<B: Driver>(conn: &mut B::Connection, version: i64, script: &'static str) -> Result<(), sqlx::Error> {
    let script = B::prepare_script(&mut *conn, script).await?;
    for statement in script.split(";\n").map(str::trim).filter(|statement| !statement.is_empty()) {
        run_tolerating_races::<B>(&mut *conn, statement).await?;
    }
    record::<B>(&mut *conn, version).await
}

/// Runs one script and records its version in one transaction that holds the migrations' lock:
/// a process that waited for another's finds the version recorded and runs nothing, and a
/// script that fails halfway leaves nothing behind.
async fn apply_in_transaction<B: Driver>(
    conn: &mut B::Connection,
    version: i64,
    script: &'static str,
) -> Result<(), sqlx::Error> {
    B::TransactionManager::begin(&mut *conn, B::BEGIN_WRITE.map(SqlSafeStr::into_sql_str)).await?;
    match apply_locked::<B>(&mut *conn, version, script).await {
        Ok(()) => B::TransactionManager::commit(&mut *conn).await,
        Err(error) => {
            // The error that matters is the script's; a failed rollback closes nothing more.
            let _ = B::TransactionManager::rollback(&mut *conn).await;
            Err(error)
        }
    }
}

/// Inside the migration's transaction: takes the lock, then runs the script unless another
/// process recorded it meanwhile.
async fn apply_locked<B: Driver>(
    conn: &mut B::Connection,
    version: i64,
    script: &'static str,
) -> Result<(), sqlx::Error> {
    if let Some(lock) = B::LOCK_MIGRATIONS {
        B::execute_script(&mut *conn, lock).await?;
    }
    if applied_versions::<B>(&mut *conn).await?.contains(&version) {
        return Ok(());
    }
    apply::<B>(conn, version, script).await
}

/// The versions recorded in `fsm_schema_migrations`.
async fn applied_versions<B: Driver>(conn: &mut B::Connection) -> Result<Vec<i64>, sqlx::Error> {
    let rows = B::fetch(conn, fixed("SELECT version FROM fsm_schema_migrations ORDER BY version"), &[]).await?;
    rows.iter().map(|row| row.int(0)).collect()
}

/// Records `version`; a version another process recorded first is no error. On a Galera
/// cluster, the record of a process on another node may be certified first and roll this one
/// back: sent again (outside a transaction), it finds the version recorded.
async fn record<B: Driver>(conn: &mut B::Connection, version: i64) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO fsm_schema_migrations (version, applied_at_micros) VALUES ({}, {}){}",
        B::param(1),
        B::param(2),
        B::ON_CONFLICT_DO_NOTHING
    );
    let mut rolled_back = RolledBack::default();
    loop {
        match B::execute(&mut *conn, owned(sql.clone()), &[Arg::Int(version), Arg::Int(now_micros())]).await {
            Err(error) if is_unique_violation(&error) => return Ok(()),
            Err(error) => rolled_back.again(error, !B::TRANSACTIONAL_DDL)?.await,
            Ok(_) => return Ok(()),
        }
    }
}

/// Runs one migration statement. Two processes creating a table at once: PostgreSQL may report
/// a duplicate type for the loser of `CREATE TABLE IF NOT EXISTS`, and MySQL a duplicate index;
/// the table or index then exists.
async fn run_tolerating_races<B: Driver>(conn: &mut B::Connection, statement: &str) -> Result<(), sqlx::Error> {
    match B::execute_script(conn, statement).await {
        Err(error) if !is_unique_violation(&error) && !B::is_duplicate_object(&error) => Err(error),
        _ => Ok(()),
    }
}
