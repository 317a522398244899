//! The one-statement batch: the one-statement transition of many entities at once, as each
//! database's file builds it ([`TransitionSql::batch`](crate::sql::transition::TransitionSql)),
//! and the generic code that binds its items and reads its answer.
//!
//! Every database's statement takes one column per field of an item, in this order: the
//! item's position, id (as text), target, legal sources (joined by [`SOURCES_SEPARATOR`]),
//! event, expected version, actor, reason, idempotency key (as the history records it),
//! metadata, key source, key seq, fingerprint; then the machine, the entity table and the time.
//! A database without arrays ([`Driver::BATCH_AS_ROWS`]) takes the items as one JSON array of
//! rows instead, each row those thirteen fields in that order, then the same three values.
//! The items name distinct entities. It answers one row per item, `(position, applied, state,
//! version, id, stored fingerprint, stored outcome)`: `(…, true, from, new version, id, …)`
//! when the item applied, else `(…, false, state, version, id, …)` of the row it found (`NULL`s:
//! no row), with the item's idempotency key as stored, if it is.

use std::sync::Arc;

use crate::sql::backend::private::Driver;
use crate::sql::entity::StoredRow;
use crate::sql::value::{Arg, Column, shared};

/// What joins the legal sources of one item into one text (the ASCII unit separator, which no
/// state name holds: an item whose sources would is not batched).
pub(crate) const SOURCES_SEPARATOR: char = '\u{1f}';

/// One item of a batch.
#[derive(Debug, Clone)]
pub(crate) struct BatchItem<'a> {
    /// The id as text (the statement casts it to the id column's type).
    pub(crate) id: String,
    pub(crate) target: &'static str,
    pub(crate) sources: &'a [&'static str],
    pub(crate) event: Option<&'static str>,
    pub(crate) expected_version: Option<i64>,
    pub(crate) actor: Option<&'a str>,
    pub(crate) reason: Option<&'a str>,
    /// The key as the history row records it.
    pub(crate) key_text: Option<&'a str>,
    pub(crate) metadata: Option<&'a str>,
    /// The key's source, seq and the request's fingerprint, stored with the outcome.
    pub(crate) key: Option<(&'a str, i64, &'a str)>,
}

/// What the batch statement shares between its items.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchShared<'a> {
    pub(crate) machine: &'static str,
    pub(crate) table: &'a str,
    pub(crate) at_micros: i64,
}

/// The answer of one item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BatchAnswer {
    /// When it applied: the state it left, the new version and the stored id.
    pub(crate) applied: Option<StoredRow>,
    /// When it did not: the row as the statement saw it (`None`: no such row).
    pub(crate) row: Option<StoredRow>,
    /// The item's idempotency key, when the statement found it stored: its fingerprint and
    /// outcome.
    pub(crate) stored_key: Option<(String, String)>,
}

/// Runs the batch statement `sql` over `items` on `conn`: one answer per item, in order.
pub(crate) async fn run<B: Driver>(
    conn: &mut B::Connection,
    sql: &Arc<str>,
    items: &[BatchItem<'_>],
    shared_args: BatchShared<'_>,
) -> Result<Vec<BatchAnswer>, sqlx::Error> {
    let (columns, rows);
    let mut args: Vec<Arg<'_>> = if B::BATCH_AS_ROWS {
        rows = rows_json(items)?;
        vec![Arg::Text(&rows)]
    } else {
        columns = self::columns(items);
        columns.iter().map(Arg::Column).collect()
    };
    args.extend([Arg::Text(shared_args.machine), Arg::Text(shared_args.table), Arg::Int(shared_args.at_micros)]);
    let rows = match B::fetch(conn, shared(sql), &args).await {
        Ok(rows) => rows,
        Err(error) => {
            B::after_failed_transition(conn).await;
            return Err(error);
        }
    };
    let mut answers = vec![BatchAnswer::default(); items.len()];
    for row in rows {
        let position = usize::try_from(row.int(0)?).ok().filter(|&p| p < items.len());
        let answer = position.and_then(|p| answers.get_mut(p)).ok_or_else(|| {
            sqlx::Error::Protocol(format!("the batch statement answered for an item it was not given: {row:?}"))
        })?;
        let found = match (row.opt_text(2)?, row.opt_int(3)?, row.opt_text(4)?) {
            (Some(state), Some(version), Some(id)) => Some(StoredRow { state, version, id }),
            _ => None,
        };
        if row.int(1)? != 0 {
            answer.applied = found;
        } else {
            answer.row = found;
            answer.stored_key = row.opt_text(5)?.zip(row.opt_text(6)?);
        }
    }
    Ok(answers)
}

/// The items as one JSON array of rows, each row the item's fields in the statement's order.
fn rows_json(items: &[BatchItem<'_>]) -> Result<String, sqlx::Error> {
    let separator = SOURCES_SEPARATOR.to_string();
    let rows: Vec<serde_json::Value> = items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            serde_json::json!([
                position,
                item.id,
                item.target,
                item.sources.join(&separator),
                item.event,
                item.expected_version,
                item.actor,
                item.reason,
                item.key_text,
                item.metadata,
                item.key.map(|(source, _, _)| source),
                item.key.map(|(_, seq, _)| seq),
                item.key.map(|(_, _, fingerprint)| fingerprint),
            ])
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The items' fields, one column each, in the statement's order.
fn columns(items: &[BatchItem<'_>]) -> [Column; 13] {
    let texts = |field: &dyn Fn(&BatchItem<'_>) -> Option<String>| Column::Texts(items.iter().map(field).collect());
    let ints = |field: &dyn Fn(&BatchItem<'_>) -> Option<i64>| Column::Ints(items.iter().map(field).collect());
    let separator = SOURCES_SEPARATOR.to_string();
    [
        Column::Ints((0..items.len()).map(|p| i64::try_from(p).ok()).collect()),
        texts(&|item| Some(item.id.clone())),
        texts(&|item| Some(item.target.to_owned())),
        texts(&|item| Some(item.sources.join(&separator))),
        texts(&|item| item.event.map(str::to_owned)),
        ints(&|item| item.expected_version),
        texts(&|item| item.actor.map(str::to_owned)),
        texts(&|item| item.reason.map(str::to_owned)),
        texts(&|item| item.key_text.map(str::to_owned)),
        texts(&|item| item.metadata.map(str::to_owned)),
        texts(&|item| item.key.map(|(source, _, _)| source.to_owned())),
        ints(&|item| item.key.map(|(_, seq, _)| seq)),
        texts(&|item| item.key.map(|(_, _, fingerprint)| fingerprint.to_owned())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_statements_order() {
        let item = BatchItem {
            id: "7".into(),
            target: "paid",
            sources: &["open", "late"],
            event: None,
            expected_version: Some(3),
            actor: Some("ops"),
            reason: None,
            key_text: Some("src/1"),
            metadata: None,
            key: Some(("src", 1, "fp")),
        };
        let columns = columns(&[item.clone(), BatchItem { key: None, ..item.clone() }]);
        assert_eq!(columns[0], Column::Ints(vec![Some(0), Some(1)]));
        assert_eq!(columns[3], Column::Texts(vec![Some("open\u{1f}late".into()); 2]));
        assert_eq!(columns[11], Column::Ints(vec![Some(1), None]));
        assert_eq!(columns[12].to_json().unwrap(), r#"["fp",null]"#);
        let rows = rows_json(&[BatchItem { key: None, ..item }]).unwrap();
        assert_eq!(rows, r#"[[0,"7","paid","open\u001flate",null,3,"ops",null,"src/1",null,null,null,null]]"#);
    }
}
