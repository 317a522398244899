use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake_case", events = OrderEvent, strict)]
enum Order {
    #[state(initial, final)]
    Created,
    #[transition(from = Created, on = Pay, to = Shipped)]
    #[state(name = "payed")]
    Paid,
}

fn main() {}
