use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created)]
    Paid { amount: u32 },
    #[transition(from = Created)]
    Cancelled(u8),
}

fn main() {}
