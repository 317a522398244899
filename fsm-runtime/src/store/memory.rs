//! [`MemoryStore`]: the in-memory adapter, for tests, prototypes and single-process use.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use crate::clock::{micros_before_now, now_micros};
use crate::entity_id::EntityId;
use crate::error::Error;
use crate::keys::MemoryKeys;
use crate::keys::memory::StoredKey;
use crate::machine::StateMachine;
use crate::memory_tx::MemoryTx;
use crate::outbox::MemoryOutbox;
use crate::outcome::{CreateOutcome, DeleteOutcome, HistoryEntry, Outcome, Snapshot};
use crate::store::keyed::{already_applied, encode_applied, replayed_transition};
use crate::store::plan::{AfterRead, Decision, Plan, Resolution, not_found, parse_state};
use crate::store::request::Audit;
use crate::store::traced;
use crate::store::{ColumnValue, Effect, LockedEntity, NewEntity, Store, Target, TransitionRequest};
use crate::telemetry::{Operation, Reported};
use crate::transition::Transition;

/// The store's name in the spans of its operations.
const STORE: &str = "memory";

/// One stored entity. The state is kept as its stored name, like an SQL row, so that a corrupted
/// value behaves as it would in a database.
#[derive(Debug)]
struct Row {
    state: String,
    version: i64,
    /// The entity's own columns, as given to [`Store::create_with`].
    columns: Vec<(String, ColumnValue)>,
    history: Vec<HistoryRecord>,
}

/// A history row, with its audit columns.
#[derive(Debug, Clone)]
struct HistoryRecord {
    version: i64,
    from: String,
    to: String,
    event: Option<&'static str>,
    at_micros: i64,
    audit: Audit,
    key: Option<String>,
}

impl HistoryRecord {
    /// The record as an entry; `deleted_at_micros` for a deleted life of the id.
    fn entry<M: StateMachine>(
        &self,
        id: &EntityId,
        table: &str,
        deleted_at_micros: Option<i64>,
    ) -> Result<HistoryEntry<M>, Error> {
        Ok(HistoryEntry {
            version: self.version,
            from: parse_state::<M>(id, table, &self.from)?,
            to: parse_state::<M>(id, table, &self.to)?,
            event: self.event.map(str::to_owned),
            at_micros: self.at_micros,
            actor: self.audit.actor.clone(),
            reason: self.audit.reason.clone(),
            idempotency_key: self.key.clone(),
            metadata: self.audit.metadata.clone(),
            deleted_at_micros,
        })
    }
}

mod batch;

/// The histories of deleted entities, by id: when each life ended, and its history.
type Retired = HashMap<EntityId, Vec<(i64, Vec<HistoryRecord>)>>;

type Slot = Arc<tokio::sync::Mutex<Option<Row>>>;

/// An in-memory [`Store`] with the same semantics as the SQL adapters.
///
/// Clones share the same data (entities, idempotency keys, outbox), as clones of an
/// [`SqlStore`](crate::store::SqlStore) share its pool and database: hand a clone to each task.
///
/// Each entity has its own async lock, held across the decision, the effects and the write, so
/// racing tasks are serialised per entity and exactly one of them gets [`Outcome::Applied`].
///
/// ```
/// use fsm_runtime::{MemoryStore, Outcome, StateMachine, Store};
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// enum Invoice {
///     #[state(initial)]
///     Open,
///     #[transition(from = Open)]
///     Paid,
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::<Invoice>::new();
/// store.create(1).await?;
/// assert!(store.transition(1, Invoice::Paid).await?.is_applied());
/// assert!(matches!(
///     store.transition(1, Invoice::Paid).await?,
///     Outcome::AlreadyApplied { state: Invoice::Paid, version: 1 }
/// ));
/// # Ok::<(), fsm_runtime::Error>(())
/// # }).unwrap();
/// ```
pub struct MemoryStore<M> {
    rows: Arc<Mutex<HashMap<EntityId, Slot>>>,
    /// The histories that [`Store::delete`] keeps.
    retired: Arc<Mutex<Retired>>,
    /// The keys and the outbox: the "database" this store may share with other machines'.
    keys: MemoryKeys,
    table: String,
    machine: PhantomData<fn() -> M>,
}

impl<M> Clone for MemoryStore<M> {
    /// Another handle on the same data.
    fn clone(&self) -> Self {
        Self {
            rows: self.rows.clone(),
            retired: self.retired.clone(),
            keys: self.keys.clone(),
            table: self.table.clone(),
            machine: PhantomData,
        }
    }
}

