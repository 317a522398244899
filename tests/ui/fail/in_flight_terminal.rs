use fsm_runtime::StateMachine;

// The result of the call is recorded by a transition out of the in-flight state.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Payment {
    #[state(initial)]
    Authorized,
    #[state(in_flight, terminal)]
    #[transition(from = Authorized, on = Capture)]
    Capturing,
}

fn main() {}
