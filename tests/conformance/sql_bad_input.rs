//! Bad input and bad environments on SQLite, PostgreSQL and MySQL/MariaDB: every one is a typed
//! error, never a panic, and writes nothing.
//!
//! (a) a missing entity table: `Error::Schema` naming it, when the store is built;
//! (b) a wrong column name given at run time: `Error::Schema` naming the columns;
//! (c) an invalid identifier: `InvalidIdentifier`, and nothing executed (not even a connection
//!     taken from the pool);
//! (d) a server that is down: `Error::Database { retryable: true }` (SQLite: a file that cannot
//!     be opened, `retryable: false`);
//! (e) a corrupted state written with raw SQL: `transition`, `transition_from`, `fire`, `lock`
//!     give `UnknownState`, the row is unchanged byte for byte and no history is written;
//! (f) a table keyed by text (`id VARCHAR(64)`) works with `EntityId::Text` ids.

use std::borrow::Cow;
use std::sync::Arc;

use crate::fixture::backends::{mapping_for, unique_table};
use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::mapping::TableMapping;
use fsm_runtime::mapping::{InvalidIdentifier, MAX_IDENTIFIER_LEN};
use fsm_runtime::store::CreateOutcome;
use fsm_runtime::store::DeleteOutcome;
use fsm_runtime::store::EntityId;
use fsm_runtime::store::LockedEntity;
use fsm_runtime::store::Snapshot;
use fsm_runtime::store::SqlStore;
use fsm_runtime::{Error, Outcome, StateMachine, Store, TransitionRequest, sqlx};

/// (a) A table that does not exist is reported when the store is built, by name.
async fn missing_table_is_a_schema_error<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let missing = unique_table("missing");
    let error =
        SqlStore::<Order, B>::with_mapping(fx.pool().clone(), mapping_for::<Order>(&missing)).await.unwrap_err();
    match &error {
        Error::Schema { machine, table, columns, source } => {
            assert_eq!((*machine, table.as_str(), columns.as_str()), ("Order", missing.as_str(), "id, state, version"));
            assert!(source.downcast_ref::<sqlx::Error>().is_some(), "the driver's error: {source:?}");
        }
        other => panic!("{}: expected Error::Schema, got {other:?}", B::LABEL),
    }
    assert!(error.to_string().contains(&missing), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(error.entity(), None);
}

/// (b) A wrong id, state or version column given at run time is reported when the store is built.
async fn wrong_column_is_a_schema_error<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let table = mapping_for::<Order>(&fx.table);
    let wrong: [(TableMapping, &str); 3] = [
        (table.clone().with_state_column("nope").unwrap(), "id, nope, version"),
        (table.clone().with_id_column("order_id").unwrap(), "order_id, state, version"),
        (table.clone().with_version_column("revision").unwrap(), "id, state, revision"),
    ];
    for (mapping, expected_columns) in wrong {
        let error = SqlStore::<Order, B>::with_mapping(fx.pool().clone(), mapping).await.unwrap_err();
        match &error {
            Error::Schema { table, columns, .. } => {
                assert_eq!((table.as_str(), columns.as_str()), (fx.table.as_str(), expected_columns));
            }
            other => panic!("{}: expected Error::Schema for {expected_columns}, got {other:?}", B::LABEL),
        }
        assert!(error.to_string().contains(&fx.table) && error.to_string().contains(expected_columns), "{error}");
    }
    // The right mapping on the same table still builds.
    SqlStore::<Order, B>::with_mapping(fx.pool().clone(), table).await.unwrap();
}