impl<M: StateMachine> Default for MemoryStore<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> std::fmt::Debug for MemoryStore<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("table", &self.table).finish_non_exhaustive()
    }
}

impl<M: StateMachine> MemoryStore<M> {
    /// An empty store; errors name the table of the machine's mapping.
    pub fn new() -> Self {
        Self::with_keys(MemoryKeys::new())
    }

    /// An empty store whose idempotency keys and outbox are `keys`: stores of several machines
    /// built on one [`MemoryKeys`] share them, as the machines of one SQL database share its
    /// tables (a key used by one machine is taken for all).
    pub fn with_keys(keys: MemoryKeys) -> Self {
        Self {
            rows: Arc::default(),
            retired: Arc::default(),
            keys,
            table: M::MAPPING.table.to_string(),
            machine: PhantomData,
        }
    }

    /// Stores a row as given, without any check: for tests of corrupted data and for imports.
    /// Replaces any existing row of that id and clears its history.
    pub fn put_raw(&self, id: impl Into<EntityId>, state: &str, version: i64) {
        let row = Row { state: state.to_owned(), version, columns: Vec::new(), history: Vec::new() };
        self.lock_rows().insert(id.into(), Arc::new(tokio::sync::Mutex::new(Some(row))));
    }

    /// The entity's own columns as given to [`Store::create_with`] (empty for an entity made
    /// by [`Store::create`]), or `None` when there is no such entity.
    ///
    /// ```
    /// # #[derive(fsm_runtime::StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Invoice {
    /// #     #[state(initial)]
    /// #     Open,
    /// #     #[transition(from = Open)]
    /// #     Paid,
    /// # }
    /// use fsm_runtime::store::{ColumnValue, NewEntity};
    /// use fsm_runtime::{MemoryStore, Store};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = MemoryStore::<Invoice>::new();
    /// store.create_with(NewEntity::new(1).column("amount", 1250_i64)).await?;
    /// assert_eq!(store.columns(1).await, Some(vec![("amount".to_owned(), ColumnValue::Int(1250))]));
    /// assert_eq!(store.columns(2).await, None);
    /// # Ok::<(), fsm_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn columns(&self, id: impl Into<EntityId>) -> Option<Vec<(String, ColumnValue)>> {
        let slot = self.slot(&id.into())?;
        let guard = slot.lock().await;
        guard.as_ref().map(|row| row.columns.clone())
    }

    /// Inserts a row of `state` at version 0 with `columns`, or reports the existing one.
    async fn insert(
        &self,
        id: EntityId,
        state: M,
        columns: Vec<(String, ColumnValue)>,
    ) -> Result<CreateOutcome<M>, Error> {
        loop {
            let existing = {
                let mut rows = self.lock_rows();
                match rows.get(&id) {
                    Some(slot) => slot.clone(),
                    None => {
                        let row = Row { state: state.as_str().to_owned(), version: 0, columns, history: Vec::new() };
                        rows.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(Some(row))));
                        return Ok(CreateOutcome::Created { state });
                    }
                }
            };
            let guard = existing.lock().await;
            if let Some(row) = guard.as_ref() {
                return Ok(CreateOutcome::AlreadyExists {
                    state: parse_state::<M>(&id, &self.table, &row.state)?,
                    version: row.version,
                });
            }
            // Deleted between the look-up and the lock: the delete won, so insert anew.
        }
    }

    fn lock_rows(&self) -> std::sync::MutexGuard<'_, HashMap<EntityId, Slot>> {
        // The map is only touched by short, non-panicking critical sections; a poisoned lock
        // still holds a consistent map.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store's outbox, for a [`Relay`](crate::outbox::Relay): messages enqueued by effects
    /// of applied transitions.
    pub fn outbox(&self) -> MemoryOutbox {
        self.keys.outbox()
    }

    fn lock_retired(&self) -> std::sync::MutexGuard<'_, Retired> {
        // As `lock_rows`: short critical sections that do not panic.
        self.retired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, id: &EntityId) -> Option<Slot> {
        self.lock_rows().get(id).cloned()
    }

    /// The entity's state and version, without a span.
    async fn read(&self, id: &EntityId) -> Result<Snapshot<M>, Error> {
        let slot = self.slot(id).ok_or_else(|| not_found::<M>(id, &self.table))?;
        let guard = slot.lock().await;
        let row = guard.as_ref().ok_or_else(|| not_found::<M>(id, &self.table))?;
        Ok(Snapshot { state: parse_state::<M>(id, &self.table, &row.state)?, version: row.version })
    }

    /// Removes the entity, keeping its history as a deleted life.
    async fn remove(&self, id: EntityId) -> Result<DeleteOutcome, Error> {
        let Some(slot) = self.lock_rows().remove(&id) else {
            return Ok(DeleteOutcome::AlreadyAbsent);
        };
        let mut guard = slot.lock().await;
        let Some(row) = guard.take() else {
            return Ok(DeleteOutcome::AlreadyAbsent);
        };
        if !row.history.is_empty() {
            self.lock_retired().entry(id).or_default().push((now_micros(), row.history));
        }
        Ok(DeleteOutcome::Deleted)
    }

    /// The live entity's history.
    async fn live_history(&self, id: &EntityId) -> Result<Vec<HistoryEntry<M>>, Error> {
        let Some(slot) = self.slot(id) else {
            return Ok(Vec::new());
        };
        let guard = slot.lock().await;
        let Some(row) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        row.history.iter().map(|record| record.entry(id, &self.table, None)).collect()
    }

    /// The histories of the deleted lives of the id, then the live entity's.
    async fn audit_trail(&self, id: &EntityId) -> Result<Vec<HistoryEntry<M>>, Error> {
        let mut entries = Vec::new();
        for (deleted_at, history) in self.lock_retired().get(id).into_iter().flatten() {
            for record in history {
                entries.push(record.entry(id, &self.table, Some(*deleted_at))?);
            }
        }
        entries.extend(self.live_history(id).await?);
        Ok(entries)
    }

    /// Up to `limit` entities in one of `states` since before `before_micros` (or without a
    /// history record of their version), oldest first: ids, states, versions and the times
    /// they entered them.
    pub(crate) async fn in_states(
        &self,
        states: &[&str],
        before_micros: i64,
        limit: usize,
    ) -> Vec<(EntityId, String, i64, Option<i64>)> {
        let slots: Vec<(EntityId, Slot)> =
            self.lock_rows().iter().map(|(id, slot)| (id.clone(), slot.clone())).collect();
        let mut found = Vec::new();
        for (id, slot) in slots {
            let guard = slot.lock().await;
            let Some(row) = guard.as_ref() else { continue };
            if !states.contains(&row.state.as_str()) {
                continue;
            }
            let entered = row.history.iter().rev().find(|record| record.version == row.version).map(|r| r.at_micros);
            if entered.is_none_or(|at| at < before_micros) {
                found.push((id, row.state.clone(), row.version, entered));
            }
        }
        found.sort_by_key(|(_, _, _, entered)| *entered);
        found.truncate(limit);
        found
    }

    async fn apply_unkeyed(
        &self,
        id: EntityId,
        target: Target<M>,
        expected_version: Option<i64>,
        effects: Vec<Effect<'_, MemoryTx>>,
        record: (Audit, Option<String>),
    ) -> Result<Outcome<M>, Error> {
        let plan = match Plan::resolve(&id, target, expected_version)? {
            Resolution::Ready(plan) => plan,
            Resolution::NeedsState { event } => {
                let current = self.read(&id).await?;
                match Plan::for_event_in_state(&id, event, current.state, current.version, expected_version)? {
                    AfterRead::Ready(plan) => plan,
                    AfterRead::AlreadyApplied(Snapshot { state, version }) => {
                        return already_applied(&id, state, version);
                    }
                }
            }
        };
        self.apply_plan(plan, effects, record).await
    }

    async fn apply_plan(
        &self,
        plan: Plan<M>,
        request_effects: Vec<Effect<'_, MemoryTx>>,
        record: (Audit, Option<String>),
    ) -> Result<Outcome<M>, Error> {
        let slot = self.slot(&plan.id).ok_or_else(|| not_found::<M>(&plan.id, &self.table))?;
        let mut guard = slot.lock().await;
        self.apply_to_row(plan, guard.as_mut(), request_effects, record).await
    }

    /// Decides `plan` on the entity's row (locked by the caller; `None`: no such entity) and
    /// applies it: the effects, the move, the history record.
    async fn apply_to_row(
        &self,
        plan: Plan<M>,
        row: Option<&mut Row>,
        request_effects: Vec<Effect<'_, MemoryTx>>,
        (audit, key): (Audit, Option<String>),
    ) -> Result<Outcome<M>, Error> {
        let id = plan.id.clone();
        let row = row.ok_or_else(|| not_found::<M>(&id, &self.table))?;
        let state = parse_state::<M>(&id, &self.table, &row.state)?;
        let from = match plan.decide(state, row.version)? {
            Decision::AlreadyApplied { state, version } => return already_applied(&id, state, version),
            Decision::Apply { from } => from,
        };
        let version = row.version + 1;
        let mut tx = MemoryTx {
            transition: Some(Transition {
                machine: M::MACHINE,
                id: id.clone(),
                from: from.as_str(),
                to: plan.target.as_str(),
                version,
            }),
            outbox: Vec::new(),
            timers: Vec::new(),
        };
        for effect in request_effects {
            effect.run(&mut tx).await.map_err(|source| Error::Effect {
                machine: M::MACHINE,
                id: id.clone(),
                from: from.as_str(),
                to: plan.target.as_str(),
                source,
            })?;
        }
        self.keys.outbox().append(tx.take_outbox());
        self.keys.timers().append(tx.take_timers());
        row.state = plan.target.as_str().to_owned();
        row.version = version;
        row.history.push(HistoryRecord {
            version,
            from: from.as_str().to_owned(),
            to: plan.target.as_str().to_owned(),
            event: plan.event_name(),
            at_micros: now_micros(),
            audit,
            key,
        });
        Ok(Outcome::Applied { from, to: plan.target, version })
    }
}

