//! [`MemoryStore`]'s batches: every request under the locks of all the batch's keys and rows,
//! taken once at the start and held to the end, so that no other request sees the batch half
//! applied. An effect of a batch's request must not call the store for another entity of the
//! same batch: it would wait for the batch's own lock.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use tokio::sync::OwnedMutexGuard;

use super::{MemoryStore, Row};
use crate::clock::now_micros;
use crate::entity_id::EntityId;
use crate::error::Error;
use crate::idempotency::IdempotencyKey;
use crate::keys::memory::StoredKey;
use crate::machine::StateMachine;
use crate::memory_tx::MemoryTx;
use crate::outcome::{Outcome, Snapshot};
use crate::store::TransitionRequest;
use crate::store::keyed::{already_applied, encode_applied, replayed_transition};
use crate::store::plan::{AfterRead, Plan, Resolution, not_found, parse_state};

/// The batch's locks: each key's slot and each row's, by key and id.
struct Held {
    keys: HashMap<IdempotencyKey, OwnedMutexGuard<Option<StoredKey>>>,
    rows: HashMap<EntityId, OwnedMutexGuard<Option<Row>>>,
}

impl<M: StateMachine> MemoryStore<M> {
    /// Runs `requests` in order under [`Held`] locks: one answer per request.
    pub(super) async fn apply_batch(
        &self,
        requests: Vec<TransitionRequest<'_, M, MemoryTx>>,
    ) -> Vec<Result<Outcome<M>, Error>> {
        // Owned before the first await: a request (its effects) is not `Sync`.
        let keys = requests.iter().filter_map(|request| request.key.as_ref().map(|(key, _)| key.clone())).collect();
        let ids = requests.iter().map(|request| request.id.clone()).collect();
        let mut held = self.hold(keys, ids).await;
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(self.apply_held(request, &mut held).await);
        }
        answers
    }

    /// Takes the locks of `keys`, then of the rows of `ids`, each in sorted order (as a single
    /// keyed request takes its key before its row).
    async fn hold(&self, mut keys: Vec<IdempotencyKey>, mut ids: Vec<EntityId>) -> Held {
        keys.sort();
        keys.dedup();
        let mut held = Held { keys: HashMap::new(), rows: HashMap::new() };
        for key in keys {
            let guard = self.keys.lock_key(&key).await;
            held.keys.insert(key, guard);
        }
        ids.sort();
        ids.dedup();
        let slots: Vec<_> = {
            let rows = self.lock_rows();
            ids.into_iter().filter_map(|id| rows.get(&id).cloned().map(|slot| (id, slot))).collect()
        };
        for (id, slot) in slots {
            held.rows.insert(id, slot.lock_owned().await);
        }
        held
    }

    /// One request on the held locks, as [`Store::apply`](crate::Store::apply) decides it.
    async fn apply_held(
        &self,
        request: TransitionRequest<'_, M, MemoryTx>,
        held: &mut Held,
    ) -> Result<Outcome<M>, Error> {
        let TransitionRequest { id, target, expected_version, key, audit, effects, .. } =
            request.timers_as_effect(&self.table);
        // The key first, as a single request checks it: a replay answers before any decision.
        let slot = match &key {
            Some((key, _)) => Some(match held.keys.entry(key.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(self.keys.lock_key(key).await),
            }),
            None => None,
        };
        let stored = slot.as_ref().and_then(|guard| guard.as_ref());
        if let (Some((key, fingerprint)), Some(stored)) = (&key, stored) {
            return replayed_transition(key, fingerprint, &stored.fingerprint, &stored.outcome, &id);
        }
        let row = held.rows.get_mut(&id).and_then(|guard| guard.as_mut());
        let plan = match Plan::resolve(&id, target, expected_version)? {
            Resolution::Ready(plan) => plan,
            Resolution::NeedsState { event } => {
                let row = row.as_deref().ok_or_else(|| not_found::<M>(&id, &self.table))?;
                let state = parse_state::<M>(&id, &self.table, &row.state)?;
                match Plan::for_event_in_state(&id, event, state, row.version, expected_version)? {
                    AfterRead::Ready(plan) => plan,
                    AfterRead::AlreadyApplied(Snapshot { state, version }) => {
                        return already_applied(&id, state, version);
                    }
                }
            }
        };
        let (Some((key, fingerprint)), Some(slot)) = (key, slot) else {
            return self.apply_to_row(plan, row, effects, (audit, None)).await;
        };
        let outcome = self.apply_to_row(plan, row, effects, (audit, Some(key.to_string()))).await?;
        if let Outcome::Applied { from, to, version } = outcome {
            let outcome = encode_applied(&id, from, to, version);
            **slot = Some(StoredKey { fingerprint: fingerprint.as_str().to_owned(), outcome, at_micros: now_micros() });
        }
        Ok(outcome)
    }
}
