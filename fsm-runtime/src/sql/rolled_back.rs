//! [`RolledBack`]: sending a request again after the database rolled its transaction back.
//!
//! A deadlock victim (`40P01`, MySQL's `1213`) and a serialization failure (`40001`) wrote
//! nothing. So did a lost certification on a MariaDB Galera cluster: two nodes took
//! conflicting writes, the one certified first commits everywhere, and the other's `COMMIT` (or
//! its next statement, when the winner's write aborted it) fails with `1213`. Where the store
//! holds no transaction of the caller's, it sends such a request again, after a short random
//! pause: the next attempt reads what the winner wrote and answers `AlreadyApplied` or
//! `Replayed`, as the outcome table promises. Inside the caller's transaction the rollback
//! took the caller's work too, so it is the caller's retryable error.

use std::time::Duration;

use crate::random::random_below;
use crate::sql::is_deadlock;

/// How many rollbacks one request survives before the last one is its error (retryable).
pub(crate) const ROLLBACK_ATTEMPTS: usize = 100;

/// The longest pause between two attempts, in milliseconds.
const MAX_PAUSE_MS: u64 = 64;

/// The rollbacks one request met so far.
#[derive(Debug, Default)]
pub(crate) struct RolledBack {
    count: usize,
}

impl RolledBack {
    /// The pause before sending the request again after `error`; `Err(error)` when the
    /// request may not be sent again: `error` is no rollback, the caller's transaction went
    /// with it (`may_retry` false), or the request was rolled back [`ROLLBACK_ATTEMPTS`] times.
    pub(crate) fn again(&mut self, error: sqlx::Error, may_retry: bool) -> Result<tokio::time::Sleep, sqlx::Error> {
        if !may_retry || !is_deadlock(&error) || self.count + 1 >= ROLLBACK_ATTEMPTS {
            return Err(error);
        }
        self.count += 1;
        Ok(tokio::time::sleep(self.pause()))
    }

    /// Random, up to a bound that doubles with each rollback (1, 2, 4 … 64 ms), so that
    /// racers on different nodes do not meet again in step.
    fn pause(&self) -> Duration {
        let bound = 1u64 << self.count.min(6);
        Duration::from_millis(random_below(bound.min(MAX_PAUSE_MS)))
    }
}

/// Runs `attempt` (one statement, or one transaction of the store's own, on a connection it
/// takes) again after each rollback, up to [`ROLLBACK_ATTEMPTS`] times: for work that holds no
/// transaction of the caller's and writes nothing when rolled back.
pub(crate) async fn again_after_rollback<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut rolled_back = RolledBack::default();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => rolled_back.again(error, true)?.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost_connection() -> sqlx::Error {
        sqlx::Error::Protocol("connection reset".into())
    }

    #[test]
    fn only_a_rollback_outside_the_callers_transaction_is_sent_again() {
        let mut rolled_back = RolledBack::default();
        assert!(rolled_back.again(lost_connection(), true).is_err(), "maybe committed: not sent again here");
        assert!(rolled_back.again(sqlx::Error::RowNotFound, true).is_err());
        assert_eq!(rolled_back.count, 0);
    }

    #[tokio::test]
    async fn only_rollbacks_are_sent_again() {
        let mut calls = 0;
        let answer: Result<(), sqlx::Error> = again_after_rollback(|| {
            calls += 1;
            async { Err(sqlx::Error::RowNotFound) }
        })
        .await;
        assert!(answer.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn pauses_grow_and_stay_bounded() {
        let mut rolled_back = RolledBack { count: 20 };
        assert!(rolled_back.pause() <= Duration::from_millis(MAX_PAUSE_MS));
        rolled_back.count = 0;
        assert!(rolled_back.pause() <= Duration::from_millis(1));
    }
}
