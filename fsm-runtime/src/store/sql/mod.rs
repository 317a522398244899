//! [`SqlStore`]: the one implementation of [`Store`] over the SQL layer, for every database.
//!
//! The decisions come from `store/plan.rs` (the same table as the memory store's); the
//! statements from [`crate::sql`]. Each database's file there says what its transition sends.

mod batch;
mod locked;
mod session;
mod within;

use std::marker::PhantomData;

pub use locked::SqlLocked;
pub use session::Session;
pub use within::Within;

use crate::clock::{micros_before_now, now_micros};
use crate::entity_id::EntityId;
use crate::error::{BoxError, Error};
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::keys::SqlKeys;
use crate::machine::StateMachine;
use crate::mapping::TableMapping;
use crate::outcome::{CreateOutcome, DeleteOutcome, HistoryEntry, Outcome, Snapshot};
use crate::sql::Driver;
use crate::sql::entity::{AuditRow, EntitySql, HistoryRow, StoredHistory, StoredRow};
use crate::sql::insert_with::insert_with;
use crate::sql::keys::KeySql;
use crate::sql::transition::{self, OneStatement, OneStatementRows, TransitionSql};
use crate::sql::{
    Backend, RolledBack, SqlTx, again_after_rollback, is_key_violation, is_lock_timeout, is_unique_violation,
    pool_options,
};
use crate::store::keyed::{already_applied, encode_applied, replayed_transition};
use crate::store::plan::{AfterRead, Decision, Plan, Resolution, not_found, parse_state};
use crate::store::request::Effect;
use crate::store::traced;
use crate::store::{NewEntity, Store, TransitionRequest};
use crate::telemetry::{Operation, Reported};
use crate::transition::Transition;

/// How often a compare-and-set is tried again when the row moved between the read that chose
/// it and the write; each retry means another request changed the row, so this is only reached
/// under a pathological stream of concurrent moves.
const MAX_ATTEMPTS: usize = 1_000;

/// A row read to classify a missed compare-and-set, or the answer to a replayed key.
enum Classified<M: StateMachine> {
    /// The request's idempotency key is stored: its outcome (or a reused-key error).
    Replayed(Result<Outcome<M>, Error>),
    /// The entity's row.
    Row(Found<M>),
}

/// The entity's row as read: its state and version, and its id as the table stores it, which
/// its history, key and outbox rows are written under.
struct Found<M: StateMachine> {
    now: Snapshot<M>,
    id: EntityId,
}

/// Which table a failed delete's statement concerned: the entity's, or its history.
enum Deleting {
    Entity(sqlx::Error),
    History(sqlx::Error),
}

/// What one attempt of a read-then-compare-and-set writes: `plan`'s move of the entity
/// (stored as `stored`) from `from` at version `observed`.
struct Write<'w, M: StateMachine> {
    plan: &'w Plan<M>,
    stored: &'w EntityId,
    from: M,
    observed: i64,
    extras: Extras<'w>,
}

/// What a request brings besides its plan and effects: its idempotency key and the audit
/// columns of its history row.
#[derive(Clone, Copy)]
struct Extras<'r> {
    key: Option<(&'r IdempotencyKey, &'r Fingerprint)>,
    audit: AuditRow<'r>,
}

/// A [`Store`] on an SQL database through a sqlx pool: [`SqliteStore`](crate::SqliteStore),
/// `PostgresStore` or `MySqlStore` (features `postgres`, `mysql`).
///
/// The entity table is the user's (`id` primary key, `state` text, `version` bigint by default;
/// see [`TableMapping`]); the runtime owns `fsm_history` and its other tables, which
/// [`SqlStore::new`] creates or upgrades (versioned migrations, recorded in
/// `fsm_schema_migrations`). Building a store checks the mapping's identifiers and that the
/// table and columns exist, so a wrong name fails then, not at the first transition.
///
/// Clones share the same data: the pool, so the same database (as clones of a
/// [`MemoryStore`](crate::MemoryStore) share its entities, keys and outbox).
pub struct SqlStore<M, B: Backend> {
    pool: sqlx::Pool<B>,
    mapping: TableMapping,
    entity: EntitySql,
    keys: KeySql,
    transition: TransitionSql,
    /// How long a request waits for a lock ([`SqlStore::lock_wait`]); `None`: as the database
    /// lets it.
    lock_wait: Option<std::time::Duration>,
    machine: PhantomData<fn() -> M>,
}

impl<M, B: Backend> Clone for SqlStore<M, B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            mapping: self.mapping.clone(),
            entity: self.entity.clone(),
            keys: self.keys.clone(),
            transition: self.transition.clone(),
            lock_wait: self.lock_wait,
            machine: PhantomData,
        }
    }
}

impl<M, B: Backend> std::fmt::Debug for SqlStore<M, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("backend", &B::NAME).field("mapping", &self.mapping).finish_non_exhaustive()
    }
}

impl<M: StateMachine, B: Backend> SqlStore<M, B> {
    /// A store on `pool` with the table mapping declared in the derive.
    ///
    /// Creates or upgrades the runtime's tables and checks the entity table.
    pub async fn new(pool: sqlx::Pool<B>) -> Result<Self, Error> {
        Self::with_mapping(pool, M::MAPPING).await
    }

