//! `POST /payments/{id}/capture` through the card processor ([`through_processor`]).

use axum::http::StatusCode;
use axum::response::Response;
use fsm_runtime::outbound::StepOutcome;
use fsm_runtime::sql::SqlTx;
use fsm_runtime::{Error, Outcome, Store as _, TransitionRequest};

use super::keys::json_response;
use super::routes::KeyedCapture;
use super::{InsufficientFunds, Ledger, PaymentEvent, PaymentRow, PaymentService, PaymentState, PaymentView, Problem};

/// Captures `payment` through the service's processor, in two phases:
///
/// 1. `authorized` → `capturing` (event `charge`), keyed by the request's `Idempotency-Key` as
///    any transition, reserving the amount on the account in its transaction (too little left:
///    409 `insufficient-funds`, and the processor is not called). A retry of the request is a
///    replay of this phase: nothing is reserved twice.
/// 2. [`Outbound::resume`](fsm_runtime::outbound::Outbound::resume): the processor's charge with
///    the outbound key of that entry, under the payment's claim, and its answer recorded.
///
/// The answer: 200 with the payment `captured` (as a capture without a processor), 402
/// `payment-declined` when the processor declined, 409 `capture-in-progress` with
/// `Retry-After: 1` when the processor has not answered (a timeout, a 5xx, a refused
/// connection, its 409) or another request is making the call. A retry with the same key
/// answers the same way once the outcome is known (with `Idempotent-Replayed: true`, since its
/// first phase is a replay), also after the payment moved on (refunded): the outcome is the
/// move out of `capturing`.
pub(super) async fn through_processor<B: Ledger>(
    service: &PaymentService<B>,
    payment: PaymentRow,
    request: KeyedCapture,
) -> Result<Response, Problem> {
    let Some(processor) = service.processor() else {
        tracing::error!("a capture through the processor, on a service without one");
        return Err(Problem::internal());
    };
    let KeyedCapture { key, fingerprint, reason } = request;
    let id = payment.id.clone();
    let mut charge =
        TransitionRequest::fire(id.as_str(), PaymentEvent::Charge).idempotency_key(key.clone(), fingerprint);
    if let Some(reason) = &reason {
        charge = charge.reason(reason.clone());
    }
    let (account_id, amount) = (payment.account_id.clone(), payment.amount);
    let charge = charge.effect(move |tx: &mut SqlTx<B>| {
        Box::pin(async move {
            if B::reserve(&mut **tx, &account_id, amount).await? == 0 {
                return Err(InsufficientFunds { account_id, amount }.into());
            }
            Ok(())
        })
    });
    let view = |state: PaymentState, version: i64| PaymentView::of(&payment, state, version);

    // Phase 1: into `capturing`, keyed.
    let (entered, replayed) = match service.store().apply(charge).await {
        Ok(Outcome::Applied { version, .. }) => {
            tracing::info!(payment = %id, version, %key, "capture started: charging at the processor");
            (version, false)
        }
        Ok(Outcome::Replayed { to: PaymentState::Capturing, version, .. }) => {
            tracing::info!(payment = %id, version, %key, "capture replayed: its charge resumed");
            (version, true)
        }
        // The key captured the payment at once, before the service had a processor.
        Ok(Outcome::Replayed { to, version, .. }) => {
            tracing::info!(payment = %id, to = to.as_str(), version, %key, "transition replayed");
            return Ok(json_response(StatusCode::OK, &view(to, version), true));
        }
        // `capturing` is strict: another request's capture is an error, not this.
        Ok(Outcome::AlreadyApplied { version, .. }) => (version, false),
        Ok(other) => {
            tracing::error!(payment = %id, ?other, "unexpected outcome");
            return Err(Problem::internal());
        }
        Err(error) => {
            tracing::info!(payment = %id, %key, %error, "capture refused");
            return Err(refused(&error, &id));
        }
    };

    // Phase 2: the call (or the answer another attempt recorded).
    let step = match processor.outbound().resume(id.as_str()).await {
        // Another process recorded the answer first (its claim ran out while this one called):
        // the answer is in the store.
        Err(Error::ReachedByAnotherRequest { .. }) => processor.outbound().resume(id.as_str()).await,
        step => step,
    };
    match step {
        Ok(StepOutcome::Settled { state, version }) => {
            let (state, version) = settlement(service, &id, entered, state, version).await?;
            tracing::info!(payment = %id, state = state.as_str(), version, %key, replayed, "capture settled");
            if state == PaymentState::Declined {
                return Err(Problem::payment_declined(format!(
                    "the processor declined the charge of payment `{id}`; nothing was debited"
                ))
                .with("payment_id", id)
                .with("state", state.as_str())
                .with("version", version));
            }
            Ok(json_response(StatusCode::OK, &view(state, version), replayed))
        }
        Ok(StepOutcome::InFlight { key: outbound, error, .. }) => {
            tracing::info!(payment = %id, outbound_key = %outbound, %error, %key, "capture in progress: no answer from the processor");
            Err(Problem::capture_in_progress(format!(
                "the processor has not answered the charge yet ({error}); retry the same request"
            ))
            .with("payment_id", id)
            .with("state", PaymentState::Capturing.as_str())
            .with("outbound_key", outbound.as_str()))
        }
        Ok(StepOutcome::Busy { .. }) => {
            tracing::info!(payment = %id, %key, "capture in progress: another request is charging");
            Err(Problem::capture_in_progress(
                "another request is charging the payment at the processor right now; retry the same request",
            )
            .with("payment_id", id)
            .with("state", PaymentState::Capturing.as_str()))
        }
        Err(error) => {
            tracing::warn!(payment = %id, %key, %error, "capture: the charge's step failed");
            Err(Problem::from_store(&error).with("payment_id", id))
        }
    }
}

/// The problem for a refused first phase: as for any transition, except that a payment the
/// processor already answered for (`captured`, `declined`) was captured by another request,
/// as a capture without a processor says of a `captured` one.
fn refused(error: &Error, id: &str) -> Problem {
    let problem = match *error {
        Error::InvalidEvent { machine, state, .. }
            if state == PaymentState::Captured.as_str() || state == PaymentState::Declined.as_str() =>
        {
            Problem::from_store(&Error::ReachedByAnotherRequest { machine, id: id.into(), state })
        }
        _ => Problem::from_store(error),
    };
    problem.with("payment_id", id)
}

/// The processor's answer to the charge that entered `capturing` at version `entered`: the
/// move out of it at `entered + 1`, which is where the payment is (`state` at `version`)
/// unless it moved on since (a refund): then read from its history.
async fn settlement<B: Ledger>(
    service: &PaymentService<B>,
    id: &str,
    entered: i64,
    state: PaymentState,
    version: i64,
) -> Result<(PaymentState, i64), Problem> {
    if version <= entered + 1 {
        return Ok((state, version));
    }
    let history = service.store().history(id).await?;
    let settled = history.iter().find(|entry| entry.version == entered + 1 && entry.from == PaymentState::Capturing);
    Ok(settled.map_or((state, version), |entry| (entry.to, entry.version)))
}
