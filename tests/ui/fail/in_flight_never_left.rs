use fsm_runtime::StateMachine;

// No state lists `Capturing` in `from`: the result of the call could never be recorded.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Payment {
    #[state(initial)]
    Authorized,
    #[state(in_flight)]
    #[transition(from = Authorized, on = Capture)]
    Capturing,
    #[transition(from = Authorized, on = Void)]
    Voided,
}

fn main() {}
