use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(cyclic = [Pay, Cancel, Pay])]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = Pay)]
    Paid,
    #[transition(from = [Created, Paid], on = Cancel)]
    Cancelled,
}

fn main() {}
