//! Exactly-once outside calls (`fsm_runtime::outbound`) on every store: the entity moves into
//! its in-flight state, the call carries the key of that entry on every attempt, an attempt
//! without an answer leaves the entity in flight, the answer is recorded once, two calls of one
//! entity never overlap, and the recovery worker finds the entities left in flight and settles
//! them with their keys. The processor is a fake that counts the calls per key and how many
//! ran at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fixture::machines::Charge;
use fsm_runtime::lock::MemoryLeases;
use fsm_runtime::outbound::{Call, CallOutcome, InFlightScan, Outbound, OutboundCall, Recovery, StepOutcome};
use fsm_runtime::store::Snapshot;
use fsm_runtime::{Store, TransitionRequest};

/// A processor: answers `answer` after `delay`, except for the first `unknown` calls (no
/// answer: a timeout); records each call's key and the most calls it had at once.
struct Processor {
    answer: Charge,
    delay: Duration,
    unknown: AtomicUsize,
    keys: Mutex<Vec<String>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Processor {
    fn new(answer: Charge, delay: Duration, unknown: usize) -> Arc<Self> {
        Arc::new(Self {
            answer,
            delay,
            unknown: AtomicUsize::new(unknown),
            keys: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
        })
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }

    /// The calls per key.
    fn per_key(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for key in self.keys() {
            *counts.entry(key).or_default() += 1;
        }
        counts
    }
}

/// The processor behind an `Arc`, as the `OutboundCall` of any store.
struct Calls(Arc<Processor>);

impl<Tx> OutboundCall<Charge, Tx> for Calls {
    async fn call(&self, call: Call<'_, Charge>) -> CallOutcome<Charge> {
        let p = &self.0;
        assert_eq!(call.state, Charge::Capturing);
        p.keys.lock().unwrap().push(call.key.to_string());
        let now = p.running.fetch_add(1, Ordering::SeqCst) + 1;
        p.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(p.delay).await;
        p.running.fetch_sub(1, Ordering::SeqCst);
        let no_answer = p.unknown.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if no_answer { CallOutcome::Unknown("timed out".into()) } else { CallOutcome::Settled(p.answer) }
    }
}

type Steps<S> = Outbound<Charge, S, Arc<MemoryLeases>, Calls>;

fn outbound<S: Store<Charge> + Clone>(store: &S, leases: &Arc<MemoryLeases>, processor: &Arc<Processor>) -> Steps<S> {
    Outbound::new(store.clone(), leases.clone(), Calls(processor.clone()))
}

/// Two attempts without an answer, then the answer: every attempt carries the key of the
/// entry (`Charge/1/1`), the entity stays in flight until the answer, which is recorded once;
/// a step after that calls nothing.
async fn retried_call_keeps_its_key<S: Store<Charge> + InFlightScan<Charge> + Clone + 'static>(store: S) {
    store.create(1).await.unwrap();
    let (leases, processor) = (Arc::new(MemoryLeases::new()), Processor::new(Charge::Captured, Duration::ZERO, 2));
    let steps = outbound(&store, &leases, &processor);
    let first = steps.run(TransitionRequest::to(1, Charge::Capturing)).await.unwrap();
    assert!(
        matches!(first, StepOutcome::InFlight { state: Charge::Capturing, ref key, .. } if key.as_str() == "Charge/1/1"),
        "{first:?}"
    );
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Charge::Capturing, version: 1 });
    // The same request again (a client's retry): already in flight, the call again.
    let second = steps.run(TransitionRequest::to(1, Charge::Capturing)).await.unwrap();
    assert!(matches!(second, StepOutcome::InFlight { .. }), "{second:?}");
    let third = steps.resume(1).await.unwrap();
    assert!(matches!(third, StepOutcome::Settled { state: Charge::Captured, version: 2 }), "{third:?}");
    let after = steps.run(TransitionRequest::to(1, Charge::Capturing)).await;
    assert!(after.is_err(), "captured is past capturing: {after:?}");
    assert!(matches!(steps.resume(1).await.unwrap(), StepOutcome::Settled { state: Charge::Captured, version: 2 }));
    assert_eq!(processor.keys(), vec!["Charge/1/1"; 3]);
    let history = store.history(1).await.unwrap();
    let moves: Vec<_> = history.iter().map(|entry| (entry.from, entry.to)).collect();
    assert_eq!(moves, [(Charge::Authorized, Charge::Capturing), (Charge::Capturing, Charge::Captured)]);
}

/// A definite decline is recorded as the move to `Declined`, once.
async fn decline_is_recorded<S: Store<Charge> + InFlightScan<Charge> + Clone + 'static>(store: S) {
    store.create(1).await.unwrap();
    let (leases, processor) = (Arc::new(MemoryLeases::new()), Processor::new(Charge::Declined, Duration::ZERO, 0));
    let step = outbound(&store, &leases, &processor).run(TransitionRequest::to(1, Charge::Capturing)).await.unwrap();
    assert!(matches!(step, StepOutcome::Settled { state: Charge::Declined, version: 2 }), "{step:?}");
    assert_eq!(processor.keys().len(), 1);
    assert_eq!(store.history(1).await.unwrap().len(), 2);
}

