//! Property test: random sequences of operations through `MemoryStore` give the same outcomes
//! as a plain reference model built from the generated transition table (`M::TRANSITIONS`),
//! which shares no code with the store.
//!
//! The model and the test are generic over the machine and run for `Order` (events with one
//! target), `Ticket` (an event with two targets: the store reads the state, then
//! compare-and-sets from it) and `Light` (a cyclic event).

use std::collections::HashMap;

use crate::machines::{Light, Order, Ticket};
use fsm_runtime::store::CreateOutcome;
use fsm_runtime::store::DeleteOutcome;
use fsm_runtime::{Error, MemoryStore, Outcome, StateMachine, Store, TransitionRequest};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One operation on the store, on one of a few entity ids.
#[derive(Debug, Clone)]
enum Op<M: StateMachine> {
    Create(i64),
    Transition(i64, M),
    TransitionFrom(i64, M, M),
    TransitionAtVersion(i64, M, i64),
    Fire(i64, M::Event),
    FireAtVersion(i64, M::Event, i64),
    Delete(i64),
}

impl<M: StateMachine> Op<M> {
    /// The entity the operation is about.
    fn id(&self) -> i64 {
        match *self {
            Op::Create(id)
            | Op::Delete(id)
            | Op::Transition(id, _)
            | Op::TransitionFrom(id, _, _)
            | Op::TransitionAtVersion(id, _, _)
            | Op::Fire(id, _)
            | Op::FireAtVersion(id, _, _) => id,
        }
    }
}

/// What an operation gave, comparable across the store and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen<M: StateMachine> {
    Created(M),
    AlreadyExists(M, i64),
    Applied(M, M, i64),
    AlreadyApplied(M, i64),
    Deleted,
    AlreadyAbsent,
    NotFound,
    InvalidTransition(&'static str, &'static str),
    InvalidEvent(&'static str, &'static str),
    Conflict(&'static str, &'static str),
    VersionConflict(i64, i64),
}

fn seen_error<M: StateMachine>(error: Error) -> Seen<M> {
    match error {
        Error::NotFound { .. } => Seen::NotFound,
        Error::InvalidTransition { from, to, .. } => Seen::InvalidTransition(from, to),
        Error::InvalidEvent { state, event, .. } => Seen::InvalidEvent(state, event),
        Error::Conflict { expected, actual, .. } => Seen::Conflict(expected, actual),
        Error::VersionConflict { expected, actual, .. } => Seen::VersionConflict(expected, actual),
        other => panic!("unexpected error from the memory store: {other:?}"),
    }
}

fn seen_outcome<M: StateMachine>(outcome: Result<Outcome<M>, Error>) -> Seen<M> {
    match outcome {
        Ok(Outcome::Applied { from, to, version }) => Seen::Applied(from, to, version),
        Ok(Outcome::AlreadyApplied { state, version }) => Seen::AlreadyApplied(state, version),
        Ok(other) => panic!("unexpected outcome {other:?}"),
        Err(error) => seen_error(error),
    }
}

