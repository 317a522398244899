#![deny(warnings)]
//! A payment captured by a card processor: `Capturing` is in flight while the call is made, and
//! its result is recorded by `Confirm` or `Decline`.

use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake_case", event = PaymentEvent)]
enum Payment {
    #[state(initial)]
    Authorized,
    #[state(in_flight)]
    #[transition(from = Authorized, on = Capture)]
    Capturing,
    #[transition(from = Capturing, on = Confirm)]
    Captured,
    #[transition(from = Capturing, on = Decline)]
    Declined,
}

/// A machine without in-flight states, implemented by the derive: `IN_FLIGHT` is empty.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    #[state(initial)]
    Closed,
    #[transition(from = Closed)]
    Opened,
}

/// Usable in const context, without the trait.
const IN_FLIGHT: &[Payment] = Payment::IN_FLIGHT;

fn in_flight_names<M: StateMachine>() -> Vec<&'static str> {
    M::IN_FLIGHT.iter().map(|state| state.as_str()).collect()
}

fn main() {
    use Payment::*;
    assert_eq!(IN_FLIGHT, &[Capturing]);
    assert_eq!(<Payment as StateMachine>::IN_FLIGHT, &[Capturing]);
    assert_eq!(in_flight_names::<Payment>(), ["capturing"]);
    assert!(Capturing.is_in_flight());
    assert!(!Authorized.is_in_flight() && !Captured.is_in_flight() && !Declined.is_in_flight());
    assert_eq!(Authorized.fire(PaymentEvent::Capture), Ok(Capturing));
    assert_eq!(Capturing.fire(PaymentEvent::Confirm), Ok(Captured));
    assert_eq!(Capturing.fire(PaymentEvent::Decline), Ok(Declined));
    assert!(Captured.is_terminal() && Declined.is_terminal() && !Capturing.is_terminal());
    assert_eq!(
        Payment::MERMAID,
        "stateDiagram-v2\n    [*] --> authorized\n    authorized --> capturing: capture\n    \
         capturing --> captured: confirm\n    capturing --> declined: decline\n    captured --> [*]\n    \
         declined --> [*]\n    classDef inFlight stroke-dasharray: 5 5\n    class capturing inFlight\n"
    );
    assert!(Payment::DOT.contains("    \"capturing\" [style=dashed];\n"));

    assert!(Door::IN_FLIGHT.is_empty() && in_flight_names::<Door>().is_empty());
    assert!(!Door::Closed.is_in_flight() && !Door::Opened.is_in_flight());
    assert!(!Door::MERMAID.contains("inFlight") && !Door::DOT.contains("dashed"));
}
