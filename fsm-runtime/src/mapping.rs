//! Where an entity lives: its table and columns, and the rules an SQL identifier must follow.

use std::borrow::Cow;

/// The longest identifier accepted: PostgreSQL's limit (63 bytes), which MySQL (64) and SQLite
/// also accept.
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// The table and columns an entity of a machine is stored in.
///
/// The derive fills it from `#[state_machine(table = "...", id = "...", column = "...",
/// version = "...")]` and checks each name at compile time; a store may override it at run time
/// with [`TableMapping::with_table`] and friends, which check again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    /// The entity table.
    pub table: Cow<'static, str>,
    /// The primary-key column.
    pub id: Cow<'static, str>,
    /// The column holding the state's stored name.
    pub state: Cow<'static, str>,
    /// The column holding the version, incremented by every applied transition.
    pub version: Cow<'static, str>,
}

/// An SQL identifier that is not `[A-Za-z_][A-Za-z0-9_]*` of at most 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid SQL identifier for the {role}: `{value}` (an identifier is a letter or `_` followed by \
     letters, digits or `_`, at most {MAX_IDENTIFIER_LEN} bytes)"
)]
pub struct InvalidIdentifier {
    /// What the identifier names: `table`, `id column`, `state column` or `version column`.
    pub role: &'static str,
    /// The rejected value.
    pub value: String,
}

/// Checks that `value` is a plain SQL identifier, safe to quote and splice into a statement.
///
/// ```
/// use fsm_runtime::mapping::is_valid_identifier;
/// assert!(is_valid_identifier("orders_v2"));
/// assert!(!is_valid_identifier("orders; DROP TABLE users"));
/// assert!(!is_valid_identifier("2fast"));
/// ```
pub const fn is_valid_identifier(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDENTIFIER_LEN {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let ok = b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit());
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

fn checked(role: &'static str, value: Cow<'static, str>) -> Result<Cow<'static, str>, InvalidIdentifier> {
    if is_valid_identifier(&value) { Ok(value) } else { Err(InvalidIdentifier { role, value: value.into_owned() }) }
}

impl TableMapping {
    /// A mapping from names known at compile time (what the derive emits).
    pub const fn from_static(
        table: &'static str,
        id: &'static str,
        state: &'static str,
        version: &'static str,
    ) -> Self {
        Self {
            table: Cow::Borrowed(table),
            id: Cow::Borrowed(id),
            state: Cow::Borrowed(state),
            version: Cow::Borrowed(version),
        }
    }

    /// Replaces the table name, checking it.
    pub fn with_table(mut self, table: impl Into<Cow<'static, str>>) -> Result<Self, InvalidIdentifier> {
        self.table = checked("table", table.into())?;
        Ok(self)
    }

    /// Replaces the primary-key column, checking it.
    pub fn with_id_column(mut self, id: impl Into<Cow<'static, str>>) -> Result<Self, InvalidIdentifier> {
        self.id = checked("id column", id.into())?;
        Ok(self)
    }

    /// Replaces the state column, checking it.
    pub fn with_state_column(mut self, state: impl Into<Cow<'static, str>>) -> Result<Self, InvalidIdentifier> {
        self.state = checked("state column", state.into())?;
        Ok(self)
    }

    /// Replaces the version column, checking it.
    pub fn with_version_column(mut self, version: impl Into<Cow<'static, str>>) -> Result<Self, InvalidIdentifier> {
        self.version = checked("version column", version.into())?;
        Ok(self)
    }

    /// Checks every name; stores call it when they are built, so that a bad name is reported
    /// then and never at the first query.
    pub fn validate(&self) -> Result<(), InvalidIdentifier> {
        for (role, value) in [
            ("table", &self.table),
            ("id column", &self.id),
            ("state column", &self.state),
            ("version column", &self.version),
        ] {
            if !is_valid_identifier(value) {
                return Err(InvalidIdentifier { role, value: value.to_string() });
            }
        }
        Ok(())
    }
}
