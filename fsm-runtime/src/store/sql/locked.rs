//! [`SqlLocked`]: one entity held by `SELECT … FOR UPDATE` (or `BEGIN IMMEDIATE` on SQLite).

use crate::clock::now_micros;
use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outcome::{Outcome, Snapshot};
use crate::sql::entity::{AuditRow, HistoryRow};
use crate::sql::{Backend, SqlTx};
use crate::store::keyed::already_applied;
use crate::store::locked::LockedEntity;
use crate::store::plan::{Decision, Plan};
use crate::store::sql::SqlStore;
use crate::store::traced;

/// An entity locked in an open SQL transaction; see [`LockedEntity`].
pub struct SqlLocked<M: StateMachine, B: Backend> {
    store: SqlStore<M, B>,
    tx: SqlTx<B>,
    id: EntityId,
    /// The id as the table stores it, which the history rows are written under.
    stored: String,
    snapshot: Snapshot<M>,
}

impl<M: StateMachine, B: Backend> std::fmt::Debug for SqlLocked<M, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLocked").field("id", &self.id).field("snapshot", &self.snapshot).finish_non_exhaustive()
    }
}

impl<M: StateMachine, B: Backend> SqlLocked<M, B> {
    pub(crate) fn new(
        store: SqlStore<M, B>,
        tx: SqlTx<B>,
        id: EntityId,
        stored: EntityId,
        snapshot: Snapshot<M>,
    ) -> Self {
        Self { store, tx, id, stored: stored.to_string(), snapshot }
    }
}

impl<M: StateMachine, B: Backend> LockedEntity<M> for SqlLocked<M, B> {
    type Tx = SqlTx<B>;

    fn id(&self) -> &EntityId {
        &self.id
    }

    fn snapshot(&self) -> Snapshot<M> {
        self.snapshot
    }

    fn tx(&mut self) -> &mut SqlTx<B> {
        &mut self.tx
    }

    async fn transition(&mut self, to: M) -> Result<Outcome<M>, Error> {
        let traced = traced::locked(B::NAME, &self.id, to);
        traced.transition(self.write(to)).await
    }

    async fn commit(mut self) -> Result<(), Error> {
        let committed = self.tx.finish_commit().await;
        committed.map_err(|e| self.store.db(e))
    }
}

impl<M: StateMachine, B: Backend> SqlLocked<M, B> {
    /// The compare-and-set and the history row of a transition to `to` in the lock's
    /// transaction.
    async fn write(&mut self, to: M) -> Result<Outcome<M>, Error> {
        let plan = Plan::to_target(&self.id, to, None);
        let Snapshot { state, version } = self.snapshot;
        let from = match plan.decide(state, version)? {
            Decision::AlreadyApplied { state, version } => return already_applied(&self.id, state, version),
            Decision::Apply { from } => from,
        };
        let entity = &self.store.entity;
        let matched = entity
            .cas::<B::Driver>(&mut *self.tx, &self.id, from.as_str(), to.as_str(), version)
            .await
            .map_err(|e| self.store.db(e))?;
        if matched != 1 {
            // The row is locked by this transaction: it cannot have moved. A count other than 1
            // means the table does not behave as a table with this primary key.
            return Err(Error::Database {
                machine: M::MACHINE,
                table: self.store.mapping.table.to_string(),
                retryable: false,
                source: format!("locked compare-and-set of `{}` matched {matched} rows", self.id).into(),
            });
        }
        let row = HistoryRow {
            table: &self.store.mapping.table,
            machine: M::MACHINE,
            entity: &self.stored,
            version: version + 1,
            from: from.as_str(),
            to: to.as_str(),
            event: None,
            at_micros: now_micros(),
            audit: AuditRow::default(),
        };
        entity.insert_history::<B::Driver>(&mut *self.tx, row).await.map_err(|e| self.store.db(e))?;
        self.snapshot = Snapshot { state: to, version: version + 1 };
        Ok(Outcome::Applied { from, to, version: version + 1 })
    }
}
