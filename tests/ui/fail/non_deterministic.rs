use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = Settle)]
    Paid,
    #[transition(from = Created, on = Settle)]
    Cancelled,
}

fn main() {}