    /// A store on `pool` with a mapping chosen at run time (another table, other columns).
    pub async fn with_mapping(pool: sqlx::Pool<B>, mapping: TableMapping) -> Result<Self, Error> {
        mapping.validate()?;
        crate::sql::migrate::migrate::<B>(&pool)
            .await
            .map_err(|e| Error::database(M::MACHINE, "fsm_schema_migrations", e))?;
        let mut conn = pool.acquire().await.map_err(|e| Error::database(M::MACHINE, &mapping.table, e))?;
        let id_type = <B::Driver as Driver>::id_column_type(&mut conn, &mapping)
            .await
            .map_err(|e| Error::database(M::MACHINE, &mapping.table, e))?;
        let entity = EntitySql::new::<B::Driver>(&mapping, id_type.as_deref());
        entity.check::<B::Driver>(&mut conn).await.map_err(|source| Error::Schema {
            machine: M::MACHINE,
            table: mapping.table.to_string(),
            columns: format!("{}, {}, {}", mapping.id, mapping.state, mapping.version),
            source: Box::new(source),
        })?;
        let transition = <B::Driver as Driver>::transition_sql(&mut conn, &mapping, id_type.as_deref()).await;
        drop(conn);
        let keys = KeySql::new::<B::Driver>();
        Ok(Self { pool, mapping, entity, keys, transition, lock_wait: None, machine: PhantomData })
    }

