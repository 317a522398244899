//! The generated transition table against a `HashMap` of the same table.
//!
//! `cargo bench --bench generated_vs_hashmap` prints criterion's timings, per call
//! (`Throughput::Elements`: one element is one `can_transition` or `fire` call), then one line per
//! pair with the nanoseconds per call of each side and the generated/HashMap speed ratio, from a
//! plain timing loop of its own (see [`summary`]).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

/// The `(from, to)` edges of the table as a `HashMap`.
type Edges = HashMap<(OrderState, OrderState), ()>;
/// The `(from, event) -> to` map of the table.
type ByEvent = HashMap<(OrderState, OrderEvent), OrderState>;

/// The table as `HashMap`s.
fn hash_tables() -> (Edges, ByEvent) {
    let edges = OrderState::TRANSITIONS.iter().map(|e| ((e.from, e.to), ())).collect();
    let by_event = OrderState::TRANSITIONS.iter().filter_map(|e| Some(((e.from, e.event?), e.to))).collect();
    (edges, by_event)
}

/// Elements of a group: one per call in an iteration.
fn elements(calls: usize) -> Throughput {
    Throughput::Elements(u64::try_from(calls).unwrap_or(u64::MAX))
}

fn tables(c: &mut Criterion) {
    let (moves, fires) = pairs();
    let (edges, by_event) = hash_tables();

    let mut group = c.benchmark_group("can_transition");
    group.throughput(elements(moves.len()));
    group.bench_function("generated", |b| {
        b.iter(|| moves.iter().filter(|&&(a, z)| OrderState::can_transition(black_box(a), black_box(z))).count())
    });
    group.bench_function("hashmap", |b| {
        b.iter(|| moves.iter().filter(|&&(a, z)| edges.contains_key(&(black_box(a), black_box(z)))).count())
    });
    group.finish();

    let mut group = c.benchmark_group("fire");
    group.throughput(elements(fires.len()));
    group.bench_function("generated", |b| {
        b.iter(|| fires.iter().filter_map(|&(s, e)| black_box(s).fire(black_box(e)).ok()).count())
    });
    group.bench_function("hashmap", |b| {
        b.iter(|| fires.iter().filter_map(|&(s, e)| by_event.get(&(black_box(s), black_box(e)))).count())
    });
    group.finish();

    summary(&moves, &fires, &edges, &by_event);
}

/// Calls per side in [`summary`]'s timing loop.
const SUMMARY_CALLS: usize = 2_000_000;

/// Nanoseconds per call of `call`, over about `SUMMARY_CALLS` calls (whole passes over
/// `inputs`), after one warm-up pass. The loop's own overhead is included, on both sides alike.
fn ns_per_call<T: Copy, R>(inputs: &[T], mut call: impl FnMut(T) -> R) -> f64 {
    for &input in inputs {
        black_box(call(black_box(input)));
    }
    let passes = (SUMMARY_CALLS / inputs.len().max(1)).max(1);
    let start = Instant::now();
    for _ in 0..passes {
        for &input in inputs {
            black_box(call(black_box(input)));
        }
    }
    start.elapsed().as_secs_f64() * 1e9 / (passes * inputs.len()).max(1) as f64
}

/// Prints, per pair, ns per call of the generated code and of the `HashMap`, and how many times
/// faster the generated code is (HashMap time / generated time), from one plain timing loop each:
/// a rougher figure than criterion's, printed so that the ratio is in the output.
fn summary(moves: &[(OrderState, OrderState)], fires: &[(OrderState, OrderEvent)], edges: &Edges, by_event: &ByEvent) {
    let pairs = [
        (
            "can_transition",
            ns_per_call(moves, |(a, z)| OrderState::can_transition(a, z)),
            ns_per_call(moves, |(a, z)| edges.contains_key(&(a, z))),
        ),
        (
            "fire",
            ns_per_call(fires, |(s, e)| s.fire(e).ok()),
            ns_per_call(fires, |(s, e)| by_event.get(&(s, e)).copied()),
        ),
    ];
    for (name, generated, hashmap) in pairs {
        eprintln!(
            "summary {name}: generated {generated:.2} ns/call, hashmap {hashmap:.2} ns/call, \
             generated is {:.1}x the speed of hashmap ({SUMMARY_CALLS} calls each)",
            hashmap / generated
        );
    }
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
