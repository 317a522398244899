//! The statements of the outbox (`fsm_outbox`).

use crate::clock::now_micros;
use crate::message::{OutboxMessage, PendingMessage};
use crate::sql::backend::private::Driver;
use crate::sql::claim;
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

/// The columns of a message as [`pending_message`] reads them.
const MESSAGE_COLUMNS: &str = "id, message_id, topic, message_key, payload, attempts, last_error";

/// The claimable messages (of `topic`, if given), oldest first, locked where the database can
/// skip locked rows: live (neither published nor dead), due (`next_attempt_at_micros`), not
/// claimed, and first of their topic and key (no earlier live message with the same key, which
/// keeps a key's messages in order: a later one waits while an earlier one is pending or backing
/// off; a dead one no longer holds them back). Messages without a key are never held back.
pub(crate) async fn claimable<B: Driver>(
    conn: &mut B::Connection,
    now: i64,
    topic: Option<&str>,
    limit: i64,
) -> Result<Vec<PendingMessage>, sqlx::Error> {
    // Positional parameters on SQLite and MySQL: the arguments in the order of the text.
    let (hint, topic_filter, limit_param) = match topic {
        Some(_) => (B::OUTBOX_TOPIC_HINT, format!(" AND o.topic = {}", B::param(3)), B::param(4)),
        None => ("", String::new(), B::param(3)),
    };
    // The read, of `columns`, and its arguments, for a claim of up to `limit` messages.
    let read = |columns: &str, limit: i64| {
        let sql = format!(
            "SELECT {columns} FROM fsm_outbox o{hint} \
             WHERE o.published_at_micros IS NULL AND o.dead_at_micros IS NULL \
             AND o.claimed_until_micros < {} AND o.next_attempt_at_micros <= {}{topic_filter} \
             AND (o.message_key IS NULL OR NOT EXISTS (SELECT 1 FROM fsm_outbox e \
                  WHERE e.topic = o.topic AND e.message_key = o.message_key AND e.id < o.id \
                  AND e.published_at_micros IS NULL AND e.dead_at_micros IS NULL)) \
             ORDER BY o.id LIMIT {limit_param}",
            B::param(1),
            B::param(2),
        );
        let mut args = vec![Arg::Int(now), Arg::Int(now)];
        args.extend(topic.map(Arg::Text));
        args.push(Arg::Int(limit));
        (sql, args)
    };
    if !B::LOCKS_ROWS_IT_ONLY_READ {
        let (sql, args) = read(MESSAGE_COLUMNS, limit);
        let rows = B::fetch(conn, owned(format!("{sql}{}", B::SKIP_LOCKED)), &args).await?;
        return rows.iter().map(pending_message).collect();
    }
    // MySQL/MariaDB lock (and so skip) the rows a locking read's subquery reads too: the
    // earlier message of a key, claimed by another relay's uncommitted claim, would be skipped
    // and the next one of the key taken for the head. The heads are chosen by a plain read of
    // their ids, then locked.
    let (plain, args) = read("o.id", claim::choose(limit));
    let heads = claim::chosen::<B>(conn, plain, &args).await?;
    let select = format!(
        "SELECT {MESSAGE_COLUMNS} FROM fsm_outbox o \
         WHERE o.published_at_micros IS NULL AND o.dead_at_micros IS NULL \
         AND o.claimed_until_micros < {} AND o.next_attempt_at_micros <= {}",
        B::param(1),
        B::param(2)
    );
    let args = vec![Arg::Int(now), Arg::Int(now)];
    let rows = claim::lock_chosen::<B>(conn, &select, args, ("o.id", "o.id", limit), &heads).await?;
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
        last_error: row.opt_text(6)?,
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

/// A failed attempt of an unpublished message: releases it with its error, due again at
/// `next_attempt_at`, or parked as dead at `dead_at`.
pub(crate) struct FailedAttempt<'a> {
    pub(crate) sequence: i64,
    pub(crate) error: &'a str,
    pub(crate) next_attempt_at: i64,
    pub(crate) dead_at: Option<i64>,
}

