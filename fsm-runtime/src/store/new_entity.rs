//! [`NewEntity`]: an entity to insert with its own columns, by
//! [`Store::create_with`](crate::Store::create_with).

use crate::column_problem::ColumnProblem;
use crate::column_value::ColumnValue;
use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::mapping::{TableMapping, is_valid_identifier};

/// An entity to insert together with its own business columns, in one statement: the id, the
/// state (the machine's initial state unless [`NewEntity::state`] says otherwise), and
/// column/value pairs. The store writes the id, the state and version 0 itself; see
/// [`Store::create_with`](crate::Store::create_with).
///
/// ```
/// use fsm_runtime::store::{ColumnValue, NewEntity};
/// use fsm_runtime::StateMachine;
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// enum Invoice {
///     #[state(initial)]
///     Open,
///     #[transition(from = Open)]
///     Paid,
/// }
///
/// let invoice = NewEntity::<Invoice>::new("inv-1").column("amount", 1250_i64).column("currency", "EUR");
/// assert_eq!(invoice.state_value(), Invoice::Open);
/// assert_eq!(invoice.columns()[1], ("currency".to_owned(), ColumnValue::Text("EUR".to_owned())));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntity<M> {
    id: EntityId,
    state: M,
    columns: Vec<(String, ColumnValue)>,
}

impl<M: StateMachine> NewEntity<M> {
    /// The entity `id` in the machine's initial state, with no columns yet.
    pub fn new(id: impl Into<EntityId>) -> Self {
        Self { id: id.into(), state: M::initial(), columns: Vec::new() }
    }

    /// Inserts the entity in `state` instead of the initial state (an import, a test).
    #[must_use]
    pub fn state(mut self, state: M) -> Self {
        self.state = state;
        self
    }

    /// Adds the value of column `name`. The name is checked by the store, before anything is
    /// sent: an invalid identifier, the id, state or version column, or a name given twice is
    /// an [`Error::InvalidColumn`].
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, value: impl Into<ColumnValue>) -> Self {
        self.columns.push((name.into(), value.into()));
        self
    }

    /// The entity's id.
    pub fn id(&self) -> &EntityId {
        &self.id
    }

    /// The state it is inserted in.
    pub fn state_value(&self) -> M {
        self.state
    }

    /// The columns and their values, in the order given.
    pub fn columns(&self) -> &[(String, ColumnValue)] {
        &self.columns
    }

    /// The id, the state and the columns.
    pub(crate) fn into_parts(self) -> (EntityId, M, Vec<(String, ColumnValue)>) {
        (self.id, self.state, self.columns)
    }

    /// Checks every column name against `mapping`: the first refused one is the error.
    pub(crate) fn check(&self, mapping: &TableMapping) -> Result<(), Error> {
        for (index, (name, _)) in self.columns.iter().enumerate() {
            if let Some(problem) = self.problem_of(index, name, mapping) {
                return Err(Error::InvalidColumn {
                    machine: M::MACHINE,
                    table: mapping.table.to_string(),
                    column: name.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }

    /// What is wrong with column `name`, the `index`th given, if anything.
    fn problem_of(&self, index: usize, name: &str, mapping: &TableMapping) -> Option<ColumnProblem> {
        if !is_valid_identifier(name) {
            return Some(ColumnProblem::InvalidIdentifier);
        }
        let reserved =
            [("id column", &mapping.id), ("state column", &mapping.state), ("version column", &mapping.version)];
        if let Some((role, _)) = reserved.iter().find(|(_, column)| column.eq_ignore_ascii_case(name)) {
            return Some(ColumnProblem::Reserved(role));
        }
        let earlier = self.columns.get(..index).unwrap_or_default();
        earlier.iter().any(|(other, _)| other.eq_ignore_ascii_case(name)).then_some(ColumnProblem::Duplicate)
    }
}
