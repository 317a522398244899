//! The futures of a request stay small on every SQL store. Each step of a transition (reads,
//! the statement, keys, effects, retries) lives inside them, some kilobytes, and a future is
//! copied whole each time it moves: an `async fn` that awaits its argument holds it twice.
//! Before the operation's span took its work to the heap, `SqlStore::apply` was about 9.5 KB
//! in a debug build (19 KB in release) and moved several times per request. The bound is a
//! size, fixed for one compiler, not a time.

use std::sync::Arc;

use crate::fixture::machines::Order;
use crate::fixture::sql::{Fixture, TestBackend};
use fsm_runtime::{Store, TransitionRequest};

/// Far above what the stores need now (under 1 KB), far below what they took before. A new
/// compiler may lay futures out otherwise: a failure after a toolchain upgrade alone means the
/// bound, not the code, needs a look.
const BOUND: usize = 2048;

async fn request_futures_are_small<B: TestBackend>(fx: Arc<Fixture<B, Order>>) {
    fx.store.create(1).await.unwrap();
    let apply = fx.store.apply(TransitionRequest::to(1, Order::Paid));
    let size = std::mem::size_of_val(&apply);
    assert!(size <= BOUND, "{}: SqlStore::apply is {size} bytes", B::LABEL);
    assert!(apply.await.unwrap().is_applied());
    let mut session = fx.store.session();
    let apply = session.apply(TransitionRequest::to(1, Order::Shipped));
    let size = std::mem::size_of_val(&apply);
    assert!(size <= BOUND, "{}: Session::apply is {size} bytes", B::LABEL);
    assert!(apply.await.unwrap().is_applied());
    let get = fx.store.get(1);
    let size = std::mem::size_of_val(&get);
    assert!(size <= BOUND, "{}: SqlStore::get is {size} bytes", B::LABEL);
    assert_eq!(get.await.unwrap().state, Order::Shipped);
}

crate::fixture::sql::per_backend!(request_futures_are_small);
