use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(cyclic = [Nxt])]
enum Light {
    #[state(initial)]
    #[transition(from = Green, on = Next)]
    Red,
    #[transition(from = Red, on = Next)]
    Green,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(cyclic = [Toggle])]
enum Switch {
    #[state(initial)]
    Off,
    #[transition(from = Off)]
    On,
}

fn main() {}
