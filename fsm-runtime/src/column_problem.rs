//! [`ColumnProblem`]: why a column given to [`Store::create_with`](crate::Store::create_with) was
//! refused.

/// Why a column of a [`NewEntity`](crate::store::NewEntity) was refused (see [`Error::InvalidColumn`](crate::Error::InvalidColumn)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ColumnProblem {
    /// The name is not a plain SQL identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes).
    #[error(
        "it is not a valid SQL identifier (a letter or `_` followed by letters, digits or `_`, at most {} bytes)",
        crate::mapping::MAX_IDENTIFIER_LEN
    )]
    InvalidIdentifier,
    /// The column is the mapping's id, state or version column, which the store writes.
    #[error("it is the {0}, which the store writes itself")]
    Reserved(&'static str),
    /// The column is given twice.
    #[error("it is given more than once")]
    Duplicate,
}
