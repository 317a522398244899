//! The story of `examples/orders.rs` (`fsm_suite::order_demo`) on SQLite, PostgreSQL and
//! MariaDB: what it prints and what it did.

use crate::fixture::backends::{mysql_pool, mysql_url, postgres_pool, postgres_url};
use fsm_runtime::store::CreateOutcome;
use fsm_runtime::{Error, Outcome};
use fsm_suite::order::OrderState;
use fsm_suite::order_demo::{self, RACERS, Report};

/// Runs the story on `url` and checks the report and the printed text.
async fn tell(url: &str) {
    let mut out = Vec::new();
    let report = order_demo::run_url(url, &mut out).await.unwrap_or_else(|e| panic!("the story fails on {url}: {e}"));
    let text = String::from_utf8(out).expect("UTF-8 output");
    check(&report, &text);
}

fn check(report: &Report, text: &str) {
    assert_eq!(report.created, CreateOutcome::Created { state: OrderState::Created });
    assert_eq!(report.created_again, CreateOutcome::AlreadyExists { state: OrderState::Created, version: 0 });
    assert_eq!(report.paid, Outcome::Applied { from: OrderState::Created, to: OrderState::Paid, version: 1 });
    // The replay is a no-op: the version is unchanged.
    assert_eq!(report.paid_again, Outcome::AlreadyApplied { state: OrderState::Paid, version: 1 });
    assert!(
        matches!(report.illegal, Error::InvalidTransition { from: "paid", to: "delivered", .. }),
        "{:?}",
        report.illegal
    );
    assert_eq!((report.ship_applied, report.ship_already_applied), (1, RACERS - 1));
    assert!(
        matches!(report.cancel_refused, Error::InvalidEvent { state: "shipped", event: "cancel", .. }),
        "{:?}",
        report.cancel_refused
    );
    let moves: Vec<_> = report.history.iter().map(|e| (e.version, e.from, e.to, e.event.as_deref())).collect();
    assert_eq!(
        moves,
        [
            (1, OrderState::Created, OrderState::Paid, Some("pay")),
            (2, OrderState::Paid, OrderState::Shipped, Some("ship"))
        ]
    );
    assert_eq!((report.now.state, report.now.version), (OrderState::Shipped, 2));

    for line in [
        "2. pay:                     Applied created -> paid, version 1",
        "3. pay again (a retry):     AlreadyApplied: already paid, version 1 unchanged (a no-op)",
        "4. deliver before shipping: refused, Error::InvalidTransition:",
        "5. 16 tasks race to ship:",
        "   1 Applied, 15 AlreadyApplied",
        "6. cancel after shipping:   refused, Error::InvalidEvent:",
        "   v1  created  -> paid     on pay",
        "   v2  paid     -> shipped  on ship",
        "now: shipped at version 2",
    ] {
        assert!(text.contains(line), "the output lacks `{line}`:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_example_on_sqlite_in_memory() {
    tell(order_demo::DEFAULT_URL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_example_on_sqlite_file_runs_twice() {
    let path = std::env::temp_dir().join(format!("orders_example_{}.db", std::process::id()));
    let _leftovers = crate::fixture::Leftovers::sqlite_file(&path);
    let url = format!("sqlite://{}?mode=rwc", path.display());
    // Twice on the same file: each run uses a fresh order id.
    tell(&url).await;
    tell(&url).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_example_on_postgres() {
    if postgres_pool("orders_example_on_postgres").await.is_some() {
        tell(&postgres_url()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_example_on_mariadb() {
    if mysql_pool("orders_example_on_mariadb").await.is_some() {
        tell(&mysql_url()).await;
    }
}
