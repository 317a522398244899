//! Timed transitions on every store (memory, SQLite, PostgreSQL, MySQL/MariaDB): a timer is
//! written with the transition that starts it and only then; a `Scheduler` fires it through the
//! ordinary compare-and-set when its `ManualClock` says it is due, exactly once across racing
//! schedulers, crashed ones and entities that moved on.

use std::sync::Arc;
use std::time::Duration;

use fsm_runtime::error::Error as RuntimeError;
use fsm_runtime::sql::Backend;
use fsm_runtime::store::SqlStore;
use fsm_runtime::timer::{DueTimer, ManualClock, Schedule, Scheduler, TimerOutcome, TimerRecord, TimerSource};
use fsm_runtime::{Error, MemoryStore, Outcome, Store, TransitionRequest};
use tokio::sync::Notify;

use crate::fixture::backends::RawAccess;
use crate::fixture::machines::{Order, OrderEvent};

const HOUR: Duration = Duration::from_secs(3600);

/// A store whose timers a scheduler can read.
pub trait Timed: Store<Order> + Clone + RawAccess + Send + Sync + 'static {
    /// The timers of the store's machine and table.
    type Timers: TimerSource + Clone + Send + Sync + 'static;
    /// Those timers.
    fn timer_source(&self) -> Self::Timers;
}

impl Timed for MemoryStore<Order> {
    type Timers = fsm_runtime::timer::MemoryTimers;
    fn timer_source(&self) -> Self::Timers {
        self.timers()
    }
}

impl<B: Backend> Timed for SqlStore<Order, B>
where
    SqlStore<Order, B>: RawAccess,
{
    type Timers = fsm_runtime::timer::SqlTimers<B>;
    fn timer_source(&self) -> Self::Timers {
        self.timers()
    }
}

/// Pays `id` and schedules its shipping `after` the payment.
fn pay_then_ship<'a, Tx: Schedule + 'a>(id: i64, after: Duration) -> TransitionRequest<'a, Order, Tx> {
    TransitionRequest::fire(id, OrderEvent::Pay).schedule(OrderEvent::Ship, after)
}

async fn timers<S: Timed>(store: &S) -> Vec<TimerRecord> {
    store.timer_source().list().await.unwrap()
}

/// A timer fires when the clock reaches it, not a second before, once.
pub async fn timer_fires_at_its_time<S: Timed>(store: Arc<S>, _table: String)
where
    S::Tx: Schedule,
{
    let clock = ManualClock::starting_now();
    store.create(1).await.unwrap();
    assert!(store.apply(pay_then_ship(1, HOUR)).await.unwrap().is_applied());
    let scheduler = Scheduler::new((*store).clone(), store.timer_source(), clock.clone());
    assert_eq!(scheduler.run_once().await.unwrap().fired, 0, "not due at once");
    clock.advance(HOUR - Duration::from_secs(1));
    assert_eq!(scheduler.run_once().await.unwrap().fired, 0, "not due a second before");
    assert_eq!(store.get(1).await.unwrap().state, Order::Paid);
    clock.advance(Duration::from_secs(2));
    assert_eq!(scheduler.run_once().await.unwrap().fired, 1);
    assert_eq!(store.get(1).await.unwrap().state, Order::Shipped);
    let history = store.history(1).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!((history[1].event.as_deref(), history[1].actor.as_deref()), (Some("ship"), Some("scheduler")));
    let listed = timers(&*store).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].outcome.as_deref(), Some("fired"));
    clock.advance(HOUR);
    assert_eq!(scheduler.run_once().await.unwrap(), Default::default(), "done timers never fire again");
}

