//! What a driver error means: transient (retry is safe), a deadlock, a unique violation.
//! Plain predicates on `sqlx::Error`; the crate's own `Error` is built from them in `error.rs`.

/// SQLSTATE codes (PostgreSQL, MySQL) and SQLite result codes of transient failures: the
/// statement had no effect and the same request may simply be sent again.
const TRANSIENT_CODES: &[&str] = &[
    "40001", // serialization_failure (PostgreSQL; MySQL/MariaDB deadlock: ER_LOCK_DEADLOCK)
    "40P01", // deadlock_detected (PostgreSQL)
    "55P03", // lock_not_available (PostgreSQL)
    "57014", // query_canceled: statement_timeout or a cancel request; the transaction is rolled back (PostgreSQL)
    "57P01", // admin_shutdown (PostgreSQL)
    "57P02", // crash_shutdown (PostgreSQL)
    "57P03", // cannot_connect_now: the server is starting or recovering (PostgreSQL)
    "53300", // too_many_connections (PostgreSQL)
    "08000", "08003", "08006", "08001", "08004", // connection exceptions
    "HY000", // MySQL: lock wait timeout is reported under this general state (checked by number below)
    "5",     // SQLITE_BUSY
    "6",     // SQLITE_LOCKED
    "262",   // SQLITE_LOCKED_SHAREDCACHE
    "261",   // SQLITE_BUSY_RECOVERY
    "517",   // SQLITE_BUSY_SNAPSHOT
    "773",   // SQLITE_BUSY_TIMEOUT
];

/// Whether a sqlx error is transient: the statement had no effect (or its transaction was
/// rolled back) and the same operation may be sent again. This is the test behind
/// `Error::is_retryable` for the store's own statements; use it
/// for the caller's own SQL too (an effect's, or a service's reads).
///
/// Every operation of this crate is idempotent (a compare-and-set, an insert guarded by the
/// primary key), so even a connection lost at an unknown point is safe to retry: the retry
/// finds the work done and answers `AlreadyApplied` / `AlreadyExists`.
///
/// ```
/// assert!(fsm_runtime::sql::is_transient(&fsm_runtime::sqlx::Error::PoolTimedOut));
/// assert!(!fsm_runtime::sql::is_transient(&fsm_runtime::sqlx::Error::RowNotFound));
/// ```
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if code == "HY000" {
                // MySQL/MariaDB: 1205 lock wait timeout, 1213 deadlock.
                let message = db.message();
                return message.contains("Lock wait timeout") || message.contains("Deadlock");
            }
            TRANSIENT_CODES.contains(&code)
        }
        _ => false,
    }
}

/// Whether the driver error is a deadlock (or serialisation failure): the database rolled the
/// transaction back.
///
/// MySQL/MariaDB report one when the holder of an uncommitted key rolls back while several
/// transactions wait to insert the same key: each waiter holds the shared lock of its
/// duplicate-key check and wants the exclusive lock to insert, so all but one are chosen as
/// victims (`1213`, SQLSTATE `40001`).
pub(crate) fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// Whether the driver error is a violation of a primary key or unique constraint.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether the driver error is a violation of the idempotency keys' primary key (and not, say,
/// of the history's): a keyed statement that hits it found the key stored by another request.
pub(crate) fn is_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint().is_none_or(|name| name.starts_with("fsm_idempotency_keys")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_are_transient_a_missing_row_is_not() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_deadlock(&sqlx::Error::RowNotFound));
        assert!(!is_unique_violation(&sqlx::Error::PoolClosed));
    }
}
