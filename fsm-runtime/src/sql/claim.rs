//! Claims that choose their rows by a plain read, then lock them by primary key: on a database
//! whose locking read also locks rows it only read
//! ([`Driver::LOCKS_ROWS_IT_ONLY_READ`](crate::sql::backend::private::Driver), InnoDB: the
//! rows of a subquery, and the index record after a range), where another claim's
//! `SKIP LOCKED` would skip rows that were never its to take.

use crate::sql::backend::private::Driver;
use crate::sql::value::{Arg, Row, owned};

/// How many rows a claim of `limit` chooses: more than it takes, so that racing claims, which
/// all choose the first rows, each still lock a full batch of the others (their lock skips
/// what another holds).
pub(crate) fn choose(limit: i64) -> i64 {
    limit.saturating_mul(4)
}

/// The first column of each row of `sql` (a plain read, which locks nothing): the primary
/// keys a claim chose.
pub(crate) async fn chosen<B: Driver>(
    conn: &mut B::Connection,
    sql: String,
    args: &[Arg<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    B::fetch(conn, owned(sql), args).await?.iter().map(|row| row.int(0)).collect()
}

/// Up to `limit` rows of `chosen` that `select` (`SELECT … FROM … WHERE <the claim's
/// conditions, checked again>`, over the parameters `args`) still finds, locked, skipping those
/// another claim holds, in the order `order`; `id` is the primary key as `select` names it.
pub(crate) async fn lock_chosen<B: Driver>(
    conn: &mut B::Connection,
    select: &str,
    mut args: Vec<Arg<'_>>,
    (id, order, limit): (&str, &str, i64),
    chosen: &[i64],
) -> Result<Vec<Row>, sqlx::Error> {
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = (1..=chosen.len()).map(|n| B::param(args.len() + n)).collect();
    let limit_param = B::param(args.len() + chosen.len() + 1);
    let sql =
        format!("{select} AND {id} IN ({}) ORDER BY {order} LIMIT {limit_param}{}", listed.join(", "), B::SKIP_LOCKED);
    args.extend(chosen.iter().map(|id| Arg::Int(*id)));
    args.push(Arg::Int(limit));
    B::fetch(conn, owned(sql), &args).await
}
