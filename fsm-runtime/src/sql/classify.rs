//! What a driver error means: transient (retry is safe), a deadlock, a unique violation.
//! Plain predicates on `sqlx::Error`; the crate's own `Error` is built from them in `error.rs`.

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
        sqlx::Error::Database(db) => database_error_is_transient(db.as_ref()),
        _ => false,
    }
}

/// A database's own error, classified by the file of the database that raised it.
fn database_error_is_transient(error: &dyn sqlx::error::DatabaseError) -> bool {
    #[cfg(feature = "postgres")]
    if let Some(error) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return super::postgres::is_transient(error);
    }
    #[cfg(feature = "mysql")]
    if let Some(error) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return super::mysql::is_transient(error);
    }
    #[cfg(feature = "sqlite")]
    if let Some(error) = error.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        return super::sqlite::is_transient(error);
    }
    let _ = error;
    false
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

/// Whether the driver error says a lock was not granted in time: PostgreSQL's
/// `lock_not_available` (`lock_timeout`), MySQL's lock wait timeout (`1205`), SQLite's busy
/// database (the busy timeout ran out).
pub(crate) fn is_lock_timeout(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    #[cfg(feature = "mysql")]
    if let Some(error) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return error.number() == 1205;
    }
    matches!(db.code().as_deref(), Some("55P03" | "5" | "517" | "773"))
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
