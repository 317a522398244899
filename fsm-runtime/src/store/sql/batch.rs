//! [`SqlStore`]'s batches: many requests in the database's one-statement batch
//! ([`crate::sql::batch`]), request by request where it has none or a request needs more.
//!
//! A batch runs in rounds: the first request of each entity in the first round, the second
//! request of an entity in the second, and so on, so that each statement names each entity
//! once and two requests for one entity are answered in their order. In a round the statement
//! takes every request without effects whose target is known before a read (not an event with
//! several targets); the others, and the few the statement cannot decide (a row that moved
//! back into a legal source after the statement's snapshot, a keyed request whose key it did not
//! find stored), then go the way of [`Store::apply`](crate::Store::apply), one by one, on the
//! same connection. A request with effects runs in a transaction of its own, so that a failing
//! effect fails its request only.

use std::sync::Arc;

use crate::clock::now_micros;
use crate::error::Error;
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::machine::StateMachine;
use crate::outcome::Outcome;
use crate::sql::batch::{self, BatchAnswer, BatchItem, BatchShared, SOURCES_SEPARATOR};
use crate::sql::{Backend, Nested, RolledBack, SqlTx};
use crate::store::TransitionRequest;
use crate::store::keyed::{already_applied, replayed_transition};
use crate::store::plan::{Decision, Plan, Resolution, parse_state};
use crate::store::sql::SqlStore;

/// A batch's answers, `None` until decided.
type Answers<M> = Vec<Option<Result<Outcome<M>, Error>>>;

/// A batch's requests, `None` once decided.
type Pending<'a, M, B> = Vec<Option<TransitionRequest<'a, M, SqlTx<B>>>>;

/// A request a round's statement takes: its index in the batch, its plan, and what its item
/// is made of.
struct Chosen<M: StateMachine> {
    index: usize,
    /// The id as the statement takes it.
    id_text: String,
    plan: Plan<M>,
    texts: ItemTexts,
    sources: Vec<&'static str>,
    key: Option<(IdempotencyKey, Fingerprint)>,
}

impl<M: StateMachine, B: Backend> SqlStore<M, B> {
    /// Runs `requests` on `tx` (its own connection, or the caller's transaction): one answer
    /// per request, in order.
    pub(super) async fn apply_batch(
        &self,
        tx: &mut SqlTx<B>,
        requests: Vec<TransitionRequest<'_, M, SqlTx<B>>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        let rounds = rounds(&requests, |id| self.entity.batch_id(id).unwrap_or_else(|| id.to_string()));
        let table = &self.mapping.table;
        let mut pending: Pending<'_, M, B> =
            requests.into_iter().map(|request| Some(request.timers_as_effect(table))).collect();
        let mut answers: Answers<M> = pending.iter().map(|_| None).collect();
        let nested = tx.in_transaction();
        let statement = self.transition.batch.clone().filter(|_| self.transition.nests || !nested);
        for round in 0..rounds.iter().max().map_or(0, |last| last + 1) {
            let members: Vec<usize> = (0..rounds.len()).filter(|&i| rounds[i] == round).collect();
            if let Some(sql) = &statement {
                self.batch_round(tx, sql, &members, &mut pending, &mut answers).await;
            }
            for i in members {
                if let Some(request) = pending[i].take() {
                    answers[i] = Some(if tx.in_transaction() == nested {
                        self.apply_one(tx, request).await
                    } else {
                        // An earlier request's transaction could not be rolled back.
                        Err(self.left_unusable("a request's transaction could not be rolled back"))
                    });
                }
            }
        }
        answers.into_iter().map(|answer| answer.unwrap_or_else(|| Err(self.undecided()))).collect()
    }