    /// Connects to `url` with a pool of [`pool_options`] (an acquire gives up after 5 seconds: a
    /// server that is down is a retryable [`Error::Database`], not a hang) and builds the store.
    /// Build the pool yourself and call [`SqlStore::new`] for other settings.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = pool_options::<B>().connect(url).await.map_err(|e| Error::database(M::MACHINE, "(connect)", e))?;
        Self::new(pool).await
    }

    /// Bounds how long each transition request (`apply`, `transition`, …, and a session's)
    /// waits for a lock another request holds: the entity's row under another transition, or
    /// an idempotency key whose first request has not committed yet. Past `wait` the request
    /// fails with [`Error::LockTimeout`], having written nothing, and its connection goes back
    /// to the pool at once, instead of waiting as long as the database lets it (an HTTP
    /// service answers `409` with `Retry-After`, as the IETF `Idempotency-Key` draft and Stripe
    /// do, and keeps its pool for other requests). `Duration::ZERO` answers at once.
    ///
    /// The store sets the bound on the request's connection before it and gives the default
    /// back after it (two statements more per request): PostgreSQL's `lock_timeout` (at least a
    /// millisecond), MySQL's `innodb_lock_wait_timeout` (whole seconds, at least one), SQLite's
    /// busy timeout. Requests inside your transaction ([`Within`]) wait as your transaction's
    /// settings say.
    pub fn lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.lock_wait = Some(wait);
        self
    }

    /// The pool, for the caller's own statements.
    pub fn pool(&self) -> &sqlx::Pool<B> {
        &self.pool
    }

    /// The table mapping in use.
    pub fn mapping(&self) -> &TableMapping {
        &self.mapping
    }

    /// Creates or upgrades the runtime's own tables (every migration not yet recorded in
    /// `fsm_schema_migrations`). Idempotent; run by [`SqlStore::new`].
    pub async fn migrate(&self) -> Result<(), Error> {
        crate::sql::migrate::migrate::<B>(&self.pool)
            .await
            .map_err(|e| Error::database(M::MACHINE, "fsm_schema_migrations", e))
    }

    /// Begins a transaction of the caller's on a connection of the store's pool, for
    /// transitions of this and other stores on the same database ([`SqlStore::within`]) and the
    /// caller's own statements, committed or rolled back together by the caller. As
    /// [`SqlTx::begin`], except that SQLite takes the write lock first (`BEGIN IMMEDIATE`) and
    /// MySQL/MariaDB reads at READ COMMITTED, so that a request that lost a race reads the
    /// winner's outcome, as on PostgreSQL.
    pub async fn begin(&self) -> Result<SqlTx<B>, Error> {
        let mut tx = self.tx().await?;
        tx.start_for_transitions().await.map_err(|e| self.db(e))?;
        Ok(tx)
    }

    /// A [`Session`]: this store's requests on one connection of the pool, kept across
    /// requests (taken at the first one), for a worker that sends many.
    pub fn session(&self) -> Session<M, B> {
        Session::new(self.clone())
    }

    /// The store's operations inside the caller's transaction `tx`, which they never commit;
    /// see [`Within`].
    pub fn within<'t>(&'t self, tx: &'t mut SqlTx<B>) -> Within<'t, M, B> {
        Within::new(self, tx)
    }

    /// Inserts the entity on `tx`, or reads the row that exists. An insert the database rolled
    /// back (a lost race on another Galera node) is sent again, outside the caller's
    /// transaction, and then finds the row.
    async fn create_on(&self, tx: &mut SqlTx<B>, id: &EntityId, state: M) -> Result<CreateOutcome<M>, Error> {
        let mut rolled_back = RolledBack::default();
        loop {
            match self.entity.insert::<B::Driver>(&mut **tx, id, state.as_str()).await {
                Ok(1) => return Ok(CreateOutcome::Created { state }),
                Ok(_) => break,
                Err(error) if is_unique_violation(&error) => break,
                Err(error) => rolled_back.again(error, !tx.in_transaction()).map_err(|e| self.db(e))?.await,
            }
        }
        let existing = self.read_on(tx, id).await?.now;
        Ok(CreateOutcome::AlreadyExists { state: existing.state, version: existing.version })
    }

    /// [`Store::create_with`] on `conn`, a connection you hold: inside your transaction (the
    /// [`SqlTx`] of an effect or of [`Keys::run_once`](crate::Keys::run_once), or a sqlx
    /// `Transaction`), the entity is inserted, or found existing, in it and commits with it.
    ///
    /// ```
    /// # #[derive(fsm_runtime::StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// # #[state_machine(table = "invoices")]
    /// # enum Invoice {
    /// #     #[state(initial)]
    /// #     Open,
    /// #     #[transition(from = Open)]
    /// #     Paid,
    /// # }
    /// use fsm_runtime::store::{CreateOutcome, NewEntity};
    /// use fsm_runtime::{SqliteStore, Store, sqlx};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// sqlx::query("CREATE TABLE invoices (id BIGINT PRIMARY KEY, state TEXT NOT NULL, version BIGINT NOT NULL, amount BIGINT NOT NULL)")
    ///     .execute(&pool)
    ///     .await?;
    /// let store = SqliteStore::<Invoice>::new(pool.clone()).await?;
    /// let mut tx = pool.begin().await?;
    /// let created = store.create_with_on(&mut tx, NewEntity::new(1).column("amount", 1250_i64)).await?;
    /// assert_eq!(created, CreateOutcome::Created { state: Invoice::Open });
    /// tx.rollback().await?; // the row goes with the transaction
    /// assert!(store.get(1).await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn create_with_on(
        &self,
        conn: &mut B::Connection,
        entity: NewEntity<M>,
    ) -> Result<CreateOutcome<M>, Error> {
        self.create_parts_on(conn, entity, false).await
    }

    /// [`SqlStore::create_with_on`]; `may_retry`: `conn` is in no transaction of the caller's,
    /// so an insert the database rolled back (a lost race on another Galera node) is sent again.
    async fn create_parts_on(
        &self,
        conn: &mut B::Connection,
        entity: NewEntity<M>,
        may_retry: bool,
    ) -> Result<CreateOutcome<M>, Error> {
        entity.check(&self.mapping)?;
        let (id, state, columns) = entity.into_parts();
        let mut rolled_back = RolledBack::default();
        let refused = loop {
            let id_type = self.entity.id_type();
            match insert_with::<B::Driver>(&mut *conn, &self.mapping, id_type, &id, state.as_str(), &columns).await {
                Ok(1) => return Ok(CreateOutcome::Created { state }),
                Ok(_) => break None,
                Err(error) if is_unique_violation(&error) => break Some(error),
                Err(error) => rolled_back.again(error, may_retry).map_err(|e| self.db(e))?.await,
            }
        };
        // A duplicate id, or (MySQL) maybe another unique column: the row of the id tells.
        let row = match (self.entity.read::<B::Driver>(conn, &id, false).await, refused) {
            (Ok(None) | Err(_), Some(refused)) => return Err(self.db(refused)),
            (read, _) => read.map_err(|e| self.db(e))?,
        };
        let existing = self.found(&id, row)?.now;
        Ok(CreateOutcome::AlreadyExists { state: existing.state, version: existing.version })
    }

    fn db(&self, error: sqlx::Error) -> Error {
        Error::database(M::MACHINE, &self.mapping.table, error)
    }

    async fn tx(&self) -> Result<SqlTx<B>, Error> {
        Ok(SqlTx::idle(self.pool.acquire().await.map_err(|e| self.db(e))?))
    }

    /// The entity's row, read on `tx`.
    async fn read_on(&self, tx: &mut SqlTx<B>, id: &EntityId) -> Result<Found<M>, Error> {
        let row = self.entity.read::<B::Driver>(&mut **tx, id, false).await.map_err(|e| self.db(e))?;
        self.found(id, row)
    }

    /// The row read for `id`, or [`Error::NotFound`].
    fn found(&self, id: &EntityId, row: Option<StoredRow>) -> Result<Found<M>, Error> {
        let row = row.ok_or_else(|| not_found::<M>(id, &self.mapping.table))?;
        let state = parse_state::<M>(id, &self.mapping.table, &row.state)?;
        Ok(Found { now: Snapshot { state, version: row.version }, id: id.as_stored(row.id) })
    }

    /// The id as the table stores it, when the entity exists; else as given (the id of a
    /// deleted entity, whose history is kept under the spelling it was stored with).
    async fn stored_id(&self, tx: &mut SqlTx<B>, id: EntityId) -> Result<EntityId, Error> {
        let row = self.entity.read::<B::Driver>(&mut **tx, &id, false).await.map_err(|e| self.db(e))?;
        Ok(match row {
            Some(row) => id.as_stored(row.id),
            None => id,
        })
    }

    /// Runs the effects of an applied transition on the open transaction, which names it.
    async fn run_effects(
        &self,
        tx: &mut SqlTx<B>,
        effects: Vec<Effect<'_, SqlTx<B>>>,
        plan: &Plan<M>,
        stored: &EntityId,
        from: M,
        version: i64,
    ) -> Result<(), Error> {
        if effects.is_empty() {
            return Ok(());
        }
        let (to, id) = (plan.target, stored.clone());
        tx.set_transition(Transition { machine: M::MACHINE, id, from: from.as_str(), to: to.as_str(), version });
        for effect in effects {
            effect.run(tx).await.map_err(|source| effect_error::<M>(&plan.id, from, to, source))?;
        }
        Ok(())
    }

    /// The history row of `plan` leaving `from` for `version`, under the stored id `entity`.
    fn history_row<'r>(
        &'r self,
        plan: &'r Plan<M>,
        entity: &'r str,
        from: &'r str,
        version: i64,
        audit: AuditRow<'r>,
    ) -> HistoryRow<'r> {
        HistoryRow {
            table: &self.mapping.table,
            machine: M::MACHINE,
            entity,
            version,
            from,
            to: plan.target.as_str(),
            event: plan.event_name(),
            at_micros: now_micros(),
            audit,
        }
    }

    /// Runs `request` on `tx`: its own connection (no transaction open), or the caller's
    /// transaction ([`Within`]).
    async fn apply_request(
        &self,
        tx: &mut SqlTx<B>,
        request: TransitionRequest<'_, M, SqlTx<B>>,
    ) -> Result<Outcome<M>, Error> {
        let TransitionRequest { id, target, expected_version, key, audit, effects, .. } =
            request.timers_as_effect(&self.mapping.table);
        let key_text = key.as_ref().map(|(key, _)| key.to_string());
        let metadata = audit.metadata.as_ref().map(serde_json::Value::to_string);
        let extras = Extras {
            key: key.as_ref().map(|(key, fingerprint)| (key, fingerprint)),
            audit: AuditRow {
                actor: audit.actor.as_deref(),
                reason: audit.reason.as_deref(),
                key: key_text.as_deref(),
                metadata: metadata.as_deref(),
            },
        };
        let plan = Plan::resolve(&id, target, expected_version)?;
        self.apply_on(tx, &id, plan, effects, extras, expected_version).await
    }

    /// Decides the request on `tx`: reads first where the database's transition wants it,
    /// then the one-statement transition or the read-then-compare-and-set.
    ///
    /// On a transaction already open (the caller's) the request is nested: each attempt runs
    /// in a savepoint of its own, so that a failed statement (a key stored by another request,
    /// which PostgreSQL reports as an error) rolls back only the attempt, and nothing commits.
    async fn apply_on(
        &self,
        tx: &mut SqlTx<B>,
        id: &EntityId,
        plan: Resolution<M>,
        effects: Vec<Effect<'_, SqlTx<B>>>,
        extras: Extras<'_>,
        expected_version: Option<i64>,
    ) -> Result<Outcome<M>, Error> {
        let nested = tx.in_transaction();
        let (plan, read) = match plan {
            Resolution::Ready(plan) => (plan, None),
            Resolution::NeedsState { event } => {
                let found = match self.read_classifying(tx, id, extras.key).await? {
                    Classified::Replayed(outcome) => return outcome,
                    Classified::Row(found) => found,
                };
                let now = found.now;
                match Plan::for_event_in_state(id, event, now.state, now.version, expected_version)? {
                    AfterRead::Ready(plan) => (plan, Some(found)),
                    AfterRead::AlreadyApplied(Snapshot { state, version }) => {
                        return already_applied(id, state, version);
                    }
                }
            }
        };
        if self.transition.read_first && !nested && extras.key.is_none() && effects.is_empty() && read.is_none() {
            // A replay or a refused request ends with this read, without the statement's write
            // lock; a row in a legal source goes on to the statement, which checks again.
            let now = self.read_on(tx, &plan.id).await?.now;
            if let Decision::AlreadyApplied { state, version } = plan.decide(now.state, now.version)? {
                return already_applied(&plan.id, state, version);
            }
        }
        self.apply_one_statement(tx, plan, effects, extras, read, nested).await
    }

    /// The compare-and-set and the history row (and, on PostgreSQL, the idempotency key) in
    /// the database's one-statement transition; the statement also returns the row it missed,
    /// which classifies the miss, except for a keyed request, whose key is read with the row.
    /// Where the database has no statement for this request, [`Self::apply_read_then_cas`].
    /// `nested`: inside the caller's transaction, where the statement runs in a savepoint
    /// (only a statement that [nests](TransitionSql::nests): a batch or a procedure that
    /// commits itself must not run in the caller's transaction).
    async fn apply_one_statement(
        &self,
        tx: &mut SqlTx<B>,
        plan: Plan<M>,
        effects: Vec<Effect<'_, SqlTx<B>>>,
        extras: Extras<'_>,
        read: Option<Found<M>>,
        nested: bool,
    ) -> Result<Outcome<M>, Error> {
        let key = extras.key;
        let Some(sql) = self.transition.statement(key.is_some(), !effects.is_empty() || nested).cloned() else {
            return self.apply_read_then_cas(tx, plan, effects, extras, read, nested).await;
        };
        let sources: Vec<&'static str> = plan.sources.as_slice().iter().map(|s| s.as_str()).collect();
        let mut effects = Some(effects);
        let mut rolled_back = RolledBack::default();
        for _ in 0..MAX_ATTEMPTS {
            let args = OneStatement {
                id: self.entity.id_arg(&plan.id),
                sources: &sources,
                target: plan.target.as_str(),
                expected_version: plan.expected_version,
                history: self.history_row(&plan, "", "", 0, extras.audit),
                key,
            };
            let pending = effects.take().unwrap_or_default();
            let answer = if pending.is_empty() && !nested {
                match self.run_statement(tx, &sql, args).await {
                    Ok(answer) => answer,
                    Err(error) => {
                        rolled_back.again(error, true).map_err(|e| self.db(e))?.await;
                        continue;
                    }
                }
            } else {
                tx.start().await.map_err(|e| self.db(e))?;
                let answer = match self.run_statement(tx, &sql, args).await {
                    Ok(answer) => answer,
                    Err(error) => {
                        // Nothing of the effects ran yet: they go with the next attempt.
                        let pause = rolled_back.again(error, !nested).map_err(|e| self.db(e))?;
                        tx.finish_rollback().await.map_err(|e| self.db(e))?;
                        effects = Some(pending);
                        pause.await;
                        continue;
                    }
                };
                if let Some(applied) = &answer.applied {
                    let from = parse_state::<M>(&plan.id, &self.mapping.table, &applied.state)?;
                    let stored = plan.id.as_stored(applied.id.clone());
                    self.run_effects(tx, pending, &plan, &stored, from, applied.version).await?;
                    tx.finish_commit().await.map_err(|e| self.db(e))?;
                    return Ok(Outcome::Applied { from, to: plan.target, version: applied.version });
                }
                tx.finish_rollback().await.map_err(|e| self.db(e))?;
                effects = Some(pending);
                answer
            };
            if let Some(applied) = answer.applied {
                let from = parse_state::<M>(&plan.id, &self.mapping.table, &applied.state)?;
                return Ok(Outcome::Applied { from, to: plan.target, version: applied.version });
            }
            let now = if key.is_none() {
                self.found(&plan.id, answer.row)?.now
            } else {
                match self.read_classifying(tx, &plan.id, key).await? {
                    Classified::Replayed(outcome) => return outcome,
                    Classified::Row(found) => found.now,
                }
            };
            match plan.decide(now.state, now.version)? {
                Decision::AlreadyApplied { state, version } => return already_applied(&plan.id, state, version),
                // The row moved back into a legal source meanwhile (PostgreSQL: a concurrent
                // transition committed after the statement's snapshot): again.
                Decision::Apply { .. } => {}
            }
        }
        Err(self.too_many_attempts(&plan))
    }

    /// Runs the one-statement transition; a unique violation on the request's key rolled the
    /// statement back: the key is stored, and the classifying read finds it.
    async fn run_statement(
        &self,
        tx: &mut SqlTx<B>,
        sql: &std::sync::Arc<str>,
        args: OneStatement<'_>,
    ) -> Result<OneStatementRows, sqlx::Error> {
        match transition::run::<B::Driver>(&mut **tx, sql, args).await {
            Err(error) if args.key.is_some() && !self.transition.misses_on_stored_key && is_key_violation(&error) => {
                Ok(OneStatementRows::default())
            }
            answer => answer,
        }
    }

    /// The entity's row, or, when the request's key is stored, the answer to the replay.
    async fn read_classifying(
        &self,
        tx: &mut SqlTx<B>,
        id: &EntityId,
        key: Option<(&IdempotencyKey, &Fingerprint)>,
    ) -> Result<Classified<M>, Error> {
        let Some((key, fingerprint)) = key else {
            return Ok(Classified::Row(self.read_on(tx, id).await?));
        };
        let (row, stored) = self.entity.read_with_key::<B::Driver>(&mut **tx, id, key).await.map_err(|e| self.db(e))?;
        if let Some((stored_fingerprint, outcome)) = stored {
            // The key names the entity as its table stores it.
            let entity = row.map_or_else(|| id.clone(), |row| id.as_stored(row.id));
            let replayed = replayed_transition(key, fingerprint, &stored_fingerprint, &outcome, &entity);
            return Ok(Classified::Replayed(replayed));
        }
        Ok(Classified::Row(self.found(id, row)?))
    }

    /// Read, decide, then a compare-and-set on the observed state and version with the key,
    /// the history row and the effects in one transaction, all on `tx`. `read` is the row this
    /// request read already (a cyclic event's read, with its key checked): the first attempt
    /// decides on it instead of reading again. `nested`: each attempt is a savepoint of the
    /// caller's transaction.
    async fn apply_read_then_cas(
        &self,
        tx: &mut SqlTx<B>,
        plan: Plan<M>,
        effects: Vec<Effect<'_, SqlTx<B>>>,
        extras: Extras<'_>,
        mut read: Option<Found<M>>,
        nested: bool,
    ) -> Result<Outcome<M>, Error> {
        let key = extras.key;
        let mut effects = Some(effects);
        let mut missed = None;
        let mut rolled_back = RolledBack::default();
        for _ in 0..MAX_ATTEMPTS {
            let Found { now, id: stored } = match read.take() {
                Some(found) => found,
                None => match self.read_classifying(tx, &plan.id, key).await? {
                    Classified::Replayed(outcome) => return outcome,
                    Classified::Row(found) => found,
                },
            };
            if nested && missed == Some(now) {
                // The caller's transaction reads a snapshot older than what made the attempt
                // miss (REPEATABLE READ): reading again would loop on it.
                return Err(self.stale_snapshot(&plan));
            }
            missed = Some(now);
            let from = match plan.decide(now.state, now.version)? {
                Decision::AlreadyApplied { state, version } => return already_applied(&plan.id, state, version),
                Decision::Apply { from } => from,
            };
            let version = now.version + 1;
            tx.start().await.map_err(|e| self.db(e))?;
            let write = Write { plan: &plan, stored: &stored, from, observed: now.version, extras };
            match self.write_attempt(tx, write).await {
                Ok(true) => {}
                // Moved since the read, or the key stored by a concurrent request: read again.
                Ok(false) => {
                    tx.finish_rollback().await.map_err(|e| self.db(e))?;
                    continue;
                }
                Err(error) => {
                    let pause = rolled_back.again(error, !nested).map_err(|e| self.db(e))?;
                    tx.finish_rollback().await.map_err(|e| self.db(e))?;
                    pause.await;
                    continue;
                }
            }
            let pending = effects.take().unwrap_or_default();
            // Effects ran: a commit that fails now is the caller's to retry (their work too
            // was rolled back, and an effect runs once per call).
            let ran_effects = !pending.is_empty();
            self.run_effects(tx, pending, &plan, &stored, from, version).await?;
            if let Err(error) = tx.finish_commit().await {
                let pause = rolled_back.again(error, !nested && !ran_effects).map_err(|e| self.db(e))?;
                tx.finish_rollback().await.map_err(|e| self.db(e))?;
                effects = Some(Vec::new());
                pause.await;
                continue;
            }
            return Ok(Outcome::Applied { from, to: plan.target, version });
        }
        Err(self.too_many_attempts(&plan))
    }

    /// One attempt's writes, in the transaction begun on `tx`: the request's key (its first
    /// statement), the compare-and-set on the observed state and version, the history row.
    /// `false`: the key was stored by a concurrent request, or the row moved since the read.
    async fn write_attempt(&self, tx: &mut SqlTx<B>, write: Write<'_, M>) -> Result<bool, sqlx::Error> {
        let Write { plan, stored, from, observed, extras } = write;
        let version = observed + 1;
        if let Some((key, fingerprint)) = extras.key {
            let outcome = encode_applied(stored, from, plan.target, version);
            if self.keys.insert::<B::Driver>(&mut **tx, key, fingerprint, &outcome, now_micros()).await? == 0 {
                return Ok(false);
            }
        }
        let (from_text, target) = (from.as_str(), plan.target.as_str());
        if self.entity.cas::<B::Driver>(&mut **tx, &plan.id, from_text, target, observed).await? == 0 {
            return Ok(false);
        }
        let entity = stored.to_string();
        let row = self.history_row(plan, &entity, from_text, version, extras.audit);
        self.entity.insert_history::<B::Driver>(&mut **tx, row).await?;
        Ok(true)
    }

    /// Deletes the entity and retires its history, without a span; in a transaction of its
    /// own, sent again when the database rolls it back (a deadlock, a lost certification).
    async fn delete_entity(&self, id: &EntityId) -> Result<DeleteOutcome, Error> {
        let mut rolled_back = RolledBack::default();
        loop {
            match self.delete_once(id).await {
                Err(Deleting::Entity(error)) => rolled_back.again(error, true).map_err(|e| self.db(e))?.await,
                Err(Deleting::History(error)) => rolled_back.again(error, true).map_err(|e| self.history_db(e))?.await,
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    /// One attempt of [`Self::delete_entity`].
    async fn delete_once(&self, id: &EntityId) -> Result<DeleteOutcome, Deleting> {
        let mut tx = SqlTx::idle(self.pool.acquire().await.map_err(Deleting::Entity)?);
        tx.start_write().await.map_err(Deleting::Entity)?;
        let Some(row) = self.entity.read::<B::Driver>(&mut *tx, id, true).await.map_err(Deleting::Entity)? else {
            tx.finish_rollback().await.map_err(Deleting::Entity)?;
            return Ok(DeleteOutcome::AlreadyAbsent);
        };
        let deleted = self.entity.delete::<B::Driver>(&mut *tx, id).await.map_err(Deleting::Entity)?;
        let table = &self.mapping.table;
        let retired = self.entity.retire_history::<B::Driver>(&mut *tx, table, &row.id, now_micros()).await;
        retired.map_err(Deleting::History)?;
        tx.finish_commit().await.map_err(Deleting::Entity)?;
        Ok(if deleted == 0 { DeleteOutcome::AlreadyAbsent } else { DeleteOutcome::Deleted })
    }

    fn history_db(&self, error: sqlx::Error) -> Error {
        Error::database(M::MACHINE, "fsm_history", error)
    }

    /// The history of `id` (under the id as stored): the live entity's, or (`all`) its deleted
    /// lives' too.
    async fn list_history(&self, id: EntityId, all: bool) -> Result<Vec<HistoryEntry<M>>, Error> {
        let mut tx = self.tx().await?;
        let stored = self.stored_id(&mut tx, id).await?;
        let (table, entity) = (&self.mapping.table, stored.to_string());
        let rows = self.entity.list_history::<B::Driver>(&mut *tx, table, M::MACHINE, &entity, all).await;
        rows.map_err(|e| self.history_db(e))?.into_iter().map(|row| history_entry(&stored, row)).collect()
    }

    /// Up to `limit` entities in one of `states` since before `before_micros` (or without a
    /// history row of their version), oldest first: their stored ids, states, versions and
    /// the times they entered them.
    pub(crate) async fn in_states(
        &self,
        states: &[&str],
        before_micros: i64,
        limit: usize,
    ) -> Result<Vec<crate::sql::in_flight::InState>, Error> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.db(e))?;
        let found = crate::sql::in_flight::in_states::<B::Driver>(
            &mut conn,
            &self.mapping,
            M::MACHINE,
            states,
            before_micros,
            limit,
        );
        found.await.map_err(|e| self.db(e))
    }

    /// The error of a request of a batch whose transaction could not be restored (`error`):
    /// the caller's, after the batch, or one an earlier request of the batch left open.
    fn left_unusable(&self, error: &str) -> Error {
        Error::Database {
            machine: M::MACHINE,
            table: self.mapping.table.to_string(),
            retryable: true,
            source: format!("the caller's transaction could not be restored after the batch: {error}").into(),
        }
    }

    fn stale_snapshot(&self, plan: &Plan<M>) -> Error {
        Error::Database {
            machine: M::MACHINE,
            table: self.mapping.table.to_string(),
            retryable: true,
            source: format!(
                "entity `{}` moved after the snapshot of the caller's transaction (REPEATABLE READ): \
                 roll the transaction back and retry it, or begin it with `SqlStore::begin`",
                plan.id
            )
            .into(),
        }
    }

    fn too_many_attempts(&self, plan: &Plan<M>) -> Error {
        Error::Database {
            machine: M::MACHINE,
            table: self.mapping.table.to_string(),
            retryable: true,
            source: format!("entity `{}` kept moving between read and compare-and-set {MAX_ATTEMPTS} times", plan.id)
                .into(),
        }
    }
}

