use fsm_runtime::StateMachine;

// The initial state is where `create` puts a new entity, before any call is made.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Payment {
    #[state(initial, in_flight)]
    Capturing,
    #[transition(from = Capturing, on = Confirm)]
    Captured,
    #[transition(from = Capturing, on = Decline)]
    Declined,
}

fn main() {}
