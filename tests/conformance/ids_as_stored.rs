//! Ids as the entity table stores them, on SQLite, PostgreSQL and MySQL/MariaDB (issue 14,
//! items 5 to 7): history rows, idempotency-key outcomes, the effect's `Transition.id` and the
//! outbox messages an effect writes with it are under the id as the table stores it (read back
//! as text), never under the spelling the caller passed; `history`, `audit` and `delete`
//! resolve the stored id first.
//!
//! - `id_types_users_have`: one test per database over the id column types real tables use
//!   (PostgreSQL `uuid`, `integer`, `bigint`, `text`; MySQL/MariaDB `INT UNSIGNED`, `BIGINT`,
//!   `CHAR(36)`, `BINARY(16)`; SQLite `INTEGER PRIMARY KEY`, `TEXT`), each on a fresh table:
//!   create, fire, a keyed replay, an effect's view of the transition, a locked transition, the
//!   history, `delete` keeping the audit trail and the id created again. On PostgreSQL also a
//!   text id on an `integer` column and uppercase spellings of a `uuid` (stored lowercase).
//! - `default_collation`: a table created with the server's default collation (MySQL/MariaDB:
//!   case-insensitive, `PAD SPACE`; SQLite: `COLLATE NOCASE`; PostgreSQL: a non-deterministic
//!   ICU collation, when the server has ICU): every spelling of `Mixed-Case` moves the one row,
//!   and its history, key outcome and outbox message name `Mixed-Case`, compared byte for byte.
//! - `two_machines_on_one_table`: an order machine and a payment machine on two state (and
//!   version) columns of one row keep their own histories and versions, also when 16 tasks of
//!   each race on the same row.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt as _;

