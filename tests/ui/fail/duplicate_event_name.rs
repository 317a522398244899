use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "lowercase")]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = PayNow)]
    Paid,
    #[transition(from = Paid, on = Paynow)]
    Settled,
}

fn main() {}
