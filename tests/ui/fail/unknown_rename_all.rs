use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake-case")]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created)]
    Paid,
}

fn main() {}
