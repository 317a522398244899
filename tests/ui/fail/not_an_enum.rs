use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
struct Order {
    paid: bool,
}

#[derive(StateMachine, Clone, Copy)]
union Bits {
    a: u8,
    b: i8,
}

fn main() {}
