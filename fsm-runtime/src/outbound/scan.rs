//! [`InFlightScan`] for the stores: the rows each store reads, as [`StuckEntity`]s.

use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outbound::recovery::{InFlightScan, StuckEntity};
use crate::store::MemoryStore;

/// The stored names of `M`'s in-flight states.
fn in_flight_names<M: StateMachine>() -> Vec<&'static str> {
    M::IN_FLIGHT.iter().map(|state| state.as_str()).collect()
}

/// A row a scan read, as an entity of `M` (a state no in-flight state maps to is skipped: the
/// scan asked for in-flight states only).
fn stuck<M: StateMachine>(id: EntityId, state: &str, version: i64, entered: Option<i64>) -> Option<StuckEntity<M>> {
    let state = M::from_stored(state).ok()?;
    Some(StuckEntity { id, state, version, entered_at_micros: entered })
}

impl<M: StateMachine> InFlightScan<M> for MemoryStore<M> {
    async fn in_flight(&self, entered_before_micros: i64, limit: usize) -> Result<Vec<StuckEntity<M>>, Error> {
        let rows = self.in_states(&in_flight_names::<M>(), entered_before_micros, limit).await;
        Ok(rows.into_iter().filter_map(|(id, state, version, at)| stuck(id, &state, version, at)).collect())
    }
}

#[cfg(feature = "_sql")]
impl<M: StateMachine, B: crate::sql::Backend> InFlightScan<M> for crate::store::SqlStore<M, B> {
    async fn in_flight(&self, entered_before_micros: i64, limit: usize) -> Result<Vec<StuckEntity<M>>, Error> {
        let rows = self.in_states(&in_flight_names::<M>(), entered_before_micros, limit).await?;
        let found =
            rows.into_iter().filter_map(|(id, state, version, at)| stuck(EntityId::from(id), &state, version, at));
        Ok(found.collect())
    }
}
