//! The one typed argument list every statement takes ([`Arg`]) and the rows every query gives
//! back ([`Row`]), so that the statements are plain generic functions over the backends'
//! two primitives, `execute` and `fetch`.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::entity_id::EntityId;

/// A value bound to a statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// A `BIGINT`.
    Int(i64),
    /// A nullable `BIGINT`.
    OptInt(Option<i64>),
    /// A text value.
    Text(&'a str),
    /// An integer bound as text: an integer id where ids of both kinds are bound as text
    /// ([`Driver::id_binding`](crate::sql::backend::private::Driver::id_binding)).
    IntAsText(i64),
    /// A nullable text value.
    OptText(Option<&'a str>),
    /// A list of texts: a `text[]` on PostgreSQL, a JSON array where the database has no arrays.
    Texts(&'a [&'static str]),
    /// A boolean.
    Bool(bool),
    /// A `DOUBLE PRECISION`.
    Float(f64),
    /// A binary string.
    Bytes(&'a [u8]),
    /// A JSON document as its text: `jsonb` on PostgreSQL, a text elsewhere.
    Json(&'a str),
    /// One value per item of a batch: an array on PostgreSQL (`text[]`, `bigint[]`), a JSON
    /// array where the database has no arrays.
    Column(&'a Column),
}

/// The values of one parameter for every item of a batch, `NULL`s included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// Texts: a `text[]` on PostgreSQL.
    Texts(Vec<Option<String>>),
    /// Integers: a `bigint[]` on PostgreSQL.
    Ints(Vec<Option<i64>>),
}

impl Column {
    /// The column as a JSON array (`null` for a `NULL`).
    pub(crate) fn to_json(&self) -> Result<String, sqlx::Error> {
        let json = match self {
            Self::Texts(values) => serde_json::to_string(values),
            Self::Ints(values) => serde_json::to_string(values),
        };
        json.map_err(|e| sqlx::Error::Encode(Box::new(e)))
    }
}

impl<'a> From<&'a EntityId> for Arg<'a> {
    /// An entity id as the SQL type of its variant.
    fn from(id: &'a EntityId) -> Self {
        match id {
            EntityId::Int(id) => Self::Int(*id),
            EntityId::Text(id) => Self::Text(id),
        }
    }
}

/// Statement text shared by the store that built it (an `Arc`, so binding it costs no copy).
pub(crate) fn shared(sql: &Arc<str>) -> SqlStr {
    AssertSqlSafe(sql.clone()).into_sql_str()
}

/// Statement text fixed at compile time.
pub(crate) fn fixed(sql: &'static str) -> SqlStr {
    sql.into_sql_str()
}

/// Statement text built for one call.
pub(crate) fn owned(sql: String) -> SqlStr {
    AssertSqlSafe(sql).into_sql_str()
}

/// A query of database `DB` with its arguments.
pub(crate) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// How a database binds an [`Arg::Texts`].
pub(crate) type BindTexts<'q, 'a, DB> = fn(Query<'q, DB>, &'a [&'static str]) -> Result<Query<'q, DB>, sqlx::Error>;

/// How a database binds an [`Arg::Json`].
pub(crate) type BindJson<'q, 'a, DB> = fn(Query<'q, DB>, &'a str) -> Query<'q, DB>;

/// How a database binds an [`Arg::Column`].
pub(crate) type BindColumn<'q, 'a, DB> = fn(Query<'q, DB>, &'a Column) -> Result<Query<'q, DB>, sqlx::Error>;

/// How a database binds the arguments that differ between databases.
pub(crate) struct Binders<'q, 'a, DB: sqlx::Database> {
    /// Binds an [`Arg::Texts`] the way the database takes a list.
    pub(crate) texts: BindTexts<'q, 'a, DB>,
    /// Binds an [`Arg::Json`] the way the database takes JSON.
    pub(crate) json: BindJson<'q, 'a, DB>,
    /// Binds an [`Arg::Column`] the way the database takes one value per item.
    pub(crate) column: BindColumn<'q, 'a, DB>,
}

/// Binds `args` in order, the lists and JSON documents with the database's `binders`.
pub(crate) fn bind<'q, 'a, DB>(
    mut query: Query<'q, DB>,
    args: &[Arg<'a>],
    binders: Binders<'q, 'a, DB>,
) -> Result<Query<'q, DB>, sqlx::Error>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    for arg in args {
        query = match *arg {
            Arg::Int(value) => query.bind(value),
            Arg::OptInt(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::IntAsText(value) => query.bind(value.to_string()),
            Arg::OptText(value) => query.bind(value),
            Arg::Texts(values) => (binders.texts)(query, values)?,
            Arg::Bool(value) => query.bind(value),
            Arg::Float(value) => query.bind(value),
            Arg::Bytes(value) => query.bind(value),
            Arg::Json(value) => (binders.json)(query, value),
            Arg::Column(values) => (binders.column)(query, values)?,
        };
    }
    Ok(query)
}

/// Binds a JSON document as its text (MySQL's `JSON` and SQLite take text).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn json_as_text<'q, 'a, DB>(query: Query<'q, DB>, value: &'a str) -> Query<'q, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.bind(value)
}

/// Binds a list of texts as a JSON array (SQLite's `json_each`, MySQL's `JSON_CONTAINS`).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn texts_as_json<'q, DB>(query: Query<'q, DB>, values: &[&'static str]) -> Result<Query<'q, DB>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let json = serde_json::to_string(values).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(query.bind(json))
}

/// Binds a batch's column as a JSON array (SQLite's `json_each`, MySQL's `JSON_TABLE`).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn column_as_json<'q, DB>(query: Query<'q, DB>, values: &Column) -> Result<Query<'q, DB>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    Ok(query.bind(values.to_json()?))
}

