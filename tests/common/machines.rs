//! The machines the integration tests drive.

use fsm_runtime::StateMachine;

/// The order machine of the conformance suite: the one of the examples and the README.
pub use fsm_suite::order::{OrderEvent, OrderState as Order};

/// A machine with an event of two targets: `Close` leads from `Open` to `Closed` and from
/// `Resolved` to `Archived`.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(rename_all = "snake_case", event = TicketEvent, table = "tickets")]
pub enum Ticket {
    #[state(initial)]
    Open,
    #[transition(from = Open, on = Resolve)]
    Resolved,
    #[transition(from = Open, on = Close)]
    Closed,
    #[transition(from = Resolved, on = Close)]
    Archived,
}

/// A machine that cycles on purpose: `Next` is declared cyclic.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(rename_all = "snake_case", event = LightEvent, table = "lights", cyclic = [Next])]
pub enum Light {
    #[state(initial)]
    #[transition(from = Yellow, on = Next)]
    Red,
    #[transition(from = Red, on = Next)]
    Green,
    #[transition(from = Green, on = Next)]
    Yellow,
}

/// A machine with a strict transition: capturing twice through two different requests is an
/// error, not a no-op.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(rename_all = "snake_case", event = PaymentEvent, table = "payments")]
pub enum Payment {
    #[state(initial)]
    Authorized,
    #[transition(from = Authorized, on = Capture, strict)]
    Captured,
    #[transition(from = Authorized, on = Void)]
    Voided,
    #[transition(from = Captured, on = Refund)]
    Refunded,
}
