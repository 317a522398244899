use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = Pay)]
    Paid,
    Lost,
    #[transition(from = Lost, on = Find)]
    Found,
}

fn main() {}
