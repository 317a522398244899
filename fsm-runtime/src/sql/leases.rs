//! The statements of leases (`fsm_leases`); times come from the database's clock.
//!
//! A release sets the expiry to 0 and keeps the row, so that the fence keeps growing: never
//! delete `fsm_leases` rows (a deleted row is inserted again with fence 1, and the fences in
//! `fsm_fences` then refuse every new holder of that resource as stale).

use crate::sql::backend::private::{Driver, LeaseRequest};
use crate::sql::value::{Arg, owned};

/// The acquisition of databases whose upsert returns rows (PostgreSQL, SQLite): one statement
/// that inserts the row, or takes it over only if it expired, incrementing `fence` in the same
/// statement, and returns the new fence (no row: held by another).
pub(crate) async fn acquire_returning<B: Driver>(
    conn: &mut B::Connection,
    lease: LeaseRequest<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let (now, p) = (B::NOW_MICROS, B::param);
    let sql = format!(
        "INSERT INTO fsm_leases (resource, owner, fence, expires_at_micros, nonce) VALUES ({}, {}, 1, {now} + {}, {}) \
         ON CONFLICT (resource) DO UPDATE SET owner = EXCLUDED.owner, fence = fsm_leases.fence + 1, \
         expires_at_micros = EXCLUDED.expires_at_micros, nonce = EXCLUDED.nonce \
         WHERE fsm_leases.expires_at_micros <= {now} RETURNING fence",
        p(1),
        p(2),
        p(3),
        p(4)
    );
    let rows = B::fetch(conn, owned(sql), &request_args(&lease)).await?;
    rows.first().map(|row| row.int(0)).transpose()
}

/// The arguments of an acquisition: resource, owner, ttl (µs), nonce.
pub(crate) fn request_args<'a>(lease: &LeaseRequest<'a>) -> [Arg<'a>; 4] {
    [Arg::Text(lease.resource), Arg::Text(lease.owner), Arg::Int(lease.ttl_micros), Arg::Text(lease.nonce)]
}

/// Extends the lease of its holder: rows matched (0: not held any more).
pub(crate) async fn extend<B: Driver>(
    conn: &mut B::Connection,
    ttl_micros: i64,
    resource: &str,
    owner: &str,
    fence: i64,
) -> Result<u64, sqlx::Error> {
    let now = B::NOW_MICROS;
    let sql = format!(
        "UPDATE fsm_leases SET expires_at_micros = {now} + {} \
         WHERE resource = {} AND owner = {} AND fence = {} AND expires_at_micros > {now}",
        B::param(1),
        B::param(2),
        B::param(3),
        B::param(4)
    );
    let args = [Arg::Int(ttl_micros), Arg::Text(resource), Arg::Text(owner), Arg::Int(fence)];
    B::execute(conn, owned(sql), &args).await
}

/// Releases the lease of its holder: rows matched (0: not held any more).
pub(crate) async fn release<B: Driver>(
    conn: &mut B::Connection,
    resource: &str,
    owner: &str,
    fence: i64,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "UPDATE fsm_leases SET expires_at_micros = 0 \
         WHERE resource = {} AND owner = {} AND fence = {} AND expires_at_micros > {}",
        B::param(1),
        B::param(2),
        B::param(3),
        B::NOW_MICROS
    );
    B::execute(conn, owned(sql), &[Arg::Text(resource), Arg::Text(owner), Arg::Int(fence)]).await
}
