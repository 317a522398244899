use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order<const N: usize> {
    #[state(initial)]
    Created,
    #[transition(from = Created)]
    Paid,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Payment
where
    u8: Copy,
{
    #[state(initial)]
    Pending,
}

fn main() {}