use crate::fixture::backends::{mapping_for, unique_table};
use crate::fixture::machines::{Order, OrderEvent, Payment, PaymentEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::outbox::{Outbox as _, OutboxMessage};
use fsm_runtime::sql::SqlTx;
use fsm_runtime::store::{
    CreateOutcome, DeleteOutcome, EffectFuture, EntityId, HistoryEntry, LockedEntity as _, Snapshot, SqlStore,
    Transition,
};
use fsm_runtime::{Error, Fingerprint, IdempotencyKey, Outcome, StateMachine, Store, TransitionRequest, sqlx};

/// One id exercised on a table: the spelling it is created with, the spelling every later call
/// uses, and the id as the table stores it (what the effect's `Transition.id` must be; as text,
/// what the runtime's rows must name).
#[derive(Debug, Clone)]
struct Spelling {
    created: EntityId,
    used: EntityId,
    stored: EntityId,
}

/// An id created, used and stored the same way.
fn same(id: impl Into<EntityId>) -> Spelling {
    let id = id.into();
    Spelling { created: id.clone(), used: id.clone(), stored: id }
}

/// What differs between the databases here.
trait IdsAsStored: TestBackend {
    /// The id column types users have, each with the ids exercised on a table of its own.
    fn id_types() -> Vec<(&'static str, Vec<Spelling>)>;

    /// `column` equal to the `n`th parameter byte for byte, whatever the column's collation.
    fn exact(column: &str, n: usize) -> String;
}

impl IdsAsStored for sqlx::Sqlite {
    fn id_types() -> Vec<(&'static str, Vec<Spelling>)> {
        vec![
            ("INTEGER", vec![same(1), same(i64::MAX)]),
            ("TEXT", vec![same("ord-1"), same("zürich-7"), same("o'brien\"; --")]),
        ]
    }

    fn exact(column: &str, n: usize) -> String {
        format!("{column} = {} COLLATE BINARY", Self::param(n))
    }
}

/// A uuid stored lowercase (PostgreSQL writes a `uuid` so, whatever the spelling it was given).
const UUID_A: &str = "0b0c53f6-2d6f-4a5e-9d3c-1f1e2a3b4c5d";
const UUID_B: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const UUID_C: &str = "ffeeddcc-bbaa-4099-8877-665544332211";

impl IdsAsStored for sqlx::Postgres {
    fn id_types() -> Vec<(&'static str, Vec<Spelling>)> {
        let text = |id: &str| EntityId::Text(id.to_owned());
        vec![
            (
                "uuid",
                vec![
                    same(UUID_A),
                    // Created lowercase, then used in uppercase: the row, its history and its
                    // key are under the lowercase form.
                    Spelling { created: text(UUID_B), used: text(&UUID_B.to_uppercase()), stored: text(UUID_B) },
                    // Created and used in uppercase: PostgreSQL stores it lowercase.
                    Spelling {
                        created: text(&UUID_C.to_uppercase()),
                        used: text(&UUID_C.to_uppercase()),
                        stored: text(UUID_C),
                    },
                ],
            ),
            ("integer", vec![same(1), same(i64::from(i32::MAX)), same("42")]),
            ("bigint", vec![same(1), same(i64::MAX)]),
            ("text", vec![same("ord-1"), same("Mixed-Case"), same("zürich-7")]),
        ]
    }

    fn exact(column: &str, n: usize) -> String {
        format!("{column} = {}", Self::param(n))
    }
}

impl IdsAsStored for sqlx::MySql {
    fn id_types() -> Vec<(&'static str, Vec<Spelling>)> {
        vec![
            ("INT UNSIGNED", vec![same(1), same(4_000_000_000_i64)]),
            ("BIGINT", vec![same(1), same(i64::MAX)]),
            ("CHAR(36)", vec![same(UUID_A), same(UUID_B)]),
            ("BINARY(16)", vec![same("0123456789abcdef"), same("fedcba9876543210")]),
        ]
    }

    fn exact(column: &str, n: usize) -> String {
        format!("CAST({column} AS BINARY) = CAST({} AS BINARY)", Self::param(n))
    }
}

/// The history rows of `table` under exactly `entity` (compared byte for byte).
async fn rows_under<B: IdsAsStored, M: StateMachine>(fx: &Fixture<B, M>, table: &str, entity: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM fsm_history WHERE entity_table = {} AND {}",
        B::param(1),
        B::exact("entity_id", 2)
    );
    fx.fetch_i64(sql, [Arg::from(table), Arg::from(entity)]).await.unwrap_or(0)
}

/// Every history row of `table`, whatever its entity and machine.
async fn rows_of_table<B: IdsAsStored, M: StateMachine>(fx: &Fixture<B, M>, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM fsm_history WHERE entity_table = {}", B::param(1));
    fx.fetch_i64(sql, [Arg::from(table)]).await.unwrap_or(0)
}

/// The stored outcome of the key `(source, seq)`, as JSON.
async fn stored_outcome<B: IdsAsStored, M: StateMachine>(
    fx: &Fixture<B, M>,
    key: &IdempotencyKey,
) -> serde_json::Value {
    let sql = format!(
        "SELECT outcome, seq FROM fsm_idempotency_keys WHERE source = {} AND seq = {}",
        B::param(1),
        B::param(2)
    );
    let mut conn = fx.pool().acquire().await.expect("a connection");
    let (outcome, _) = B::fetch_text_i64(&mut conn, sql, vec![Arg::from(key.source()), Arg::from(key.seq())])
        .await
        .expect("read the key")
        .unwrap_or_else(|| panic!("{}: the key {key} is not stored", B::LABEL));
    serde_json::from_str(&outcome).expect("a JSON outcome")
}

/// An effect recording the transition it runs in.
fn record<B: TestBackend>(
    seen: &Arc<Mutex<Vec<Transition>>>,
) -> impl for<'t> FnOnce(&'t mut SqlTx<B>) -> EffectFuture<'t> + Send + 'static {
    let seen = seen.clone();
    move |tx: &mut SqlTx<B>| -> EffectFuture<'_> {
        Box::pin(async move {
            let transition = tx.transition().cloned().ok_or("an effect outside a transition")?;
            seen.lock().expect("seen").push(transition);
            Ok(())
        })
    }
}

/// The versions, states and deletion marks of a history, for comparisons.
fn summary<M: StateMachine>(history: &[HistoryEntry<M>]) -> Vec<(i64, M, M, bool)> {
    history.iter().map(|h| (h.version, h.from, h.to, h.deleted_at_micros.is_some())).collect()
}