impl<M: StateMachine> Store<M> for MemoryStore<M> {
    type Tx = MemoryTx;
    type Lock = MemoryLocked<M>;
    type Keys = MemoryKeys;

    async fn create_in(&self, id: impl Into<EntityId> + Send, state: M) -> Result<CreateOutcome<M>, Error> {
        let id = id.into();
        traced::entity::<M>(STORE, Operation::Create, &id).run(self.insert(id.clone(), state, Vec::new())).await
    }

    async fn create_with(&self, entity: NewEntity<M>) -> Result<CreateOutcome<M>, Error> {
        let traced = traced::entity::<M>(STORE, Operation::Create, entity.id());
        traced
            .run(async move {
                entity.check(&M::MAPPING)?;
                let (id, state, columns) = entity.into_parts();
                self.insert(id, state, columns).await
            })
            .await
    }

    async fn get(&self, id: impl Into<EntityId> + Send) -> Result<Snapshot<M>, Error> {
        let id = id.into();
        traced::entity::<M>(STORE, Operation::Get, &id).run(self.read(&id)).await
    }

    async fn delete(&self, id: impl Into<EntityId> + Send) -> Result<DeleteOutcome, Error> {
        let id = id.into();
        traced::entity::<M>(STORE, Operation::Delete, &id).run(self.remove(id.clone())).await
    }