/// A history row read back as an entry; a state or metadata that does not parse is an error
/// naming the entity and `fsm_history`.
fn history_entry<M: StateMachine>(id: &EntityId, row: StoredHistory) -> Result<HistoryEntry<M>, Error> {
    let metadata =
        row.metadata.map(|text| serde_json::from_str(&text)).transpose().map_err(|source| Error::Database {
            machine: M::MACHINE,
            table: "fsm_history".to_owned(),
            retryable: false,
            source: format!("metadata of `{id}` version {} is not JSON: {source}", row.version).into(),
        })?;
    Ok(HistoryEntry {
        version: row.version,
        from: parse_state::<M>(id, "fsm_history", &row.from)?,
        to: parse_state::<M>(id, "fsm_history", &row.to)?,
        event: row.event,
        at_micros: row.at_micros,
        actor: row.actor,
        reason: row.reason,
        idempotency_key: row.key,
        metadata,
        deleted_at_micros: (row.deleted_at_micros != 0).then_some(row.deleted_at_micros),
    })
}

fn effect_error<M: StateMachine>(id: &EntityId, from: M, to: M, source: BoxError) -> Error {
    Error::Effect { machine: M::MACHINE, id: id.clone(), from: from.as_str(), to: to.as_str(), source }
}

impl<M: StateMachine, B: Backend> Store<M> for SqlStore<M, B> {
    type Tx = SqlTx<B>;
    type Lock = SqlLocked<M, B>;
    type Keys = SqlKeys<B>;

