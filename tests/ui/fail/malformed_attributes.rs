use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(table = "orders", table = "orders_v2")]
enum Order {
    #[state(initial)]
    Created,
    #[transition(on = Pay)]
    #[transition(from = Created)]
    Paid,
    #[transition(from = [], on = Ship)]
    #[transition(from = Paid)]
    Shipped,
    #[transition(from = "Paid")]
    #[transition(from = Created)]
    Cancelled,
}

fn main() {}