/// (c) An identifier that is not `[A-Za-z_][A-Za-z0-9_]*` (at most 63 bytes) is refused before
/// anything runs: by the mapping's setters, and by the store for a mapping built by hand. The
/// store is given a closed pool, so that any statement, even taking a connection, would fail with
/// a database error instead; and the table the injections name is still there afterwards.
async fn invalid_identifier_runs_nothing<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let victim = fx.extra_table("victim");
    fx.exec(format!("CREATE TABLE {victim} (id BIGINT PRIMARY KEY)"), []).await;
    fx.exec(format!("INSERT INTO {victim} (id) VALUES (1)"), []).await;

    let too_long = "t".repeat(MAX_IDENTIFIER_LEN + 1);
    let bad_names = [
        "orders; drop table x".to_owned(),
        format!("orders; DROP TABLE {victim}; --"),
        format!("orders\"; DROP TABLE {victim}; --"),
        format!("orders`; DROP TABLE {victim}; --"),
        format!("orders'); DROP TABLE {victim}; --"),
        "orders--".to_owned(),
        "orders.x".to_owned(),
        "1orders".to_owned(),
        "ordérs".to_owned(),
        "orders\0".to_owned(),
        String::new(),
        too_long,
    ];
    let base = mapping_for::<Order>(&fx.table);
    let closed = sqlx::Pool::<B>::connect_lazy_with((*fx.pool().connect_options()).clone());
    closed.close().await;

    for bad in &bad_names {
        // The setters refuse it, naming the role and the value.
        let setters: [(&str, Result<TableMapping, InvalidIdentifier>); 4] = [
            ("table", base.clone().with_table(bad.clone())),
            ("id column", base.clone().with_id_column(bad.clone())),
            ("state column", base.clone().with_state_column(bad.clone())),
            ("version column", base.clone().with_version_column(bad.clone())),
        ];
        for (role, result) in setters {
            let error = result.unwrap_err();
            assert_eq!((error.role, error.value.as_str()), (role, bad.as_str()));
        }
        assert_eq!(Order::MAPPING.with_table(bad.clone()).unwrap_err().role, "table");

        // A mapping built by hand: the store refuses it before it takes a connection.
        let by_hand = [
            ("table", TableMapping { table: Cow::Owned(bad.clone()), ..base.clone() }),
            ("id column", TableMapping { id: Cow::Owned(bad.clone()), ..base.clone() }),
            ("state column", TableMapping { state: Cow::Owned(bad.clone()), ..base.clone() }),
            ("version column", TableMapping { version: Cow::Owned(bad.clone()), ..base.clone() }),
        ];
        for (role, mapping) in by_hand {
            let error = SqlStore::<Order, B>::with_mapping(closed.clone(), mapping).await.unwrap_err();
            match &error {
                Error::InvalidIdentifier(InvalidIdentifier { role: r, value }) => {
                    assert_eq!((*r, value.as_str()), (role, bad.as_str()));
                }
                other => panic!("{}: `{bad}` as {role}: expected InvalidIdentifier, got {other:?}", B::LABEL),
            }
            assert!(!error.is_retryable());
        }
    }
    assert_eq!(fx.fetch_i64(format!("SELECT COUNT(*) FROM {victim}"), []).await, Some(1), "the victim table is intact");
    // The longest legal name is accepted by the mapping.
    assert!(base.with_table("t".repeat(MAX_IDENTIFIER_LEN)).is_ok());
}

/// (d) A server that is down: a retryable database error, no panic. (SQLite has no server: a
/// file in a directory that does not exist cannot be opened, which retrying does not fix.)
async fn server_down_is_a_database_error<B: TestBackend>(_fx: Arc<Fixture<B, Order>>) {
    let started = std::time::Instant::now();
    let error = SqlStore::<Order, B>::connect(B::DOWN_URL).await.unwrap_err();
    let retry_expected = B::DOWN_URL.starts_with("postgres:") || B::DOWN_URL.starts_with("mysql:");
    match &error {
        Error::Database { machine, retryable, source, .. } => {
            assert_eq!(*machine, "Order");
            assert_eq!(*retryable, retry_expected, "{}: {error}", B::LABEL);
            assert!(source.downcast_ref::<sqlx::Error>().is_some(), "the driver's error: {source:?}");
        }
        other => panic!("{}: expected Error::Database, got {other:?}", B::LABEL),
    }
    assert_eq!(error.is_retryable(), retry_expected);
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("{}: {} after {:?}: {error}\n", B::LABEL, B::DOWN_URL, started.elapsed()),
    );
}

