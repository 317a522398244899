//! The statements of fences (`fsm_fences`): the highest fencing token seen per resource.

use crate::sql::backend::private::Driver;
use crate::sql::value::{Arg, owned};

/// The raise of databases whose upsert returns rows (PostgreSQL, SQLite): one upsert that
/// returns a row only if it accepted `token`; when it did not, the highest token, read with a
/// lock where the database has row locks.
pub(crate) async fn raise_returning<B: Driver>(
    conn: &mut B::Connection,
    resource: &str,
    token: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO fsm_fences (resource, highest) VALUES ({}, {}) ON CONFLICT (resource) \
         DO UPDATE SET highest = EXCLUDED.highest WHERE fsm_fences.highest <= EXCLUDED.highest RETURNING highest",
        B::param(1),
        B::param(2)
    );
    if !B::fetch(conn, owned(sql), &[Arg::Text(resource), Arg::Int(token)]).await?.is_empty() {
        return Ok(None);
    }
    Ok(Some(highest::<B>(conn, resource).await?.unwrap_or(i64::MAX)))
}

/// The highest token of `resource`, locking its row where the database has row locks.
pub(crate) async fn highest<B: Driver>(conn: &mut B::Connection, resource: &str) -> Result<Option<i64>, sqlx::Error> {
    let sql = format!("SELECT highest FROM fsm_fences WHERE resource = {}{}", B::param(1), B::FOR_UPDATE);
    let rows = B::fetch(conn, owned(sql), &[Arg::Text(resource)]).await?;
    rows.first().map(|row| row.int(0)).transpose()
}
