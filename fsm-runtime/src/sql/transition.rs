//! The one-statement transition: the compare-and-set on the legal sources and the history row
//! (on PostgreSQL also the idempotency key) in one round trip, as each database's file builds
//! it ([`Driver::transition_sql`]), and the generic code that runs it and reads its answer.
//!
//! Every database's statement takes the same parameters in the same order: id, the legal
//! sources ([`Arg::Texts`]), target, machine, event (nullable), at_micros, expected version
//! (nullable), entity table, the history's actor, reason, idempotency key and metadata
//! (nullable); a keyed statement then key source, key seq, fingerprint. It answers rows
//! `(applied, state, version, id)`: `(true, from, new version, id)` when it applied, else
//! `(false, state, version, id)` of the row it found (none, or `NULL`s: no row); `id` is the
//! entity's id as the table stores it, which the history row (and key) was written under.

use std::sync::Arc;

use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::sql::backend::private::Driver;
use crate::sql::entity::{HistoryRow, StoredRow};
use crate::sql::value::{Arg, shared};

/// A database's one-statement transition of a table mapping, and how the store may use it.
#[derive(Debug, Clone, Default)]
pub struct TransitionSql {
    /// The statement of a request without an idempotency key (`None`: the database has none,
    /// or the server refused to create it).
    pub(crate) plain: Option<Arc<str>>,
    /// The statement that also stores the request's idempotency key with the outcome.
    pub(crate) keyed: Option<Arc<str>>,
    /// Whether the statement may run inside an open transaction: the one the store opens for
    /// effects, or a savepoint of the caller's (it is one statement); `false` for a batch or a
    /// procedure that commits itself.
    pub(crate) nests: bool,
    /// The one-statement batch ([`crate::sql::batch`]) of requests without effects on distinct
    /// entities (`None`: the database has none, and a batch is sent request by request).
    pub(crate) batch: Option<Arc<str>>,
    /// Whether the keyed statement answers a key stored already as a miss (MySQL's procedure)
    /// rather than failing on it with a unique violation (PostgreSQL's CTE): then a unique
    /// violation from it is about another row, an error.
    pub(crate) misses_on_stored_key: bool,
    /// Whether the batch statement also takes requests with an idempotency key.
    pub(crate) batch_keys: bool,
    /// Whether a plain read should come first for a request without key or effects, the
    /// statement running only for a row in a legal source (SQLite: a write transaction costs
    /// more than a read, so a replay is cheaper as a read).
    pub(crate) read_first: bool,
}

impl TransitionSql {
    /// The statement for a request with or without a key, inside a transaction or not (with
    /// effects, or in the caller's transaction); `None`: the store reads, then runs a
    /// compare-and-set in a transaction (or savepoint) of its own.
    pub(crate) fn statement(&self, keyed: bool, in_transaction: bool) -> Option<&Arc<str>> {
        if in_transaction && !self.nests {
            return None;
        }
        if keyed { self.keyed.as_ref() } else { self.plain.as_ref() }
    }
}

/// The arguments of the one-statement transition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OneStatement<'a> {
    /// The id, as [`EntitySql::id_arg`](crate::sql::entity::EntitySql::id_arg) binds it.
    pub(crate) id: Arg<'a>,
    pub(crate) sources: &'a [&'static str],
    pub(crate) target: &'static str,
    pub(crate) expected_version: Option<i64>,
    pub(crate) history: HistoryRow<'a>,
    /// The idempotency key and fingerprint to store with the outcome (a keyed statement).
    pub(crate) key: Option<(&'a IdempotencyKey, &'a Fingerprint)>,
}

/// What the one-statement transition answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OneStatementRows {
    /// When it applied: the state it left, the new version and the stored id.
    pub(crate) applied: Option<StoredRow>,
    /// When it did not apply: the row as the statement saw it (`None`: no such row).
    pub(crate) row: Option<StoredRow>,
}

/// Runs the one-statement transition `sql` with `args` on `conn`.
pub(crate) async fn run<B: Driver>(
    conn: &mut B::Connection,
    sql: &Arc<str>,
    args: OneStatement<'_>,
) -> Result<OneStatementRows, sqlx::Error> {
    let mut bound = vec![
        args.id,
        Arg::Texts(args.sources),
        Arg::Text(args.target),
        Arg::Text(args.history.machine),
        Arg::OptText(args.history.event),
        Arg::Int(args.history.at_micros),
        Arg::OptInt(args.expected_version),
        Arg::Text(args.history.table),
    ];
    bound.extend(args.history.audit.args());
    if let Some((key, fingerprint)) = args.key {
        bound.extend([Arg::Text(key.source()), Arg::Int(key.seq()), Arg::Text(fingerprint.as_str())]);
    }
    let mut answer = OneStatementRows::default();
    let rows = match B::fetch(conn, shared(sql), &bound).await {
        Ok(rows) => rows,
        Err(error) => {
            B::after_failed_transition(conn).await;
            return Err(error);
        }
    };
    for row in rows {
        let found = match (row.opt_text(1)?, row.opt_int(2)?, row.opt_text(3)?) {
            (Some(state), Some(version), Some(id)) => Some(StoredRow { state, version, id }),
            _ => None,
        };
        if row.int(0)? != 0 {
            answer.applied = found;
        } else {
            answer.row = found;
        }
    }
    Ok(answer)
}