    async fn create_in(&self, id: impl Into<EntityId> + Send, state: M) -> Result<CreateOutcome<M>, Error> {
        let id = id.into();
        let traced = traced::entity::<M>(B::NAME, Operation::Create, &id);
        traced
            .run(async {
                let mut tx = self.tx().await?;
                self.create_on(&mut tx, &id, state).await
            })
            .await
    }

    async fn create_with(&self, entity: NewEntity<M>) -> Result<CreateOutcome<M>, Error> {
        let traced = traced::entity::<M>(B::NAME, Operation::Create, entity.id());
        traced
            .run(async move {
                let mut conn = self.pool.acquire().await.map_err(|e| self.db(e))?;
                // In no transaction: an insert rolled back by a lost race on another node of a
                // Galera cluster may be sent again.
                self.create_parts_on(&mut conn, entity, true).await
            })
            .await
    }

    async fn get(&self, id: impl Into<EntityId> + Send) -> Result<Snapshot<M>, Error> {
        let id = id.into();
        let traced = traced::entity::<M>(B::NAME, Operation::Get, &id);
        traced
            .run(async {
                let mut tx = self.tx().await?;
                Ok(self.read_on(&mut tx, &id).await?.now)
            })
            .await
    }

    async fn id_as_stored(&self, id: impl Into<EntityId> + Send) -> Result<EntityId, Error> {
        let mut tx = self.tx().await?;
        self.stored_id(&mut tx, id.into()).await
    }