/// A history row as the model keeps it: version, from, to, the event's stored name.
type ModelHistory<M> = (i64, M, M, Option<&'static str>);

/// A row of the model.
#[derive(Debug, Clone)]
struct Row<M: StateMachine> {
    state: M,
    version: i64,
    history: Vec<ModelHistory<M>>,
}

/// The reference model: a map of rows and linear searches of the edge list.
struct Model<M: StateMachine> {
    rows: HashMap<i64, Row<M>>,
}

impl<M: StateMachine> Default for Model<M> {
    fn default() -> Self {
        Self { rows: HashMap::new() }
    }
}

/// Whether the table has an edge `from -> to`.
fn edge<M: StateMachine>(from: M, to: M) -> bool {
    M::TRANSITIONS.iter().any(|e| e.from == from && e.to == to)
}

/// Where `event` leads from `state`, by the table.
fn event_edge<M: StateMachine>(state: M, event: M::Event) -> Option<M> {
    M::TRANSITIONS.iter().find(|e| e.from == state && e.event == Some(event)).map(|e| e.to)
}

/// The distinct states `event` leads to, by the table.
fn event_targets<M: StateMachine>(event: M::Event) -> Vec<M> {
    let mut targets = Vec::new();
    for e in M::TRANSITIONS.iter().filter(|e| e.event == Some(event)) {
        if !targets.contains(&e.to) {
            targets.push(e.to);
        }
    }
    targets
}

/// Whether `event` is cyclic by the table: one of its targets is also one of its sources.
fn event_cyclic<M: StateMachine>(event: M::Event) -> bool {
    let targets = event_targets::<M>(event);
    M::TRANSITIONS.iter().any(|e| e.event == Some(event) && targets.contains(&e.from))
}

impl<M: StateMachine> Model<M> {
    fn apply(&mut self, op: &Op<M>) -> Seen<M> {
        match *op {
            Op::Create(id) => match self.rows.get(&id) {
                Some(row) => Seen::AlreadyExists(row.state, row.version),
                None => {
                    self.rows.insert(id, Row { state: M::initial(), version: 0, history: Vec::new() });
                    Seen::Created(M::initial())
                }
            },
            Op::Delete(id) => match self.rows.remove(&id) {
                Some(_) => Seen::Deleted,
                None => Seen::AlreadyAbsent,
            },
            Op::Transition(id, to) => self.step(id, to, None, None, None),
            Op::TransitionAtVersion(id, to, version) => self.step(id, to, None, Some(version), None),
            Op::TransitionFrom(id, from, to) => {
                // The table forbids it: refused before the row is looked at.
                if !edge(from, to) {
                    return Seen::InvalidTransition(from.as_str(), to.as_str());
                }
                self.step(id, to, Some(from), None, None)
            }
            Op::Fire(id, event) => self.fire(id, event, None),
            Op::FireAtVersion(id, event, version) => self.fire(id, event, Some(version)),
        }
    }

    /// Fires `event`: with one target, a compare-and-set to it from the event's sources; with
    /// several, a read of the state, then a compare-and-set from the state read.
    fn fire(&mut self, id: i64, event: M::Event, expected: Option<i64>) -> Seen<M> {
        let targets = event_targets::<M>(event);
        if let [target] = targets[..] {
            return self.step(id, target, None, expected, Some(event));
        }
        let Some(row) = self.rows.get(&id) else {
            return Seen::NotFound;
        };
        let (state, version) = (row.state, row.version);
        // In one of the targets: the event was applied already (unless a target is a source).
        if !event_cyclic::<M>(event) && targets.contains(&state) {
            return Seen::AlreadyApplied(state, version);
        }
        let Some(to) = event_edge(state, event) else {
            return Seen::InvalidEvent(state.as_str(), M::event_name(event));
        };
        self.step(id, to, Some(state), expected, Some(event))
    }

    /// A compare-and-set to `to`: from `observed` when given, else from any state with an edge
    /// to `to` (an edge of `event`, when the request fires one).
    fn step(&mut self, id: i64, to: M, observed: Option<M>, expected: Option<i64>, event: Option<M::Event>) -> Seen<M> {
        let Some(row) = self.rows.get_mut(&id) else {
            return Seen::NotFound;
        };
        let (state, version) = (row.state, row.version);
        if state == to {
            return Seen::AlreadyApplied(state, version);
        }
        if let Some(expected) = expected
            && expected != version
        {
            return Seen::VersionConflict(expected, version);
        }
        if let Some(observed) = observed
            && observed != state
        {
            return Seen::Conflict(observed.as_str(), state.as_str());
        }
        let legal = match event {
            Some(event) => event_edge(state, event) == Some(to),
            None => edge(state, to),
        };
        if !legal {
            return match event {
                Some(event) => Seen::InvalidEvent(state.as_str(), M::event_name(event)),
                None => Seen::InvalidTransition(state.as_str(), to.as_str()),
            };
        }
        row.state = to;
        row.version = version + 1;
        row.history.push((version + 1, state, to, event.map(M::event_name)));
        Seen::Applied(state, to, version + 1)
    }
}

fn state<M: StateMachine>() -> impl Strategy<Value = M> {
    proptest::sample::select(M::STATES.to_vec())
}

fn event<M: StateMachine>() -> impl Strategy<Value = M::Event> {
    proptest::sample::select(M::EVENTS.to_vec())
}

fn op<M: StateMachine>() -> impl Strategy<Value = Op<M>> {
    let id = 0..3i64;
    // Wide enough to hit the current version now and then, also after a few cycles of `Light`.
    let version = 0..6i64;
    prop_oneof![
        2 => id.clone().prop_map(Op::Create),
        4 => (id.clone(), state::<M>()).prop_map(|(id, to)| Op::Transition(id, to)),
        2 => (id.clone(), state::<M>(), state::<M>()).prop_map(|(id, from, to)| Op::TransitionFrom(id, from, to)),
        2 => (id.clone(), state::<M>(), version.clone()).prop_map(|(id, to, v)| Op::TransitionAtVersion(id, to, v)),
        4 => (id.clone(), event::<M>()).prop_map(|(id, e)| Op::Fire(id, e)),
        2 => (id.clone(), event::<M>(), version).prop_map(|(id, e, v)| Op::FireAtVersion(id, e, v)),
        1 => id.prop_map(Op::Delete),
    ]
}

fn ops<M: StateMachine>() -> impl Strategy<Value = Vec<Op<M>>> {
    proptest::collection::vec(op(), 1..60)
}

async fn run_store<M: StateMachine>(store: &MemoryStore<M>, op: &Op<M>) -> Seen<M> {
    match *op {
        Op::Create(id) => match store.create(id).await {
            Ok(CreateOutcome::Created { state }) => Seen::Created(state),
            Ok(CreateOutcome::AlreadyExists { state, version }) => Seen::AlreadyExists(state, version),
            Err(error) => seen_error(error),
        },
        Op::Delete(id) => match store.delete(id).await {
            Ok(DeleteOutcome::Deleted) => Seen::Deleted,
            Ok(DeleteOutcome::AlreadyAbsent) => Seen::AlreadyAbsent,
            Err(error) => seen_error(error),
        },
        Op::Transition(id, to) => seen_outcome(store.transition(id, to).await),
        Op::TransitionFrom(id, from, to) => seen_outcome(store.transition_from(id, from, to).await),
        Op::TransitionAtVersion(id, to, v) => {
            seen_outcome(store.apply(TransitionRequest::to(id, to).expect_version(v)).await)
        }
        Op::Fire(id, event) => seen_outcome(store.fire(id, event).await),
        Op::FireAtVersion(id, event, v) => {
            seen_outcome(store.apply(TransitionRequest::fire(id, event).expect_version(v)).await)
        }
    }
}

/// Runs `ops` through a fresh store and a fresh model; after every step, the outcomes, the
/// entity's state and version and its whole history must agree.
fn check<M: StateMachine>(ops: &[Op<M>]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = MemoryStore::<M>::new();
        let mut model = Model::<M>::default();
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let actual = run_store(&store, op).await;
            prop_assert_eq!(&actual, &expected, "step {} {:?}", step, op);
            let id = op.id();
            let row = model.rows.get(&id);
            let snapshot = store.get(id).await.ok().map(|s| (s.state, s.version));
            prop_assert_eq!(snapshot, row.map(|r| (r.state, r.version)), "step {} {:?}", step, op);
            let history: Vec<ModelHistory<M>> = store
                .history(id)
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.version, h.from, h.to, h.event.map(|name| name_of_event::<M>(&name))))
                .collect();
            prop_assert_eq!(&history, &row.map(|r| r.history.clone()).unwrap_or_default(), "step {} {:?}", step, op);
        }
        Ok(())
    })
}