/// A transition that is not applied (a failed effect, a no-op, a refusal) writes no timer.
pub async fn unapplied_writes_no_timer<S: Timed>(store: Arc<S>, _table: String)
where
    S::Tx: Schedule,
{
    store.create(1).await.unwrap();
    let failing = pay_then_ship::<S::Tx>(1, HOUR).effect(|_tx| Box::pin(async { Err("card declined".into()) }));
    assert!(matches!(store.apply(failing).await.unwrap_err(), Error::Effect { .. }));
    assert!(timers(&*store).await.is_empty(), "rolled back with the transition");
    assert!(store.apply(pay_then_ship(1, HOUR)).await.unwrap().is_applied());
    assert!(matches!(store.apply(pay_then_ship(1, HOUR)).await.unwrap(), Outcome::AlreadyApplied { .. }));
    store.transition(1, Order::Cancelled).await.unwrap();
    assert!(store.apply(pay_then_ship(1, HOUR)).await.is_err());
    assert_eq!(timers(&*store).await.len(), 1, "only the applied payment's timer");
}

/// A timer whose entity moved on, or is gone, is a no-op marked done: no history row.
pub async fn moved_on_timer_is_a_no_op<S: Timed>(store: Arc<S>, _table: String)
where
    S::Tx: Schedule,
{
    let clock = ManualClock::starting_now();
    for id in [1, 2] {
        store.create(id).await.unwrap();
        store.apply(pay_then_ship(id, HOUR)).await.unwrap();
    }
    store.transition(1, Order::Cancelled).await.unwrap();
    store.delete(2).await.unwrap();
    clock.advance(2 * HOUR);
    let scheduler = Scheduler::new((*store).clone(), store.timer_source(), clock.clone());
    let report = scheduler.run_once().await.unwrap();
    assert_eq!((report.fired, report.no_ops, report.errors), (0, 2, 0));
    assert_eq!(store.get(1).await.unwrap().state, Order::Cancelled);
    assert_eq!(store.history(1).await.unwrap().len(), 2, "pay and cancel, no ship");
    let mut outcomes: Vec<_> = timers(&*store).await.into_iter().map(|t| (t.entity.to_string(), t.outcome)).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [("1".to_owned(), Some("invalid_transition".to_owned())), ("2".to_owned(), Some("not_found".to_owned()))]
    );
    assert_eq!(scheduler.run_once().await.unwrap(), Default::default());
}

/// Four schedulers over 200 due timers: each timer fires once; the ship history rows are the
/// timers whose entity was still paid.
pub async fn racing_schedulers_fire_once<S: Timed>(store: Arc<S>, _table: String)
where
    S::Tx: Schedule,
{
    let clock = ManualClock::starting_now();
    for id in 1..=200 {
        store.create(id).await.unwrap();
        store.apply(pay_then_ship(id, HOUR)).await.unwrap();
        if id % 5 == 0 {
            store.transition(id, Order::Cancelled).await.unwrap();
        }
    }
    clock.advance(2 * HOUR);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let scheduler = Scheduler::new((*store).clone(), store.timer_source(), clock.clone()).batch(7);
            tokio::spawn(async move {
                let mut total = fsm_runtime::timer::SchedulerReport::default();
                for _ in 0..500 {
                    let report = scheduler.run_once().await.unwrap();
                    if report == Default::default() {
                        break;
                    }
                    total.fired += report.fired;
                    total.no_ops += report.no_ops;
                    total.errors += report.errors;
                }
                total
            })
        })
        .collect();
    let (mut fired, mut no_ops) = (0, 0);
    for task in tasks {
        let report = task.await.unwrap();
        assert_eq!(report.errors, 0);
        (fired, no_ops) = (fired + report.fired, no_ops + report.no_ops);
    }
    assert_eq!((fired, no_ops), (160, 40));
    assert!(timers(&*store).await.iter().all(|timer| timer.outcome.is_some() && timer.attempts == 1));
    let mut shipped = 0;
    for id in 1..=200 {
        let ships = store.history(id).await.unwrap().iter().filter(|h| h.event.as_deref() == Some("ship")).count();
        assert!(ships <= 1, "entity {id} shipped {ships} times");
        shipped += ships;
    }
    assert_eq!(shipped, 160);
}

/// Where a wrapped source stops for good: a scheduler that reaches it is killed there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// After the claim committed, before the event is fired.
    AfterClaim,
    /// After the event was fired, before the timer is marked done.
    BeforeDone,
}

/// A timer source that hangs at `crash`, telling the test it got there.
#[derive(Clone)]
struct Hanging<T> {
    inner: T,
    crash: Crash,
    reached: Arc<Notify>,
}