/// The life of one id on `store` (of entity table `table`): everything is written under
/// `spelling.stored` and nothing under the caller's spelling. `seq` numbers its key.
async fn exercise_id<B: IdsAsStored>(
    fx: &Fixture<B, Order>,
    store: &SqlStore<Order, B>,
    table: &str,
    spelling: &Spelling,
    seq: i64,
) {
    let Spelling { created, used, stored } = spelling.clone();
    let at = format!("{}: {table}, id {created} used as {used}", B::LABEL);
    let stored_text = stored.to_string();

    // Create, and again (under the spelling the calls use).
    assert_eq!(
        store.create(created.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        CreateOutcome::Created { state: Order::Created },
        "{at}"
    );
    assert_eq!(
        store.create(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        CreateOutcome::AlreadyExists { state: Order::Created, version: 0 },
        "{at}"
    );
    // Applied, then a no-op.
    assert_eq!(
        store.fire(used.clone(), OrderEvent::Pay).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 },
        "{at}"
    );
    assert_eq!(
        store.fire(used.clone(), OrderEvent::Pay).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Outcome::AlreadyApplied { state: Order::Paid, version: 1 },
        "{at}"
    );
    // A keyed fire with an effect: the effect sees the stored id; the same request again is a
    // replay that runs nothing.
    let key = IdempotencyKey::new(table, seq).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keyed = || {
        TransitionRequest::fire(used.clone(), OrderEvent::Ship)
            .idempotency_key(key.clone(), Fingerprint::of_bytes(b"ship"))
            .effect(record::<B>(&seen))
    };
    assert_eq!(
        store.apply(keyed()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 },
        "{at}"
    );
    assert_eq!(
        store.apply(keyed()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Outcome::Replayed { from: Order::Paid, to: Order::Shipped, version: 2 },
        "{at}"
    );
    let expected = Transition { machine: "Order", id: stored.clone(), from: "paid", to: "shipped", version: 2 };
    assert_eq!(*seen.lock().unwrap(), [expected], "{at}: the effect ran once, on the stored id");
    assert_eq!(stored_outcome(fx, &key).await["entity"], serde_json::json!(stored_text), "{at}: the key's outcome");

    // A locked transition.
    let mut locked = store.lock(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}"));
    assert_eq!(locked.snapshot(), Snapshot { state: Order::Shipped, version: 2 }, "{at}");
    assert_eq!(
        locked.transition(Order::Delivered).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Outcome::Applied { from: Order::Shipped, to: Order::Delivered, version: 3 },
        "{at}"
    );
    locked.commit().await.unwrap_or_else(|e| panic!("{at}: {e:?}"));

    // The history: as long as the version, under the stored id only.
    let now = store.get(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}"));
    assert_eq!(now, Snapshot { state: Order::Delivered, version: 3 }, "{at}");
    let history = store.history(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}"));
    assert_eq!(history.len() as i64, now.version, "{at}: history {history:?}");
    assert_eq!(
        summary(&history),
        [
            (1, Order::Created, Order::Paid, false),
            (2, Order::Paid, Order::Shipped, false),
            (3, Order::Shipped, Order::Delivered, false)
        ],
        "{at}"
    );
    assert_eq!(history[1].idempotency_key.as_deref(), Some(key.to_string().as_str()), "{at}");
    assert_eq!(
        store.history(stored.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        history,
        "{at}: under the stored id too"
    );
    assert_eq!(rows_under(fx, table, &stored_text).await, 3, "{at}: rows under the stored id");
    let used_text = used.to_string();
    if used_text != stored_text {
        assert_eq!(rows_under(fx, table, &used_text).await, 0, "{at}: rows under the caller's spelling");
    }

    // Deleted: the audit trail stays, marked.
    assert_eq!(
        store.delete(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        DeleteOutcome::Deleted,
        "{at}"
    );
    assert!(matches!(store.get(used.clone()).await.unwrap_err(), Error::NotFound { .. }), "{at}");
    assert!(
        store.history(stored.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")).is_empty(),
        "{at}: no live history"
    );
    let audit = store.audit(stored.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}"));
    assert_eq!(
        summary(&audit),
        [
            (1, Order::Created, Order::Paid, true),
            (2, Order::Paid, Order::Shipped, true),
            (3, Order::Shipped, Order::Delivered, true)
        ],
        "{at}: the audit after delete"
    );

    // Created again: version 0, and its first transition is history version 1 of a new life.
    assert_eq!(
        store.create(created.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        CreateOutcome::Created { state: Order::Created },
        "{at}"
    );
    assert_eq!(
        store.get(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Snapshot { state: Order::Created, version: 0 },
        "{at}"
    );
    assert_eq!(
        store.fire(used.clone(), OrderEvent::Pay).await.unwrap_or_else(|e| panic!("{at}: {e:?}")),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 },
        "{at}: a new life"
    );
    assert_eq!(
        summary(&store.history(used.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}"))),
        [(1, Order::Created, Order::Paid, false)],
        "{at}"
    );
    let audit = store.audit(stored.clone()).await.unwrap_or_else(|e| panic!("{at}: {e:?}"));
    assert_eq!(
        summary(&audit),
        [
            (1, Order::Created, Order::Paid, true),
            (2, Order::Paid, Order::Shipped, true),
            (3, Order::Shipped, Order::Delivered, true),
            (1, Order::Created, Order::Paid, false)
        ],
        "{at}: the audit of two lives"
    );
    assert_eq!(rows_under(fx, table, &stored_text).await, 4, "{at}");
    if used_text != stored_text {
        assert_eq!(rows_under(fx, table, &used_text).await, 0, "{at}: rows under the caller's spelling");
    }
}

/// (1) Each id column type users have, on a fresh table of its own.
async fn id_types_users_have<B: IdsAsStored>(fx: Arc<Fixture<B, Order>>) {
    let mut seq = 0;
    for (id_type, spellings) in B::id_types() {
        let table = fx.extra_entity_table("ids");
        fx.exec(
            format!(
                "CREATE TABLE {table} (id {id_type} PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL)"
            ),
            [],
        )
        .await;
        let store = SqlStore::<Order, B>::with_mapping(fx.pool().clone(), mapping_for::<Order>(&table))
            .await
            .unwrap_or_else(|e| panic!("{}: a store on an id of type {id_type}: {e}", B::LABEL));
        for (n, spelling) in spellings.iter().enumerate() {
            seq += 1;
            exercise_id(&fx, &store, &table, spelling, seq).await;
            // Each id wrote only its own rows: four per id so far.
            assert_eq!(rows_of_table(&fx, &table).await, 4 * (n as i64 + 1), "{}: {id_type}", B::LABEL);
        }
    }
}

/// (2) The entity table `table` (made by the caller with [`Fixture::extra_entity_table`]) whose
/// id column (declared `id_column`) compares case-insensitively (and, `pads`, ignores trailing
/// spaces): every spelling of `Mixed-Case` moves the one row, and its history, key outcome and
/// outbox message name `Mixed-Case` byte for byte.
async fn mixed_case_ids<B: IdsAsStored>(fx: &Fixture<B, Order>, table: String, id_column: &str, pads: bool) {
    fx.exec(
        format!(
            "CREATE TABLE {table} (id {id_column} PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL)"
        ),
        [],
    )
    .await;
    let store = SqlStore::<Order, B>::with_mapping(fx.pool().clone(), mapping_for::<Order>(&table)).await.unwrap();
    let at = format!("{}: {id_column}", B::LABEL);
    let stored = EntityId::from("Mixed-Case");

    assert_eq!(store.create("Mixed-Case").await.unwrap(), CreateOutcome::Created { state: Order::Created }, "{at}");
    // The table's collation takes another spelling for the same id.
    assert_eq!(
        store.create("MIXED-CASE").await.unwrap(),
        CreateOutcome::AlreadyExists { state: Order::Created, version: 0 },
        "{at}: the table's unique index"
    );
    assert_eq!(
        store.fire("mixed-case", OrderEvent::Pay).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 },
        "{at}"
    );
    assert_eq!(store.history("Mixed-Case").await.unwrap().len(), 1, "{at}");
    assert_eq!(rows_under(fx, &table, "Mixed-Case").await, 1, "{at}: the history under the stored id");
    assert_eq!(rows_under(fx, &table, "mixed-case").await, 0, "{at}: the history under the caller's spelling");

    // Trailing spaces (PAD SPACE collations) or another case.
    let ship_as = if pads { "Mixed-Case " } else { "MIXED-CASE" };
    assert_eq!(
        store.fire(ship_as, OrderEvent::Ship).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 },
        "{at}: shipped as {ship_as:?}"
    );
    assert_eq!(rows_under(fx, &table, "Mixed-Case").await, 2, "{at}");
    assert_eq!(rows_under(fx, &table, ship_as).await, 0, "{at}: rows under {ship_as:?}");

    // A keyed fire under a third spelling, whose effect enqueues a message keyed by the
    // transition's id; a replay under a fourth spelling is the same request.
    let key = IdempotencyKey::new(table.as_str(), 1).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deliver = |id: &str| {
        let (topic, seen) = (table.clone(), seen.clone());
        TransitionRequest::fire(id, OrderEvent::Deliver)
            .idempotency_key(key.clone(), Fingerprint::of_bytes(b"deliver"))
            .effect(move |tx: &mut SqlTx<B>| -> EffectFuture<'_> {
                Box::pin(async move {
                    let transition = tx.transition().cloned().ok_or("an effect outside a transition")?;
                    let message = OutboxMessage::new(topic, serde_json::json!({ "delivered": true }))
                        .with_key(transition.id.to_string());
                    tx.enqueue(message).await?;
                    seen.lock().expect("seen").push(transition);
                    Ok(())
                })
            })
    };
    assert_eq!(
        store.apply(deliver("mIxEd-cAsE")).await.unwrap(),
        Outcome::Applied { from: Order::Shipped, to: Order::Delivered, version: 3 },
        "{at}"
    );
    assert_eq!(
        store.apply(deliver("MIXED-case")).await.unwrap(),
        Outcome::Replayed { from: Order::Shipped, to: Order::Delivered, version: 3 },
        "{at}: a replay under another spelling"
    );
    let expected = Transition { machine: "Order", id: stored.clone(), from: "shipped", to: "delivered", version: 3 };
    assert_eq!(*seen.lock().unwrap(), [expected], "{at}: the effect ran once, on the stored id");
    assert_eq!(stored_outcome(fx, &key).await["entity"], serde_json::json!("Mixed-Case"), "{at}: the key's outcome");
    let message =
        format!("SELECT message_key, COUNT(*) FROM fsm_outbox WHERE topic = {} GROUP BY message_key", B::param(1));
    let mut conn = fx.pool().acquire().await.unwrap();
    let messages = B::fetch_text_i64(&mut conn, message, vec![Arg::from(table.as_str())]).await.unwrap();
    drop(conn);
    assert_eq!(messages, Some(("Mixed-Case".to_owned(), 1)), "{at}: the outbox message");

    // A locked transition under yet another spelling.
    let mut locked = store.lock("mixed-CASE").await.unwrap();
    assert!(locked.transition(Order::Refunded).await.unwrap().is_applied(), "{at}");
    locked.commit().await.unwrap();

    let history = store.history("MiXeD-CaSe").await.unwrap();
    assert_eq!(
        summary(&history),
        [
            (1, Order::Created, Order::Paid, false),
            (2, Order::Paid, Order::Shipped, false),
            (3, Order::Shipped, Order::Delivered, false),
            (4, Order::Delivered, Order::Refunded, false)
        ],
        "{at}"
    );
    assert_eq!(store.get("mixed-case").await.unwrap(), Snapshot { state: Order::Refunded, version: 4 }, "{at}");
    assert_eq!(rows_under(fx, &table, "Mixed-Case").await, 4, "{at}");
    assert_eq!(rows_of_table(fx, &table).await, 4, "{at}: no row under any other spelling");

    // Deleted under another spelling: the rows under the stored id are retired.
    assert_eq!(store.delete("MIXED-CASE").await.unwrap(), DeleteOutcome::Deleted, "{at}");
    let audit = store.audit("Mixed-Case").await.unwrap();
    assert_eq!(audit.len(), 4, "{at}");
    assert!(audit.iter().all(|h| h.deleted_at_micros.is_some()), "{at}: {audit:?}");
}

/// (2) A table created with the server's default collation, one test per database.
mod default_collation {
    use super::*;

    /// MySQL/MariaDB: a plain `VARCHAR` takes the server's default collation, case-insensitive
    /// and `PAD SPACE` (`utf8mb4_general_ci` on MariaDB).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        crate::fixture::sql::run::<sqlx::MySql, Order, _>("mysql_default_collation", |fx| async move {
            let table = fx.extra_entity_table("collation");
            mixed_case_ids(&fx, table, "VARCHAR(64)", true).await;
        })
        .await;
    }

    /// SQLite: `COLLATE NOCASE` (which does not ignore trailing spaces).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        crate::fixture::sql::run::<sqlx::Sqlite, Order, _>("sqlite_nocase", |fx| async move {
            let table = fx.extra_entity_table("collation");
            mixed_case_ids(&fx, table, "TEXT COLLATE NOCASE", false).await;
        })
        .await;
    }

    /// PostgreSQL: a non-deterministic ICU collation (case-insensitive), when the server has
    /// ICU. The collation is the test's own, dropped after its table, also when the case fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_nondeterministic() {
        crate::fixture::sql::run::<sqlx::Postgres, Order, _>("postgres_ci", |fx| async move {
            let icu = fx.fetch_i64("SELECT COUNT(*) FROM pg_collation WHERE collprovider = 'i'", []).await;
            if icu == Some(0) {
                eprintln!("SKIPPED default_collation::postgres_nondeterministic: the server has no ICU");
                return;
            }
            let collation = unique_table("ci");
            fx.exec(
                format!(
                    "CREATE COLLATION {collation} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
                ),
                [],
            )
            .await;
            let table = fx.extra_entity_table("collation");
            let column = format!("TEXT COLLATE {collation}");
            let case = AssertUnwindSafe(mixed_case_ids(&fx, table.clone(), &column, false)).catch_unwind().await;
            // The table that uses the collation goes first; the fixture's cleanup then finds it gone.
            let mut conn = fx.pool().acquire().await.expect("a connection");
            for drop in [format!("DROP TABLE IF EXISTS {table}"), format!("DROP COLLATION IF EXISTS {collation}")] {
                let dropped = <sqlx::Postgres as TestBackend>::execute(&mut conn, drop.clone(), Vec::new()).await;
                if let Err(error) = dropped {
                    eprintln!("postgres_nondeterministic: `{drop}` failed: {error}");
                }
            }
            drop(conn);
            if let Err(panic) = case {
                std::panic::resume_unwind(panic);
            }
        })
        .await;
    }
}

