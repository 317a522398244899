use fsm_runtime::StateMachine;

// Every error of one enum is reported at once.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake_case", table = "order table", colour = "red")]
enum Order {
    #[state(initial)]
    Created,
    #[state(initial)]
    #[transition(from = [Created, Craeted], on = Pay)]
    Paid,
    #[transition(from = Shipped, on = Ship)]
    Shipped,
    #[transition(from = Created, on = Pay)]
    #[state(rename = "paid")]
    Settled,
    Orphan,
}

fn main() {}
