//! The statements of the inbox (`fsm_inbox`).

use crate::clock::now_micros;
use crate::sql::backend::private::Driver;
use crate::sql::classify::is_unique_violation;
use crate::sql::value::{Arg, owned};

/// Records a processed message of `consumer`: `true` the first time.
pub(crate) async fn record<B: Driver>(
    conn: &mut B::Connection,
    consumer: &str,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO fsm_inbox (consumer, message_id, processed_at_micros) VALUES ({}, {}, {}){}",
        B::param(1),
        B::param(2),
        B::param(3),
        B::ON_CONFLICT_DO_NOTHING
    );
    let args = [Arg::Text(consumer), Arg::Text(message_id), Arg::Int(now_micros())];
    match B::execute(conn, owned(sql), &args).await {
        Ok(inserted) => Ok(inserted == 1),
        Err(error) if is_unique_violation(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Deletes the records (of `consumer`, if given) processed at or before `cutoff`: how many.
pub(crate) async fn purge<B: Driver>(
    conn: &mut B::Connection,
    cutoff: i64,
    consumer: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let consumer_filter = consumer.map(|_| format!(" AND consumer = {}", B::param(2))).unwrap_or_default();
    let sql = format!("DELETE FROM fsm_inbox WHERE processed_at_micros <= {}{consumer_filter}", B::param(1));
    let mut args = vec![Arg::Int(cutoff)];
    args.extend(consumer.map(Arg::Text));
    B::execute(conn, owned(sql), &args).await
}