/// (e) A corrupted state: `UnknownState` from every path, the row unchanged byte for byte (read
/// back with raw SQL), no history written; once repaired, the entity moves again (the failed
/// lock released everything).
async fn corrupted_state_writes_nothing<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    store.create(1).await.unwrap();
    store.transition(1, Order::Paid).await.unwrap();
    // Close to a real name (case, padding) or far from any: none may be taken for a state.
    for value in ["PAID", "Paid", "paid ", " paid", "paid\t", "shipped!", "", "créé"] {
        fx.corrupt(1, value).await;
        let before = fx.raw_row(&fx.table, 1).await.expect("the row");
        assert_eq!(before, (value.to_owned(), 1));
        let history_before = fx.history_rows(&fx.table, "1").await;

        let errors = [
            ("transition", store.transition(1, Order::Shipped).await.unwrap_err()),
            ("transition to the same name", store.transition(1, Order::Paid).await.unwrap_err()),
            ("transition_from", store.transition_from(1, Order::Paid, Order::Shipped).await.unwrap_err()),
            ("fire", store.fire(1, OrderEvent::Ship).await.unwrap_err()),
            ("fire with two sources", store.fire(1, OrderEvent::Cancel).await.unwrap_err()),
            ("lock", store.lock(1).await.unwrap_err()),
            ("get", store.get(1).await.unwrap_err()),
        ];
        for (what, error) in errors {
            match &error {
                Error::UnknownState { machine, id, table, value: found, expected } => {
                    assert_eq!(
                        (*machine, id, table.as_str()),
                        ("Order", &EntityId::Int(1), fx.table.as_str()),
                        "{what}"
                    );
                    assert_eq!(found, value, "{what}: the value as stored");
                    assert!(expected.contains("paid") && expected.contains("shipped"), "{what}: {expected}");
                }
                other => panic!("{}: {what} on {value:?}: expected UnknownState, got {other:?}", B::LABEL),
            }
            assert!(!error.is_retryable());
        }
        assert_eq!(fx.raw_row(&fx.table, 1).await.expect("the row"), before, "{}: the row changed", B::LABEL);
        assert_eq!(fx.history_rows(&fx.table, "1").await, history_before, "{}: history written", B::LABEL);
        // Creating the id again reports the row but cannot say its state: also UnknownState.
        assert!(matches!(store.create(1).await.unwrap_err(), Error::UnknownState { .. }));
        assert_eq!(fx.raw_row(&fx.table, 1).await.expect("the row"), before);
    }
    // Repaired, it moves on: nothing is left locked by the failed `lock`.
    fx.corrupt(1, "paid").await;
    assert_eq!(
        store.transition(1, Order::Shipped).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }
    );
    let mut locked = store.lock(1).await.unwrap();
    assert!(locked.transition(Order::Delivered).await.unwrap().is_applied());
    locked.commit().await.unwrap();
    assert_eq!(store.history(1).await.unwrap().len(), 3);
}

