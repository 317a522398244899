use fsm_runtime::StateMachine;

// `Capturing` has no `#[transition(from = ...)]`: nothing starts the call. It is reported once,
// as an in-flight state never entered, not also as unreachable.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Payment {
    #[state(initial)]
    Authorized,
    #[state(in_flight)]
    Capturing,
    #[transition(from = [Authorized, Capturing], on = Confirm)]
    Captured,
}

fn main() {}
