//! The payment machine: the life of a payment intent.

use fsm_runtime::StateMachine;

/// The life of a payment intent. Capture and refund move money, so they are strict: a capture
/// that finds the payment captured by another request is refused, not a silent no-op (a retry
/// of the same request, with the same `Idempotency-Key`, is a replay).
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(name = "Payment", rename_all = "snake_case", event = PaymentEvent, table = "payments")]
pub enum PaymentState {
    /// The intent exists: an account and an amount, nothing reserved yet.
    #[state(initial)]
    Created,
    /// The customer authorised the payment.
    #[transition(from = Created, on = Authorize)]
    Authorized,
    /// The amount was debited from the account and a receipt enqueued.
    #[transition(from = Authorized, on = Capture, strict)]
    Captured,
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
