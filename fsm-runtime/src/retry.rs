//! [`retry_on_conflict`]: read, decide and write again when a compare-and-set found the entity
//! moved.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// Runs `attempt` until it does not fail with [`Error::Conflict`] or
/// [`Error::VersionConflict`], at most `max_attempts` times, sleeping a little more after each
/// conflict (1 ms, 2 ms, 4 ms … capped at 100 ms). Each attempt should read the entity, decide,
/// and write with [`Store::transition_from`](crate::Store::transition_from) or an expected
/// version, so that a decision taken on a stale read is never applied. Any other result, or the
/// last conflict, is returned as it is.
///
/// ```
/// use fsm_runtime::retry::retry_on_conflict;
/// use fsm_runtime::{MemoryStore, StateMachine, Store};
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// enum Door { #[state(initial)] Closed, #[transition(from = Closed)] Open }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::<Door>::new();
/// store.create(1).await?;
/// let outcome = retry_on_conflict(5, || async {
///     let now = store.get(1).await?;
///     let next = if now.state == Door::Closed { Door::Open } else { return Ok(None) };
///     store.transition_from(1, now.state, next).await.map(Some)
/// })
/// .await?;
/// assert!(outcome.is_some_and(|o| o.is_applied()));
/// # Ok::<(), fsm_runtime::Error>(())
/// # }).unwrap();
/// ```
pub async fn retry_on_conflict<T, F, Fut>(max_attempts: usize, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut delay = Duration::from_millis(1);
    let mut attempts = 1;
    loop {
        match attempt().await {
            Err(Error::Conflict { .. } | Error::VersionConflict { .. }) if attempts < max_attempts => {
                attempts += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}