    /// One request the way of [`Store::apply`](crate::Store::apply); inside the caller's
    /// transaction, what it leaves open (a savepoint after a failed effect) is rolled back before
    /// the next request.
    async fn apply_one(
        &self,
        tx: &mut SqlTx<B>,
        request: TransitionRequest<'_, M, SqlTx<B>>,
    ) -> Result<Outcome<M>, Error> {
        if !tx.in_transaction() {
            let outcome = self.apply_request(tx, request).await;
            // A failed effect leaves its transaction open: rolled back before the next request,
            // which would otherwise run (and commit) inside it.
            if tx.in_transaction() {
                tx.finish_rollback().await.map_err(|e| self.db(e))?;
            }
            return outcome;
        }
        let mut nested = Nested::enter(tx);
        let outcome = self.apply_request(nested.tx(), request).await;
        let left = nested.leave().await.map_err(|e| self.db(e));
        outcome.and_then(|outcome| left.map(|()| outcome))
    }

    /// One round's statement over the requests `members` it can take; decides those it can.
    async fn batch_round(
        &self,
        tx: &mut SqlTx<B>,
        sql: &Arc<str>,
        members: &[usize],
        pending: &mut Pending<'_, M, B>,
        answers: &mut Answers<M>,
    ) {
        let mut chosen = self.choose(members, pending, answers);
        // In one order for every batch: a database that locks the rows in the order of the
        // items (MySQL's procedure) then never has two batches wait on each other.
        chosen.sort_by(|a, b| a.id_text.cmp(&b.id_text));
        if chosen.len() < 2 {
            // One request is cheaper the way of `apply` (its statement is prepared already).
            return;
        }
        let rows = match self.run_batch(tx, sql, &chosen).await {
            Ok(rows) => rows,
            Err(error) => {
                // The statement wrote nothing (it is one statement, or a procedure that rolls
                // back on any error): each request goes its own way.
                tracing::warn!(machine = M::MACHINE, table = %self.mapping.table, %error, "batch statement failed; its requests go one by one");
                return;
            }
        };
        for (chosen, answer) in chosen.iter().zip(rows) {
            if let Some(decided) = self.batch_answer(&chosen.plan, chosen.key.as_ref(), answer) {
                answers[chosen.index] = Some(decided);
                pending[chosen.index] = None;
            }
        }
    }

    /// The members the statement takes, with their plans; a request the transition table
    /// refuses is answered here.
    fn choose(&self, members: &[usize], pending: &mut Pending<'_, M, B>, answers: &mut Answers<M>) -> Vec<Chosen<M>> {
        let mut chosen = Vec::new();
        for &i in members {
            let Some(request) = &pending[i] else { continue };
            if !request.effects.is_empty() || (request.key.is_some() && !self.transition.batch_keys) {
                continue;
            }
            match Plan::resolve(&request.id, request.target, request.expected_version) {
                Err(error) => {
                    answers[i] = Some(Err(error));
                    pending[i] = None;
                }
                Ok(Resolution::Ready(plan)) if let Some(id_text) = self.batchable(&plan) => chosen.push(Chosen {
                    index: i,
                    id_text,
                    sources: plan.sources.as_slice().iter().map(|state| state.as_str()).collect(),
                    plan,
                    texts: ItemTexts::of(request),
                    key: request.key.clone(),
                }),
                Ok(_) => {}
            }
        }
        chosen
    }

    /// Whether the statement can take `plan`: its id as text (it binds as text) and its
    /// sources join.
    fn batchable(&self, plan: &Plan<M>) -> Option<String> {
        let joins = plan.sources.as_slice().iter().all(|state| !state.as_str().contains(SOURCES_SEPARATOR));
        self.entity.batch_id(&plan.id).filter(|_| joins)
    }

    /// Runs the statement over `chosen`, sent again when the database rolled it back (a
    /// deadlock) outside the caller's transaction; inside it, in a savepoint.
    async fn run_batch(
        &self,
        tx: &mut SqlTx<B>,
        sql: &Arc<str>,
        chosen: &[Chosen<M>],
    ) -> Result<Vec<BatchAnswer>, sqlx::Error> {
        let items: Vec<BatchItem<'_>> = chosen.iter().map(|chosen| self.batch_item(chosen)).collect();
        let shared = BatchShared { machine: M::MACHINE, table: &self.mapping.table, at_micros: now_micros() };
        let nested = tx.in_transaction();
        let mut rolled_back = RolledBack::default();
        loop {
            let error = if nested {
                tx.start().await?;
                match batch::run::<B::Driver>(&mut **tx, sql, &items, shared).await {
                    Ok(rows) => return tx.finish_commit().await.map(|()| rows),
                    Err(error) => {
                        tx.finish_rollback().await?;
                        error
                    }
                }
            } else {
                match batch::run::<B::Driver>(&mut **tx, sql, &items, shared).await {
                    Ok(rows) => return Ok(rows),
                    Err(error) => error,
                }
            };
            match rolled_back.again(error, !nested) {
                Ok(pause) => pause.await,
                Err(error) => return Err(error),
            }
        }
    }