/// Records a failed attempt (see [`FailedAttempt`]).
pub(crate) async fn fail<B: Driver>(conn: &mut B::Connection, failed: &FailedAttempt<'_>) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE fsm_outbox SET claimed_until_micros = 0, last_error = {}, next_attempt_at_micros = {}, \
         dead_at_micros = {} WHERE id = {} AND published_at_micros IS NULL",
        B::param(1),
        B::param(2),
        B::param(3),
        B::param(4)
    );
    let args = [
        Arg::Text(failed.error),
        Arg::Int(failed.next_attempt_at),
        Arg::OptInt(failed.dead_at),
        Arg::Int(failed.sequence),
    ];
    B::execute(conn, owned(sql), &args).await.map(drop)
}

/// The dead messages (of `topic`, if given), oldest first, with the time each died.
pub(crate) async fn dead<B: Driver>(
    conn: &mut B::Connection,
    topic: Option<&str>,
    limit: i64,
) -> Result<Vec<(PendingMessage, i64)>, sqlx::Error> {
    // Positional parameters on SQLite and MySQL: the arguments in the order of the text.
    let (topic_filter, limit_param) = match topic {
        Some(_) => (format!(" AND topic = {}", B::param(1)), B::param(2)),
        None => (String::new(), B::param(1)),
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, dead_at_micros FROM fsm_outbox WHERE dead_at_micros IS NOT NULL{topic_filter} \
         ORDER BY id LIMIT {limit_param}"
    );
    let mut args: Vec<Arg<'_>> = topic.map(Arg::Text).into_iter().collect();
    args.push(Arg::Int(limit));
    let rows = B::fetch(conn, owned(sql), &args).await?;
    rows.iter().map(|row| Ok((pending_message(row)?, row.int(7)?))).collect()
}

/// What [`requeue`] brings back: one dead message by its id, or every dead message (of a topic).
pub(crate) enum Requeue<'a> {
    /// The dead message with this message id.
    Message(&'a str),
    /// Every dead message, of this topic if given.
    AllDead(Option<&'a str>),
}

/// Makes dead messages live again, due at once with no attempt counted: how many.
pub(crate) async fn requeue<B: Driver>(conn: &mut B::Connection, which: Requeue<'_>) -> Result<u64, sqlx::Error> {
    let (filter, arg) = match which {
        Requeue::Message(message_id) => (format!(" AND message_id = {}", B::param(1)), Some(message_id)),
        Requeue::AllDead(Some(topic)) => (format!(" AND topic = {}", B::param(1)), Some(topic)),
        Requeue::AllDead(None) => (String::new(), None),
    };
    let sql = format!(
        "UPDATE fsm_outbox SET dead_at_micros = NULL, attempts = 0, next_attempt_at_micros = 0, \
         claimed_until_micros = 0 WHERE dead_at_micros IS NOT NULL{filter}"
    );
    let args: Vec<Arg<'_>> = arg.map(Arg::Text).into_iter().collect();
    B::execute(conn, owned(sql), &args).await
}

/// Deletes the messages (of `topic`, if given) published at or before `cutoff`: how many.
pub(crate) async fn purge_published<B: Driver>(
    conn: &mut B::Connection,
    cutoff: i64,
    topic: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let topic_filter = topic.map(|_| format!(" AND topic = {}", B::param(2))).unwrap_or_default();
    let sql = format!("DELETE FROM fsm_outbox WHERE published_at_micros <= {}{topic_filter}", B::param(1));
    let mut args = vec![Arg::Int(cutoff)];
    args.extend(topic.map(Arg::Text));
    B::execute(conn, owned(sql), &args).await
}

/// The pending messages of the whole outbox, in one read: how many, and when the oldest was
/// enqueued (`None` when none is pending).
pub(crate) async fn stats<B: Driver>(conn: &mut B::Connection) -> Result<(i64, Option<i64>, i64), sqlx::Error> {
    const SQL: &str = "SELECT COUNT(CASE WHEN dead_at_micros IS NULL THEN 1 END), \
         MIN(CASE WHEN dead_at_micros IS NULL THEN created_at_micros END), COUNT(dead_at_micros) \
         FROM fsm_outbox WHERE published_at_micros IS NULL";
    let rows = B::fetch(conn, fixed(SQL), &[]).await?;
    let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    Ok((row.int(0)?, row.opt_int(1)?, row.int(2)?))
}
