//! The payment machine: the life of a payment intent.

use fsm_runtime::StateMachine;

/// The life of a payment intent. Capture and refund move money, so they are strict: a capture
/// that finds the payment captured by another request is refused, not a silent no-op (a retry
/// of the same request, with the same `Idempotency-Key`, is a replay).
///
/// A service without a card processor captures in one step (`authorized` → `captured`, event
/// `capture`). A service with one (`--processor-url`) captures in two: `charge` moves the
/// payment into `capturing`, an in-flight state, the processor is called with the key of that
/// entry, and its answer is recorded as `confirm` (`captured`) or `decline` (`declined`).
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(name = "Payment", rename_all = "snake_case", event = PaymentEvent, table = "payments")]
pub enum PaymentState {
    /// The intent exists: an account and an amount, nothing reserved yet.
    #[state(initial)]
    Created,
    /// The customer authorised the payment.
    #[transition(from = Created, on = Authorize)]
    Authorized,
    /// The card processor is being asked to charge the payment (with a service started with
    /// `--processor-url`): the amount is reserved on the account, and the payment stays here
    /// until the processor's answer is known.
    #[state(in_flight)]
    #[transition(from = Authorized, on = Charge, strict)]
    Capturing,
    /// The amount was debited from the account and a receipt enqueued: at once (`capture`),
    /// or once the processor charged the card (`confirm`).
    #[transition(from = Authorized, on = Capture, strict)]
    #[transition(from = Capturing, on = Confirm)]
    Captured,
    /// The processor declined the charge: nothing was debited, the reservation is released.
    #[transition(from = Capturing, on = Decline)]
    Declined,
    /// The amount was credited back and a receipt enqueued.
    #[transition(from = Captured, on = Refund, strict)]
    Refunded,
    /// Given up before any money moved.
    #[transition(from = [Created, Authorized], on = Cancel)]
    Cancelled,
    /// The authorization expired uncaptured: fired by the service's scheduler, the
    /// authorization TTL after the payment was authorized.
    #[transition(from = Authorized, on = Expire)]
    Voided,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capturing_is_the_in_flight_state() {
        assert_eq!(PaymentState::IN_FLIGHT, &[PaymentState::Capturing]);
        assert_eq!(PaymentState::Authorized.fire(PaymentEvent::Capture), Ok(PaymentState::Captured));
        assert_eq!(PaymentState::Authorized.fire(PaymentEvent::Charge), Ok(PaymentState::Capturing));
        assert_eq!(PaymentState::Capturing.fire(PaymentEvent::Confirm), Ok(PaymentState::Captured));
        assert_eq!(PaymentState::Capturing.fire(PaymentEvent::Decline), Ok(PaymentState::Declined));
        assert!(PaymentState::Capturing.fire(PaymentEvent::Cancel).is_err(), "a charge under way is not cancelled");
        assert!(PaymentState::Declined.is_terminal());
    }
}
