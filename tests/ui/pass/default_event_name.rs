#![deny(warnings)]
//! Without `event = ...`, the event enum is `<Enum>Event`; without any event, it is empty.

use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Payment {
    #[state(initial)]
    Pending,
    #[transition(from = Pending, on = Capture)]
    Captured,
    #[transition(from = Captured)]
    Refunded,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Silent {
    #[state(initial)]
    Start,
    #[transition(from = Start)]
    End,
}

fn takes(event: PaymentEvent) -> &'static str {
    event.as_str()
}

fn main() {
    assert_eq!(Payment::Pending.fire(PaymentEvent::Capture), Ok(Payment::Captured));
    assert_eq!(takes(PaymentEvent::Capture), "Capture");
    assert_eq!(Payment::EVENTS, &[PaymentEvent::Capture]);
    let none: &[SilentEvent] = Silent::EVENTS;
    assert!(none.is_empty());
    assert!(Silent::can_transition(Silent::Start, Silent::End));
}
