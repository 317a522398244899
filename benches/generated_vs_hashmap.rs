//! The generated transition table against a `HashMap` of the same table.
//!
//! `cargo bench --bench generated_vs_hashmap` prints criterion's timings; the ratio of the
//! `hashmap/*` to the `generated/*` medians is the speed-up of the generated `match`es.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fsm_runtime::{Fingerprint, IdempotencyKey, MemoryStore, StateMachine, Store, TransitionRequest};
use fsm_suite::order::{OrderEvent, OrderState};

/// Every (state, state) pair: the inputs of `can_transition`.
type Moves = Vec<(OrderState, OrderState)>;
/// Every (state, event) pair: the inputs of `fire`.
type Fires = Vec<(OrderState, OrderEvent)>;

/// Every (state, state) pair and every (state, event) pair, so each iteration covers the table.
fn pairs() -> (Moves, Fires) {
    let states = OrderState::STATES;
    let events = <OrderState as StateMachine>::EVENTS;
    let moves = states.iter().flat_map(|&a| states.iter().map(move |&b| (a, b))).collect();
    let fires = states.iter().flat_map(|&s| events.iter().map(move |&e| (s, e))).collect();
    (moves, fires)
}

fn tables(c: &mut Criterion) {
    let (moves, fires) = pairs();
    let edges: HashMap<(OrderState, OrderState), ()> =
        OrderState::TRANSITIONS.iter().map(|e| ((e.from, e.to), ())).collect();
    let by_event: HashMap<(OrderState, OrderEvent), OrderState> =
        OrderState::TRANSITIONS.iter().filter_map(|e| Some(((e.from, e.event?), e.to))).collect();

    let mut group = c.benchmark_group("can_transition");
    group.bench_function("generated", |b| {
        b.iter(|| moves.iter().filter(|&&(a, z)| OrderState::can_transition(black_box(a), black_box(z))).count())
    });
    group.bench_function("hashmap", |b| {
        b.iter(|| moves.iter().filter(|&&(a, z)| edges.contains_key(&(black_box(a), black_box(z)))).count())
    });
    group.finish();

    let mut group = c.benchmark_group("fire");
    group.bench_function("generated", |b| {
        b.iter(|| fires.iter().filter_map(|&(s, e)| black_box(s).fire(black_box(e)).ok()).count())
    });
    group.bench_function("hashmap", |b| {
        b.iter(|| fires.iter().filter_map(|&(s, e)| by_event.get(&(black_box(s), black_box(e)))).count())
    });
    group.finish();
}

fn memory_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
    let store = MemoryStore::<OrderState>::new();
    runtime.block_on(async {
        store.create(1).await.expect("create");
        store.transition(1, OrderState::Paid).await.expect("pay");
    });
    c.bench_function("memory_store/transition_replay", |b| {
        b.iter(|| runtime.block_on(store.transition(black_box(1), OrderState::Paid)).expect("replay"))
    });
    let mut next = 0i64;
    c.bench_function("memory_store/create_and_pay", |b| {
        b.iter(|| {
            next += 1;
            runtime.block_on(async {
                store.create(next).await.expect("create");
                store.transition(next, OrderState::Paid).await.expect("pay")
            })
        })
    });
    // The keyed path: the same work with an idempotency key and a fingerprint, then its replay.
    let fingerprint = Fingerprint::of_bytes(b"pay");
    c.bench_function("memory_store/keyed_create_and_pay", |b| {
        b.iter(|| {
            next += 1;
            let key = IdempotencyKey::new("bench", next).expect("a valid key");
            let request = TransitionRequest::to(next, OrderState::Paid).idempotency_key(key, fingerprint.clone());
            runtime.block_on(async {
                store.create(next).await.expect("create");
                store.apply(request).await.expect("pay")
            })
        })
    });
    c.bench_function("memory_store/keyed_replay", |b| {
        b.iter(|| {
            let key = IdempotencyKey::new("bench", next).expect("a valid key");
            let request = TransitionRequest::to(next, OrderState::Paid).idempotency_key(key, fingerprint.clone());
            runtime.block_on(store.apply(request)).expect("replay")
        })
    });
}

criterion_group!(benches, tables, memory_store);
criterion_main!(benches);