    async fn delete(&self, id: impl Into<EntityId> + Send) -> Result<DeleteOutcome, Error> {
        let id = id.into();
        traced::entity::<M>(B::NAME, Operation::Delete, &id).run(self.delete_entity(&id)).await
    }

    async fn history(&self, id: impl Into<EntityId> + Send) -> Result<Vec<HistoryEntry<M>>, Error> {
        let id = id.into();
        traced::entity::<M>(B::NAME, Operation::History, &id).run(self.list_history(id.clone(), false)).await
    }

    async fn audit(&self, id: impl Into<EntityId> + Send) -> Result<Vec<HistoryEntry<M>>, Error> {
        let id = id.into();
        traced::entity::<M>(B::NAME, Operation::History, &id).run(self.list_history(id.clone(), true)).await
    }

    async fn purge_history(&self, id: impl Into<EntityId> + Send) -> Result<u64, Error> {
        let mut tx = self.tx().await?;
        let stored = self.stored_id(&mut tx, id.into()).await?.to_string();
        let table = &self.mapping.table;
        drop(tx);
        let purged = again_after_rollback(|| async {
            let mut conn = self.pool.acquire().await?;
            self.entity.purge_history::<B::Driver>(&mut conn, table, M::MACHINE, &stored).await
        });
        purged.await.map_err(|e| self.history_db(e))
    }

