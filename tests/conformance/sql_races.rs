//! Random concurrent traffic on SQLite, PostgreSQL and MySQL/MariaDB: 32 tasks firing random
//! legal and illegal transitions and events (deterministic seed, 200 operations per task), first
//! over 500 entities, then all on one entity; then a cyclic machine whose every event moves.
//!
//! Afterwards, for every entity: its history has exactly `version` rows, numbered 1..=version,
//! each a legal edge of the table, chained (row k's `to` is row k+1's `from`), starting from the
//! initial state and ending in the entity's state; the `Applied` outcomes the callers received
//! are exactly the history rows (no lost and no phantom transition); every `AlreadyApplied`,
//! `InvalidTransition` and `InvalidEvent` is consistent with the table; and no operation failed
//! with any other error.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::fixture::machines::{Light, LightEvent, Order, OrderEvent};
use crate::fixture::sql::{Fixture, TestBackend};
use fsm_runtime::store::HistoryEntry;
use fsm_runtime::store::SqlStore;
use fsm_runtime::{Error, Outcome, StateMachine, Store};

const TASKS: u64 = 32;
const OPS_PER_TASK: usize = 200;
const ENTITIES: i64 = 500;
const SEED: u64 = 0x5EED_F5A1_2024_0001;

/// xorshift64*: small, deterministic, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One `Applied` a caller received: (version, from, to, event name).
type Applied<M> = (i64, M, M, Option<&'static str>);

/// What the tasks saw, per entity.
struct Seen<M> {
    applied: BTreeMap<i64, Vec<Applied<M>>>,
    already_applied: usize,
    refused: usize,
    unexpected: Vec<String>,
}

impl<M> Default for Seen<M> {
    fn default() -> Self {
        Self { applied: BTreeMap::new(), already_applied: 0, refused: 0, unexpected: Vec::new() }
    }
}

impl<M> Seen<M> {
    fn merge(&mut self, other: Self) {
        for (id, mut applied) in other.applied {
            self.applied.entry(id).or_default().append(&mut applied);
        }
        self.already_applied += other.already_applied;
        self.refused += other.refused;
        self.unexpected.extend(other.unexpected);
    }
}

/// A request a task sends.
#[derive(Debug, Clone, Copy)]
enum Op<M: StateMachine> {
    To(M),
    Fire(M::Event),
}

/// Checks one result against the table; records it in `seen`.
fn record<M: StateMachine>(seen: &mut Seen<M>, id: i64, op: Op<M>, result: Result<Outcome<M>, Error>) {
    let event = match op {
        Op::To(_) => None,
        Op::Fire(event) => Some(M::event_name(event)),
    };
    match result {
        Ok(Outcome::Applied { from, to, version }) => {
            let legal = match op {
                Op::To(target) => to == target && M::can_transition(from, to),
                Op::Fire(event) => from.fire(event) == Ok(to),
            };
            if !legal {
                seen.unexpected.push(format!("{id}: {op:?} applied an illegal edge {from:?} -> {to:?}"));
            }
            seen.applied.entry(id).or_default().push((version, from, to, event));
        }
        Ok(Outcome::AlreadyApplied { state, .. }) => {
            let consistent = match op {
                Op::To(target) => state == target,
                Op::Fire(event) => M::event_targets(event).contains(&state),
            };
            if !consistent {
                seen.unexpected.push(format!("{id}: {op:?} answered AlreadyApplied in {state:?}"));
            }
            seen.already_applied += 1;
        }
        Ok(other) => seen.unexpected.push(format!("{id}: {op:?} gave an unknown outcome {other:?}")),
        Err(Error::InvalidTransition { from, to, .. }) => {
            let (from, to) = (M::from_stored(from).expect("a state"), M::from_stored(to).expect("a state"));
            if M::can_transition(from, to) || from == to || !matches!(op, Op::To(target) if target == to) {
                seen.unexpected.push(format!("{id}: {op:?} refused {from:?} -> {to:?}, which is legal"));
            }
            seen.refused += 1;
        }
        Err(Error::InvalidEvent { state, event: name, .. }) => {
            let state = M::from_stored(state).expect("a state");
            let refused_rightly = match op {
                Op::Fire(event) => M::event_name(event) == name && state.fire(event).is_err(),
                Op::To(_) => false,
            };
            if !refused_rightly {
                seen.unexpected.push(format!("{id}: {op:?} refused as an event `{name}` in {state:?}, which is legal"));
            }
            seen.refused += 1;
        }
        Err(error) => seen.unexpected.push(format!("{id}: {op:?} failed: {error} ({error:?})")),
    }
}

/// Runs `TASKS` tasks of `OPS_PER_TASK` random requests each, in `rounds` rounds that all tasks
/// start together; `entity` draws the id of each request from the round number.
async fn storm<B: TestBackend>(
    store: &SqlStore<Order, B>,
    rounds: usize,
    entity: fn(&mut Rng, usize) -> i64,
) -> Seen<Order> {
    // Every state and event, the forward ones more often than `Cancelled` / `Cancel` (which
    // end an entity early), so that entities go a long way and many requests race real moves.
    let states: Vec<Order> =
        Order::STATES.iter().flat_map(|&s| vec![s; if s == Order::Cancelled { 1 } else { 3 }]).collect();
    let events: Vec<OrderEvent> =
        Order::EVENTS.iter().flat_map(|&e| vec![e; if e == OrderEvent::Cancel { 1 } else { 3 }]).collect();
    let (states, events): (Arc<[Order]>, Arc<[OrderEvent]>) = (states.into(), events.into());
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, barrier, states, events) = (store.clone(), barrier.clone(), states.clone(), events.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(SEED ^ (task + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut seen = Seen::default();
                for op_index in 0..OPS_PER_TASK {
                    let round = op_index * rounds / OPS_PER_TASK;
                    if (op_index * rounds).is_multiple_of(OPS_PER_TASK) {
                        barrier.wait().await;
                    }
                    let id = entity(&mut rng, round);
                    let op = if rng.below(2) == 0 { Op::To(rng.pick(&states)) } else { Op::Fire(rng.pick(&events)) };
                    let result = match op {
                        Op::To(to) => store.transition(id, to).await,
                        Op::Fire(event) => store.fire(id, event).await,
                    };
                    record(&mut seen, id, op, result);
                }
                seen
            })
        })
        .collect();
    let mut seen = Seen::default();
    for task in tasks {
        seen.merge(task.await.expect("a task panicked"));
    }
    seen
}

