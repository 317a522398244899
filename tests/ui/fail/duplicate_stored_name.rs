use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "lowercase")]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created)]
    InTransit,
    #[transition(from = Created)]
    #[state(rename = "intransit")]
    Intransit,
    #[transition(from = Created, on = Cancel)]
    #[state(rename = "created")]
    Cancelled,
}

fn main() {}
