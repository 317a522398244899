//! [`Traced`]: one store operation in its span, with its metrics.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use super::{OutcomeLabel, TRANSITION_DURATION_SECONDS, TRANSITIONS_TOTAL};
use crate::entity_id::EntityId;
use crate::error::Error;
use crate::machine::StateMachine;
use crate::outcome::{CreateOutcome, DeleteOutcome, HistoryEntry, Outcome, Snapshot};

/// A store operation, which names its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A transition request (`apply`, `transition`, `transition_from`, `fire`).
    Apply,
    /// `create`, `create_in`, `create_with`.
    Create,
    /// `get`.
    Get,
    /// `delete`.
    Delete,
    /// `history`, `audit`.
    History,
    /// `lock`.
    Lock,
}

/// What a span says about the operation before it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    /// The store: `memory`, `sqlite`, `postgres`, `mysql`.
    pub(crate) store: &'static str,
    /// The machine's name.
    pub(crate) machine: &'static str,
    /// The entity.
    pub(crate) entity: &'a EntityId,
    /// The target state, for a transition to a state.
    pub(crate) target: Option<&'static str>,
    /// The event, for a transition by event.
    pub(crate) event: Option<&'static str>,
    /// The idempotency key's source (`opaque` for an opaque key), for a keyed request.
    pub(crate) key_source: Option<&'a str>,
    /// Whether the operation runs in the caller's transaction ([`Within`](crate::store::Within)).
    pub(crate) in_caller_tx: bool,
}

impl<'a> Fields<'a> {
    /// The fields of an operation on `entity` of `machine` in `store`, without a transition.
    pub(crate) fn entity(store: &'static str, machine: &'static str, entity: &'a EntityId) -> Self {
        Self { store, machine, entity, target: None, event: None, key_source: None, in_caller_tx: false }
    }
}

/// The outcome field of a successful operation other than a transition.
pub(crate) trait Reported {
    /// `created`, `found`, `deleted`, …
    fn outcome(&self) -> &'static str;
}

impl<M: StateMachine> Reported for CreateOutcome<M> {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::AlreadyExists { .. } => "already_exists",
        }
    }
}

impl Reported for DeleteOutcome {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::AlreadyAbsent => "already_absent",
        }
    }
}

impl<M: StateMachine> Reported for Snapshot<M> {
    fn outcome(&self) -> &'static str {
        "found"
    }
}

impl<M: StateMachine> Reported for Vec<HistoryEntry<M>> {
    fn outcome(&self) -> &'static str {
        "found"
    }
}

/// Declares the span of one operation with every field, those known at the end `Empty`.
macro_rules! operation_span {
    ($level:ident, $name:literal, $fields:expr) => {{
        let fields: &Fields<'_> = $fields;
        tracing::span!(
            tracing::Level::$level,
            $name,
            machine = fields.machine,
            entity = %fields.entity,
            store = fields.store,
            target = fields.target,
            event = fields.event,
            key_source = fields.key_source,
            in_caller_tx = fields.in_caller_tx,
            outcome = Empty,
            duration_us = Empty,
            error = Empty,
        )
    }};
}

/// One store operation under way: its span and its start.
#[derive(Debug)]
pub(crate) struct Traced {
    span: Span,
    machine: &'static str,
    started: Instant,
}

impl Traced {
    /// Opens the span of `operation` (INFO for writes and locks, DEBUG for reads).
    pub(crate) fn start(operation: Operation, fields: &Fields<'_>) -> Self {
        let span = match operation {
            Operation::Apply => operation_span!(INFO, "fsm.apply", fields),
            Operation::Create => operation_span!(INFO, "fsm.create", fields),
            Operation::Delete => operation_span!(INFO, "fsm.delete", fields),
            Operation::Lock => operation_span!(INFO, "fsm.lock", fields),
            Operation::Get => operation_span!(DEBUG, "fsm.get", fields),
            Operation::History => operation_span!(DEBUG, "fsm.history", fields),
        };
        Self { span, machine: fields.machine, started: Instant::now() }
    }

    /// Runs a transition request in the span, records its outcome on the span and counts it
    /// in [`TRANSITIONS_TOTAL`] and [`TRANSITION_DURATION_SECONDS`].
    ///
    /// `work` goes to the heap first: it holds every step of a request (some kilobytes), and
    /// an `async fn` that awaits its argument holds it twice, copied again with each move of
    /// the futures around it. One allocation instead; the caller's future stays small
    /// (`tests/conformance/future_sizes.rs`).
    pub(crate) fn transition<M: StateMachine>(
        self,
        work: impl Future<Output = Result<Outcome<M>, Error>>,
    ) -> impl Future<Output = Result<Outcome<M>, Error>> {
        let work = Box::pin(work.instrument(self.span.clone()));
        async move {
            let result = work.await;
            let label = OutcomeLabel::of(&result);
            let elapsed = self.finish(label.as_str(), result.as_ref().err());
            metrics::counter!(TRANSITIONS_TOTAL, "machine" => self.machine, "outcome" => label.as_str()).increment(1);
            metrics::histogram!(TRANSITION_DURATION_SECONDS, "machine" => self.machine).record(elapsed.as_secs_f64());
            result
        }
    }

    /// Runs another operation in the span and records its outcome on the span (`work` on the
    /// heap, as for [`Traced::transition`]).
    pub(crate) fn run<T: Reported>(
        self,
        work: impl Future<Output = Result<T, Error>>,
    ) -> impl Future<Output = Result<T, Error>> {
        let work = Box::pin(work.instrument(self.span.clone()));
        async move {
            let result = work.await;
            let outcome = match &result {
                Ok(value) => value.outcome(),
                Err(error) => OutcomeLabel::of_error(error).as_str(),
            };
            self.finish(outcome, result.as_ref().err());
            result
        }
    }

    /// Records the outcome, the duration and the error on the span; an error that is not a
    /// refusal or a conflict is also logged, inside the span.
    fn finish(&self, outcome: &'static str, error: Option<&Error>) -> Duration {
        let elapsed = self.started.elapsed();
        self.span.record("outcome", outcome);
        self.span.record("duration_us", u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        if let Some(error) = error {
            self.span.record("error", tracing::field::display(error));
            if OutcomeLabel::of_error(error) == OutcomeLabel::Error {
                tracing::error!(parent: &self.span, %error, retryable = error.is_retryable(), "store operation failed");
            }
        }
        elapsed
    }
}
