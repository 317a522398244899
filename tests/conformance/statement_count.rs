//! The cost of a transition, measured: the statements sqlx executes for the `Applied` path and for
//! the no-op (`AlreadyApplied`) path, on SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! sqlx reports every statement it executes as a tracing event with target `sqlx::query` (at
//! DEBUG). A [`tracing_subscriber::Layer`] records them while a measured call runs. It is
//! installed as the global subscriber (once per process), not a per-thread default: SQLite
//! executes its statements on the connection's own worker thread, which a thread-local
//! subscriber would not see. The measured call runs in a span of its own ([`MEASURED`]), which
//! sqlx's SQLite worker enters for each command it runs for the call, and the recorder keeps
//! only the events inside that span: the statements of the other tests of this binary, which
//! run at the same time on other connections, are not counted. The tests of this file run one
//! at a time (a lock), each on a pool of one connection that is warmed up first, so that no
//! connection is opened (and no session setup statement is sent) while counting; a ping on that
//! connection before and after the call makes sure every statement of the call, and none of
//! another, was reported.
//!
//! Expected: PostgreSQL `Applied` = 1 (one CTE), no-op = 1 (the same CTE returns the row it
//! missed); SQLite `Applied` = 2 (`SELECT`, then one batch: `BEGIN IMMEDIATE`, history `INSERT …
//! SELECT`, `UPDATE`, `SELECT`, `COMMIT`, handed to the connection's worker thread in one call),
//! no-op = 1 (the `SELECT`); MySQL `Applied` = no-op = 1 (the `CALL` of the store's
//! transition procedure). With an idempotency key: PostgreSQL 1 (the keyed CTE) and, for a replay of the
//! key, 2 (the CTE fails on the stored key, then one `SELECT` of the row and the key); MySQL 1
//! (the keyed procedure's `CALL`) and 2 for a replay (the `CALL`, then the read); SQLite reads
//! the row and the key, then `BEGIN`, key `INSERT`, `UPDATE`, history `INSERT`, `COMMIT` (6),
//! and a replay is the read alone (1).
//!
//! On SQLite, sqlx 0.9 executes the `BEGIN` and `COMMIT` of its `Transaction` in the
//! connection's worker (`Command::Begin` / `Command::Commit`, straight through the SQLite
//! handle) without its query logger, so the keyed path logs 4 of its 6;
//! `sqlite_applied_path_is_one_transaction` counts the commits with SQLite's commit hook.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use crate::fixture::machines::{Light, LightEvent, Order};
use crate::fixture::sql::{Fixture, TestBackend};
use fsm_runtime::sqlx::Connection as _;
use fsm_runtime::{Fingerprint, IdempotencyKey, Outcome, Store, TransitionRequest, sqlx};
use tracing::field::{Field, Visit};
use tracing::{Event, Instrument as _, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// One test at a time: the recorder is global.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static RECORDING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The name of the span a measured call runs in.
const MEASURED: &str = "statement_count_measured";

/// Records the SQL of every `sqlx::query` event inside a [`MEASURED`] span while [`RECORDING`]
/// is set.
struct StatementRecorder;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for StatementRecorder {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" || !RECORDING.load(Ordering::SeqCst) {
            return;
        }
        // Another test's statement, on another connection, at the same time: not ours.
        if !ctx.event_scope(event).is_some_and(|mut scope| scope.any(|span| span.name() == MEASURED)) {
            return;
        }
        let mut fields = QueryFields::default();
        event.record(&mut fields);
        // `db.statement` holds the full text when `summary` abbreviates it.
        let sql = if fields.statement.trim().is_empty() { fields.summary } else { fields.statement };
        STATEMENTS.lock().expect("statements").push(sql.split_whitespace().collect::<Vec<_>>().join(" "));
    }
}

#[derive(Default)]
struct QueryFields {
    summary: String,
    statement: String,
}

impl Visit for QueryFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

fn install_recorder() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(StatementRecorder))
            .expect("no other global subscriber in this test binary");
    });
}

