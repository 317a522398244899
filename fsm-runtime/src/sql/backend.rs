//! [`Backend`]: a database the SQL layer runs on, sealed; its methods live on the private
//! supertrait `Driver`, which each database's file implements with only what differs there.

use std::future::Future;

use sqlx::SqlStr;

use crate::mapping::TableMapping;
use crate::sql::transition::TransitionSql;
use crate::sql::value::{Arg, Row};

/// A database the SQL stores, tokens, leases, fences and outbox run on: `sqlx::Sqlite`,
/// `sqlx::Postgres` and `sqlx::MySql`, as the cargo features `sqlite`, `postgres` and `mysql`
/// enable them. Sealed: what the crate needs of a database is its private `Driver`, which only
/// the crate can name, implement or call (it is not a supertrait, so its methods neither show
/// on `B::` paths nor collide with a trait of yours).
pub trait Backend: sqlx::Database {
    /// The crate's driver of this database (the database type itself).
    #[doc(hidden)]
    type Driver: private::Driver + sqlx::Database<Connection = Self::Connection>;
}

pub(crate) mod private {
    use super::*;

    /// A versioned migration: its version and its script (statements end with `;` at the end
    /// of a line).
    pub type Migration = (i64, &'static str);

    /// What a database's file implements: two primitives over one typed argument list, and the
    /// real differences between the databases. Everything else is generic code over these.
    pub trait Driver: sqlx::Database + Sized {
        /// The scripts of the runtime's tables, by version, oldest first.
        const MIGRATIONS: &'static [Migration];
        /// The database clock in microseconds since the Unix epoch, as an SQL expression.
        const NOW_MICROS: &'static str;
        /// The suffix of a read that locks the rows it reads (empty where the database has no
        /// row locks: SQLite's write transaction is the lock).
        const FOR_UPDATE: &'static str;
        /// The suffix of a claiming read that skips rows other claims locked.
        const SKIP_LOCKED: &'static str;
        /// Whether a locking read also locks (and so another claim's skips) rows it only
        /// read: those of its subqueries, and the index record that ends its range (InnoDB's
        /// next-key lock, which falls on the first row of the next table's timers or topic's
        /// messages; taken at READ COMMITTED too). PostgreSQL locks only the rows it returns.
        /// Where it is true, a claim chooses its rows by a plain read, then locks them by
        /// primary key ([`crate::sql::claim`]).
        const LOCKS_ROWS_IT_ONLY_READ: bool = false;
        /// The suffix of an `INSERT` that ignores a duplicate key (empty where the duplicate is
        /// reported as an error, which the caller classifies).
        const ON_CONFLICT_DO_NOTHING: &'static str;
        /// The type `CAST` takes for a `BIGINT` result.
        const CAST_INT: &'static str;
        /// Whether the batch statement ([`crate::sql::batch`]) takes its items as one JSON array
        /// of rows (one `json_each` over small rows) rather than one array per field.
        const BATCH_AS_ROWS: bool = false;
        /// The statement that begins a write transaction, when it is not the plain `BEGIN`.
        const BEGIN_WRITE: Option<&'static str> = None;
        /// An index hint for the outbox's claim of one topic.
        const OUTBOX_TOPIC_HINT: &'static str = "";
        /// Whether DDL is transactional, so that each migration runs in a transaction with its
        /// record (begun with [`Driver::BEGIN_WRITE`] and [`Driver::LOCK_MIGRATIONS`]): two
        /// processes migrating at once run each script once. MySQL commits DDL implicitly; its
        /// scripts are single atomic statements, and a loser's duplicate is tolerated.
        const TRANSACTIONAL_DDL: bool = false;
        /// The statement that serialises migrating processes inside that transaction, when the
        /// `BEGIN` does not (SQLite's `BEGIN IMMEDIATE` does).
        const LOCK_MIGRATIONS: Option<&'static str> = None;

        /// Quotes a validated identifier.
        fn quote(identifier: &str) -> String;

        /// The `n`th (1-based) parameter placeholder.
        fn param(n: usize) -> String;

        /// The `n`th parameter compared with (or written to) the entity table's id column of
        /// SQL type `id_type` (found by [`Driver::id_column_type`]): PostgreSQL casts it to that
        /// type (a `uuid` column, a text id on an `integer` column), the others coerce.
        fn id_param(n: usize, id_type: Option<&str>) -> String {
            let _ = id_type;
            Self::param(n)
        }

        /// How ids are bound for an id column of SQL type `id_type`. A statement is prepared
        /// (and cached on its connection) with the types of the values first bound to it, so
        /// one statement must always receive its id as the same type: an integer id then a
        /// text id (`7`, then `"42"` on an `integer` column) would otherwise send text where the
        /// prepared statement expects a `bigint`. The default binds each id as its variant's
        /// type (the databases that coerce by themselves).
        fn id_binding(id_type: Option<&str>) -> IdBinding {
            let _ = id_type;
            IdBinding::Given
        }

        /// The id column `column` (quoted, possibly qualified) as text: the id as the table
        /// stores it, which the history, keys and outbox rows are written under.
        fn id_text(column: &str) -> String;

        /// The SQL type of `mapping`'s id column, where the database needs it to bind an id
        /// ([`Driver::id_param`]); `None` elsewhere, or when it is not found.
        fn id_column_type(
            conn: &mut Self::Connection,
            mapping: &TableMapping,
        ) -> impl Future<Output = Result<Option<String>, sqlx::Error>> + Send {
            let _ = (conn, mapping);
            async { Ok(None) }
        }

        /// Runs `sql` with `args`: the rows affected (matched, on MySQL: sqlx connects with
        /// `CLIENT_FOUND_ROWS`).
        fn execute(
            conn: &mut Self::Connection,
            sql: SqlStr,
            args: &[Arg<'_>],
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

        /// Runs `sql` with `args`: every row of every result set.
        fn fetch(
            conn: &mut Self::Connection,
            sql: SqlStr,
            args: &[Arg<'_>],
        ) -> impl Future<Output = Result<Vec<Row>, sqlx::Error>> + Send;

        /// Runs `sql` unprepared, without parameters (DDL, which MySQL cannot prepare).
        fn execute_script(
            conn: &mut Self::Connection,
            sql: &str,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

        /// The one-statement transition of `mapping` with an id column of type `id_type` (built,
        /// and on MySQL created, once per store).
        fn transition_sql(
            conn: &mut Self::Connection,
            mapping: &TableMapping,
            id_type: Option<&str>,
        ) -> impl Future<Output = TransitionSql> + Send;

        /// The suffix of an `INSERT` that ignores a duplicate of the key `column` (quoted) and
        /// of no other unique column; empty where the duplicate is reported as an error.
        fn on_conflict_do_nothing(column: &str) -> String {
            format!(" ON CONFLICT ({column}) DO NOTHING")
        }

        /// Runs after the one-statement transition failed on `conn` (SQLite ends the batch's
        /// transaction, which the failing statement may have left open).
        fn after_failed_transition(conn: &mut Self::Connection) -> impl Future<Output = ()> + Send {
            let _ = conn;
            async {}
        }

        /// A migration script made ready to run (MySQL names its binary collation in it).
        fn prepare_script(
            conn: &mut Self::Connection,
            script: &'static str,
        ) -> impl Future<Output = Result<String, sqlx::Error>> + Send {
            let _ = conn;
            async move { Ok(script.to_owned()) }
        }

        /// Whether a migration statement failed because another process created the same
        /// object first (beyond a unique violation, which every database may report then).
        fn is_duplicate_object(error: &sqlx::Error) -> bool {
            let _ = error;
            false
        }

        /// Bounds how long the connection's statements wait for a lock another transaction
        /// holds: the statement (no parameters) that gives the connection its setting of before
        /// back.
        fn bound_lock_wait(
            conn: &mut Self::Connection,
            wait: std::time::Duration,
        ) -> impl Future<Output = Result<String, sqlx::Error>> + Send;

        /// Runs before a claiming transaction begins (MySQL lowers its isolation level).
        fn before_claim(conn: &mut Self::Connection) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
            let _ = conn;
            async { Ok(()) }
        }

        /// Takes the lease of `resource` for `owner` if it is free or expired: the new fence, or
        /// `None` when another holder has it. The default is one upsert that returns the fence.
        fn acquire_lease(
            conn: &mut Self::Connection,
            lease: LeaseRequest<'_>,
        ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send {
            crate::sql::leases::acquire_returning::<Self>(conn, lease)
        }

        /// Raises the fence of `resource` to `token` unless a higher token was seen: `Ok(None)`
        /// when accepted, else the highest token. The default is one upsert that returns a
        /// row only when it accepted.
        fn raise_fence(
            conn: &mut Self::Connection,
            resource: &str,
            token: i64,
        ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send {
            crate::sql::fences::raise_returning::<Self>(conn, resource, token)
        }
    }

    /// How a database binds an entity id ([`Driver::id_binding`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum IdBinding {
        /// As the type of the id's variant.
        Given,
        /// As a `BIGINT`: a text id of digits is parsed (an integer column).
        Int,
        /// As text: an integer id is sent as its digits (a text column, or a column of
        /// another type whose parameter the statement casts).
        Text,
    }

    /// The arguments of a lease acquisition.
    #[derive(Debug, Clone, Copy)]
    pub struct LeaseRequest<'a> {
        /// The resource.
        pub resource: &'a str,
        /// The would-be holder.
        pub owner: &'a str,
        /// The time to live, in microseconds.
        pub ttl_micros: i64,
        /// A random value that tells this acquisition's write from another's.
        pub nonce: &'a str,
    }
}
