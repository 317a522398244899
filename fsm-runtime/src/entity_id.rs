//! The primary key of an entity.

use std::fmt;

/// The primary key of an entity: an integer or a text key, bound as a parameter of that type.
///
/// ```
/// use fsm_runtime::store::EntityId;
/// assert_eq!(EntityId::from(42), EntityId::Int(42));
/// assert_eq!(EntityId::from("ord-7").to_string(), "ord-7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityId {
    /// An integer key (`BIGINT`).
    Int(i64),
    /// A text key (`TEXT` / `VARCHAR`).
    Text(String),
}

impl EntityId {
    /// The same entity under the id as its table stores it (`stored`, read back as text): a
    /// text id takes the stored spelling (which a case-insensitive or padding collation, or a
    /// `uuid` column, may write differently from the caller's), an integer id stays.
    #[cfg(feature = "_sql")]
    pub(crate) fn as_stored(&self, stored: String) -> Self {
        match self {
            Self::Int(id) => Self::Int(*id),
            Self::Text(_) => Self::Text(stored),
        }
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(id) => write!(f, "{id}"),
            Self::Text(id) => f.write_str(id),
        }
    }
}

impl From<i64> for EntityId {
    fn from(id: i64) -> Self {
        Self::Int(id)
    }
}

impl From<i32> for EntityId {
    fn from(id: i32) -> Self {
        Self::Int(i64::from(id))
    }
}

impl From<u32> for EntityId {
    fn from(id: u32) -> Self {
        Self::Int(i64::from(id))
    }
}

impl From<String> for EntityId {
    fn from(id: String) -> Self {
        Self::Text(id)
    }
}

impl From<&str> for EntityId {
    fn from(id: &str) -> Self {
        Self::Text(id.to_owned())
    }
}

impl From<&EntityId> for EntityId {
    fn from(id: &EntityId) -> Self {
        id.clone()
    }
}
