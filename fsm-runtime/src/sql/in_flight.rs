//! The read of the entities in some states, with when each entered its state: the recovery
//! of outside calls lists the entities stuck in an in-flight state with it.

use crate::mapping::TableMapping;
use crate::sql::backend::private::Driver;
use crate::sql::value::{Arg, Row, owned};

/// An entity the read found: its id as the table stores it, its state and version, and the
/// time of the history row of its version (`None`: no such row, an entity created in it).
pub(crate) type InState = (String, String, i64, Option<i64>);

/// Up to `limit` entities of `mapping` (machine `machine`) in one of `states` that entered it
/// before `before_micros` (or have no history row of their version), oldest first.
pub(crate) async fn in_states<B: Driver>(
    conn: &mut B::Connection,
    mapping: &TableMapping,
    machine: &str,
    states: &[&str],
    before_micros: i64,
    limit: usize,
) -> Result<Vec<InState>, sqlx::Error> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![Arg::Text(&mapping.table), Arg::Text(machine)];
    args.extend(states.iter().map(|state| Arg::Text(state)));
    args.push(Arg::Int(before_micros));
    let rows = B::fetch(conn, owned(statement::<B>(mapping, states.len(), limit)), &args).await?;
    rows.iter().map(read).collect()
}

/// The statement: the entity table joined to the history row of each entity's version. Its
/// parameters come in the order they appear (MySQL and SQLite bind by position): the table,
/// the machine, the states, the time.
fn statement<B: Driver>(mapping: &TableMapping, states: usize, limit: usize) -> String {
    let q = B::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let entity = B::id_text(&format!("t.{id}"));
    let listed: Vec<String> = (3..3 + states).map(B::param).collect();
    format!(
        "SELECT {entity}, t.{state}, t.{version}, h.at_micros FROM {table} t \
         LEFT JOIN fsm_history h ON h.entity_table = {} AND h.machine = {} AND h.entity_id = {entity} \
         AND h.deleted_at_micros = 0 AND h.version = t.{version} \
         WHERE t.{state} IN ({}) AND (h.at_micros IS NULL OR h.at_micros < {}) \
         ORDER BY h.at_micros LIMIT {limit}",
        B::param(1),
        B::param(2),
        listed.join(", "),
        B::param(3 + states),
    )
}

fn read(row: &Row) -> Result<InState, sqlx::Error> {
    Ok((row.text(0)?, row.text(1)?, row.int(2)?, row.opt_int(3)?))
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn parameters_come_in_the_order_they_appear() {
        let sql = statement::<sqlx::Postgres>(&TableMapping::from_static("payments", "id", "state", "version"), 2, 10);
        let positions: Vec<usize> = ["$1", "$2", "$3", "$4", "$5"].iter().map(|p| sql.find(p).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{sql}");
        assert!(sql.ends_with("ORDER BY h.at_micros LIMIT 10"));
    }
}
