//! The statements of the timers (`fsm_timers`).

use crate::clock::now_micros;
use crate::entity_id::EntityId;
use crate::scheduled::{DueTimer, Timer, TimerRecord};
use crate::sql::backend::private::Driver;
use crate::sql::claim;
use crate::sql::value::{Arg, Row, owned};

/// Inserts `timer` with its id, due by the process's clock.
pub(crate) async fn insert<B: Driver>(
    conn: &mut B::Connection,
    timer_id: &str,
    timer: &Timer,
) -> Result<(), sqlx::Error> {
    let params: Vec<String> = (1..=8).map(B::param).collect();
    let sql = format!(
        "INSERT INTO fsm_timers (timer_id, machine, entity_table, entity_id, entity_int, event, due_at_micros, \
         created_at_micros) VALUES ({})",
        params.join(", ")
    );
    let now = now_micros();
    let entity = timer.entity.to_string();
    let entity_int = match timer.entity {
        EntityId::Int(id) => Some(id),
        EntityId::Text(_) => None,
    };
    let args = [
        Arg::Text(timer_id),
        Arg::Text(timer.machine),
        Arg::Text(&timer.table),
        Arg::Text(&entity),
        Arg::OptInt(entity_int),
        Arg::Text(timer.event),
        Arg::Int(timer.due.at_micros(now)),
        Arg::Int(now),
    ];
    B::execute(conn, owned(sql), &args).await.map(drop)
}

/// The columns a claimed timer is read from.
const DUE_COLUMNS: &str = "id, timer_id, entity_id, entity_int, event, due_at_micros, attempts";

/// The timers of `machine` on `table` due at `now` and not claimed past it, soonest first,
/// locked where the database can skip locked rows.
pub(crate) async fn due<B: Driver>(
    conn: &mut B::Connection,
    (machine, table): (&str, &str),
    now: i64,
    limit: i64,
) -> Result<Vec<DueTimer>, sqlx::Error> {
    // The read, of `columns`, and its arguments, for a claim of up to `limit` timers.
    let read = |columns: &str, limit: i64| {
        let sql = format!(
            "SELECT {columns} FROM fsm_timers WHERE machine = {} AND entity_table = {} \
             AND done_at_micros IS NULL AND due_at_micros <= {} AND claimed_until_micros < {} \
             ORDER BY due_at_micros, id LIMIT {}",
            B::param(1),
            B::param(2),
            B::param(3),
            B::param(4),
            B::param(5),
        );
        (sql, [Arg::Text(machine), Arg::Text(table), Arg::Int(now), Arg::Int(now), Arg::Int(limit)])
    };
    if !B::LOCKS_ROWS_IT_ONLY_READ {
        let (sql, args) = read(DUE_COLUMNS, limit);
        return B::fetch(conn, owned(format!("{sql}{}", B::SKIP_LOCKED)), &args).await?.iter().map(due_timer).collect();
    }
    // InnoDB's range read would also lock the index record after the range: the first timer of
    // the next table, which that table's schedulers would then skip until this claim commits.
    // The timers are chosen by a plain read of their ids, then locked by primary key and
    // checked again.
    let (plain, args) = read("id", claim::choose(limit));
    let chosen = claim::chosen::<B>(conn, plain, &args).await?;
    let select = format!(
        "SELECT {DUE_COLUMNS} FROM fsm_timers WHERE done_at_micros IS NULL AND due_at_micros <= {} \
         AND claimed_until_micros < {}",
        B::param(1),
        B::param(2)
    );
    let args = vec![Arg::Int(now), Arg::Int(now)];
    let rows = claim::lock_chosen::<B>(conn, &select, args, ("id", "due_at_micros, id", limit), &chosen).await?;
    rows.iter().map(due_timer).collect()
}

fn entity(row: &Row, text: usize, int: usize) -> Result<EntityId, sqlx::Error> {
    Ok(match row.opt_int(int)? {
        Some(id) => EntityId::Int(id),
        None => EntityId::Text(row.text(text)?),
    })
}

fn due_timer(row: &Row) -> Result<DueTimer, sqlx::Error> {
    Ok(DueTimer {
        sequence: row.int(0)?,
        timer_id: row.text(1)?,
        entity: entity(row, 2, 3)?,
        event: row.text(4)?,
        due_at_micros: row.int(5)?,
        attempts: row.int(6)?,
    })
}

/// Leases timer `sequence` until `until` and counts the attempt.
pub(crate) async fn claim<B: Driver>(conn: &mut B::Connection, until: i64, sequence: i64) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE fsm_timers SET claimed_until_micros = {}, attempts = attempts + 1 WHERE id = {}",
        B::param(1),
        B::param(2)
    );
    B::execute(conn, owned(sql), &[Arg::Int(until), Arg::Int(sequence)]).await.map(drop)
}

/// Marks timer `sequence` done at `at` with `outcome`.
pub(crate) async fn finish<B: Driver>(
    conn: &mut B::Connection,
    sequence: i64,
    at: i64,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE fsm_timers SET done_at_micros = {}, outcome = {} WHERE id = {} AND done_at_micros IS NULL",
        B::param(1),
        B::param(2),
        B::param(3)
    );
    B::execute(conn, owned(sql), &[Arg::Int(at), Arg::Text(outcome), Arg::Int(sequence)]).await.map(drop)
}

/// Records the error of the last firing of timer `sequence`.
pub(crate) async fn fail<B: Driver>(conn: &mut B::Connection, sequence: i64, error: &str) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE fsm_timers SET last_error = {} WHERE id = {}", B::param(1), B::param(2));
    B::execute(conn, owned(sql), &[Arg::Text(error), Arg::Int(sequence)]).await.map(drop)
}

/// Every timer of `machine` on `table`, soonest first.
pub(crate) async fn list<B: Driver>(
    conn: &mut B::Connection,
    (machine, table): (&str, &str),
) -> Result<Vec<TimerRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT timer_id, entity_id, entity_int, event, due_at_micros, attempts, outcome, last_error FROM fsm_timers \
         WHERE machine = {} AND entity_table = {} ORDER BY due_at_micros, id",
        B::param(1),
        B::param(2)
    );
    let rows = B::fetch(conn, owned(sql), &[Arg::Text(machine), Arg::Text(table)]).await?;
    rows.iter()
        .map(|row| {
            Ok(TimerRecord {
                timer_id: row.text(0)?,
                entity: entity(row, 1, 2)?,
                event: row.text(3)?,
                due_at_micros: row.int(4)?,
                attempts: row.int(5)?,
                outcome: row.opt_text(6)?,
                last_error: row.opt_text(7)?,
            })
        })
        .collect()
}
