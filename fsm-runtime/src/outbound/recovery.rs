//! [`Recovery`]: the worker that finds the entities that stayed in an in-flight state longer
//! than a timeout (their process died mid-call, or the call had no answer) and makes their
//! calls again, with the same keys.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::micros_before_now;
use crate::entity_id::EntityId;
use crate::error::Error;
use crate::lock::LeaseStore;
use crate::machine::StateMachine;
use crate::outbound::call::OutboundCall;
use crate::outbound::step::{Outbound, StepOutcome};
use crate::store::Store;
use crate::worker::run_passes;

/// An entity in an in-flight state, as a scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckEntity<M> {
    /// The entity, as the store stores its id.
    pub id: EntityId,
    /// Its in-flight state.
    pub state: M,
    /// Its version.
    pub version: i64,
    /// When it entered the state (microseconds since the Unix epoch, by the clock of the
    /// process that moved it); `None` when no history row says (created in that state).
    pub entered_at_micros: Option<i64>,
}

/// A store that can list the entities in an in-flight state of `M` (`M::IN_FLIGHT`) that
/// entered it before a time: [`MemoryStore`](crate::MemoryStore) and the SQL stores. On SQL
/// it reads the entity table by its state column (an index on it keeps the scan short) with
/// the history row of each entity's version.
pub trait InFlightScan<M: StateMachine>: Send + Sync {
    /// Up to `limit` entities in an in-flight state since before `entered_before_micros`,
    /// oldest first.
    fn in_flight(
        &self,
        entered_before_micros: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StuckEntity<M>>, Error>> + Send;
}

/// What one pass of the [`Recovery`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Calls answered and recorded (or found recorded).
    pub settled: usize,
    /// Calls made again without a definite answer: still in flight.
    pub still_in_flight: usize,
    /// Entities whose call another process was making.
    pub busy: usize,
    /// Steps that failed (logged): their entities stay for the next pass.
    pub errors: usize,
}

/// The recovery worker of an [`Outbound`]: each pass lists the entities in flight for longer
/// than `after` and resumes each ([`Outbound::resume`]: the call again with its key, under the
/// entity's claim). Several processes may run it at once: the claims keep two calls of one
/// entity apart.
#[derive(Debug)]
pub struct Recovery<M, S, L, C> {
    outbound: Arc<Outbound<M, S, L, C>>,
    after: Duration,
    batch: usize,
}

impl<M, S, L, C> Recovery<M, S, L, C>
where
    M: StateMachine,
    S: Store<M> + InFlightScan<M>,
    L: LeaseStore,
    C: OutboundCall<M, S::Tx>,
{
    /// The recovery of `outbound`'s entities in flight for longer than `after` (longer than a
    /// call takes, so that it does not race the request that is making it), 100 a pass.
    pub fn new(outbound: Arc<Outbound<M, S, L, C>>, after: Duration) -> Self {
        Self { outbound, after, batch: 100 }
    }

    /// How many entities one pass lists.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// One pass.
    pub async fn run_once(&self) -> Result<RecoveryReport, Error> {
        let mut report = RecoveryReport::default();
        let stuck = self.outbound.store().in_flight(micros_before_now(self.after), self.batch).await?;
        for entity in stuck {
            match self.outbound.resume(entity.id.clone()).await {
                Ok(StepOutcome::Settled { .. }) => report.settled += 1,
                Ok(StepOutcome::InFlight { .. }) => report.still_in_flight += 1,
                Ok(StepOutcome::Busy { .. }) => report.busy += 1,
                Err(error) => {
                    tracing::warn!(machine = M::MACHINE, entity = %entity.id, %error, "recovery of an outside call failed");
                    report.errors += 1;
                }
            }
        }
        Ok(report)
    }

    /// Runs passes until `shutdown` completes, sleeping `idle` after a pass that settled
    /// nothing.
    pub async fn run(&self, idle: Duration, shutdown: impl Future<Output = ()>) {
        run_passes(idle, shutdown, || async {
            match self.run_once().await {
                Ok(report) => report.settled > 0 && report.errors == 0,
                Err(error) => {
                    tracing::warn!(machine = M::MACHINE, %error, "recovery pass failed");
                    false
                }
            }
        })
        .await;
    }
}