    async fn purge_deleted_history(&self, older_than: std::time::Duration) -> Result<u64, Error> {
        let before = micros_before_now(older_than);
        let purged = again_after_rollback(|| async {
            let mut conn = self.pool.acquire().await?;
            self.entity.purge_retired::<B::Driver>(&mut conn, &self.mapping.table, before).await
        });
        purged.await.map_err(|e| self.history_db(e))
    }

    async fn apply<'a>(&'a self, request: TransitionRequest<'a, M, SqlTx<B>>) -> Result<Outcome<M>, Error> {
        traced::apply(B::NAME, &request, false).transition(self.apply_pooled(request)).await
    }

    /// On one connection of the pool, in the database's one-statement batch where it has one.
    async fn apply_many<'a>(
        &'a self,
        requests: Vec<TransitionRequest<'a, M, SqlTx<B>>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        self.session().apply_many(requests).await
    }

    fn keys(&self) -> SqlKeys<B> {
        SqlKeys::with_sql(self.pool.clone(), self.keys.clone())
    }

    async fn lock(&self, id: impl Into<EntityId> + Send) -> Result<SqlLocked<M, B>, Error> {
        let id = id.into();
        traced::entity::<M>(B::NAME, Operation::Lock, &id).run(self.lock_entity(id.clone())).await
    }
}