    async fn history(&self, id: impl Into<EntityId> + Send) -> Result<Vec<HistoryEntry<M>>, Error> {
        let id = id.into();
        traced::entity::<M>(STORE, Operation::History, &id).run(self.live_history(&id)).await
    }

    async fn audit(&self, id: impl Into<EntityId> + Send) -> Result<Vec<HistoryEntry<M>>, Error> {
        let id = id.into();
        traced::entity::<M>(STORE, Operation::History, &id).run(self.audit_trail(&id)).await
    }

    async fn purge_history(&self, id: impl Into<EntityId> + Send) -> Result<u64, Error> {
        let id = id.into();
        let retired = self.lock_retired().remove(&id).unwrap_or_default();
        let mut purged: usize = retired.iter().map(|(_, history)| history.len()).sum();
        if let Some(slot) = self.slot(&id)
            && let Some(row) = slot.lock().await.as_mut()
        {
            purged += std::mem::take(&mut row.history).len();
        }
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }

    async fn purge_deleted_history(&self, older_than: std::time::Duration) -> Result<u64, Error> {
        let before = micros_before_now(older_than);
        let mut purged = 0_usize;
        self.lock_retired().retain(|_, lives| {
            lives.retain(|(deleted_at, history)| {
                let expired = *deleted_at < before;
                purged += if expired { history.len() } else { 0 };
                !expired
            });
            !lives.is_empty()
        });
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }

    async fn apply<'a>(&'a self, request: TransitionRequest<'a, M, MemoryTx>) -> Result<Outcome<M>, Error> {
        traced::apply(STORE, &request, false).transition(self.apply_request(request)).await
    }

    /// Under the locks of every entity and key of the batch, taken once, in order (keys, then
    /// rows, each sorted: a batch never waits on another in a cycle).
    async fn apply_many<'a>(
        &'a self,
        requests: Vec<TransitionRequest<'a, M, MemoryTx>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        let spans: Vec<_> = requests.iter().map(|request| traced::apply(STORE, request, false)).collect();
        let answers = self.apply_batch(requests).await;
        let mut traced = Vec::with_capacity(answers.len());
        for (span, answer) in spans.into_iter().zip(answers) {
            traced.push(span.transition(std::future::ready(answer)).await);
        }
        traced
    }

    fn keys(&self) -> MemoryKeys {
        self.keys.clone()
    }

    async fn lock(&self, id: impl Into<EntityId> + Send) -> Result<MemoryLocked<M>, Error> {
        let id = id.into();
        traced::entity::<M>(STORE, Operation::Lock, &id).run(self.lock_entity(id.clone())).await
    }
}