impl<T: TimerSource> TimerSource for Hanging<T> {
    async fn claim(&self, now: i64, batch: usize, lease: Duration) -> Result<Vec<DueTimer>, RuntimeError> {
        let claimed = self.inner.claim(now, batch, lease).await?;
        if self.crash == Crash::AfterClaim {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(claimed)
    }

    async fn finish(&self, timer: &DueTimer, now: i64, outcome: TimerOutcome) -> Result<(), RuntimeError> {
        if self.crash == Crash::BeforeDone {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.finish(timer, now, outcome).await
    }

    async fn fail(&self, timer: &DueTimer, error: &str) -> Result<(), RuntimeError> {
        self.inner.fail(timer, error).await
    }

    async fn list(&self) -> Result<Vec<TimerRecord>, RuntimeError> {
        self.inner.list().await
    }
}

/// A scheduler killed at `crash` (its task aborted) keeps the timer claimed until its lease
/// ends; then another fires it, once: `expected` is how the second one ends it.
async fn killed_scheduler<S: Timed>(store: Arc<S>, crash: Crash, expected: &str)
where
    S::Tx: Schedule,
{
    let (clock, lease) = (ManualClock::starting_now(), Duration::from_secs(30));
    store.create(1).await.unwrap();
    store.apply(pay_then_ship(1, HOUR)).await.unwrap();
    clock.advance(2 * HOUR);
    let reached = Arc::new(Notify::new());
    let hanging = Hanging { inner: store.timer_source(), crash, reached: reached.clone() };
    let first = Scheduler::new((*store).clone(), hanging, clock.clone()).lease(lease);
    let mut task = tokio::spawn(async move { first.run_once().await });
    tokio::select! {
        () = reached.notified() => {}
        // A pass that ends without reaching the crash (it claimed nothing, or failed) would
        // leave this test waiting for ever.
        ended = &mut task => panic!("the first scheduler never reached the crash: {ended:?}"),
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let second = Scheduler::new((*store).clone(), store.timer_source(), clock.clone()).lease(lease);
    assert_eq!(second.run_once().await.unwrap(), Default::default(), "claimed until the lease ends");
    clock.advance(lease + Duration::from_secs(1));
    let report = second.run_once().await.unwrap();
    assert_eq!((report.fired, report.no_ops, report.errors), (1, 0, 0));
    assert_eq!(store.get(1).await.unwrap().state, Order::Shipped);
    let ships = store.history(1).await.unwrap().iter().filter(|h| h.event.as_deref() == Some("ship")).count();
    assert_eq!(ships, 1, "fired exactly once");
    let listed = timers(&*store).await;
    assert_eq!((listed[0].outcome.as_deref(), listed[0].attempts), (Some(expected), 2));
}

/// Killed after claiming: the next scheduler fires the timer after the lease.
pub async fn killed_after_claim_refires<S: Timed>(store: Arc<S>, _table: String)
where
    S::Tx: Schedule,
{
    killed_scheduler(store, Crash::AfterClaim, "fired").await;
}

/// Killed after firing, before marking done: the next one's firing is a replay of the key.
pub async fn killed_after_fire_replays<S: Timed>(store: Arc<S>, _table: String)
where
    S::Tx: Schedule,
{
    killed_scheduler(store, Crash::BeforeDone, "replayed").await;
}

macro_rules! timer_cases {
    ($($backend:ident: $make:ident),*) => {
        $(
            mod $backend {
                use super::*;
                timer_cases!(@cases $make; timer_fires_at_its_time, unapplied_writes_no_timer, moved_on_timer_is_a_no_op,
                    racing_schedulers_fire_once, killed_after_claim_refires, killed_after_fire_replays);
            }
        )*
    };
    (@cases $make:ident; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                crate::run(stringify!($case), |name: String| async move {
                    crate::fixture::backends::$make::<Order>(&name).await
                }, |store, table| super::$case(store, table)).await;
            }
        )*
    };
}

timer_cases!(memory: memory_store, sqlite: sqlite_store, postgres: postgres_store, mysql: mysql_store);
