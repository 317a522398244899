//! [`Transition`]: the transition an effect runs in, as every store shows it to its effects.

use crate::entity_id::EntityId;

/// The transition an effect runs with, from the effect's transaction
/// ([`MemoryTx::transition`](crate::store::MemoryTx::transition),
/// [`SqlTx::transition`](crate::sql::SqlTx::transition)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The machine.
    pub machine: &'static str,
    /// The entity.
    pub id: EntityId,
    /// The stored name of the state being left.
    pub from: &'static str,
    /// The stored name of the target.
    pub to: &'static str,
    /// The version the transition will produce.
    pub version: i64,
}
