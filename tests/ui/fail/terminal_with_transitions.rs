use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    #[state(initial)]
    Created,
    #[state(terminal)]
    #[transition(from = Created, on = Pay)]
    Paid,
    #[transition(from = Paid, on = Ship)]
    Shipped,
    #[transition(from = [Created, Paid], on = Cancel)]
    #[state(terminal)]
    Cancelled,
}

fn main() {}
