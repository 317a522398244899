//! PostgreSQL and MySQL/MariaDB: another scheduler's claim in flight hides only the timers it
//! claimed. InnoDB's locking range read also locks the index record that ends its range (a
//! next-key lock): a claim of the timers due by a lagging clock locked the next timer too, and
//! every other scheduler's `SKIP LOCKED` skipped that one, claiming nothing while it was due.
//! On a shared `fsm_timers` the next record is as often another table's first timer; a
//! scheduler then never got to its own (the CI hang of `timers::mysql::killed_after_fire_replays`,
//! whose claim came back empty while `racing_schedulers_fire_once` claimed on its neighbour).
//! (SQLite is left out: its claim is the database's one write lock.)

use std::sync::Arc;
use std::time::Duration;

use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::timer::{Clock, ManualClock, Scheduler, TimerSource};
use fsm_runtime::{StateMachine, Store, TransitionRequest};

const HOUR: Duration = Duration::from_secs(3600);

/// A task aborted when the test ends, passed or failed: it must not outlive the tables.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap()
}

/// Entity 1's timer is due in an hour, entity 2's in two. A claim by a scheduler whose clock
/// reads one and a half hours (a range read that locks, as the store's claim was before it
/// chose its rows by a plain read) holds timer 1; a scheduler at three hours claims and fires
/// timer 2 meanwhile (before: nothing), and timer 1 once the other claim is rolled back.
async fn claim_in_flight_hides_only_its_timers<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let clock = ManualClock::starting_now();
    let start = clock.now_micros();
    for (id, after) in [(1, HOUR), (2, 2 * HOUR)] {
        fx.store.create(id).await.unwrap();
        let request = TransitionRequest::fire(id, OrderEvent::Pay).schedule(OrderEvent::Ship, after);
        assert!(fx.store.apply(request).await.unwrap().is_applied());
    }
    let lagging = start + micros(HOUR + HOUR / 2);
    let p = |n| fx.p(n);
    let claim = format!(
        "SELECT id FROM fsm_timers WHERE machine = {} AND entity_table = {} AND done_at_micros IS NULL \
         AND due_at_micros <= {} AND claimed_until_micros < {} ORDER BY due_at_micros, id LIMIT 100 \
         FOR UPDATE SKIP LOCKED",
        p(1),
        p(2),
        p(3),
        p(4)
    );
    let args = vec![Arg::from(Order::MACHINE), Arg::from(fx.table.as_str()), Arg::I64(lagging), Arg::I64(lagging)];
    // At READ COMMITTED on MySQL, as the store's claims run (`before_claim`): the record after
    // the range is locked there too.
    let mut conn = fx.pool().acquire().await.unwrap();
    if B::LABEL == "MySQL/MariaDB" {
        B::execute(&mut conn, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(), Vec::new()).await.unwrap();
    }
    let mut other = fsm_runtime::sqlx::Connection::begin(&mut *conn).await.unwrap();
    assert!(
        B::fetch_i64(&mut *other, claim, args).await.unwrap().is_some(),
        "{}: the other claim holds timer 1",
        B::LABEL
    );

    clock.advance(3 * HOUR);
    let scheduler = Scheduler::new(fx.store.clone(), fx.store.timers(), clock.clone());
    let mut pass = AbortOnDrop(tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run_once().await }
    }));
    // Timer 2 is claimed and fired while the other claim is open. (Marking it done waits for
    // that claim on MySQL: the index record the mark changes is under the other's lock.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fx.store.get(2).await.unwrap().state != Order::Shipped {
        assert!(tokio::time::Instant::now() < deadline, "{}: timer 2 was never claimed", B::LABEL);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.store.get(1).await.unwrap().state, Order::Paid, "timer 1 is the other claim's");
    other.rollback().await.unwrap();
    let report =
        tokio::time::timeout(Duration::from_secs(30), &mut pass.0).await.expect("the pass ends").unwrap().unwrap();
    assert_eq!((report.fired, report.no_ops, report.errors), (1, 0, 0), "{}: timer 2 alone", B::LABEL);

    let report = scheduler.run_once().await.unwrap();
    assert_eq!((report.fired, report.no_ops, report.errors), (1, 0, 0), "{}", B::LABEL);
    assert_eq!(fx.store.get(1).await.unwrap().state, Order::Shipped);
    let timers = fx.store.timers().list().await.unwrap();
    assert!(timers.iter().all(|timer| timer.outcome.as_deref() == Some("fired") && timer.attempts == 1), "{timers:?}");
}

/// The case on each server with row locks.
macro_rules! on_servers {
    ($($module:ident: $db:ty),*) => {
        $(
            mod $module {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn claim_in_flight_hides_only_its_timers() {
                    crate::fixture::sql::run("claim_in_flight", super::claim_in_flight_hides_only_its_timers::<$db>).await;
                }
            }
        )*
    };
}

on_servers!(postgres: fsm_runtime::sqlx::Postgres, mysql: fsm_runtime::sqlx::MySql);
