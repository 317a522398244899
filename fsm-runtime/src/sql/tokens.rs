//! The statements of single-use tokens (`fsm_tokens`); times come from the database's clock
//! ([`Driver::NOW_MICROS`]), so that processes whose clocks disagree agree on expiry.

use crate::sql::backend::private::Driver;
use crate::sql::value::{Arg, owned};

/// What [`classify`] answers for a used token.
pub(crate) const USED: i64 = 1;
/// What [`classify`] answers for an expired token.
pub(crate) const EXPIRED: i64 = 2;

/// Inserts a token valid for `ttl_micros`, remembered for `keep_micros`.
pub(crate) async fn insert<B: Driver>(
    conn: &mut B::Connection,
    scope: &str,
    token: &str,
    ttl_micros: i64,
    keep_micros: i64,
) -> Result<(), sqlx::Error> {
    let (now, p) = (B::NOW_MICROS, B::param);
    let sql = format!(
        "INSERT INTO fsm_tokens (scope, token, expires_at_micros, keep_until_micros) \
         VALUES ({}, {}, {now} + {}, {now} + {})",
        p(1),
        p(2),
        p(3),
        p(4)
    );
    let args = [Arg::Text(scope), Arg::Text(token), Arg::Int(ttl_micros), Arg::Int(keep_micros)];
    B::execute(conn, owned(sql), &args).await.map(drop)
}

/// The compare-and-set of a redeem: marks the token used if it is unused and unexpired; rows
/// matched (of N concurrent redeems exactly one matches).
pub(crate) async fn mark_used<B: Driver>(
    conn: &mut B::Connection,
    scope: &str,
    token: &str,
) -> Result<u64, sqlx::Error> {
    let now = B::NOW_MICROS;
    let sql = format!(
        "UPDATE fsm_tokens SET used_at_micros = {now} WHERE scope = {} AND token = {} \
         AND used_at_micros IS NULL AND expires_at_micros > {now}",
        B::param(1),
        B::param(2)
    );
    B::execute(conn, owned(sql), &[Arg::Text(scope), Arg::Text(token)]).await
}

/// Why a redeem missed: [`USED`], [`EXPIRED`], 0 (neither), or `None` (no such token). A
/// locking read where the database has one, so that it sees the latest commit even inside an
/// older transaction.
pub(crate) async fn classify<B: Driver>(
    conn: &mut B::Connection,
    scope: &str,
    token: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let sql = format!(
        "SELECT CAST(CASE WHEN used_at_micros IS NOT NULL THEN {USED} WHEN expires_at_micros <= {} THEN {EXPIRED} \
         ELSE 0 END AS {}) FROM fsm_tokens WHERE scope = {} AND token = {}{}",
        B::NOW_MICROS,
        B::CAST_INT,
        B::param(1),
        B::param(2),
        B::FOR_UPDATE
    );
    let rows = B::fetch(conn, owned(sql), &[Arg::Text(scope), Arg::Text(token)]).await?;
    rows.first().map(|row| row.int(0)).transpose()
}

/// Deletes the tokens past their keep-until time: rows deleted.
pub(crate) async fn purge<B: Driver>(conn: &mut B::Connection) -> Result<u64, sqlx::Error> {
    B::execute(conn, owned(format!("DELETE FROM fsm_tokens WHERE keep_until_micros < {}", B::NOW_MICROS)), &[]).await
}
