//! The loop of a background worker (the outbox's relay, the timers' scheduler): passes one
//! after another while there is work, a pause when there is none, until shut down.

use std::future::Future;
use std::time::Duration;

/// Runs `pass` until `shutdown` completes: the next pass at once after a busy one (`true`),
/// after `idle` otherwise. Shutdown is noticed between passes, never in the middle of one.
pub(crate) async fn run_passes<Pass, Busy>(idle: Duration, shutdown: impl Future<Output = ()>, mut pass: Pass)
where
    Pass: FnMut() -> Busy,
    Busy: Future<Output = bool>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        if pass().await {
            continue;
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(idle) => {}
        }
    }
}
