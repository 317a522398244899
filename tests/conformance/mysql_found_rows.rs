//! MariaDB / MySQL: "rows affected" is the number of rows *matched* under sqlx, which connects
//! with `CLIENT_FOUND_ROWS`; an `UPDATE` that writes the values a row already holds still
//! counts it. The store must not mistake that for a transition: a replayed transition is
//! `AlreadyApplied`, with the version unchanged and no history row, by every path.

use std::sync::Arc;

use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::sql::{Arg, Fixture, TestBackend};
use fsm_runtime::store::LockedEntity;
use fsm_runtime::{Outcome, Store, TransitionRequest, sqlx};

async fn replay_is_not_a_matched_row<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    let (store, table) = (&fx.store, fx.table.clone());
    let mut conn = fx.pool().acquire().await.unwrap();
    let (server, _) =
        B::fetch_text_i64(&mut conn, "SELECT VERSION(), 0".to_owned(), Vec::new()).await.unwrap().unwrap();
    drop(conn);
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{}: server {server}\n", B::LABEL));
    store.create(1).await.unwrap();
    assert_eq!(
        store.transition(1, Order::Paid).await.unwrap(),
        Outcome::Applied { from: Order::Created, to: Order::Paid, version: 1 }
    );

    // What the driver reports: a matched row that did not change counts (CLIENT_FOUND_ROWS).
    let same = format!("UPDATE {table} SET state = state WHERE id = {}", fx.p(1));
    assert_eq!(fx.exec(same.clone(), [Arg::I64(1)]).await, 1, "`UPDATE … SET state = state` matched the row");
    let same_value = format!("UPDATE {table} SET state = {} WHERE id = {}", fx.p(1), fx.p(2));
    assert_eq!(
        fx.exec(same_value, [Arg::from("paid"), Arg::I64(1)]).await,
        1,
        "writing the value it holds matched the row"
    );
    assert_eq!(fx.exec(same, [Arg::I64(2)]).await, 0, "no such row: nothing matched");
    // The store's compare-and-set, replayed on the observed state and version of the first
    // request: the row moved on, so it matches nothing.
    let stale_cas = format!(
        "UPDATE {table} SET state = {}, version = version + 1 WHERE id = {} AND state = {} AND version = {}",
        fx.p(1),
        fx.p(2),
        fx.p(3),
        fx.p(4)
    );
    let args = [Arg::from("paid"), Arg::I64(1), Arg::from("created"), Arg::I64(0)];
    assert_eq!(fx.exec(stale_cas, args).await, 0);
    assert_eq!(fx.raw_row(&table, 1).await, Some(("paid".to_owned(), 1)));

    // Replays, by every path: AlreadyApplied, the version unchanged, nothing written.
    let replay = Outcome::AlreadyApplied { state: Order::Paid, version: 1 };
    assert_eq!(store.transition(1, Order::Paid).await.unwrap(), replay);
    assert_eq!(store.transition_from(1, Order::Created, Order::Paid).await.unwrap(), replay);
    assert_eq!(store.fire(1, OrderEvent::Pay).await.unwrap(), replay);
    assert_eq!(store.apply(TransitionRequest::to(1, Order::Paid).expect_version(0)).await.unwrap(), replay);
    let mut locked = store.lock(1).await.unwrap();
    assert_eq!(locked.transition(Order::Paid).await.unwrap(), replay);
    locked.commit().await.unwrap();
    let replays: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.transition(1, Order::Paid).await })
        })
        .collect();
    for replayed in replays {
        assert_eq!(replayed.await.unwrap().unwrap(), replay);
    }
    assert_eq!(fx.raw_row(&table, 1).await, Some(("paid".to_owned(), 1)), "a replay changed the row");
    assert_eq!(fx.history_rows(&table, "1").await, 1, "a replay wrote history");

    // And the next real move still counts as one.
    assert_eq!(
        store.transition(1, Order::Shipped).await.unwrap(),
        Outcome::Applied { from: Order::Paid, to: Order::Shipped, version: 2 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_replay_is_not_a_matched_row() {
    crate::fixture::sql::run("found_rows", replay_is_not_a_matched_row::<sqlx::MySql>).await;
}
