//! The statements of the outbox (`fsm_outbox`) and the inbox (`fsm_inbox`).

use crate::clock::now_micros;
use crate::message::{OutboxMessage, PendingMessage};
use crate::sql::backend::private::Driver;
use crate::sql::classify::is_unique_violation;
use crate::sql::value::{Arg, Row, fixed, owned};

/// Inserts an outbox message with its id.
pub(crate) async fn insert<B: Driver>(
    conn: &mut B::Connection,
    message_id: &str,
    message: &OutboxMessage,
) -> Result<(), sqlx::Error> {
    let p = B::param;
    let sql = format!(
        "INSERT INTO fsm_outbox (message_id, topic, message_key, payload, created_at_micros) VALUES ({}, {}, {}, {}, {})",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    );
    let payload = message.payload.to_string();
    let args = [
        Arg::Text(message_id),
        Arg::Text(&message.topic),
        Arg::OptText(message.key.as_deref()),
        Arg::Text(&payload),
        Arg::Int(now_micros()),
    ];
    B::execute(conn, owned(sql), &args).await.map(drop)
}

/// The pending messages (of `topic`, if given) whose claim expired before `now`, oldest first,
/// locked where the database can skip locked rows.
pub(crate) async fn pending<B: Driver>(
    conn: &mut B::Connection,
    now: i64,
    topic: Option<&str>,
    limit: i64,
) -> Result<Vec<PendingMessage>, sqlx::Error> {
    let columns = "SELECT id, message_id, topic, message_key, payload, attempts FROM fsm_outbox";
    let rows = match topic {
        Some(topic) => {
            let sql = format!(
                "{columns}{} WHERE topic = {} AND published_at_micros IS NULL AND claimed_until_micros < {} \
                 ORDER BY id LIMIT {}{}",
                B::OUTBOX_TOPIC_HINT,
                B::param(1),
                B::param(2),
                B::param(3),
                B::SKIP_LOCKED
            );
            B::fetch(conn, owned(sql), &[Arg::Text(topic), Arg::Int(now), Arg::Int(limit)]).await?
        }
        None => {
            let sql = format!(
                "{columns} WHERE published_at_micros IS NULL AND claimed_until_micros < {} ORDER BY id LIMIT {}{}",
                B::param(1),
                B::param(2),
                B::SKIP_LOCKED
            );
            B::fetch(conn, owned(sql), &[Arg::Int(now), Arg::Int(limit)]).await?
        }
    };
    rows.iter().map(pending_message).collect()
}

fn pending_message(row: &Row) -> Result<PendingMessage, sqlx::Error> {
    Ok(PendingMessage {
        sequence: row.int(0)?,
        message_id: row.text(1)?,
        topic: row.text(2)?,
        key: row.opt_text(3)?,
        payload: serde_json::from_str(&row.text(4)?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        attempts: row.int(5)?,
    })
}

/// Leases message `sequence` until `until` and counts the attempt.
pub(crate) async fn claim<B: Driver>(conn: &mut B::Connection, until: i64, sequence: i64) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE fsm_outbox SET claimed_until_micros = {}, attempts = attempts + 1 WHERE id = {}",
        B::param(1),
        B::param(2)
    );
    B::execute(conn, owned(sql), &[Arg::Int(until), Arg::Int(sequence)]).await.map(drop)
}

/// Marks message `sequence` published at `at`.
pub(crate) async fn mark_published<B: Driver>(
    conn: &mut B::Connection,
    at: i64,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE fsm_outbox SET published_at_micros = {} WHERE id = {}", B::param(1), B::param(2));
    B::execute(conn, owned(sql), &[Arg::Int(at), Arg::Int(sequence)]).await.map(drop)
}

/// Releases a claimed message that is not published.
pub(crate) async fn release<B: Driver>(conn: &mut B::Connection, sequence: i64) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE fsm_outbox SET claimed_until_micros = 0 WHERE id = {} AND published_at_micros IS NULL",
        B::param(1)
    );
    B::execute(conn, owned(sql), &[Arg::Int(sequence)]).await.map(drop)
}

/// Records a processed message of `consumer`: `true` the first time.
pub(crate) async fn record_inbox<B: Driver>(
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

/// The pending messages of the whole outbox, in one read: how many, and when the oldest was
/// enqueued (`None` when none is pending).
pub(crate) async fn stats<B: Driver>(conn: &mut B::Connection) -> Result<(i64, Option<i64>), sqlx::Error> {
    const SQL: &str = "SELECT COUNT(*), MIN(created_at_micros) FROM fsm_outbox WHERE published_at_micros IS NULL";
    let rows = B::fetch(conn, fixed(SQL), &[]).await?;
    let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    Ok((row.int(0)?, row.opt_int(1)?))
}