impl<M: StateMachine> MemoryStore<M> {
    /// Runs a transition request, without a span.
    async fn apply_request(&self, request: TransitionRequest<'_, M, MemoryTx>) -> Result<Outcome<M>, Error> {
        let TransitionRequest { id, target, expected_version, key, audit, effects, .. } =
            request.timers_as_effect(&self.table);
        let Some((key, fingerprint)) = key else {
            return self.apply_unkeyed(id, target, expected_version, effects, (audit, None)).await;
        };
        let mut slot = self.keys.lock_key(&key).await;
        if let Some(stored) = slot.as_ref() {
            return replayed_transition(&key, &fingerprint, &stored.fingerprint, &stored.outcome, &id);
        }
        let record = (audit, Some(key.to_string()));
        let outcome = self.apply_unkeyed(id.clone(), target, expected_version, effects, record).await?;
        if let Outcome::Applied { from, to, version } = outcome {
            let stored = StoredKey {
                fingerprint: fingerprint.as_str().to_owned(),
                outcome: encode_applied(&id, from, to, version),
                at_micros: now_micros(),
            };
            *slot = Some(stored);
        }
        Ok(outcome)
    }

    /// Locks the entity's row, without a span.
    async fn lock_entity(&self, id: EntityId) -> Result<MemoryLocked<M>, Error> {
        let slot = self.slot(&id).ok_or_else(|| not_found::<M>(&id, &self.table))?;
        let guard = slot.lock_owned().await;
        let row = guard.as_ref().ok_or_else(|| not_found::<M>(&id, &self.table))?;
        let snapshot = Snapshot { state: parse_state::<M>(&id, &self.table, &row.state)?, version: row.version };
        Ok(MemoryLocked { guard, id, snapshot, pending: Vec::new(), tx: () })
    }
}

/// An entity of a [`MemoryStore`] held by its mutex; see [`LockedEntity`]. Transitions made
/// under the lock are written at [`LockedEntity::commit`] and dropped with the lock otherwise.
pub struct MemoryLocked<M: StateMachine> {
    guard: tokio::sync::OwnedMutexGuard<Option<Row>>,
    id: EntityId,
    snapshot: Snapshot<M>,
    pending: Vec<HistoryRecord>,
    tx: (),
}

impl<M: StateMachine> std::fmt::Debug for MemoryLocked<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLocked").field("id", &self.id).field("snapshot", &self.snapshot).finish_non_exhaustive()
    }
}

impl<M: StateMachine> LockedEntity<M> for MemoryLocked<M> {
    type Tx = ();

    fn id(&self) -> &EntityId {
        &self.id
    }

    fn snapshot(&self) -> Snapshot<M> {
        self.snapshot
    }

    fn tx(&mut self) -> &mut () {
        &mut self.tx
    }

    async fn transition(&mut self, to: M) -> Result<Outcome<M>, Error> {
        let traced = traced::locked(STORE, &self.id, to);
        traced.transition(async { self.decide(to) }).await
    }

    async fn commit(mut self) -> Result<(), Error> {
        if let Some(row) = self.guard.as_mut() {
            row.state = self.snapshot.state.as_str().to_owned();
            row.version = self.snapshot.version;
            row.history.append(&mut self.pending);
        }
        Ok(())
    }
}

impl<M: StateMachine> Reported for MemoryLocked<M> {
    fn outcome(&self) -> &'static str {
        "locked"
    }
}

impl<M: StateMachine> MemoryLocked<M> {
    /// Decides a transition to `to` on the locked row; an applied one is written at commit.
    fn decide(&mut self, to: M) -> Result<Outcome<M>, Error> {
        let plan = Plan::to_target(&self.id, to, None);
        let Snapshot { state, version } = self.snapshot;
        match plan.decide(state, version)? {
            Decision::AlreadyApplied { state, version } => already_applied(&self.id, state, version),
            Decision::Apply { from } => {
                let version = version + 1;
                self.pending.push(HistoryRecord {
                    version,
                    from: from.as_str().to_owned(),
                    to: to.as_str().to_owned(),
                    event: None,
                    at_micros: now_micros(),
                    audit: Audit::default(),
                    key: None,
                });
                self.snapshot = Snapshot { state: to, version };
                Ok(Outcome::Applied { from, to, version })
            }
        }
    }
}
