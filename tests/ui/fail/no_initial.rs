use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Created,
    #[transition(from = Created)]
    Paid,
}

fn main() {}