impl<M: StateMachine, B: Backend> Reported for SqlLocked<M, B> {
    fn outcome(&self) -> &'static str {
        "locked"
    }
}

impl<M: StateMachine, B: Backend> SqlStore<M, B> {
    /// Runs `request` on a connection of the pool, without a span.
    async fn apply_pooled(&self, request: TransitionRequest<'_, M, SqlTx<B>>) -> Result<Outcome<M>, Error> {
        // One pooled connection for the whole request: the reads, the statement and the
        // effects' transaction. Dropped halfway (the caller gave up), it is closed, not pooled.
        let mut tx = self.tx().await?;
        tx.close_unless_finished();
        let outcome = self.apply_bounded(&mut tx, request).await;
        tx.finished();
        outcome
    }

    /// Runs `request` on `tx` (its own connection), under the store's lock wait, if it has one:
    /// set before, the setting of before given back after (a connection whose setting could
    /// not be given back, or with a transaction still open, which would undo the giving back
    /// when it rolls back, is closed, not pooled). A lock not granted in time is
    /// [`Error::LockTimeout`].
    async fn apply_bounded(
        &self,
        tx: &mut SqlTx<B>,
        request: TransitionRequest<'_, M, SqlTx<B>>,
    ) -> Result<Outcome<M>, Error> {
        let Some(wait) = self.lock_wait else {
            return self.apply_request(tx, request).await;
        };
        let restore = <B::Driver as Driver>::bound_lock_wait(&mut **tx, wait).await.map_err(|e| self.db(e))?;
        let outcome = self.apply_request(tx, request).await;
        self.restore_lock_wait(tx, &restore).await;
        outcome.map_err(|error| self.lock_timeout(error, wait))
    }

    /// [`SqlStore::apply_batch`] under the store's lock wait, as [`Self::apply_bounded`].
    async fn apply_batch_bounded(
        &self,
        tx: &mut SqlTx<B>,
        requests: Vec<TransitionRequest<'_, M, SqlTx<B>>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        let Some(wait) = self.lock_wait else {
            return self.apply_batch(tx, requests).await;
        };
        let restore = match <B::Driver as Driver>::bound_lock_wait(&mut **tx, wait).await {
            Ok(restore) => restore,
            Err(error) => {
                let error = error.to_string();
                return requests.iter().map(|_| Err(self.left_unusable(&error))).collect();
            }
        };
        let answers = self.apply_batch(tx, requests).await;
        self.restore_lock_wait(tx, &restore).await;
        answers.into_iter().map(|answer| answer.map_err(|error| self.lock_timeout(error, wait))).collect()
    }

    /// Gives `tx`'s connection its lock wait of before back with `restore`; a connection left
    /// in a transaction (a failed effect's) or whose setting could not be given back is
    /// discarded instead.
    async fn restore_lock_wait(&self, tx: &mut SqlTx<B>, restore: &str) {
        if tx.in_transaction() || <B::Driver as Driver>::execute_script(&mut **tx, restore).await.is_err() {
            tx.discard();
        }
    }

    /// `error` as [`Error::LockTimeout`] when the database did not grant a lock within `wait`.
    fn lock_timeout(&self, error: Error, wait: std::time::Duration) -> Error {
        let timed_out = match &error {
            Error::Database { source, .. } => source.downcast_ref::<sqlx::Error>().is_some_and(is_lock_timeout),
            _ => false,
        };
        if !timed_out {
            return error;
        }
        Error::LockTimeout { machine: M::MACHINE, table: self.mapping.table.to_string(), waited: wait }
    }

    /// Locks the entity's row in a transaction of its own, without a span.
    async fn lock_entity(&self, id: EntityId) -> Result<SqlLocked<M, B>, Error> {
        let mut tx = self.tx().await?;
        tx.start_write().await.map_err(|e| self.db(e))?;
        let row = self.entity.read::<B::Driver>(&mut *tx, &id, true).await.map_err(|e| self.db(e))?;
        let Found { now, id: stored } = self.found(&id, row)?;
        Ok(SqlLocked::new(self.clone(), tx, id, stored, now))
    }
}