/// Ten steps of two "processes" (two `Outbound`s sharing the claims) at once on one entity:
/// never two calls at the same time, one recorded answer, the others `Busy` or `Settled`.
async fn racing_steps_never_overlap<S: Store<Charge> + InFlightScan<Charge> + Clone + 'static>(store: S) {
    store.create(1).await.unwrap();
    store.transition(1, Charge::Capturing).await.unwrap();
    let (leases, processor) =
        (Arc::new(MemoryLeases::new()), Processor::new(Charge::Captured, Duration::from_millis(50), 0));
    let processes = [Arc::new(outbound(&store, &leases, &processor)), Arc::new(outbound(&store, &leases, &processor))];
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let steps = processes[n % 2].clone();
            tokio::spawn(async move { steps.resume(1).await.unwrap() })
        })
        .collect();
    let mut settled = 0;
    for task in tasks {
        match task.await.unwrap() {
            StepOutcome::Settled { state: Charge::Captured, .. } => settled += 1,
            StepOutcome::Busy { state: Charge::Capturing } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(settled >= 1);
    assert_eq!(processor.most_at_once.load(Ordering::SeqCst), 1, "two calls of one entity overlapped");
    assert_eq!(processor.keys(), vec!["Charge/1/1"], "one call: the others found it claimed or settled");
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Charge::Captured, version: 2 });
    assert_eq!(store.history(1).await.unwrap().len(), 2);
}

/// Entities left in flight (their process died between the move and the call) are found by
/// the recovery and settled with their keys, once each, by two recoveries running at once; an
/// entity that entered its state after the recovery's timeout is left to its request.
async fn recovery_settles_the_stuck<S: Store<Charge> + InFlightScan<Charge> + Clone + 'static>(store: S) {
    for id in 1..=6 {
        store.create(id).await.unwrap();
        store.transition(id, Charge::Capturing).await.unwrap();
    }
    store.create(7).await.unwrap();
    let (leases, processor) =
        (Arc::new(MemoryLeases::new()), Processor::new(Charge::Captured, Duration::from_millis(5), 0));
    // Just entered: not stuck for a recovery whose timeout is an hour.
    let patient = Recovery::new(Arc::new(outbound(&store, &leases, &processor)), Duration::from_secs(3600));
    assert_eq!(patient.run_once().await.unwrap().settled, 0);
    assert!(processor.keys().is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let recoveries: Vec<_> = (0..2)
        .map(|_| Arc::new(Recovery::new(Arc::new(outbound(&store, &leases, &processor)), Duration::from_millis(10))))
        .collect();
    let passes: Vec<_> = recoveries
        .iter()
        .map(|recovery| {
            let recovery = recovery.clone();
            tokio::spawn(async move { recovery.run_once().await.unwrap() })
        })
        .collect();
    let mut settled = 0;
    for pass in passes {
        let report = pass.await.unwrap();
        assert_eq!((report.errors, report.still_in_flight), (0, 0), "{report:?}");
        settled += report.settled;
    }
    assert!(settled >= 6, "every stuck entity settled by one pass or the other ({settled})");
    let per_key = processor.per_key();
    assert_eq!(per_key.len(), 6, "{per_key:?}");
    assert!(per_key.iter().all(|(key, calls)| *calls == 1 && key.ends_with("/1")), "{per_key:?}");
    for id in 1..=6 {
        assert_eq!(store.get(id).await.unwrap(), Snapshot { state: Charge::Captured, version: 2 }, "entity {id}");
    }
    assert_eq!(store.get(7).await.unwrap().state, Charge::Authorized);
    assert_eq!(recoveries[0].run_once().await.unwrap(), Default::default(), "nothing left in flight");
}

macro_rules! outbound_on {
    ($($backend:ident: $make:ident),* $(,)?) => {
        $(
            mod $backend {
                outbound_on!(@cases $make; retried_call_keeps_its_key, decline_is_recorded, racing_steps_never_overlap, recovery_settles_the_stuck);
            }
        )*
    };
    (@cases $make:ident; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                use crate::fixture::backends::RawAccess as _;
                let Some((store, table)) = crate::fixture::backends::$make::<super::Charge>(concat!("outbound_", stringify!($case))).await else {
                    return;
                };
                let _leftovers = store.leftovers(&table);
                super::$case(store.clone()).await;
                store.cleanup(&table).await;
            }
        )*
    };
}

outbound_on!(
    memory: memory_store,
    sqlite: sqlite_store,
    postgres: postgres_store,
    mysql: mysql_store,
);