    /// The statement's item of a chosen request.
    fn batch_item<'i>(&self, chosen: &'i Chosen<M>) -> BatchItem<'i> {
        let Chosen { plan, texts, sources, key, .. } = chosen;
        BatchItem {
            id: chosen.id_text.clone(),
            target: plan.target.as_str(),
            sources,
            event: plan.event_name(),
            expected_version: plan.expected_version,
            actor: texts.actor.as_deref(),
            reason: texts.reason.as_deref(),
            key_text: texts.key.as_deref(),
            metadata: texts.metadata.as_deref(),
            key: key.as_ref().map(|(key, fingerprint)| (key.source(), key.seq(), fingerprint.as_str())),
        }
    }

    /// What the statement's answer decides for `plan`; `None`: the request goes its own way
    /// (its row moved back into a legal source after the statement's snapshot, or its key was
    /// not found stored and may have been stored since).
    fn batch_answer(
        &self,
        plan: &Plan<M>,
        key: Option<&(IdempotencyKey, Fingerprint)>,
        answer: BatchAnswer,
    ) -> Option<Result<Outcome<M>, Error>> {
        if let Some(applied) = answer.applied {
            let from = parse_state::<M>(&plan.id, &self.mapping.table, &applied.state);
            return Some(from.map(|from| Outcome::Applied { from, to: plan.target, version: applied.version }));
        }
        if let Some((key, fingerprint)) = key {
            let (stored_fingerprint, outcome) = answer.stored_key?;
            let entity = answer.row.map_or_else(|| plan.id.clone(), |row| plan.id.as_stored(row.id));
            return Some(replayed_transition(key, fingerprint, &stored_fingerprint, &outcome, &entity));
        }
        let now = match self.found(&plan.id, answer.row) {
            Ok(found) => found.now,
            Err(error) => return Some(Err(error)),
        };
        match plan.decide(now.state, now.version) {
            Ok(Decision::AlreadyApplied { state, version }) => Some(already_applied(&plan.id, state, version)),
            Ok(Decision::Apply { .. }) => None,
            Err(error) => Some(Err(error)),
        }
    }

    fn undecided(&self) -> Error {
        Error::Database {
            machine: M::MACHINE,
            table: self.mapping.table.to_string(),
            retryable: true,
            source: "a request of the batch was not decided".into(),
        }
    }
}

/// The texts a request's history row records, owned for the statement's item.
struct ItemTexts {
    actor: Option<String>,
    reason: Option<String>,
    key: Option<String>,
    metadata: Option<String>,
}

impl ItemTexts {
    fn of<M: StateMachine, Tx>(request: &TransitionRequest<'_, M, Tx>) -> Self {
        Self {
            actor: request.audit.actor.clone(),
            reason: request.audit.reason.clone(),
            key: request.key.as_ref().map(|(key, _)| key.to_string()),
            metadata: request.audit.metadata.as_ref().map(serde_json::Value::to_string),
        }
    }
}

/// Each request's round: how many requests before it name the same entity. Ids are compared
/// as `text` gives them, without case and trailing spaces: what a database may take for one row
/// (a case-insensitive collation, an upper-case uuid) is never in one statement twice; ids
/// taken for one entity too many only wait for a later round.
fn rounds<M: StateMachine, Tx>(
    requests: &[TransitionRequest<'_, M, Tx>],
    text: impl Fn(&crate::entity_id::EntityId) -> String,
) -> Vec<usize> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    requests
        .iter()
        .map(|request| {
            let count = seen.entry(text(&request.id).trim_end().to_lowercase()).or_default();
            *count += 1;
            *count - 1
        })
        .collect()
}
