//! [`ColumnValue`]: a value of one of the entity table's own columns, written by
//! [`Store::create_with`](crate::Store::create_with).

/// A value for one of the entity table's own columns (see [`NewEntity`](crate::store::NewEntity)).
///
/// On SQL it is a bound parameter of its own SQL type (`NULL` is written as the keyword): a
/// `BIGINT`, a `BOOLEAN` (`TINYINT(1)` on MySQL, an integer on SQLite), a `DOUBLE PRECISION`, a
/// text, a binary string (`BYTEA` / `VARBINARY` / `BLOB`) or JSON (`jsonb` on PostgreSQL, which
/// a `json`, `jsonb` or text column takes; its text on MySQL and SQLite). The column's type must
/// accept it: PostgreSQL converts a bound text to no other type than text types, so give a
/// `uuid` or a timestamp column of PostgreSQL its value in your own statement.
///
/// ```
/// use fsm_runtime::store::ColumnValue;
///
/// assert_eq!(ColumnValue::from(1250_i64), ColumnValue::Int(1250));
/// assert_eq!(ColumnValue::from("EUR"), ColumnValue::Text("EUR".to_owned()));
/// assert_eq!(ColumnValue::from(None::<i64>), ColumnValue::Null);
/// assert_eq!(ColumnValue::from(serde_json::json!({"a": 1})), ColumnValue::Json(serde_json::json!({"a": 1})));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double-precision float.
    Float(f64),
    /// A text.
    Text(String),
    /// A binary string.
    Bytes(Vec<u8>),
    /// A JSON document.
    Json(serde_json::Value),
}

impl From<bool> for ColumnValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<i64> for ColumnValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<i32> for ColumnValue {
    fn from(value: i32) -> Self {
        Self::Int(i64::from(value))
    }
}

impl From<u32> for ColumnValue {
    fn from(value: u32) -> Self {
        Self::Int(i64::from(value))
    }
}

impl From<f64> for ColumnValue {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl From<&str> for ColumnValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for ColumnValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Vec<u8>> for ColumnValue {
    fn from(value: Vec<u8>) -> Self {
        Self::Bytes(value)
    }
}

impl From<&[u8]> for ColumnValue {
    fn from(value: &[u8]) -> Self {
        Self::Bytes(value.to_vec())
    }
}

impl From<serde_json::Value> for ColumnValue {
    fn from(value: serde_json::Value) -> Self {
        Self::Json(value)
    }
}

impl<T: Into<ColumnValue>> From<Option<T>> for ColumnValue {
    /// The value, or [`ColumnValue::Null`] for `None`.
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}