/// Waits until the only connection is back in the pool and idle: every statement sent before
/// has been executed and reported.
async fn settle<B: TestBackend, M: fsm_runtime::StateMachine>(fx: &Fixture<B, M>) {
    let mut conn = fx.pool().acquire().await.expect("acquire the connection");
    conn.ping().await.expect("ping");
}

/// Runs `call` and returns its output with the statements sqlx executed for it.
async fn statements_of<B: TestBackend, M: fsm_runtime::StateMachine, T>(
    fx: &Fixture<B, M>,
    call: impl Future<Output = T>,
) -> (T, Vec<String>) {
    settle(fx).await;
    STATEMENTS.lock().expect("statements").clear();
    RECORDING.store(true, Ordering::SeqCst);
    let output = call.instrument(tracing::info_span!("statement_count_measured")).await;
    settle(fx).await;
    RECORDING.store(false, Ordering::SeqCst);
    (output, std::mem::take(&mut *STATEMENTS.lock().expect("statements")))
}

/// A fixture of machine `M` on a pool of exactly one connection (not warmed up).
async fn fixture_of<B: TestBackend, M: fsm_runtime::StateMachine>(test: &str) -> Option<Fixture<B, M>> {
    let table = crate::fixture::backends::unique_table(test);
    let probe = B::pool(test, &table).await?;
    let options = (*probe.connect_options()).clone();
    probe.close().await;
    let pool = sqlx::pool::PoolOptions::<B>::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("a pool of one connection");
    Some(Fixture::<B, M>::with_pool(test, table, pool).await)
}

/// A fixture on a pool of exactly one connection, warmed up: the connection is open, the
/// runtime's table exists, every statement of both paths has been prepared once.
async fn fixture<B: TestBackend>(test: &str) -> Option<Arc<Fixture<B, Order>>> {
    let fx = fixture_of::<B, Order>(test).await?;
    for id in [1, 2] {
        fx.store.create(id).await.unwrap();
    }
    assert!(fx.store.transition(2, Order::Paid).await.unwrap().is_applied());
    assert!(!fx.store.transition(2, Order::Paid).await.unwrap().is_applied());
    Some(Arc::new(fx))
}

/// The statements each path is expected to cost on `B`, as sqlx logs them: (applied, no-op).
///
/// SQLite's applied path is `SELECT`, `BEGIN`, `UPDATE`, `INSERT` history, `COMMIT`, like
/// MySQL's, but sqlx-sqlite runs `BEGIN` and `COMMIT` in its worker thread without logging them:
/// 3 are logged, and `sqlite_applied_path_is_one_transaction` counts the one commit with
/// SQLite's own commit hook.
fn expected<B: TestBackend>() -> (usize, usize) {
    match B::LABEL {
        "PostgreSQL" => (1, 1),
        "SQLite" => (2, 1),
        _ => (1, 1),
    }
}

/// The same for a keyed transition: (applied, replay of the key). MySQL: the keyed
/// procedure's `CALL`; a replay is the `CALL` (its plain read finds the row in the target),
/// then the read of the row and the key.
fn expected_keyed<B: TestBackend>() -> (usize, usize) {
    match B::LABEL {
        "PostgreSQL" => (1, 2),
        "SQLite" => (4, 1),
        _ => (1, 2),
    }
}

fn show(label: &str, path: &str, statements: &[String]) -> String {
    let mut out = format!("{label} {path}: {} statement(s)", statements.len());
    for (i, sql) in statements.iter().enumerate() {
        out.push_str(&format!("\n  {}. {sql}", i + 1));
    }
    out
}