/// Checks an entity's history, state and version against the table and against the `Applied`
/// outcomes the callers received.
async fn verify_entity<M: StateMachine, B: TestBackend>(
    store: &SqlStore<M, B>,
    id: i64,
    applied: &[Applied<M>],
) -> Result<(), String> {
    let snapshot = store.get(id).await.map_err(|e| format!("{id}: get failed: {e}"))?;
    let history: Vec<HistoryEntry<M>> = store.history(id).await.map_err(|e| format!("{id}: history failed: {e}"))?;
    let rows = i64::try_from(history.len()).expect("fits");
    if rows != snapshot.version {
        return Err(format!("{id}: {rows} history rows for version {}", snapshot.version));
    }
    let mut state = M::initial();
    for (k, row) in history.iter().enumerate() {
        let expected_version = i64::try_from(k).expect("fits") + 1;
        if row.version != expected_version {
            return Err(format!("{id}: history row {k} has version {} (expected {expected_version})", row.version));
        }
        if !M::can_transition(row.from, row.to) {
            return Err(format!("{id}: history row {} is not an edge: {:?} -> {:?}", row.version, row.from, row.to));
        }
        if row.from != state {
            return Err(format!(
                "{id}: history row {} leaves {:?}, the previous row reached {state:?}",
                row.version, row.from
            ));
        }
        if let Some(event) = &row.event
            && !M::EVENTS.iter().any(|&e| M::event_name(e) == event && row.from.fire(e) == Ok(row.to))
        {
            return Err(format!(
                "{id}: history row {} records event `{event}`, not an edge {:?} -> {:?}",
                row.version, row.from, row.to
            ));
        }
        state = row.to;
    }
    if state != snapshot.state {
        return Err(format!("{id}: in {:?}, but its history ends in {state:?}", snapshot.state));
    }
    let mut received: Vec<Applied<M>> = applied.to_vec();
    received.sort_by_key(|a| a.0);
    let recorded: Vec<Applied<M>> = history
        .iter()
        .map(|h| {
            (
                h.version,
                h.from,
                h.to,
                M::EVENTS.iter().map(|&e| M::event_name(e)).find(|n| Some(*n) == h.event.as_deref()),
            )
        })
        .collect();
    if received != recorded {
        return Err(format!("{id}: the callers received Applied {received:?}, the history holds {recorded:?}"));
    }
    Ok(())
}

fn report<M>(label: &str, seen: &Seen<M>) {
    let applied: usize = seen.applied.values().map(Vec::len).sum();
    let mut out = std::io::stderr();
    let _ = std::io::Write::write_fmt(
        &mut out,
        format_args!(
            "{label}: {applied} applied, {} already applied, {} refused, {} unexpected (seed {SEED:#x})\n",
            seen.already_applied,
            seen.refused,
            seen.unexpected.len()
        ),
    );
}

