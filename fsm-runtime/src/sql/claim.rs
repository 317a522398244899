//! Claims that choose their rows by a plain read, then lock them by primary key: on a database
//! whose locking read also locks rows it only read
//! ([`Driver::LOCKS_ROWS_IT_ONLY_READ`](crate::sql::backend::private::Driver), InnoDB: the
//! rows of a subquery, and the index record after a range), where another claim's
//! `SKIP LOCKED` would skip rows that were never its to take.

use crate::sql::backend::private::Driver;
use crate::sql::value::{Arg, Row, owned};

/// The first column of each row of `sql` (a plain read, which locks nothing): the primary
/// keys a claim chose.
pub(crate) async fn chosen<B: Driver>(
    conn: &mut B::Connection,
    sql: String,
    args: &[Arg<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    B::fetch(conn, owned(sql), args).await?.iter().map(|row| row.int(0)).collect()
}

/// The rows of `chosen` that `select` (`SELECT … FROM … WHERE <the claim's conditions, checked
/// again>`, over the parameters `args`) still finds, locked, skipping those another claim
/// holds, in the order `order`; `id` is the primary key as `select` names it.
pub(crate) async fn lock_chosen<B: Driver>(
    conn: &mut B::Connection,
    select: &str,
    mut args: Vec<Arg<'_>>,
    (id, order): (&str, &str),
    chosen: &[i64],
) -> Result<Vec<Row>, sqlx::Error> {
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = (1..=chosen.len()).map(|n| B::param(args.len() + n)).collect();
    let sql = format!("{select} AND {id} IN ({}) ORDER BY {order}{}", listed.join(", "), B::SKIP_LOCKED);
    args.extend(chosen.iter().map(|id| Arg::Int(*id)));
    B::fetch(conn, owned(sql), &args).await
}