async fn applied_path<B: TestBackend>(test: &str) {
    let Some(fx) = fixture::<B>(test).await else {
        return;
    };
    crate::fixture::sql::run_on(fx, |fx| async move {
        let (outcome, statements) = statements_of(&fx, fx.store.transition(1, Order::Paid)).await;
        assert_eq!(outcome.unwrap(), Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
        let shown = show(B::LABEL, "Applied", &statements);
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{shown}\n"));
        assert_eq!(statements.len(), expected::<B>().0, "{shown}");
    })
    .await;
}

async fn noop_path<B: TestBackend>(test: &str) {
    let Some(fx) = fixture::<B>(test).await else {
        return;
    };
    crate::fixture::sql::run_on(fx, |fx| async move {
        let (outcome, statements) = statements_of(&fx, fx.store.transition(2, Order::Paid)).await;
        assert_eq!(outcome.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
        let shown = show(B::LABEL, "no-op", &statements);
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{shown}\n"));
        assert_eq!(statements.len(), expected::<B>().1, "{shown}");
    })
    .await;
}

async fn keyed_paths<B: TestBackend>(test: &str) {
    let Some(fx) = fixture::<B>(test).await else {
        return;
    };
    crate::fixture::sql::run_on(fx, |fx| async move {
        let source = format!("count-{}", crate::fixture::backends::unique_table(test));
        let key = IdempotencyKey::new(source, 1).unwrap();
        let fingerprint = Fingerprint::of_bytes(b"pay order 1");
        // Warm up the keyed statements on another entity and key.
        let warm = IdempotencyKey::new(format!("{}-warm", key.source()), 1).unwrap();
        let request = TransitionRequest::to(2, Order::Shipped).idempotency_key(warm.clone(), fingerprint.clone());
        assert!(fx.store.apply(request).await.unwrap().is_applied());
        let request = TransitionRequest::to(2, Order::Shipped).idempotency_key(warm, fingerprint.clone());
        assert!(matches!(fx.store.apply(request).await.unwrap(), Outcome::Replayed { .. }));

        let request = TransitionRequest::to(1, Order::Paid).idempotency_key(key.clone(), fingerprint.clone());
        let (outcome, statements) = statements_of(&fx, fx.store.apply(request)).await;
        assert_eq!(outcome.unwrap(), Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 });
        let shown = show(B::LABEL, "keyed Applied", &statements);
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{shown}\n"));
        assert_eq!(statements.len(), expected_keyed::<B>().0, "{shown}");

        let request = TransitionRequest::to(1, Order::Paid).idempotency_key(key, fingerprint);
        let (outcome, statements) = statements_of(&fx, fx.store.apply(request)).await;
        assert!(matches!(outcome.unwrap(), Outcome::Replayed { .. }));
        let shown = show(B::LABEL, "keyed replay", &statements);
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{shown}\n"));
        assert_eq!(statements.len(), expected_keyed::<B>().1, "{shown}");
    })
    .await;
}

/// A cyclic event (its target depends on the state): one read, then the transition on what it
/// read. PostgreSQL: `SELECT` · the CTE; SQLite: `SELECT` · the batch; MySQL: `SELECT` · the
/// procedure's `CALL` (2 each).
async fn cyclic_fire<B: TestBackend>(test: &str) {
    let Some(fx) = fixture_of::<B, Light>(test).await else {
        return;
    };
    crate::fixture::sql::run_on(Arc::new(fx), |fx| async move {
        for id in [1, 2] {
            fx.store.create(id).await.unwrap();
        }
        // Warm up the statements on entity 2.
        assert!(fx.store.fire(2, LightEvent::Next).await.unwrap().is_applied());
        let (outcome, statements) = statements_of(&fx, fx.store.fire(1, LightEvent::Next)).await;
        assert!(outcome.unwrap().is_applied());
        let shown = show(B::LABEL, "cyclic fire", &statements);
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{shown}\n"));
        let expected = 2;
        assert_eq!(statements.len(), expected, "{shown}");
    })
    .await;
}

/// A batch of 40 requests on 20 entities (20 created, 10 of them already in the target, 20
/// keyed on PostgreSQL) is two statements: the first 20 in the first round's statement, the
/// second request of each entity in the second round's (PostgreSQL's CTE, SQLite's one call,
/// MySQL's batch procedure).
async fn batch_path<B: TestBackend>(test: &str) {
    let Some(fx) = fixture::<B>(test).await else {
        return;
    };
    crate::fixture::sql::run_on(fx, |fx| async move {
        for id in 10..30 {
            fx.store.create(id).await.unwrap();
        }
        let source = format!("count-{}", crate::fixture::backends::unique_table(test));
        let keyed = B::LABEL == "PostgreSQL";
        let request = |id: i64, seq: i64| {
            let request = TransitionRequest::to(id, Order::Paid);
            if keyed && id % 2 == 0 {
                let key = IdempotencyKey::new(source.as_str(), seq).unwrap();
                request.idempotency_key(key, Fingerprint::of_bytes(format!("pay {id}").as_bytes()))
            } else {
                request
            }
        };
        let warm: Vec<_> = (20..30).map(|id| request(id, id)).collect();
        assert!(fx.store.apply_many(warm).await.into_iter().all(|answer| answer.unwrap().is_applied()));
        let batch: Vec<_> = (10..30).chain(10..30).map(|id| request(id, id)).collect();
        let (answers, statements) = statements_of(&fx, fx.store.apply_many(batch)).await;
        let shown = show(B::LABEL, "batch of 40", &statements);
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{shown}\n"));
        let applied = answers.iter().filter(|answer| answer.as_ref().unwrap().is_applied()).count();
        assert_eq!(applied, 10, "{answers:?}");
        assert_eq!(statements.len(), 2, "{shown}");
        for id in 10..30 {
            assert_eq!(fx.store.history(id).await.unwrap().len(), 1, "entity {id}");
        }
    })
    .await;
}

macro_rules! count_on {
    ($($backend:ident: $db:ty),* $(,)?) => {
        $(
            mod $backend {
                count_on!(@cases $db; applied_path, noop_path, keyed_paths, cyclic_fire, batch_path);
            }
        )*
    };
    (@cases $db:ty; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let _serial = super::SERIAL.lock().await;
                super::install_recorder();
                super::$case::<$db>(concat!("count_", stringify!($case))).await;
            }
        )*
    };
}