/// (3) Two machines on two state (and version) columns of one row: each history has its own
/// versions, and racing fires of both give one `Applied` per move.
async fn two_machines_on_one_table<B: IdsAsStored>(fx: Arc<Fixture<B, Order>>) {
    let table = fx.extra_entity_table("two");
    fx.exec(
        format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL, \
             payment_state VARCHAR(64) NOT NULL, payment_version BIGINT NOT NULL)"
        ),
        [],
    )
    .await;
    let orders = SqlStore::<Order, B>::with_mapping(fx.pool().clone(), mapping_for::<Order>(&table)).await.unwrap();
    let payment_columns = mapping_for::<Payment>(&table)
        .with_state_column("payment_state")
        .and_then(|m| m.with_version_column("payment_version"))
        .unwrap();
    let payments = SqlStore::<Payment, B>::with_mapping(fx.pool().clone(), payment_columns).await.unwrap();
    for id in [1_i64, 2] {
        fx.exec(
            format!(
                "INSERT INTO {table} (id, state, version, payment_state, payment_version) \
                 VALUES ({}, 'created', 0, 'authorized', 0)",
                B::param(1)
            ),
            [Arg::from(id)],
        )
        .await;
    }
    let at = B::LABEL;

    // One after the other, interleaved.
    assert_eq!(
        orders.fire(1, OrderEvent::Pay).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );
    assert_eq!(
        payments.fire(1, PaymentEvent::Capture).await.unwrap(),
        Outcome::Applied { from: Payment::Authorized, to: Payment::Captured, version: 1 },
        "{at}: the payment's first version, beside the order's"
    );
    assert_eq!(
        orders.fire(1, OrderEvent::Ship).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }
    );
    assert_eq!(
        payments.fire(1, PaymentEvent::Refund).await.unwrap(),
        Outcome::Applied { from: Payment::Captured, to: Payment::Refunded, version: 2 }
    );
    let mut locked = orders.lock(1).await.unwrap();
    assert!(locked.transition(Order::Delivered).await.unwrap().is_applied());
    locked.commit().await.unwrap();

    let order_history = orders.history(1).await.unwrap();
    assert_eq!(
        summary(&order_history),
        [
            (1, Order::Created, Order::Paid, false),
            (2, Order::Paid, Order::Shipped, false),
            (3, Order::Shipped, Order::Delivered, false)
        ],
        "{at}: the order's history lists the order's rows only"
    );
    assert_eq!(
        summary(&payments.history(1).await.unwrap()),
        [(1, Payment::Authorized, Payment::Captured, false), (2, Payment::Captured, Payment::Refunded, false)],
        "{at}: the payment's history lists the payment's rows only"
    );
    assert_eq!(orders.get(1).await.unwrap(), Snapshot { state: Order::Delivered, version: 3 });
    assert_eq!(payments.get(1).await.unwrap(), Snapshot { state: Payment::Refunded, version: 2 });
    let by_machine = format!(
        "SELECT COUNT(*) FROM fsm_history WHERE entity_table = {} AND machine = {} AND entity_id = '1'",
        B::param(1),
        B::param(2)
    );
    assert_eq!(
        fx.fetch_i64(by_machine.clone(), [Arg::from(table.as_str()), Arg::from("Order")]).await,
        Some(3),
        "{at}"
    );
    assert_eq!(fx.fetch_i64(by_machine, [Arg::from(table.as_str()), Arg::from("Payment")]).await, Some(2), "{at}");

    // Racing: 16 tasks of each machine on row 2, twice (the strict capture's losers get
    // `ReachedByAnotherRequest`, the others `AlreadyApplied`).
    let (orders, payments) = (Arc::new(orders), Arc::new(payments));
    for (order_event, payment_event) in
        [(OrderEvent::Pay, PaymentEvent::Capture), (OrderEvent::Ship, PaymentEvent::Refund)]
    {
        let start = Arc::new(tokio::sync::Barrier::new(32));
        let mut order_tasks = Vec::new();
        let mut payment_tasks = Vec::new();
        for _ in 0..16 {
            let (orders, order_start) = (orders.clone(), start.clone());
            order_tasks.push(tokio::spawn(async move {
                order_start.wait().await;
                orders.fire(2, order_event).await
            }));
            let (payments, payment_start) = (payments.clone(), start.clone());
            payment_tasks.push(tokio::spawn(async move {
                payment_start.wait().await;
                payments.fire(2, payment_event).await
            }));
        }
        let mut order_applied = Vec::new();
        for task in order_tasks {
            match task.await.unwrap() {
                Ok(Outcome::Applied { from, to, version }) => order_applied.push((from, to, version)),
                Ok(Outcome::AlreadyApplied { .. }) => {}
                other => panic!("{at}: an order racing {order_event:?}: {other:?}"),
            }
        }
        let mut payment_applied = Vec::new();
        for task in payment_tasks {
            match task.await.unwrap() {
                Ok(Outcome::Applied { from, to, version }) => payment_applied.push((from, to, version)),
                Ok(Outcome::AlreadyApplied { .. }) | Err(Error::ReachedByAnotherRequest { .. }) => {}
                other => panic!("{at}: a payment racing {payment_event:?}: {other:?}"),
            }
        }
        assert_eq!(order_applied.len(), 1, "{at}: {order_event:?} applied {order_applied:?}");
        assert_eq!(payment_applied.len(), 1, "{at}: {payment_event:?} applied {payment_applied:?}");
    }
    let order_now = orders.get(2).await.unwrap();
    let payment_now = payments.get(2).await.unwrap();
    assert_eq!(order_now, Snapshot { state: Order::Shipped, version: 2 }, "{at}");
    assert_eq!(payment_now, Snapshot { state: Payment::Refunded, version: 2 }, "{at}");
    assert_eq!(
        summary(&orders.history(2).await.unwrap()),
        [(1, Order::Created, Order::Paid, false), (2, Order::Paid, Order::Shipped, false)],
        "{at}: history == version for the order"
    );
    assert_eq!(
        summary(&payments.history(2).await.unwrap()),
        [(1, Payment::Authorized, Payment::Captured, false), (2, Payment::Captured, Payment::Refunded, false)],
        "{at}: history == version for the payment"
    );
    assert_eq!(fx.raw_row(&table, 2).await, Some(("shipped".to_owned(), 2)), "{at}");

    // Deleting the row retires both machines' histories; the audit keeps them apart.
    assert_eq!(orders.delete(1).await.unwrap(), DeleteOutcome::Deleted);
    assert!(payments.history(1).await.unwrap().is_empty(), "{at}");
    assert_eq!(
        summary(&payments.audit(1).await.unwrap()),
        [(1, Payment::Authorized, Payment::Captured, true), (2, Payment::Captured, Payment::Refunded, true)],
        "{at}"
    );
    assert_eq!(orders.audit(1).await.unwrap().len(), 3, "{at}");
    assert_eq!(rows_of_table(&fx, &table).await, 3 + 2 + 2 + 2, "{at}");
}

crate::fixture::sql::per_backend!(id_types_users_have, two_machines_on_one_table);
