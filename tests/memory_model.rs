//! Property test: random sequences of operations through `MemoryStore` give the same outcomes
//! as a plain reference model built from the generated transition table (`Order::TRANSITIONS`),
//! which shares no code with the store.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;

use common::machines::{Order, OrderEvent};
use fsm_runtime::{CreateOutcome, DeleteOutcome, Error, MemoryStore, Outcome, StateMachine, Store, TransitionRequest};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create(i64),
    Transition(i64, Order),
    TransitionFrom(i64, Order, Order),
    TransitionAtVersion(i64, Order, i64),
    Fire(i64, OrderEvent),
    Delete(i64),
}

/// What an operation gave, comparable across the store and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Created(Order),
    AlreadyExists(Order, i64),
    Applied(Order, Order, i64),
    AlreadyApplied(Order, i64),
    Deleted,
    AlreadyAbsent,
    NotFound,
    InvalidTransition(&'static str, &'static str),
    InvalidEvent(&'static str, &'static str),
    Conflict(&'static str, &'static str),
    VersionConflict(i64, i64),
}

fn seen_error(error: Error) -> Seen {
    match error {
        Error::NotFound { .. } => Seen::NotFound,
        Error::InvalidTransition { from, to, .. } => Seen::InvalidTransition(from, to),
        Error::InvalidEvent { state, event, .. } => Seen::InvalidEvent(state, event),
        Error::Conflict { expected, actual, .. } => Seen::Conflict(expected, actual),
        Error::VersionConflict { expected, actual, .. } => Seen::VersionConflict(expected, actual),
        other => panic!("unexpected error from the memory store: {other:?}"),
    }
}

fn seen_outcome(outcome: Result<Outcome<Order>, Error>) -> Seen {
    match outcome {
        Ok(Outcome::Applied { from, to, version }) => Seen::Applied(from, to, version),
        Ok(Outcome::AlreadyApplied { state, version }) => Seen::AlreadyApplied(state, version),
        Ok(other) => panic!("unexpected outcome {other:?}"),
        Err(error) => seen_error(error),
    }
}

/// The reference model: a map of rows and a linear search of the edge list.
#[derive(Default)]
struct Model {
    rows: HashMap<i64, (Order, i64)>,
}

fn edge(from: Order, to: Order) -> bool {
    Order::TRANSITIONS.iter().any(|e| e.from == from && e.to == to)
}

impl Model {
    fn apply(&mut self, op: &Op) -> Seen {
        match *op {
            Op::Create(id) => match self.rows.get(&id) {
                Some(&(state, version)) => Seen::AlreadyExists(state, version),
                None => {
                    self.rows.insert(id, (Order::Created, 0));
                    Seen::Created(Order::Created)
                }
            },
            Op::Delete(id) => match self.rows.remove(&id) {
                Some(_) => Seen::Deleted,
                None => Seen::AlreadyAbsent,
            },
            Op::Transition(id, to) => self.step(id, to, None, None),
            Op::TransitionAtVersion(id, to, version) => self.step(id, to, None, Some(version)),
            Op::TransitionFrom(id, from, to) => {
                if !edge(from, to) {
                    return Seen::InvalidTransition(from.as_str(), to.as_str());
                }
                self.step(id, to, Some(from), None)
            }
            Op::Fire(id, event) => {
                let Some(&(state, version)) = self.rows.get(&id) else {
                    return Seen::NotFound;
                };
                match Order::TRANSITIONS.iter().find(|e| e.from == state && e.event == Some(event)) {
                    Some(e) => {
                        self.rows.insert(id, (e.to, version + 1));
                        Seen::Applied(state, e.to, version + 1)
                    }
                    None if Order::TRANSITIONS.iter().any(|e| e.to == state && e.event == Some(event)) => {
                        Seen::AlreadyApplied(state, version)
                    }
                    None => Seen::InvalidEvent(state.as_str(), Order::event_name(event)),
                }
            }
        }
    }

    fn step(&mut self, id: i64, to: Order, observed: Option<Order>, expected: Option<i64>) -> Seen {
        let Some(&(state, version)) = self.rows.get(&id) else {
            return Seen::NotFound;
        };
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
        if !edge(state, to) {
            return Seen::InvalidTransition(state.as_str(), to.as_str());
        }
        self.rows.insert(id, (to, version + 1));
        Seen::Applied(state, to, version + 1)
    }
}

fn state() -> impl Strategy<Value = Order> {
    proptest::sample::select(Order::STATES.to_vec())
}

fn event() -> impl Strategy<Value = OrderEvent> {
    proptest::sample::select(Order::EVENTS.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..3i64;
    prop_oneof![
        2 => id.clone().prop_map(Op::Create),
        4 => (id.clone(), state()).prop_map(|(id, to)| Op::Transition(id, to)),
        2 => (id.clone(), state(), state()).prop_map(|(id, from, to)| Op::TransitionFrom(id, from, to)),
        2 => (id.clone(), state(), 0..4i64).prop_map(|(id, to, v)| Op::TransitionAtVersion(id, to, v)),
        4 => (id.clone(), event()).prop_map(|(id, e)| Op::Fire(id, e)),
        1 => id.prop_map(Op::Delete),
    ]
}

async fn run_store(store: &MemoryStore<Order>, op: &Op) -> Seen {
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
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_store_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let store = MemoryStore::<Order>::new();
            let mut model = Model::default();
            for (step, op) in ops.iter().enumerate() {
                let expected = model.apply(op);
                let actual = run_store(&store, op).await;
                prop_assert_eq!(&actual, &expected, "step {} {:?}", step, op);
                // History always has one row per version.
                if let Some(&(_, version)) = model.rows.get(&op_id(op)) {
                    let history = store.history(op_id(op)).await.unwrap();
                    prop_assert_eq!(i64::try_from(history.len()).unwrap(), version);
                }
            }
            Ok(())
        })?;
    }
}

fn op_id(op: &Op) -> i64 {
    match *op {
        Op::Create(id)
        | Op::Delete(id)
        | Op::Transition(id, _)
        | Op::TransitionFrom(id, _, _)
        | Op::TransitionAtVersion(id, _, _)
        | Op::Fire(id, _) => id,
    }
}
