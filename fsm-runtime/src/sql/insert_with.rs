//! The insert of an entity with its own columns ([`Store::create_with`](crate::Store::create_with)),
//! built per call since the columns vary: the mapping's identifiers and the column names, all
//! validated (`[A-Za-z_][A-Za-z0-9_]*`) and quoted; every value a bound parameter, `NULL` the
//! keyword (a `NULL` parameter of PostgreSQL has a type, which a column of another type refuses).

use crate::column_value::ColumnValue;
use crate::entity_id::EntityId;
use crate::mapping::TableMapping;
use crate::sql::backend::private::Driver;
use crate::sql::entity::bind_id;
use crate::sql::value::{Arg, owned};

/// `INSERT INTO t (id, state, version, c1, …) VALUES (?1, ?2, 0, ?3, …)`, ignoring a duplicate id
/// where the database can say so (and only a duplicate id: another unique column's violation is
/// the caller's error), with its arguments; the id column is of SQL type `id_type` where the
/// database needs to know it. `json` holds the text of each column's JSON value,
/// by position.
fn statement<'a, B: Driver>(
    mapping: &TableMapping,
    id_type: Option<&str>,
    id: &'a EntityId,
    state: &'a str,
    columns: &'a [(String, ColumnValue)],
    json: &'a [Option<String>],
) -> (String, Vec<Arg<'a>>) {
    let q = B::quote;
    let mut names = vec![q(&mapping.id), q(&mapping.state), q(&mapping.version)];
    let mut values = vec![B::id_param(1, id_type), B::param(2), "0".to_owned()];
    // As `EntitySql::id_arg`: where the database casts a text id to the column's type, every id
    // is sent as text, so that one prepared statement takes integer and text ids alike.
    let id_arg = bind_id(B::id_binding(id_type), id);
    let mut args = vec![id_arg, Arg::Text(state)];
    for ((name, value), json) in columns.iter().zip(json) {
        names.push(q(name));
        match column_arg(value, json.as_deref()) {
            Some(arg) => {
                args.push(arg);
                values.push(B::param(args.len()));
            }
            None => values.push("NULL".to_owned()),
        }
    }
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({}){}",
        q(&mapping.table),
        names.join(", "),
        values.join(", "),
        B::on_conflict_do_nothing(&q(&mapping.id))
    );
    (sql, args)
}

/// The argument of a column's value, `None` for `NULL`; `json` is the text of a JSON value.
fn column_arg<'a>(value: &'a ColumnValue, json: Option<&'a str>) -> Option<Arg<'a>> {
    Some(match value {
        ColumnValue::Null => return None,
        ColumnValue::Bool(value) => Arg::Bool(*value),
        ColumnValue::Int(value) => Arg::Int(*value),
        ColumnValue::Float(value) => Arg::Float(*value),
        ColumnValue::Text(value) => Arg::Text(value),
        ColumnValue::Bytes(value) => Arg::Bytes(value),
        ColumnValue::Json(_) => Arg::Json(json.unwrap_or("null")),
    })
}

/// Inserts the entity in `state` at version 0 with `columns` (names checked by the caller):
/// rows inserted, 0 (or a unique violation, on MySQL) for a duplicate id.
pub(crate) async fn insert_with<B: Driver>(
    conn: &mut B::Connection,
    mapping: &TableMapping,
    id_type: Option<&str>,
    id: &EntityId,
    state: &str,
    columns: &[(String, ColumnValue)],
) -> Result<u64, sqlx::Error> {
    let json: Vec<Option<String>> = columns
        .iter()
        .map(|(_, value)| match value {
            ColumnValue::Json(json) => Some(json.to_string()),
            _ => None,
        })
        .collect();
    let (sql, args) = statement::<B>(mapping, id_type, id, state, columns, &json);
    B::execute(conn, owned(sql), &args).await
}

#[cfg(all(test, feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_values_bound_null_written() {
        let mapping = TableMapping::from_static("payments", "id", "state", "version");
        let id = EntityId::from("p-1");
        let columns = vec![
            ("amount".to_owned(), ColumnValue::Int(1250)),
            ("note".to_owned(), ColumnValue::Null),
            ("meta".to_owned(), ColumnValue::Json(serde_json::json!({"a": 1}))),
        ];
        let json = [None, None, Some(r#"{"a":1}"#.to_owned())];
        let (pg, args) = statement::<sqlx::Postgres>(&mapping, None, &id, "created", &columns, &json);
        assert_eq!(
            pg,
            r#"INSERT INTO "payments" ("id", "state", "version", "amount", "note", "meta") VALUES ($1, $2, 0, $3, NULL, $4) ON CONFLICT ("id") DO NOTHING"#
        );
        assert!(matches!(args[..], [Arg::Text("p-1"), Arg::Text("created"), Arg::Int(1250), Arg::Json(r#"{"a":1}"#)]));
        let (my, _) = statement::<sqlx::MySql>(&mapping, None, &id, "created", &columns, &json);
        assert_eq!(
            my,
            "INSERT INTO `payments` (`id`, `state`, `version`, `amount`, `note`, `meta`) VALUES (?, ?, 0, ?, NULL, ?)"
        );
        let (lite, _) = statement::<sqlx::Sqlite>(&mapping, None, &id, "created", &columns, &json);
        assert!(lite.ends_with("ON CONFLICT (`id`) DO NOTHING"), "{lite}");
        let (uuid, _) = statement::<sqlx::Postgres>(&mapping, Some("uuid"), &id, "created", &columns, &json);
        assert!(uuid.contains("VALUES (CAST($1 AS uuid), $2, 0, $3"), "{uuid}");
    }
}