/// The `'static` stored name of an event, from the name the store's history gives back.
fn name_of_event<M: StateMachine>(name: &str) -> &'static str {
    M::EVENTS.iter().map(|&e| M::event_name(e)).find(|&n| n == name).unwrap()
}

/// The three machines cover the three kinds of event the model distinguishes, and the model's
/// reading of cyclicity from the table agrees with the declaration.
#[test]
fn the_machines_cover_every_kind_of_event() {
    fn kinds<M: StateMachine>() -> Vec<(usize, bool)> {
        M::EVENTS
            .iter()
            .map(|&e| {
                assert_eq!(event_cyclic::<M>(e), M::event_is_cyclic(e), "{e:?}");
                (event_targets::<M>(e).len(), event_cyclic::<M>(e))
            })
            .collect()
    }
    assert!(kinds::<Order>().iter().all(|&(targets, cyclic)| targets == 1 && !cyclic));
    assert!(kinds::<Ticket>().contains(&(2, false)));
    assert!(kinds::<Light>().iter().any(|&(targets, cyclic)| targets > 1 && cyclic));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn order_store_matches_the_reference_model(ops in ops::<Order>()) {
        check(&ops)?;
    }

    #[test]
    fn ticket_store_matches_the_reference_model(ops in ops::<Ticket>()) {
        check(&ops)?;
    }

    #[test]
    fn light_store_matches_the_reference_model(ops in ops::<Light>()) {
        check(&ops)?;
    }
}

/// Memory keys lock one key at a time, as a key's row does on SQL: an effect of a keyed
/// transition may run a keyed operation with another key through keys shared with another
/// machine's store, and a transition of that machine with a third key does not wait for either.
#[tokio::test]
async fn keys_shared_by_machines_lock_one_key_at_a_time() {
    use fsm_runtime::{Fingerprint, IdempotencyKey, Keys as _, Once};

    let orders = std::sync::Arc::new(MemoryStore::<Order>::new());
    let tickets = std::sync::Arc::new(MemoryStore::<Ticket>::with_keys(orders.keys()));
    orders.create(1).await.unwrap();
    tickets.create(1).await.unwrap();
    let key = |seq: i64| IdempotencyKey::new("memory-keys", seq).unwrap();
    let (keys, other_machine) = (tickets.keys(), tickets.clone());
    let pay = TransitionRequest::to(1, Order::Paid).idempotency_key(key(1), Fingerprint::new("pay").unwrap()).effect(
        move |_tx| {
            Box::pin(async move {
                let inner = keys.run_once(key(2), Fingerprint::new("inner")?, |_tx| Box::pin(async { Ok(5_u8) }));
                assert_eq!(inner.await?, Once::Ran(5));
                let resolve =
                    TransitionRequest::to(1, Ticket::Resolved).idempotency_key(key(3), Fingerprint::new("resolve")?);
                assert!(other_machine.apply(resolve).await?.is_applied());
                Ok(())
            })
        },
    );
    let applied = tokio::time::timeout(std::time::Duration::from_secs(10), orders.apply(pay)).await;
    assert!(applied.expect("no request waits for another key").unwrap().is_applied());
    // The three keys are stored once each, in the keys both stores share.
    assert_eq!(orders.keys().purge(std::time::Duration::ZERO).await.unwrap(), 3);
}
