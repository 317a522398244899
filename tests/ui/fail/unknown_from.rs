use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = [Created, Payed], on = Ship)]
    Shipped,
}

fn main() {}
