//! What the generic [`SqlStore`](super::SqlStore) needs of a database: one typed function per
//! statement, implemented for SQLite, PostgreSQL and MySQL by [`impl_backend!`].

use std::future::Future;
use std::sync::Arc;

use crate::entity_id::EntityId;
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::outbox::{OutboxMessage, PendingMessage};
use crate::store::sql::dialect::Dialect;

/// One history row to insert.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct HistoryRow<'a> {
    pub(crate) table: &'a str,
    pub(crate) machine: &'static str,
    pub(crate) entity: &'a str,
    pub(crate) version: i64,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) event: Option<&'a str>,
    pub(crate) at_micros: i64,
}

/// A history row as read back: version, from, to, event, at_micros.
#[doc(hidden)]
pub type StoredHistory = (i64, String, String, Option<String>, i64);

/// The arguments of the one-statement transition (PostgreSQL's statement, SQLite's batch,
/// MySQL's procedure call).
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct OneStatement<'a> {
    pub(crate) id: &'a EntityId,
    pub(crate) sources: &'a [&'static str],
    pub(crate) target: &'static str,
    pub(crate) expected_version: Option<i64>,
    pub(crate) history: HistoryRow<'a>,
    /// The idempotency key and fingerprint to store with the outcome (PostgreSQL's keyed CTE).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) key: Option<(&'a IdempotencyKey, &'a Fingerprint)>,
}

/// What the one-statement transition answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[doc(hidden)]
pub struct OneStatementRows {
    /// `(from, version)` when it applied.
    pub(crate) applied: Option<(String, i64)>,
    /// When it did not apply: the row's `(state, version)` as the statement saw it (`None`: no
    /// such row).
    pub(crate) row: Option<(String, i64)>,
}

impl OneStatementRows {
    /// Takes one answer row: `(from, version)` when `applied`, else the row found.
    pub(crate) fn take(&mut self, applied: bool, found: Option<(String, i64)>) {
        if applied {
            self.applied = found;
        } else {
            self.row = found;
        }
    }
}

/// The entity's row and the key's stored fingerprint and outcome, as read together.
#[doc(hidden)]
pub type RowAndKey = (Option<(String, i64)>, Option<(String, String)>);

/// A database the SQL store runs on. Sealed: implemented for `sqlx::Sqlite`, `sqlx::Postgres`
/// and `sqlx::MySql` as their cargo features enable them.
pub trait Backend: sqlx::Database + private::Sealed {
    /// The SQL dialect.
    #[doc(hidden)]
    const DIALECT: Dialect;

    /// `read`: the row's state and version.
    #[doc(hidden)]
    fn read(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        id: &EntityId,
    ) -> impl Future<Output = Result<Option<(String, i64)>, sqlx::Error>> + Send;

