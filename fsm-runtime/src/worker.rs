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
            // A shutdown that came while the pause also ended wins.
            biased;
            () = &mut shutdown => return,
            () = tokio::time::sleep(idle) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn busy_passes_run_back_to_back_and_shutdown_ends_after_an_idle_one() {
        let passes = Cell::new(0);
        let pass = || {
            passes.set(passes.get() + 1);
            let busy = passes.get() <= 3;
            async move { busy }
        };
        // Shutdown is already complete: noticed after the first idle pass, not before.
        run_passes(Duration::from_secs(3600), std::future::ready(()), pass).await;
        assert_eq!(passes.get(), 4);
    }

    #[tokio::test]
    async fn idle_passes_repeat_after_the_pause_until_shutdown() {
        let passes = Cell::new(0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stop = Cell::new(Some(stop));
        let pass = || {
            passes.set(passes.get() + 1);
            if passes.get() == 5 {
                stop.take().map(|stop| stop.send(()));
            }
            async { false }
        };
        run_passes(Duration::from_millis(1), async { stopped.await.unwrap_or(()) }, pass).await;
        assert_eq!(passes.get(), 5, "five idle passes, then the shutdown sent by the fifth");
    }
}