/// SQLite: the batch of the `Applied` path commits exactly one write transaction (so the
/// `UPDATE` and the history `INSERT` were not two autocommits), and the no-op path none (its
/// read decides). Counted with SQLite's own commit hook.
#[tokio::test]
async fn sqlite_applied_path_is_one_transaction() {
    let _serial = SERIAL.lock().await;
    install_recorder();
    let Some(fx) = fixture::<sqlx::Sqlite>("count_commits").await else {
        return;
    };
    crate::fixture::sql::run_on(fx, |fx| async move {
        let (commits, rollbacks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        {
            let mut conn = fx.pool().acquire().await.unwrap();
            let mut handle = conn.lock_handle().await.unwrap();
            let counted = commits.clone();
            handle.set_commit_hook(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                true
            });
            let counted = rollbacks.clone();
            handle.set_rollback_hook(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (outcome, statements) = statements_of(&fx, fx.store.transition(1, Order::Paid)).await;
        assert!(outcome.unwrap().is_applied());
        assert_eq!((commits.load(Ordering::SeqCst), rollbacks.load(Ordering::SeqCst)), (1, 0), "{statements:#?}");
        let (outcome, statements) = statements_of(&fx, fx.store.transition(1, Order::Paid)).await;
        assert_eq!(outcome.unwrap(), Outcome::AlreadyApplied { state: Order::Paid, version: 1 });
        assert_eq!((commits.load(Ordering::SeqCst), rollbacks.load(Ordering::SeqCst)), (1, 0), "{statements:#?}");
        assert_eq!(fx.store.get(1).await.unwrap().version, 1);
        assert_eq!(fx.store.history(1).await.unwrap().len(), 1);
    })
    .await;
}

count_on!(sqlite: fsm_runtime::sqlx::Sqlite, postgres: fsm_runtime::sqlx::Postgres, mysql: fsm_runtime::sqlx::MySql);