    /// `insert`: rows inserted.
    #[doc(hidden)]
    fn insert(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        id: &EntityId,
        state: &str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `cas`: rows updated.
    #[doc(hidden)]
    fn cas(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        id: &EntityId,
        from: &str,
        to: &str,
        version: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `delete`: rows deleted.
    #[doc(hidden)]
    fn delete(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        id: &EntityId,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `insert_history`.
    #[doc(hidden)]
    fn insert_history(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        row: HistoryRow<'_>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `delete_history`: rows deleted.
    #[doc(hidden)]
    fn delete_history(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        table: &str,
        entity: &str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `list_history`.
    #[doc(hidden)]
    fn list_history(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        table: &str,
        entity: &str,
    ) -> impl Future<Output = Result<Vec<StoredHistory>, sqlx::Error>> + Send;

    /// `read_with_key`: the entity's row and the key's fingerprint and outcome.
    #[doc(hidden)]
    fn read_with_key(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        id: &EntityId,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<RowAndKey, sqlx::Error>> + Send;

    /// `insert_key`: rows inserted (0 for a duplicate where the dialect ignores it).
    #[doc(hidden)]
    fn insert_key(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        at_micros: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `read_key`: the key's fingerprint and outcome.
    #[doc(hidden)]
    fn read_key(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<(String, String)>, sqlx::Error>> + Send;

    /// `update_key`: rows updated.
    #[doc(hidden)]
    fn update_key(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        key: &IdempotencyKey,
        outcome: &str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `purge_keys`: rows deleted.
    #[doc(hidden)]
    fn purge_keys(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        cutoff_micros: i64,
        source: Option<&str>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Inserts an outbox message.
    #[doc(hidden)]
    fn outbox_insert(
        conn: &mut Self::Connection,
        message_id: &str,
        message: &OutboxMessage,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The pending messages (of `topic`, if given) whose claim expired before `now`, oldest
    /// first, locked where the database can skip locked rows.
    #[doc(hidden)]
    fn outbox_pending(
        conn: &mut Self::Connection,
        now: i64,
        topic: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<PendingMessage>, sqlx::Error>> + Send;

    /// An outbox statement with two parameters: a time and a message sequence (claim, mark).
    #[doc(hidden)]
    fn outbox_update(
        conn: &mut Self::Connection,
        sql: &'static str,
        micros: i64,
        sequence: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Releases a claimed message.
    #[doc(hidden)]
    fn outbox_release(
        conn: &mut Self::Connection,
        sequence: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Records a processed message: `true` the first time.
    #[doc(hidden)]
    fn inbox_insert(
        conn: &mut Self::Connection,
        consumer: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// The migration versions recorded in `fsm_schema_migrations`.
    #[doc(hidden)]
    fn migration_versions(conn: &mut Self::Connection) -> impl Future<Output = Result<Vec<i64>, sqlx::Error>> + Send;

    /// The first column of the first row of `sql` (no parameters), as text.
    #[doc(hidden)]
    fn fetch_text(
        conn: &mut Self::Connection,
        sql: &str,
    ) -> impl Future<Output = Result<Option<String>, sqlx::Error>> + Send;

    /// Records migration `version` as applied.
    #[doc(hidden)]
    fn record_migration(
        conn: &mut Self::Connection,
        version: i64,
        at_micros: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// A statement without parameters (migrations, schema checks).
    #[doc(hidden)]
    fn execute_plain(conn: &mut Self::Connection, sql: &str) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The one-statement transition: the applied row, or the row it found instead.
    #[doc(hidden)]
    fn transition_one_statement(
        conn: &mut Self::Connection,
        sql: &Arc<str>,
        args: OneStatement<'_>,
    ) -> impl Future<Output = Result<OneStatementRows, sqlx::Error>> + Send;
}

pub(crate) mod private {
    /// Seals [`Backend`](super::Backend).
    pub trait Sealed {}
}

/// Implements [`Backend`] for one sqlx database; `$one_statement` is the body of
/// `transition_one_statement` (given `conn`, `sql`, `args`).
macro_rules! impl_backend {
    ($db:ty, $dialect:expr, |$conn:ident, $sql:ident, $args:ident| $one_statement:block) => {
        impl $crate::store::sql::backend::private::Sealed for $db {}

        impl $crate::store::sql::backend::Backend for $db {
            const DIALECT: $crate::store::sql::dialect::Dialect = $dialect;

            async fn read(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                id: &$crate::EntityId,
            ) -> Result<Option<(String, i64)>, sqlx::Error> {
                use sqlx::Row as _;
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone()));
                let row = bind_id(query, id).fetch_optional(&mut *conn).await?;
                row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
            }

            async fn insert(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                id: &$crate::EntityId,
                state: &str,
            ) -> Result<u64, sqlx::Error> {
                let query = bind_id(sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())), id).bind(state);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn cas(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                id: &$crate::EntityId,
                from: &str,
                to: &str,
                version: i64,
            ) -> Result<u64, sqlx::Error> {
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())).bind(to);
                let query = bind_id(query, id).bind(from).bind(version);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn delete(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                id: &$crate::EntityId,
            ) -> Result<u64, sqlx::Error> {
                let query = bind_id(sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())), id);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn insert_history(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                row: $crate::store::sql::backend::HistoryRow<'_>,
            ) -> Result<(), sqlx::Error> {
                sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(row.table)
                    .bind(row.machine)
                    .bind(row.entity)
                    .bind(row.version)
                    .bind(row.from)
                    .bind(row.to)
                    .bind(row.event)
                    .bind(row.at_micros)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn delete_history(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                table: &str,
                entity: &str,
            ) -> Result<u64, sqlx::Error> {
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())).bind(table).bind(entity);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn list_history(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                table: &str,
                entity: &str,
            ) -> Result<Vec<$crate::store::sql::backend::StoredHistory>, sqlx::Error> {
                use sqlx::Row as _;
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())).bind(table).bind(entity);
                query
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(|row| {
                        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?))
                    })
                    .collect()
            }

            async fn read_with_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                id: &$crate::EntityId,
                key: &$crate::IdempotencyKey,
            ) -> Result<$crate::store::sql::backend::RowAndKey, sqlx::Error> {
                use sqlx::Row as _;
                let query = bind_id(sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())), id);
                let row = query.bind(key.source()).bind(key.seq()).fetch_one(&mut *conn).await?;
                let state: Option<String> = row.try_get(0)?;
                let version: Option<i64> = row.try_get(1)?;
                let fingerprint: Option<String> = row.try_get(2)?;
                let outcome: Option<String> = row.try_get(3)?;
                Ok((state.zip(version), fingerprint.zip(outcome)))
            }

            async fn insert_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                key: &$crate::IdempotencyKey,
                fingerprint: &$crate::Fingerprint,
                outcome: &str,
                at_micros: i64,
            ) -> Result<u64, sqlx::Error> {
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(key.source())
                    .bind(key.seq())
                    .bind(fingerprint.as_str())
                    .bind(outcome)
                    .bind(at_micros);
                match query.execute(&mut *conn).await {
                    Ok(done) => Ok(done.rows_affected()),
                    Err(error) if $crate::store::sql::db_error::is_unique_violation(&error) => Ok(0),
                    Err(error) => Err(error),
                }
            }

            async fn read_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                key: &$crate::IdempotencyKey,
            ) -> Result<Option<(String, String)>, sqlx::Error> {
                use sqlx::Row as _;
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())).bind(key.source()).bind(key.seq());
                let row = query.fetch_optional(&mut *conn).await?;
                row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
            }

            async fn update_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                key: &$crate::IdempotencyKey,
                outcome: &str,
            ) -> Result<u64, sqlx::Error> {
                let query = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(outcome)
                    .bind(key.source())
                    .bind(key.seq());
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn purge_keys(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &::std::sync::Arc<str>,
                cutoff_micros: i64,
                source: Option<&str>,
            ) -> Result<u64, sqlx::Error> {
                let query =
                    sqlx::query::<$db>(sqlx::AssertSqlSafe(sql.clone())).bind(cutoff_micros).bind(source).bind(source);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }

            async fn outbox_insert(
                conn: &mut <$db as sqlx::Database>::Connection,
                message_id: &str,
                message: &$crate::outbox::OutboxMessage,
            ) -> Result<(), sqlx::Error> {
                let statements = $crate::store::sql::outbox::OutboxStatements::of($dialect);
                sqlx::query::<$db>(statements.insert)
                    .bind(message_id)
                    .bind(message.topic.as_str())
                    .bind(message.key.as_deref())
                    .bind(message.payload.to_string())
                    .bind($crate::store::plan::now_micros())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn outbox_pending(
                conn: &mut <$db as sqlx::Database>::Connection,
                now: i64,
                topic: Option<&str>,
                limit: i64,
            ) -> Result<Vec<$crate::outbox::PendingMessage>, sqlx::Error> {
                use sqlx::Row as _;
                let statements = $crate::store::sql::outbox::OutboxStatements::of($dialect);
                let query = match topic {
                    Some(topic) => sqlx::query::<$db>(statements.pending_of_topic).bind(topic).bind(now).bind(limit),
                    None => sqlx::query::<$db>(statements.pending).bind(now).bind(limit),
                };
                let rows = query.fetch_all(&mut *conn).await?;
                rows.iter()
                    .map(|row| {
                        let payload: String = row.try_get(4)?;
                        Ok($crate::outbox::PendingMessage {
                            sequence: row.try_get(0)?,
                            message_id: row.try_get(1)?,
                            topic: row.try_get(2)?,
                            key: row.try_get(3)?,
                            payload: serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                            attempts: row.try_get(5)?,
                        })
                    })
                    .collect()
            }

            async fn outbox_update(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &'static str,
                micros: i64,
                sequence: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query::<$db>(sql).bind(micros).bind(sequence).execute(&mut *conn).await?;
                Ok(())
            }

            async fn outbox_release(
                conn: &mut <$db as sqlx::Database>::Connection,
                sequence: i64,
            ) -> Result<(), sqlx::Error> {
                let statements = $crate::store::sql::outbox::OutboxStatements::of($dialect);
                sqlx::query::<$db>(statements.release).bind(sequence).execute(&mut *conn).await?;
                Ok(())
            }

            async fn inbox_insert(
                conn: &mut <$db as sqlx::Database>::Connection,
                consumer: &str,
                message_id: &str,
            ) -> Result<bool, sqlx::Error> {
                let statements = $crate::store::sql::outbox::OutboxStatements::of($dialect);
                let query = sqlx::query::<$db>(statements.inbox)
                    .bind(consumer)
                    .bind(message_id)
                    .bind($crate::store::plan::now_micros());
                match query.execute(&mut *conn).await {
                    Ok(done) => Ok(done.rows_affected() == 1),
                    Err(error) if $crate::store::sql::db_error::is_unique_violation(&error) => Ok(false),
                    Err(error) => Err(error),
                }
            }

            async fn migration_versions(
                conn: &mut <$db as sqlx::Database>::Connection,
            ) -> Result<Vec<i64>, sqlx::Error> {
                sqlx::query_scalar::<$db, i64>("SELECT version FROM fsm_schema_migrations").fetch_all(&mut *conn).await
            }

            async fn fetch_text(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &str,
            ) -> Result<Option<String>, sqlx::Error> {
                sqlx::query_scalar::<$db, String>(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut *conn).await
            }

            async fn record_migration(
                conn: &mut <$db as sqlx::Database>::Connection,
                version: i64,
                at_micros: i64,
            ) -> Result<(), sqlx::Error> {
                let sql = <$db as $crate::store::sql::backend::Backend>::DIALECT.record_migration();
                sqlx::query::<$db>(sqlx::AssertSqlSafe(sql)).bind(version).bind(at_micros).execute(&mut *conn).await?;
                Ok(())
            }

            async fn execute_plain(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &str,
            ) -> Result<(), sqlx::Error> {
                // The text protocol: DDL such as MySQL's `CREATE PROCEDURE` cannot be prepared.
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await?;
                Ok(())
            }

            async fn transition_one_statement(
                $conn: &mut <$db as sqlx::Database>::Connection,
                $sql: &::std::sync::Arc<str>,
                $args: $crate::store::sql::backend::OneStatement<'_>,
            ) -> Result<$crate::store::sql::backend::OneStatementRows, sqlx::Error> {
                $one_statement
            }
        }

        /// Binds the parameters of the one-statement transition that follow the id and the
        /// sources, in the order all three dialects number them: target, machine, entity id as
        /// text, event, at_micros, expected version, entity table.
        fn bind_transition<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            args: $crate::store::sql::backend::OneStatement<'q>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            query
                .bind(args.target)
                .bind(args.history.machine)
                .bind(args.history.entity)
                .bind(args.history.event)
                .bind(args.history.at_micros)
                .bind(args.expected_version)
                .bind(args.history.table)
        }

        /// Binds an entity id as the SQL type of its variant.
        fn bind_id<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            id: &$crate::EntityId,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            match id {
                $crate::EntityId::Int(id) => query.bind(*id),
                $crate::EntityId::Text(id) => query.bind(id.clone()),
            }
        }
    };
}

pub(crate) use impl_backend;