/// (f) A table keyed by text: create, transitions, replays, history, lock, delete, with ids that
/// need quoting if they were ever spliced into SQL.
async fn text_ids_work<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let table = fx.extra_entity_table("text_ids");
    fx.exec(
        format!(
            "CREATE TABLE {table} (id VARCHAR(64) PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL)"
        ),
        [],
    )
    .await;
    let store = SqlStore::<Order, B>::with_mapping(fx.pool().clone(), mapping_for::<Order>(&table)).await.unwrap();
    let ids = ["ord-1", "ord-10", "o'brien\"; DROP TABLE x; --", "zürich-7", "1"];
    for id in ids {
        assert_eq!(store.create(id).await.unwrap(), CreateOutcome::Created { state: Order::Created }, "{id}");
    }
    for id in ids {
        assert_eq!(
            store.create(id.to_owned()).await.unwrap(),
            CreateOutcome::AlreadyExists { state: Order::Created, version: 0 }
        );
        assert_eq!(
            store.transition(id, Order::Paid).await.unwrap(),
            Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 },
            "{id}"
        );
        assert_eq!(
            store.transition(id, Order::Paid).await.unwrap(),
            Outcome::AlreadyApplied { state: Order::Paid, version: 1 }
        );
        assert_eq!(
            store.fire(EntityId::Text(id.to_owned()), OrderEvent::Ship).await.unwrap(),
            Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }
        );
        assert_eq!(
            store.fire(id, OrderEvent::Ship).await.unwrap(),
            Outcome::AlreadyApplied { state: Order::Shipped, version: 2 }
        );
        let error = store.transition(id, Order::Cancelled).await.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidTransition { id: e, from: "shipped", .. } if *e == EntityId::from(id)),
            "{error:?}"
        );
    }
    // Each id has its own row and its own history, read back with raw SQL too.
    for id in ids {
        assert_eq!(store.get(id).await.unwrap(), Snapshot { state: Order::Shipped, version: 2 });
        assert_eq!(fx.raw_row(&table, Arg::from(id)).await, Some(("shipped".to_owned(), 2)), "{id}");
        let history = store.history(id).await.unwrap();
        let summary: Vec<_> = history.iter().map(|h| (h.version, h.from, h.to, h.event.as_deref())).collect();
        assert_eq!(
            summary,
            [(1, Order::Created, Order::Paid, None), (2, Order::Paid, Order::Shipped, Some("ship"))],
            "{id}"
        );
        assert_eq!(fx.history_rows(&table, id).await, 2, "{id}");
    }
    assert!(
        matches!(store.get("ord-2").await.unwrap_err(), Error::NotFound { id, .. } if id == EntityId::from("ord-2"))
    );
    assert!(matches!(store.transition("ord-2", Order::Paid).await.unwrap_err(), Error::NotFound { .. }));

    let mut locked = store.lock("ord-1").await.unwrap();
    assert_eq!(locked.id(), &EntityId::from("ord-1"));
    assert!(locked.transition(Order::Delivered).await.unwrap().is_applied());
    locked.commit().await.unwrap();
    assert_eq!(store.get("ord-1").await.unwrap(), Snapshot { state: Order::Delivered, version: 3 });
    assert_eq!(store.get("ord-10").await.unwrap(), Snapshot { state: Order::Shipped, version: 2 });

    assert_eq!(store.delete("ord-1").await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(store.delete("ord-1").await.unwrap(), DeleteOutcome::AlreadyAbsent);
    assert!(store.history("ord-1").await.unwrap().is_empty());
    assert_eq!(store.history("ord-10").await.unwrap().len(), 2, "deleting ord-1 left ord-10's history alone");
    assert_eq!(fx.fetch_i64(format!("SELECT COUNT(*) FROM {table}"), []).await, Some(4));
}

/// A history row left behind for the version a transition is about to record (written by hand,
/// say, after the entity was deleted and created again with raw SQL): the history's primary key
/// refuses the transition, with or without an idempotency key. The error is a database error
/// that is not retryable (a retry would fail the same way), and nothing is written: not the
/// state, not the key. Before, the keyed PostgreSQL statement took any unique violation for a
/// stored key and tried 1,000 times.
async fn stale_history_row_is_a_typed_error<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let store = &fx.store;
    store.create(1).await.unwrap();
    let sql = format!(
        "INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) \
         VALUES ({}, 'Order', '1', 1, 'created', 'paid', NULL, 0)",
        B::param(1)
    );
    fx.exec(sql, [Arg::from(fx.table.as_str())]).await;
    let key = fsm_runtime::IdempotencyKey::new(format!("{}-stale", fx.table), 1).unwrap();
    let keyed =
        TransitionRequest::to(1, Order::Paid).idempotency_key(key.clone(), fsm_runtime::Fingerprint::of_bytes(b"pay"));
    for (label, result) in [("plain", store.transition(1, Order::Paid).await), ("keyed", store.apply(keyed).await)] {
        match result {
            Err(Error::Database { retryable: false, .. }) => {}
            other => panic!("{} {label}: expected a non-retryable Error::Database, got {other:?}", B::LABEL),
        }
    }
    assert_eq!(store.get(1).await.unwrap(), Snapshot { state: Order::Created, version: 0 });
    let stored = format!("SELECT COUNT(*) FROM fsm_idempotency_keys WHERE source = {}", B::param(1));
    assert_eq!(fx.fetch_i64(stored, [Arg::from(key.source())]).await, Some(0), "{}: the key was stored", B::LABEL);
}

crate::fixture::sql::per_backend!(
    stale_history_row_is_a_typed_error,
    missing_table_is_a_schema_error,
    wrong_column_is_a_schema_error,
    invalid_identifier_runs_nothing,
    server_down_is_a_database_error,
    corrupted_state_writes_nothing,
    text_ids_work,
);
