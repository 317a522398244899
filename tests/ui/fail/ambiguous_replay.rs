use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Light {
    #[state(initial)]
    #[transition(from = Green, on = Next)]
    Red,
    #[transition(from = Red, on = Next)]
    Green,
}

fn main() {}
