use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = Pay)]
    #[transition(from = Created, on = PayLater)]
    Paid,
}

fn main() {}