/// One value of a row as the runtime reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer (or a boolean, as 0 and 1).
    Int(i64),
    /// A text.
    Text(String),
}

/// A row of a query's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(Vec<Value>);

impl Row {
    /// Reads every column of a driver's row: an integer, a boolean or a text (nullable).
    pub(crate) fn read<R>(row: &R) -> Result<Self, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        (0..row.len()).map(|index| Self::column(row, index)).collect::<Result<Vec<_>, _>>().map(Self)
    }

    fn column<R>(row: &R, index: usize) -> Result<Value, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        if let Ok(value) = row.try_get::<Option<i64>, _>(index) {
            return Ok(value.map_or(Value::Null, Value::Int));
        }
        if let Ok(value) = row.try_get::<Option<String>, _>(index) {
            return Ok(value.map_or(Value::Null, Value::Text));
        }
        let value = row.try_get::<Option<bool>, _>(index)?;
        Ok(value.map_or(Value::Null, |flag| Value::Int(i64::from(flag))))
    }

    /// A row of these values (tests).
    #[cfg(test)]
    pub(crate) fn of(values: Vec<Value>) -> Self {
        Self(values)
    }

    fn at(&self, index: usize) -> Result<&Value, sqlx::Error> {
        self.0.get(index).ok_or_else(|| sqlx::Error::ColumnIndexOutOfBounds { index, len: self.0.len() })
    }

    fn mismatch(&self, index: usize, expected: &str) -> sqlx::Error {
        sqlx::Error::ColumnDecode {
            index: index.to_string(),
            source: format!("expected {expected}, found {:?}", self.0.get(index)).into(),
        }
    }

    /// Column `index` as an integer, or `None` for `NULL`.
    pub(crate) fn opt_int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(*value)),
            Value::Text(_) => Err(self.mismatch(index, "an integer")),
        }
    }

    /// Column `index` as text, or `None` for `NULL`.
    pub(crate) fn opt_text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Text(value) => Ok(Some(value.clone())),
            Value::Int(_) => Err(self.mismatch(index, "a text")),
        }
    }

    /// Column `index` as an integer that is not `NULL`.
    pub(crate) fn int(&self, index: usize) -> Result<i64, sqlx::Error> {
        self.opt_int(index)?.ok_or_else(|| self.mismatch(index, "an integer"))
    }

    /// Column `index` as a text that is not `NULL`.
    pub(crate) fn text(&self, index: usize) -> Result<String, sqlx::Error> {
        self.opt_text(index)?.ok_or_else(|| self.mismatch(index, "a text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_answers_typed_columns_and_names_a_mismatch() {
        let row = Row::of(vec![Value::Int(1), Value::Text("paid".into()), Value::Null]);
        assert_eq!(row.int(0).ok(), Some(1));
        assert_eq!(row.text(1).ok().as_deref(), Some("paid"));
        assert_eq!(row.opt_int(2).ok(), Some(None));
        assert!(row.int(2).is_err());
        assert!(row.text(0).unwrap_err().to_string().contains("expected a text"));
        assert!(matches!(row.int(3), Err(sqlx::Error::ColumnIndexOutOfBounds { index: 3, len: 3 })));
    }

    #[test]
    fn ids_bind_as_their_sql_type() {
        assert!(matches!(Arg::from(&EntityId::Int(7)), Arg::Int(7)));
        assert!(matches!(Arg::from(&EntityId::Text("a".into())), Arg::Text("a")));
    }
}