/// 32 tasks, 200 random requests each, over 500 entities.
async fn random_ops_many_entities<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    for id in 1..=ENTITIES {
        store.create(id).await.unwrap();
    }
    let seen =
        storm(store, 1, |rng, _| i64::try_from(rng.below(usize::try_from(ENTITIES).expect("fits"))).expect("fits") + 1)
            .await;
    report(&format!("{} many entities", B::LABEL), &seen);
    assert!(
        seen.unexpected.is_empty(),
        "{}: {} unexpected results, first: {:#?}",
        B::LABEL,
        seen.unexpected.len(),
        &seen.unexpected[..seen.unexpected.len().min(10)]
    );
    let mut failures = Vec::new();
    for id in 1..=ENTITIES {
        if let Err(failure) = verify_entity(store, id, seen.applied.get(&id).map_or(&[], Vec::as_slice)).await {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} entities inconsistent, first: {:#?}",
        B::LABEL,
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        seen.applied.values().map(Vec::len).sum::<usize>() >= usize::try_from(ENTITIES).expect("fits"),
        "too few moves to mean anything"
    );
}

/// The same traffic, all 32 tasks on one entity at a time. The order machine has no cycle (at
/// most four moves per entity), so the 200 requests of each task are spread over 20 rounds of 10,
/// each round on a fresh entity that all 32 tasks hit together.
async fn random_ops_one_entity<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    const ROUNDS: usize = 20;
    let store = &fx.store;
    let ids = 1..=i64::try_from(ROUNDS).expect("fits");
    for id in ids.clone() {
        store.create(id).await.unwrap();
    }
    let seen = storm(store, ROUNDS, |_, round| i64::try_from(round).expect("fits") + 1).await;
    report(&format!("{} one entity", B::LABEL), &seen);
    assert!(
        seen.unexpected.is_empty(),
        "{}: {} unexpected results, first: {:#?}",
        B::LABEL,
        seen.unexpected.len(),
        &seen.unexpected[..seen.unexpected.len().min(10)]
    );
    for id in ids {
        verify_entity(store, id, seen.applied.get(&id).map_or(&[], Vec::as_slice)).await.unwrap();
    }
    let total = TASKS as usize * OPS_PER_TASK;
    assert_eq!(seen.applied.values().map(Vec::len).sum::<usize>() + seen.already_applied + seen.refused, total);
}

/// A cyclic machine on one entity: every `Next` moves, so 32 tasks keep the row moving under one
/// another. `Next` is resolved from the state read, then runs as a compare-and-set on that
/// observed state: when the row moved meanwhile, the answer is that of `transition_from`,
/// `AlreadyApplied` if another caller already made the same move, else a retryable `Conflict`.
/// Whatever the mix, the history must hold exactly the `Applied` ones, chained.
async fn cyclic_event_one_entity<B: TestBackend>(fx: Arc<Fixture<B, Light>>) {
    const OPS: usize = 50;
    let store = &fx.store;
    store.create(1).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let (mut seen, mut conflicts) = (Seen::<Light>::default(), 0);
                for _ in 0..OPS {
                    match store.fire(1, LightEvent::Next).await {
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        result => record(&mut seen, 1, Op::Fire(LightEvent::Next), result),
                    }
                }
                (seen, conflicts)
            })
        })
        .collect();
    let (mut seen, mut conflicts) = (Seen::default(), 0);
    for task in tasks {
        let (task_seen, task_conflicts) = task.await.expect("a task panicked");
        seen.merge(task_seen);
        conflicts += task_conflicts;
    }
    report(&format!("{} cyclic one entity ({conflicts} conflicts)", B::LABEL), &seen);
    assert!(seen.unexpected.is_empty(), "{}: {:#?}", B::LABEL, &seen.unexpected[..seen.unexpected.len().min(10)]);
    assert_eq!(seen.refused, 0, "`Next` is legal in every state");
    let applied = seen.applied.get(&1).map_or(0, Vec::len);
    assert_eq!(applied + seen.already_applied + conflicts, TASKS as usize * OPS);
    assert!(applied > 0);
    verify_entity(store, 1, seen.applied.get(&1).map_or(&[], Vec::as_slice)).await.unwrap();
    assert_eq!(store.get(1).await.unwrap().version, i64::try_from(applied).expect("fits"));
}

crate::fixture::sql::per_backend!(random_ops_many_entities, random_ops_one_entity, cyclic_event_one_entity);
