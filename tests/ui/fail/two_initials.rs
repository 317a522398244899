use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[state(rename = "imported", initial)]
    Imported,
    #[transition(from = [Created, Imported])]
    Paid,
}

fn main() {}
